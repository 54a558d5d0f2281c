"""Reading a model's raw answer: boxes, an option letter, a class, a count, yes or no, quoted shares.

Every reader returns None (or an empty result) when the answer does not say the thing asked for, so the scorer
counts it as malformed and wrong, never skips it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from transforms.classes import CLASS_NAMES, display_name
from transforms.input.sidecars import class_of_name

CLASS_WORDS = {display_name(n).lower(): n for n in CLASS_NAMES}
# longest names first, so "snow and ice" wins over a bare "ice"-like overlap; word boundaries on both sides
_CLASS_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(CLASS_WORDS, key=len, reverse=True))
                       + r")\b", re.IGNORECASE)
# No match starts after a digit (one starting a digit earlier would have been found first), so saying so
# changes nothing read and keeps a run of digits with no "%" after it from being retried at each of its digits
# (quadratic: 0.8 s for a 5,000-digit run, as a model repeating itself writes).
_PERCENT_RE = re.compile(r"(?<!\d)(\d+(?:\.\d+)?)\s*%")
_INT_RE = re.compile(r"\b(\d+)\b")
MAX_COUNT_DIGITS = 9
NUMBER_WORDS = {w: i for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                            "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
                                            "sixteen"))}


def boxes(text: str) -> list[tuple[str, tuple[float, float, float, float]]] | None:
    """(label, box) pairs from a JSON list of {"label", "bbox"} anywhere in the text, or from one such object
    alone (a model asked before fine-tuning often answers a single box that way); None when there is none.

    From each opening bracket only the one value starting there can parse, so Python's scanner finds where it
    ends and orjson reads just that: trying every closing bracket from the right instead cost the cube of the
    answer's length (15 s for a model repeating "[" 2,000 times, and evaluations run over thousands of rows)."""
    for opening, as_list in (("[", False), ("{", True)):
        start = text.find(opening)
        while start != -1:
            # Only a list that is empty or opens with an object, or an object that opens with a key, can be
            # read as boxes: any other start is passed over unread (a run of "[" would each recurse 1,000 deep).
            after = _NEXT_CHAR.match(text, start + 1)
            if after is None or after.group(1) not in _BOXES_OPEN[opening]:
                start = text.find(opening, start + 1)
                continue
            try:
                _, end = _SCANNER.raw_decode(text, start)
                items = orjson.loads(text[start:end])
            except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
                pass
            else:
                parsed = _boxes_of([items] if as_list else items)
                if parsed is not None:
                    return parsed
            start = text.find(opening, start + 1)
    return tagged_boxes(text)


# InternVL and Qwen-VL ground with tags: <ref>water</ref><box>[[x1, y1, x2, y2], ...]</box> (InternVL) or
# <box>(x1,y1),(x2,y2)</box> (Qwen-VL), on a 0-1000 grid. PaliGemma writes <locY1><locX1><locY2><locX2> water,
# y first, on a 0-1023 grid, several joined by " ; ". Bounded runs between the tags keep a looping answer linear.
_REF_BOX_RE = re.compile(r"<ref>([^<]{1,100})</ref>\s*<box>([^<]{1,4000})</box>")
_LOC_RE = re.compile(r"((?:<loc\d{4}>){4})\s*([^<;]{1,100})")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def tagged_boxes(text: str) -> list[tuple[str, tuple[float, float, float, float]]] | None:
    """(label, box) pairs from InternVL's or Qwen-VL's <ref>/<box> tags or PaliGemma's <loc> tokens (each box
    as [x1, y1, x2, y2] on the model's own grid: scored with --box-scale 1000, or 1024 for PaliGemma); None
    when the answer has neither. Before fine-tuning such a model answers in its own tags, which read as no
    boxes at all, so it scored 0 whatever it found."""
    out: list[tuple[str, tuple[float, float, float, float]]] = []
    if "<ref>" in text:
        for m in _REF_BOX_RE.finditer(text):
            numbers = [float(v) for v in _NUMBER_RE.findall(m.group(2))]
            if not numbers or len(numbers) % 4:
                return None
            label = _label(m.group(1).strip())
            out += [(label, tuple(numbers[i:i + 4])) for i in range(0, len(numbers), 4)]  # type: ignore[misc]
    if not out and "<loc" in text:
        for m in _LOC_RE.finditer(text):
            y1, x1, y2, x2 = (float(v) for v in re.findall(r"\d{4}", m.group(1)))
            out.append((_label(m.group(2).strip()), (x1, y1, x2, y2)))
    return out or None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


_SCANNER = json.JSONDecoder(parse_constant=_no_constant)
_NEXT_CHAR = re.compile(r"[ \t\n\r]*(.)", re.DOTALL)  # JSON's white space only, as orjson reads it
_BOXES_OPEN = {"[": "{]", "{": '"'}


