"""Input files that were never fetched: Git LFS pointers in place of the files (a clone without Git LFS), each
kind named as one with what to do, the pointer recognised from its first 33 bytes; and dangling git-annex links."""

from __future__ import annotations

import io
import json

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from pipeline.sample.faults import lfs_pointer
from transforms.input import lfs
from transforms.input.images import media_problem, png_problem
from transforms.input.read import REJECTS, ExtractImageRefs
from transforms.input.sidecars import parse_sidecar


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


def test_pointers_are_told_from_the_files_they_stand_for():
    pointer = lfs_pointer(_png())
    assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1\noid sha256:") and b"\nsize " in pointer
    assert lfs.is_pointer(pointer) and lfs.is_pointer(pointer[:33])
    assert not lfs.is_pointer(pointer[:20]), "too little to tell"
    assert not lfs.is_pointer(b"version 2 of the captions, see notes for more detail\n")
    assert not lfs.is_pointer(_png()) and not lfs.is_pointer(b'{"tile_stem": "version https://git-lfs.github.com"}')

    assert png_problem(pointer[:33], pointer[-12:], len(pointer))[:2] == ("lfs_pointer", lfs.DETAIL)
    assert media_problem(pointer) == "lfs_pointer" and media_problem(_png()) == ""
    parsed = parse_sidecar(lfs_pointer(json.dumps({"tile_stem": "a"}).encode()), "metadata/a.json")
    assert (parsed.problem.reason, parsed.problem.detail) == ("sidecar_lfs_pointer", lfs.DETAIL)
    assert "git lfs pull" in lfs.DETAIL


def test_a_jsonl_pointer_is_one_reject_for_the_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    line = {"messages": [{"role": "user", "content": [{"type": "image", "image": "images/a.png"}]}]}
    (data / "train.jsonl").write_bytes(lfs_pointer(json.dumps(line).encode()))
    (data / "test.jsonl").write_text(json.dumps(line) + "\n")
    with TestPipeline() as p:
        out = p | ExtractImageRefs(str(tmp_path))
        reasons = out[REJECTS] | beam.Map(lambda r: (r["source"], r["reason"]))
        assert_that(reasons, equal_to([("data/train.jsonl", "jsonl_lfs_pointer")]))


def test_a_dangling_annex_link_says_its_content_was_not_fetched(tmp_path):
    import os

    from transforms.input.images import missing_detail

    (tmp_path / "images").mkdir()
    os.symlink("../.git/annex/objects/Qx/7f/SHA256E-s9--a.png/SHA256E-s9--a.png", tmp_path / "images" / "a.png")
    os.symlink("../elsewhere/b.png", tmp_path / "images" / "b.png")
    assert "git annex get" in missing_detail(str(tmp_path), "images/a.png")
    dangling = "images/b.png: a link to ../elsewhere/b.png, which does not exist"
    assert missing_detail(str(tmp_path), "images/b.png") == dangling
    assert missing_detail(str(tmp_path), "images/c.png") == "images/c.png"
