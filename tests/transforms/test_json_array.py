"""A .json source (LLaVA's one array of rows) read element by element."""

from __future__ import annotations

import io
import json

import pytest

from transforms.fileio import DamagedFile
from transforms.json_array import NotAnArray, json_array_rows

ROWS = [{"id": "a", "conversations": [{"from": "human", "value": "<image>\nWhat is \u00e9t\u00e9?"}]},
        {"id": "b", "n": 12345678, "nested": [1, [2, {"x": "]},["}]]}, 7, 3.25, "text", None, [], {}]


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("dump", [lambda r: json.dumps(r), lambda r: json.dumps(r, indent=2),
                                  lambda r: "\ufeff \n" + json.dumps(r, ensure_ascii=False) + "\n\n"])
def test_every_element_in_order_whatever_the_chunk(chunk, dump):
    """Chunks cut numbers, strings, escapes and multi-byte characters anywhere; the elements come out whole."""
    data = dump(ROWS).encode()
    assert list(json_array_rows(io.BytesIO(data), chunk)) == ROWS


def test_an_empty_array_and_what_is_not_one():
    assert list(json_array_rows(io.BytesIO(b" [ ] "))) == []
    for data, said in ((b'{"features": {}}', "an object"), (b"", "empty"), (b'"rows"', "'\"'")):
        with pytest.raises(NotAnArray, match=said):
            list(json_array_rows(io.BytesIO(data)))


def test_a_truncated_file_keeps_the_rows_before_the_damage():
    data = json.dumps([*ROWS[:2], {"id": "c", "text": "x" * 100}]).encode()
    got = []
    with pytest.raises(DamagedFile):
        for row in json_array_rows(io.BytesIO(data[:-30]), 16):
            got.append(row)
    assert got == ROWS[:2]
    with pytest.raises(DamagedFile, match="expected ','"):
        list(json_array_rows(io.BytesIO(b'[{"a": 1} {"b": 2}]')))
    broken = b'[{"a": 1}, {"b": [1, 2,, 3]}, ' + b'{"c": "' + b"x" * 5000 + b'"}, ' * 200 + b"{}]"
    reader = io.BytesIO(broken)
    with pytest.raises(DamagedFile, match="an element over 1,000 characters"):
        list(json_array_rows(reader, 64, max_element_chars=1000))
    assert reader.tell() < 3000, "damage early in a large file does not read the rest of it"
    with pytest.raises(DamagedFile, match="UTF-8"):
        list(json_array_rows(io.BytesIO(b'[{"a": "\xff"}]')))


def test_an_element_nested_past_the_reader_is_damage_after_the_rows_before():
    """Python's C scanner recurses once per level: a 5,000-deep element was a RecursionError that failed the job."""
    data = json.dumps(ROWS[:2]).encode()[:-1] + b", " + b"[" * 5000 + b"]" * 5000 + b"]"
    got = []
    with pytest.raises(DamagedFile, match="nests deeper"):
        for row in json_array_rows(io.BytesIO(data)):
            got.append(row)
    assert got == ROWS[:2]
