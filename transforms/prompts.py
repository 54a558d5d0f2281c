"""Editable prompt and answer wording: one JSON file per task under templates/prompts/.

Each slot holds several phrasings; the one used for a row is chosen from the row's sample id, so a rebuild
picks the same words and a corpus still sees varied phrasing. Templates are loaded once at launch and
travel inside the config, so workers never need the template files.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

from transforms.ids import stable_choice_index

Templates = dict[str, dict[str, list[str]]]
MAX_SPEC_NUMBER = 100  # widths and precisions of {field:spec}: a prompt is checked against 16,000 chars at most


def default_prompts_dir() -> Path:
    installed = Path(__file__).parent / "_prompts"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "templates" / "prompts"


def load_templates(directory: str | Path | None, tasks: list[str]) -> Templates:
    """Read and check the template file of every selected task; a missing slot is a usage error."""
    root = Path(directory) if directory else default_prompts_dir()
    out: Templates = {}
    for task in tasks:
        path = root / f"{task}.json"
        if not path.is_file():
            raise ValueError(f"prompt template file missing for task {task!r}: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"prompt template {path} is not valid JSON: {err}") from err
        except RecursionError as err:  # Python's reader recurses per level
            raise ValueError(f"prompt template {path} nests lists or objects too deeply to read; it must be an "
                             "object of slot -> list of phrasings") from err
        except UnicodeDecodeError as err:
            raise ValueError(f"prompt template {path} is not UTF-8 text ({err.reason} at byte {err.start}); save it "
                             "as UTF-8") from err
        if not isinstance(data, dict) or not data:
            raise ValueError(f"prompt template {path} must be an object of slot -> list of phrasings")
        for slot, phrasings in data.items():
            if slot.startswith("_"):
                continue
            if not isinstance(phrasings, list) or not phrasings or not all(isinstance(p, str) for p in phrasings):
                raise ValueError(f"prompt template {path}: slot {slot!r} must be a non-empty list of strings")
            for p in phrasings:
                problem = phrasing_problem(p)
                if problem:
                    raise ValueError(f"prompt template {path}: slot {slot!r}: {p!r} {problem}")
        out[task] = {k: v for k, v in data.items() if not k.startswith("_")}
    return out


def phrasing_problem(phrasing: str) -> str:
    """Why a phrasing is not one a row can fill by name, or "": braces that do not pair, and placeholders that are
    not a plain field name. ``{caption.__class__}`` or ``{label[0]}`` would fill rows with Python's internals or
    a letter of a word, and ``{}`` or ``{0}`` with nothing any row gives. A format spec may pad or round, within
    MAX_SPEC_NUMBER: a width builds a string of that many characters per row."""
    try:
        fields = [(field, spec) for _, field, spec, _ in string.Formatter().parse(phrasing) if field is not None]
    except ValueError as err:
        return f"is not a phrasing ({err}); write {{{{ and }}}} for a brace of the text itself"
    for field, _ in fields:
        if not field.isidentifier():
            return (f"names {{{field[:60]}}}: a placeholder is a field name alone, such as {{label}} (no positions, "
                    "attributes or indexes)")
    for field, spec in fields:
        numbers = [n.lstrip("0") or "0" for n in re.findall(r"\d+", spec)]
        if "{" in spec or any(len(n) > 3 or int(n) > MAX_SPEC_NUMBER for n in numbers):
            return (f"formats {{{field}:{spec[:40]}}}: a width or precision is at most {MAX_SPEC_NUMBER}, written out "
                    "(each row's text is built that long before the gate measures it: {label:>300000000} made "
                    "every row 300 MB)")
    return ""


class TemplateError(ValueError):
    """A phrasing of an edited template that the task's rows cannot fill (a misspelt {placeholder}): a usage
    error, said once, not a failed job."""


_check_every_phrasing: list[bool] = [False]  # templates_problem(): fill all phrasings of a slot, not the one picked


def _fill(task: str, slot: str, phrasing: str, fields: dict[str, Any]) -> str:
    try:
        return phrasing.format(**fields)
    except (KeyError, IndexError, AttributeError, ValueError) as err:
        named = f"{{{err.args[0]}}}" if isinstance(err, KeyError) else str(err)
        raise TemplateError(f"prompt template {task}.json, slot {slot!r}: {phrasing!r} names {named}, which "
                            f"{task} rows do not fill (they fill: {', '.join(sorted(fields)) or 'nothing'})") from None


def pick(templates: Templates, task: str, slot: str, sample_id: str, **fields: Any) -> str:
    """The phrasing of ``slot`` chosen for this row, filled with ``fields``."""
    phrasings = templates[task][slot]
    if _check_every_phrasing[0]:
        for phrasing in phrasings:
            _fill(task, slot, phrasing, fields)
    choice = phrasings[stable_choice_index(len(phrasings), sample_id, task, slot)]
    return _fill(task, slot, choice, fields)


def has_slot(templates: Templates, task: str, slot: str) -> bool:
    return slot in templates.get(task, {})


def counted(n: int, noun: str, plural: str = "") -> str:
    """A number with its noun in the right form: "1 labelled region", "3 labelled regions"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
