"""Chat JSONL compressed as `datasets` and exporters write large files (.jsonl.gz, .bz2, .zst, .xz): a build
reads the same references as from the plain files, a mix reads such rows, and a truncated or damaged file is a
reject that names it (Beam's reader took a truncated .bz2 for an empty file, silently)."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import shutil
from pathlib import Path

import pytest
import zstandard

from pipeline.sample.tree import write_sample_tree
from tests.conftest import run_cli
from transforms import fileio

COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "zst": zstandard.ZstdCompressor().compress,
            "xz": lzma.compress}


def _rows(out: Path) -> list[str]:
    return sorted(line for f in sorted((out / "data").glob("*.jsonl")) for line in f.read_text().splitlines())


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_lines_of_each_kind_whole_truncated_and_damaged(tmp_path, kind):
    text = b"".join(json.dumps({"n": i, "pad": "x" * (i % 40)}).encode() + b"\n" for i in range(400))
    path = tmp_path / f"train.jsonl.{kind}"
    path.write_bytes(COMPRESS[kind](text[:5000]) + COMPRESS[kind](text[5000:]))  # two members / frames
    assert b"".join(fileio.read_lines(str(path))) == text
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not compressed at all " * 20):
        path.write_bytes(damaged)
        with pytest.raises(fileio.DamagedFile):
            list(fileio.read_lines(str(path)))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be-bom", "utf-8"])
def test_plain_lines_read_utf16_with_its_mark_and_anything_else_as_it_is(tmp_path, encoding):
    text = "".join(f'{{"n": {i}, "name": "Forêt {i}"}}\r\n' if i % 3 else f'{{"n": {i}}}\n' for i in range(300))
    data = {"utf-16": text.encode("utf-16"), "utf-16-be-bom": b"\xfe\xff" + text.encode("utf-16-be"),
            "utf-8": text.encode()}[encoding]
    path = tmp_path / "train.jsonl"
    path.write_bytes(data)
    assert b"".join(fileio.read_lines(str(path))) == text.encode()
    assert list(fileio.read_lines(str(path))) == text.encode().splitlines(keepends=True)
    for head in (b"", b"\n", b"\n\n{}", b"{", b"{}", b"\n{}\n"):  # the two bytes looked at first, as lines
        path.write_bytes(head)
        assert list(fileio.read_lines(str(path))) == head.splitlines(keepends=True), head
    path.write_bytes(b"\xff\xfe" + "{}\n".encode("utf-16-le")[:-1])  # cut inside its last character
    with pytest.raises(fileio.DamagedFile, match="UTF-16"):
        list(fileio.read_lines(str(path)))


def test_a_storage_error_stays_a_storage_error(tmp_path, monkeypatch):
    """A failed read of the compressed bytes is for the runner to retry, not a damaged file to reject."""
    path = tmp_path / "train.jsonl.bz2"
    path.write_bytes(bz2.compress(b"{}\n" * 10))

    class Failing:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, size=-1):
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(fileio, "open_for_read", lambda p: Failing())
    with pytest.raises(OSError, match="Input/output error") as caught:
        list(fileio.read_lines(str(path)))
    assert not isinstance(caught.value, fileio.DamagedFile)


def test_a_tree_with_compressed_jsonl_builds_the_same_rows(tmp_path):
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    write_sample_tree(str(plain), 18, seed=4, workers=1)
    shutil.copytree(plain, packed)
    for f, kind in zip(sorted((packed / "data").glob("*.jsonl")), ("gz", "zst", "xz"), strict=True):
        lines = f.read_bytes().splitlines(keepends=True)
        half = (len(lines) + 1) // 2  # the compressed file keeps at least one line
        Path(f"{f}.{kind}").write_bytes(COMPRESS[kind](b"".join(lines[:half])))
        # the rest in a file saved as UTF-16 (PowerShell's `>`, Notepad's "Unicode"): each line was a reject
        f.with_name(f"{f.stem}-rest.jsonl").write_bytes(b"".join(lines[half:]).decode().encode("utf-16"))
        f.unlink()
    build = ("--tasks", "caption,grounding_all", "--quiet")
    run_cli("build", "--input", str(plain), "--output", str(tmp_path / "a"), *build)
    run_cli("build", "--input", str(packed), "--output", str(tmp_path / "b"), *build)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b") and _rows(tmp_path / "a")

    train = packed / "data" / "test.jsonl.gz"  # truncated in transit: named, and its tiles' rows go
    train.write_bytes(train.read_bytes()[:-40])
    run_cli("build", "--input", str(packed), "--output", str(tmp_path / "c"), *build)
    rejects = [json.loads(line) for f in (tmp_path / "c" / "rejects").glob("*.jsonl")
               for line in f.read_text().splitlines()]
    bad = [r for r in rejects if r["reason"] == "jsonl_unreadable"]
    assert [(r["source"], r["detail"].split(":")[0]) for r in bad] == [("data/test.jsonl.gz", "EOFError")], bad

    mixed = tmp_path / "mix"  # a mix reads such files too
    rows = (tmp_path / "a" / "data" / "train.jsonl").read_bytes()
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "train.jsonl.bz2").write_bytes(bz2.compress(rows))
    run_cli("mix", "--source", f"name=s,path={tmp_path / 'export'},image_root={tmp_path / 'a'}",
            "--output", str(mixed), "--quiet")
    report = json.loads((mixed / "mix_report.json").read_text())
    assert report["rows"]["total"] == len(rows.splitlines()) and not report["rejects_by_reason"]
