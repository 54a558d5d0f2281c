"""Progress: workers' counts summed into done of total, rate and ETA; a bar in a terminal, lines elsewhere,
nothing with --quiet."""

from __future__ import annotations

import io
import json
import time

import pytest

from pipeline import progress
from pipeline.cli import main
from pipeline.progress import ProgressMonitor, format_duration, progress_text, read_progress
from pipeline.sample.tree import write_sample_tree
from transforms.output.tree import PROGRESS_DIR
from transforms.progress import ProgressCounter


def test_text_and_durations():
    assert format_duration(75) == "1:15" and format_duration(3725) == "1:02:05"
    line = progress_text(250, 1000, 4000, 50.0, "tiles", bar=True)
    assert line.startswith("[######..................] 250/1,000 tiles (25%)") and "ETA 0:15" in line
    assert "ETA ?" in progress_text(10, 1000, 0, 0.0, "tiles", bar=False)


def test_workers_files_are_summed(tmp_path):
    a = ProgressCounter(str(tmp_path), "build", "tiles", 40)
    b = ProgressCounter(str(tmp_path), "build", "tiles", 40)
    a.add(3, 30)
    b.add(5, 50)
    a.flush()
    b.flush()
    (tmp_path / PROGRESS_DIR / "build-broken.json").write_text("{")  # mid-write: skipped
    assert read_progress(str(tmp_path), "build") == (8, 40, 80)
    assert read_progress(str(tmp_path), "mix") == (0, 0, 0)
    ProgressCounter("", "build", "tiles", 1).flush()  # a transform tested alone writes nothing anywhere


def test_a_worker_writing_to_a_bucket_leaves_a_sign_of_life_every_few_minutes(monkeypatch):
    """On a bucket only logs show progress, but an --update begun elsewhere is judged by when it last wrote
    (transforms.rebuild.commit.last_write): each worker rewrites its small file every SIGN_OF_LIFE_EVERY_S."""
    import transforms.progress as worker

    written = []
    monkeypatch.setattr(worker.fileio, "write_bytes", lambda path, data: written.append((path, json.loads(data))))
    monkeypatch.setattr(worker, "LOG_EVERY_S", 0.0)
    monkeypatch.setattr(worker, "SIGN_OF_LIFE_EVERY_S", 0.0)
    counter = ProgressCounter("gs://bucket/out", "build", "tiles", 40)
    counter.add(2, 20)
    assert [(p.rsplit("/", 1)[0], d["done"]) for p, d in written] == [(f"gs://bucket/out/{PROGRESS_DIR}", 2)]
    monkeypatch.setattr(worker, "SIGN_OF_LIFE_EVERY_S", 300.0)
    counter.add(1, 10)
    counter.flush()
    assert len(written) == 1, "not again within the interval: a bucket's objects are not rewritten every second"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_monitor_draws_a_bar_in_a_terminal_and_lines_elsewhere(tmp_path, monkeypatch, tty):
    monkeypatch.setattr(progress, "BAR_EVERY_S", 0.02)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.05)
    stream = _Tty() if tty else io.StringIO()
    counter = ProgressCounter(str(tmp_path), "build", "tiles", 10)
    with ProgressMonitor(str(tmp_path), "build", "tiles", stream=stream):
        for _ in range(10):
            counter.add(1, 7)
            counter.flush()
            time.sleep(0.06)
    shown = stream.getvalue()
    assert "/10 tiles" in shown and "rows" in shown and "ETA" in shown
    if tty:
        assert "\r[" in shown and shown.endswith("\n") and "satsft:" not in shown
    else:
        assert "\r" not in shown and all(line.startswith("satsft: build: ") for line in shown.splitlines())


def test_a_build_shows_progress_unless_quiet(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "BAR_EVERY_S", 0.02)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.05)
    monkeypatch.setattr("transforms.progress.WRITE_EVERY_S", 0.0)
    write_sample_tree(str(tmp_path / "tree"), 40, seed=3, workers=1)
    assert main(["build", "--input", str(tmp_path / "tree"), "--output", str(tmp_path / "a"),
                 "--tasks", "production_analysis"]) == 0
    err = capsys.readouterr().err
    assert "/40 tiles" in err and "satsft: build: " in err
    assert not (tmp_path / "a" / "_satsft_spool").exists()
    assert main(["build", "--input", str(tmp_path / "tree"), "--output", str(tmp_path / "b"),
                 "--tasks", "production_analysis", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "tiles (" not in captured.err and "production_analysis" in captured.out  # the summary stays
    assert json.loads((tmp_path / "b" / "build_report.json").read_text())["tiles"]["accounted"]
