"""Image references from the chat JSONL (FORMATS.md 1.1): which chips and stills the tree really uses."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from transforms.input.sidecars import UTF8_BOM
from transforms.output.formats import IMAGE_TOKEN
from transforms.paths import (
    ABSOLUTE_REASONS,
    data_relative,
    file_stem,
    jsonl_stem,
    normalise_ref,
    tree_folder_in_case,
    tree_relative,
    unsafe_reason,
)

SPLIT_FILE_ORDER = ("train", "validation", "test")
CHIP_PREFIX = "images/"
STILL_PREFIX = "mapbox_stills/"
OTHER = "other"  # a reference under any other folder: not read
IGNORED_REFS = "image_refs_ignored"  # counter: such references
# counter: absolute or ../ references read below the input root (paths.tree_relative, paths.data_relative)
REBASED_REFS = "image_refs_rebased"


@dataclass(frozen=True, order=True)
class ImageRef:
    """One reference; ``order`` sorts references in file order so the first one wins a duplicate stem."""

    order: tuple[int, int, int]
    kind: str  # "chip", "still" or "other"
    stem: str
    path: str
    rebased: bool = field(default=False, compare=False)  # given as an absolute or ../ path, read below the root


@dataclass(frozen=True)
class RefProblem:
    line_no: int
    reason: str
    detail: str


def file_rank(path: str) -> int:
    """train, validation, test first (in that order), then any other JSONL file."""
    name = jsonl_stem(path)
    return SPLIT_FILE_ORDER.index(name) if name in SPLIT_FILE_ORDER else len(SPLIT_FILE_ORDER)


_NO_ENTRY = object()
PLACEHOLDER = object()  # an image part that names no image: it takes the next entry of the row's images list
IMAGE_PART_TYPES = ("image", "image_url")
_IMAGE_KEYS = ("image", "path", "url")  # satsft / Qwen-VL, then the keys transformers' chat templates read
DATA_URL = "data:"


def part_image(part: dict[str, Any]) -> Any:
    """What an image part names, as each tool writes it: ``image``, ``path`` or ``url`` (transformers' chat
    templates), OpenAI's ``image_url`` (``{"url": ...}`` or the URL itself); PLACEHOLDER when it names none
    (TRL's ``{"type": "image"}``). Anything else named (a number, a struct) is returned for the caller to reject."""
    if part.get("type") == "image_url":
        given = part.get("image_url")
        return given.get("url") if isinstance(given, dict) else given
    for key in _IMAGE_KEYS:
        if part.get(key) is not None:
            return part[key]
    return PLACEHOLDER


def data_url_bytes(url: str) -> bytes | None:
    """The image inside a base64 ``data:`` URL (OpenAI's inline images), None when it is not one or is broken."""
    head, comma, body = url.partition(",")
    if not comma or not head.startswith(DATA_URL) or not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None


def _image_parts(content: Any, pending: Iterator[Any]) -> Iterator[Any]:
    """The image references of one message in order (``part_image``); a part naming none or each ``<image>``
    token of a string content (ShareGPT) takes the next entry of the row's ``images`` list (a path, or a
    ``{"path": ...}`` struct)."""
    if isinstance(content, str):
        given: list[Any] = [PLACEHOLDER] * content.count(IMAGE_TOKEN)
    elif isinstance(content, list):
        given = [part_image(part) for part in content
                 if isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES]
    else:
        return
    for ref in given:
        if ref is PLACEHOLDER:
            entry = next(pending, _NO_ENTRY)
            ref = entry.get("path") if isinstance(entry, dict) else entry
        yield ref


def llava_images(obj: dict[str, Any]) -> list[Any]:
    """A LLaVA-shaped row's images in order: its ``image`` (a path, a ``{bytes, path}`` struct or a list of
    them, as LLaVA-OneVision writes several), else its ``images`` list."""
    image = obj.get("image")
    given = ([] if image is None else image if isinstance(image, list) else [image]) or obj.get("images") or []
    return given if isinstance(given, list) else [given]


def _llava_messages(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """A LLaVA-shaped line (``{"image": "images/...", "conversations": [{"from": "human", ...}]}``) as one user
    message showing its images: only the references are read here, never the text."""
    parts = [{"type": "image", "image": g.get("path") if isinstance(g, dict) else g} for g in llava_images(obj)]
    return [{"role": "user", "content": parts}]


def parse_line(line: str | bytes, rank: int, line_no: int) -> tuple[list[ImageRef], list[RefProblem]]:
    """Every image reference of every user message; those outside images/ and mapbox_stills/ are of kind
    ``other`` (the build counts and skips them)."""
    if line_no == 1:  # a file saved by a Windows tool starts with a byte order mark
        line = line.removeprefix(UTF8_BOM) if isinstance(line, bytes) else line.removeprefix("\ufeff")
    if not line.strip():
        return [], []
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        reason = "invalid_jsonl_line"
        if isinstance(line, bytes):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                reason = "jsonl_line_not_utf8"
        return [], [RefProblem(line_no, reason, str(err)[:200])]
    return parse_row(obj, rank, line_no)


def parse_row(obj: Any, rank: int, line_no: int) -> tuple[list[ImageRef], list[RefProblem]]:
    """``parse_line`` of a decoded row (a JSONL line, or an element of a JSON array: ``line_no`` counts them)."""
    refs: list[ImageRef] = []
    problems: list[RefProblem] = []
    if not isinstance(obj, dict):
        return refs, [RefProblem(line_no, "jsonl_line_not_object", type(obj).__name__)]
    messages = obj.get("messages")
    if messages is None and isinstance(obj.get("conversations"), list):
        messages = _llava_messages(obj)
    if not isinstance(messages, list):
        return refs, [RefProblem(line_no, "jsonl_messages_not_list", type(messages).__name__)]
    column = obj.get("images")  # TRL / ShareGPT rows: the row's images in order, for placeholders naming none
    pending = iter(column if isinstance(column, list) else ())
    part_no = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):  # a hand edit, a tool that wrote null: the image it held is lost
            problems.append(RefProblem(line_no, "jsonl_message_not_object",
                                       f"messages[{i}] is {type(message).__name__}"))
            continue
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, list):
            problems.extend(RefProblem(line_no, "jsonl_message_not_object", f"messages[{i}].content[{j}] is "
                                       f"{type(part).__name__}") for j, part in enumerate(content)
                            if not isinstance(part, dict))
        for raw in _image_parts(content, pending):
            if message.get("role") != "user":
                continue
            part_no += 1
            if raw is _NO_ENTRY:
                problems.append(RefProblem(line_no, "images_column_short", "an image placeholder with no entry "
                                           "left in the row's images list"))
                continue
            if not isinstance(raw, str):
                problems.append(RefProblem(line_no, "image_ref_not_string", repr(raw)[:200]))
                continue
            if raw.startswith(DATA_URL):  # an image inline in the row, not a file of the tree: counted, skipped
                refs.append(ImageRef((rank, line_no, part_no), OTHER, "", raw[:raw.find(",") + 1 or 40]))
                continue
            path = normalise_ref(raw)
            reason = unsafe_reason(path)
            inside = (tree_relative(path) if reason in ABSOLUTE_REASONS
                      else data_relative(path) if reason == "parent_traversal" else None)
            if inside is not None and unsafe_reason(inside) is None:
                path, reason = inside, None
            if reason:
                problems.append(RefProblem(line_no, f"unsafe_path:{reason}", path[:200]))
                continue
            path = tree_folder_in_case(path)
            if path.startswith(CHIP_PREFIX):
                kind = "chip"
            elif path.startswith(STILL_PREFIX):
                kind = "still"
            else:
                kind = OTHER  # not a chip or still: counted, so a tree whose chips live elsewhere is told why
            refs.append(ImageRef((rank, line_no, part_no), kind, file_stem(path), path, inside is not None))
    if not refs and not problems:  # nothing of the line reaches the build: say where it went
        problems.append(RefProblem(line_no, "jsonl_line_no_image", _why_no_image(messages)))
    return refs, problems


def _why_no_image(messages: list[Any]) -> str:
    """Why a row of message objects names no image of a user turn: the image in another role's turn tells the
    user which line to mend."""
    for message in messages:
        if any(True for _ in _image_parts(message.get("content"), iter(()))):
            return f"its images are in a {str(message.get('role'))[:20]!r} turn, not the user's"
    return "no user turn has an image part (a text-only row adds nothing to a build of chips)"
