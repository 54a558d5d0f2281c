"""Image references from the chat JSONL (FORMATS.md 1.1): which chips and stills the tree really uses."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from transforms.input.sidecars import UTF8_BOM
from transforms.paths import file_stem, normalise_ref, unsafe_reason

SPLIT_FILE_ORDER = ("train", "validation", "test")
CHIP_PREFIX = "images/"
STILL_PREFIX = "mapbox_stills/"


@dataclass(frozen=True, order=True)
class ImageRef:
    """One reference; ``order`` sorts references in file order so the first one wins a duplicate stem."""

    order: tuple[int, int, int]
    kind: str  # "chip" or "still"
    stem: str
    path: str


@dataclass(frozen=True)
class RefProblem:
    line_no: int
    reason: str
    detail: str


def file_rank(path: str) -> int:
    """train, validation, test first (in that order), then any other JSONL file."""
    name = file_stem(path)
    return SPLIT_FILE_ORDER.index(name) if name in SPLIT_FILE_ORDER else len(SPLIT_FILE_ORDER)


def parse_line(line: str | bytes, rank: int, line_no: int) -> tuple[list[ImageRef], list[RefProblem]]:
    """Every image part of every user message whose content is a list; other prefixes are ignored."""
    refs: list[ImageRef] = []
    problems: list[RefProblem] = []
    if line_no == 1:  # a file saved by a Windows tool starts with a byte order mark
        line = line.removeprefix(UTF8_BOM) if isinstance(line, bytes) else line.removeprefix("\ufeff")
    if not line.strip():
        return refs, problems
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        reason = "invalid_jsonl_line"
        if isinstance(line, bytes):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                reason = "jsonl_line_not_utf8"
        return refs, [RefProblem(line_no, reason, str(err)[:200])]
    if not isinstance(obj, dict):
        return refs, [RefProblem(line_no, "jsonl_line_not_object", type(obj).__name__)]
    messages = obj.get("messages")
    if not isinstance(messages, list):
        return refs, [RefProblem(line_no, "jsonl_messages_not_list", type(messages).__name__)]
    part_no = 0
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "image":
                continue
            raw = part.get("image")
            part_no += 1
            if not isinstance(raw, str):
                problems.append(RefProblem(line_no, "image_ref_not_string", repr(raw)[:200]))
                continue
            path = normalise_ref(raw)
            reason = unsafe_reason(path)
            if reason:
                problems.append(RefProblem(line_no, f"unsafe_path:{reason}", path[:200]))
                continue
            if path.startswith(CHIP_PREFIX):
                kind = "chip"
            elif path.startswith(STILL_PREFIX):
                kind = "still"
            else:
                continue
            refs.append(ImageRef((rank, line_no, part_no), kind, file_stem(path), path))
    return refs, problems
