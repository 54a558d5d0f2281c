"""Edited templates are tried on made-up tiles before a build starts: a misspelt placeholder is a usage error
naming the file, the slot and the fields that slot can use, before anything is written (it failed the job deep
in GenerateRows with a KeyError)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, run_cli
from transforms import prompts
from transforms.analysis.tim import PROFILES
from transforms.rows import TaskContext
from transforms.tasks import TASK_NAMES
from transforms.tasks.probe import templates_problem


def test_the_probe_reaches_every_slot_of_the_bundled_templates(monkeypatch):
    templates = prompts.load_templates(None, list(TASK_NAMES))
    reached = set()
    fill = prompts._fill

    def recording(task, slot, phrasing, fields):
        reached.add((task, slot))
        return fill(task, slot, phrasing, fields)

    monkeypatch.setattr(prompts, "_fill", recording)
    assert templates_problem(TaskContext(templates, tuple(PROFILES), "varied", False, 9000), TASK_NAMES) == ""
    assert reached == {(task, slot) for task, slots in templates.items() for slot in slots}


def test_a_phrasing_no_row_fills_names_what_it_may_use():
    with pytest.raises(prompts.TemplateError, match=r"class_focus.json, slot 'patches_many': '\{labl\} lies' names "
                                                    r"\{labl\}, which class_focus rows do not fill \(they fill: count, "
                                                    r"label\)"):
        prompts._fill("class_focus", "patches_many", "{labl} lies", {"label": "Trees", "count": 2})


@pytest.mark.parametrize(("task", "slot"), [("class_focus", "patches_many"), ("absence", "answer_trace"),
                                            ("production_analysis", "finding_wildfire_decrease")])
def test_a_misspelt_placeholder_stops_the_build_before_it_starts(tmp_path, task, slot):
    edited = tmp_path / "prompts"
    shutil.copytree(REPO / "templates" / "prompts", edited)
    data = json.loads((edited / f"{task}.json").read_text())
    data[slot] = [*data[slot], "Look at {lable}."]  # one phrasing of several: rarely the one a row picks
    (edited / f"{task}.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    run_cli("sample", "--tiles", "2", "--output", str(tmp_path / "tree"))
    proc = run_cli("build", "--input", str(tmp_path / "tree"), "--output", str(out), "--prompts-dir", str(edited),
                   check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{task}.json, slot '{slot}': 'Look at {{lable}}.' names {{lable}}, which {task} rows do not fill" in (
        proc.stderr), proc.stderr
    assert f"fix it in {edited}" in proc.stderr and not out.exists(), "nothing written"


@pytest.mark.parametrize(("phrasing", "said"), [
    ("{caption.__class__.__mro__}", "names {caption.__class__.__mro__}: a placeholder is a field name alone"),
    ("{label[0]} is here", "names {label[0]}: a placeholder is a field name alone"),
    ("{0} or {}", "names {0}: a placeholder is a field name alone"),
    # each row's text was built this long before the gate refused it: 300 MB a row, 65 s and 1.7 GB for 8 tiles
    ("{caption:>300000000}", "formats {caption:>300000000}: a width or precision is at most 100"),
    ("{caption:.{label}}", "formats {caption:.{label}}: a width or precision is at most 100"),
    ("{caption:" + "9" * 5000 + "}", "formats {caption:" + "9" * 40 + "}: a width"),
    ("a brace { alone", "is not a phrasing (expected '}' before end of string); write {{ and }} for a brace"),
])
def test_a_placeholder_that_is_not_a_field_name_is_refused_as_templates_load(tmp_path, phrasing, said):
    """An attribute or index in a placeholder filled rows with Python's internals ("(<class 'str'>, <class
    'object'>)" as a caption) or a letter, unnoticed; braces that do not pair were said as a field no row fills."""
    edited = tmp_path / "prompts"
    shutil.copytree(REPO / "templates" / "prompts", edited)
    (edited / "caption.json").write_text(json.dumps({"prompt": ["Describe it."], "answer": [phrasing]}))
    with pytest.raises(ValueError) as err:
        prompts.load_templates(edited, ["caption"])
    assert f"caption.json: slot 'answer': {phrasing!r} {said}" in str(err.value)
    (edited / "caption.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match="caption.json is not UTF-8 text .*save it as UTF-8"):
        prompts.load_templates(edited, ["caption"])
    (edited / "caption.json").write_text("[" * 100_000 + "]" * 100_000)  # was a RecursionError traceback
    with pytest.raises(ValueError, match="caption.json nests lists or objects too deeply"):
        prompts.load_templates(edited, ["caption"])
    assert prompts.phrasing_problem('{{"label": "{label}", "bbox": [{box}]}}') == ""
    assert prompts.phrasing_problem("{percent:.1f}% {label!s}") == ""
    assert prompts.phrasing_problem("{label:_<100} {percent:0>6.2f}") == ""