def _boxes_of(items: Any) -> list[tuple[str, tuple[float, float, float, float]]] | None:
    """``bbox_2d`` is read as ``bbox`` (Qwen2.5-VL grounds that way), and a label naming a class in another case
    or spelling ("Snow and ice") as that class: a model scored before fine-tuning is judged on its boxes."""
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("label"), str):
            return None
        box = item.get("bbox", item.get("bbox_2d"))
        if not isinstance(box, list) or len(box) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            return None
        out.append((_label(item["label"]), tuple(float(v) for v in box)))
    return out  # type: ignore[return-value]


def _label(label: str) -> str:
    class_id = class_of_name(label)
    return label if class_id is None else CLASS_NAMES[class_id]


OPTION_LINE = re.compile(r"^([A-D])\. (.+)$", re.MULTILINE)
# A letter counts only where it stands as an option: alone, in brackets, before ".", ")" or ":", or after
# "option"/"answer". "A" opening a sentence ("A grass field ...") is an article, not option A.
_LETTER_PATTERNS = (
    re.compile(r"^\s*\(?([A-D])\)?\s*[.):]?\s*$"),
    re.compile(r"\(([A-D])\)"),
    re.compile(r"(?:^|\s)([A-D])[.):](?:\s|$)"),
    re.compile(r"\b(?:option|answer(?:\s+is)?|choice)\s*:?\s*\(?([A-D])\b", re.IGNORECASE),
)


def options_of(prompt: str) -> dict[str, str]:
    """Letter -> option text, from the "A. ..." lines of a multiple-choice prompt."""
    return {m.group(1): m.group(2).strip() for m in OPTION_LINE.finditer(prompt)}


def letter(text: str, options: dict[str, str]) -> str | None:
    """The one option the answer names, by letter or by the option's exact text; None for none or several."""
    named = set()
    for pattern in _LETTER_PATTERNS:
        named.update(m.group(1) for m in pattern.finditer(text))
    lowered = text.lower()
    for key, option in options.items():
        if re.search(r"(?<![a-z])" + re.escape(option.lower()) + r"(?![a-z])", lowered):
            named.add(key)
    return named.pop() if len(named) == 1 else None


def classes_mentioned(text: str) -> list[str]:
    """Class names (Dynamic World ids) in the order the text mentions them."""
    return [CLASS_WORDS[m.group(1).lower()] for m in _CLASS_RE.finditer(text)]


def one_class(text: str, candidates: set[str] | None = None) -> str | None:
    """The class the answer names (the first of the candidates mentioned, or the only class mentioned)."""
    mentioned = classes_mentioned(text)
    if candidates is not None:
        return next((c for c in mentioned if c in candidates), None)
    return mentioned[0] if len(set(mentioned)) == 1 else None


def count(text: str) -> int | None:
    """The first number the answer gives, in digits or as a word up to sixteen. A run of more than nine digits
    (a model repeating itself) counts no chip's regions and is read as none: as a number it failed the whole
    evaluation (Python refuses to read 4,300 digits, and 309 overflow the mean absolute error)."""
    m = _INT_RE.search(text)
    if m:
        return int(m.group(1)) if len(m.group(1)) <= MAX_COUNT_DIGITS else None
    words = re.findall(r"[a-z]+", text.lower())
    return next((NUMBER_WORDS[w] for w in words if w in NUMBER_WORDS), None)


_DENIAL_RE = re.compile(r"\W*(?:not(?! sure\b| certain\b)|none|nothing)\b")


def yes_no(text: str) -> str | None:
    """The first "yes" or "no"; failing that, an answer that opens by denying ("Not as a visible patch.", the
    absence task's own trace answer; "None that I can see.") is a no. "Not sure" stays unread."""
    low = text.lower()
    m = re.search(r"\b(yes|no)\b", low)
    if m:
        return m.group(1)
    return "no" if _DENIAL_RE.match(low) else None


def quoted_shares(text: str) -> list[tuple[str, float]]:
    """(class, fraction) for every "<n>%" the text ties to a class: the nearest class named before it in the
    same sentence (or, failing that, just after it)."""
    out = []
    for sentence in re.split(r"(?<=[.;!?])\s+", text):
        mentions = [(m.start(), CLASS_WORDS[m.group(1).lower()]) for m in _CLASS_RE.finditer(sentence)]
        for p in _PERCENT_RE.finditer(sentence):
            before = [c for pos, c in mentions if pos < p.start()]
            after = [c for pos, c in mentions if pos > p.start()]
            cls = before[-1] if before else (after[0] if after else None)
            if cls is not None:
                out.append((cls, float(p.group(1)) / 100))
    return out
