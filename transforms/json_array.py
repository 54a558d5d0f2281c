"""The rows of a `.json` file holding one JSON array, read element by element.

LLaVA-style datasets (LLaVA-Instruct, ShareGPT4V, GeoChat-Instruct, and satsft's own `--formats llava`) ship as
one array of rows in a single `.json` file, often a gigabyte: loading it whole would hold every row as Python
objects at once, several times the file's size. Here a buffer of about one chunk is decoded one element at a
time with the standard library's C scanner, so memory follows the largest row, not the file.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from transforms.fileio import DamagedFile

CHUNK_BYTES = 1 << 20
# A row longer than this is taken for damage: else one broken element early in a large file would have the
# rest of it read into the buffer, looking for the element's end.
MAX_ELEMENT_CHARS = 64 << 20
_SPACE = " \t\r\n"


class NotAnArray(ValueError):
    """The file's top-level value is not an array (``dataset_info.json``, a single object)."""


HEAD_BYTES = 64  # what written_whole needs of a file: the build reads these of each chat file anyway


def written_whole(head: bytes) -> bool:
    """Whether a .jsonl file that starts with ``head`` (its first bytes, or its first line with text) holds
    JSON written whole rather than a row per line: one array of rows (``json.dump(rows, f)`` to a file named
    .jsonl) or rows pretty-printed over several lines each (``json.dump(row, f, indent=2)`` per row), whose first
    line is a ``{`` alone. Read line by line, each such file was one invalid_jsonl_line reject per line and its
    tiles stem_not_in_jsonl. A first row cut short (``{"messages": [...``) is not taken for either: its file is
    still read a line at a time."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"["):
        return True
    return text.startswith(b"{") and text[1:].lstrip(b" \t\r").startswith(b"\n")


def json_array_rows(f: BinaryIO, chunk_bytes: int = CHUNK_BYTES,
                    max_element_chars: int = MAX_ELEMENT_CHARS, one_after_another: bool = False) -> Iterator[Any]:
    """Each element of the array that is the whole of ``f``, or with ``one_after_another`` (a .jsonl written
    whole) also each of the JSON values that follow one another in it. NotAnArray when the file holds
    something else; DamagedFile where it stops being valid JSON (a truncated download), after the elements
    before that point."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="strict")
    buf, pos, eof = "", 0, False

    def fill() -> bool:
        """Read one more chunk into ``buf``; False at the end of the file."""
        nonlocal buf, pos, eof
        if eof:
            return False
        data = f.read(chunk_bytes)
        try:
            text = utf8.decode(data, final=not data)
        except UnicodeDecodeError as err:
            raise DamagedFile(f"not UTF-8 text: {err}") from None
        if not data:
            eof = True
        buf, pos = buf[pos:] + text, 0
        return bool(data)

    def next_char() -> str:
        """The next character that is not white space, reading on as needed; "" at the end of the file."""
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in _SPACE:
                pos += 1
            if pos < len(buf) or not fill():
                return buf[pos] if pos < len(buf) else ""

    while not buf and fill():  # a chunk may end inside a character
        pass
    if buf.startswith("\ufeff"):  # a byte order mark, as Windows tools write one
        pos = 1
    first = next_char()
    bare = one_after_another and first == "{"  # values one after another, no array around them
    where = "in the file" if bare else "in the array"
    if first != "[" and not bare:
        raise NotAnArray(f"its top level is {_kind(first)}, not an array of rows")
    if not bare:
        pos += 1
        if next_char() == "]":
            return
    while True:
        next_char()
        try:
            value, end = decoder.raw_decode(buf, pos)
            # Objects, arrays, strings and literals end with a character of their own; a number cut by the
            # buffer's end ("3." of "3.25") decodes too, so it counts only once a character after it is read.
            complete = (eof or not isinstance(value, (int, float)) or isinstance(value, bool)
                        or (end < len(buf) and buf[end] not in "0123456789.eE+-"))
        except json.JSONDecodeError as err:
            if len(buf) - pos > max_element_chars:
                raise DamagedFile(f"invalid JSON {where}, or an element over {max_element_chars:,} "
                                  f"characters: {err.msg}") from None
            if fill():
                continue
            raise DamagedFile(f"invalid JSON {where}: {err.msg}") from None
        except RecursionError:  # the C scanner recurses per level: an element nested ~1,000 deep ends here
            raise DamagedFile("an element of the array nests deeper than Python's JSON reader goes") from None
        if not complete:
            fill()
            continue
        pos = end
        yield value
        after = next_char()
        if bare:
            if not after:
                return
            continue
        if after == "]":
            pos += 1
            if one_after_another and next_char():  # a .jsonl whose first line is an array, rows after it: its
                bare = True  # elements are what that line held (the reader names each one that is no row)
                continue
            return
        if after != ",":
            raise DamagedFile(f"expected ',' or ']' after an element, found {after[:1]!r}" if after
                              else "the file ends inside the array (truncated?)")
        pos += 1


def _kind(first: str) -> str:
    return {"{": "an object", "": "empty"}.get(first, f"{first!r}")
