"""A disk that fills under the commands that write outside a Beam graph (sample, preview, eval's files): one line
naming the file, exit 1, and nothing half written left behind. (A build's and a mix's full disk: test_faults.)"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import pipeline.sample.tree as tree_module
import transforms.fileio as fileio_module
from pipeline.cli import main
from tests.conftest import run_cli


class _FillingFile:
    """A file whose disk has ``room`` bytes left (shared by every file opened after it)."""

    def __init__(self, real, room: list[int]):
        self.real, self.room = real, room

    def write(self, data) -> int:
        if len(data) > self.room[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room[0] -= len(data)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def _disk_with_room(monkeypatch, room: int, *modules) -> None:
    left = [room]

    def filling_open(path, mode="r", *args, **kwargs):
        real = open(path, mode, *args, **kwargs)
        return _FillingFile(real, left) if "w" in mode else real

    for module in modules:
        monkeypatch.setattr(module, "open", filling_open, raising=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("full")
    run_cli("sample", "--tiles", "6", "--output", str(base / "tree"), "--seed", "2")
    run_cli("build", "--input", str(base / "tree"), "--output", str(base / "out"), "--tasks", "caption,cross_view",
            "--quiet")
    return base / "out"


def _said(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sample_on_a_full_disk_names_the_file_and_leaves_no_partial_tree(tmp_path, monkeypatch, capsys, workers):
    """A traceback (from each worker process with --workers 2), and a partial tree that a rerun refused without
    --overwrite."""
    _disk_with_room(monkeypatch, 200_000, tree_module)
    out = tmp_path / "tree"
    assert main(["sample", "--tiles", "12", "--output", str(out), "--workers", workers]) == 1
    said = _said(capsys)
    assert said.startswith(f"satsft: error: No space left on device (writing {out}/") and "`satsft sample`" in said
    assert not out.exists()


def test_preview_on_a_full_disk_leaves_no_half_page(built, tmp_path, monkeypatch, capsys):
    """A traceback, and a folder of images without its page, which a rerun refused as holding other files."""
    _disk_with_room(monkeypatch, 30_000, fileio_module)
    page = tmp_path / "page"
    assert main(["preview", str(built), "--to", str(page)]) == 1
    said = _said(capsys)
    assert said.startswith(f"satsft: error: No space left on device (writing {page}/") and "`satsft preview`" in said
    assert not page.exists()
    monkeypatch.undo()
    assert main(["preview", str(built), "--to", str(page)]) == 0 and (page / "index.html").is_file()


def test_eval_files_on_a_full_disk_leave_no_partial_file(built, tmp_path, monkeypatch, capsys):
    """The requests' message was "cannot read or write: [Errno 28] ..." naming no file, and the .partial file
    stayed; the report's temporary file stayed too."""
    _disk_with_room(monkeypatch, 30_000, fileio_module)
    requests = tmp_path / "requests.jsonl"
    assert main(["eval", str(built), "--requests", str(requests), "--model", "m", "--split", "train"]) == 1
    assert _said(capsys) == (f"satsft: error: No space left on device (writing {requests}.partial); free space (or "
                             "fix the storage) first, then run `satsft eval` again")
    assert list(tmp_path.iterdir()) == []
    _disk_with_room(monkeypatch, 0, fileio_module)
    report = tmp_path / "report.json"
    assert main(["eval", str(built), "--baseline", "majority", "--split", "train", "--output", str(report)]) == 1
    assert _said(capsys).startswith(f"satsft: error: No space left on device (writing {report})")
    assert list(tmp_path.iterdir()) == []
