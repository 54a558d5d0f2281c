"""Named pipes in a tree: opening one for reading waits for a writer, so a FIFO named like a sidecar or a JSONL
file held the whole build (and the pre-flight check before it) until some other process wrote to it."""

from __future__ import annotations

import json
import os
import signal

import pytest

from transforms import fileio


@pytest.fixture
def alarm():
    """Fail, instead of hanging the suite, where a read would wait for a writer."""
    def stuck(*_):
        raise TimeoutError("a read waited for a writer")

    before = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


def test_a_named_pipe_found_in_a_folder_is_refused_before_it_is_opened(tmp_path, alarm):
    pipe = tmp_path / "x.json"
    os.mkfifo(pipe)
    with pytest.raises(fileio.NotAFile, match="not a regular file"):
        fileio.refuse_special(str(pipe))
    for fine in (tmp_path, tmp_path / "gone.json", "gs://bucket/x.json"):  # a folder; what the read then tells
        fileio.refuse_special(str(fine))
    (tmp_path / "y.json").write_bytes(b"{}")
    fileio.refuse_special(str(tmp_path / "y.json"))


def test_a_file_named_on_the_command_line_may_be_a_pipe(tmp_path):
    """`satsft eval DIR --predictions <(zcat p.jsonl.gz)`: the shell hands over a pipe, which must be read."""
    import threading

    from scoring.evaluate import read_predictions

    pipe = tmp_path / "predictions"
    os.mkfifo(pipe)

    def write():
        with open(pipe, "wb") as f:
            f.write(b'{"sample_id": "a", "prediction": "water"}\n')

    writer = threading.Thread(target=write)
    writer.start()
    assert read_predictions(str(pipe)) == {"a": "water"}
    writer.join()


def test_a_build_over_named_pipes_rejects_them_and_goes_on(tmp_path, alarm):
    from pipeline.cli import main

    tree, out = tmp_path / "tree", tmp_path / "out"
    assert main(["sample", "--tiles", "2", "--output", str(tree)]) == 0
    os.mkfifo(tree / "metadata" / "s00000" / "pipe.json")
    os.mkfifo(tree / "data" / "more.jsonl")
    assert main(["build", "--input", str(tree), "--output", str(out), "--tasks", "caption", "--quiet"]) == 0
    rejects = [json.loads(line) for line in (out / "rejects" / "rejects-00000-of-00001.jsonl").read_text().splitlines()]
    assert sorted((r["source"], r["reason"]) for r in rejects) == [
        ("data/more.jsonl", "jsonl_unreadable"), ("metadata/s00000/pipe.json", "sidecar_unreadable")]
    assert json.loads((out / "build_report.json").read_text())["tiles"]["with_rows"] == 2
    # a mix source folder holding one: that file is unreadable, the rest is mixed
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.jsonl").write_bytes(b"".join(p.read_bytes() for p in sorted((out / "data").glob("*.jsonl"))))
    os.mkfifo(src / "test.jsonl")
    assert main(["mix", "--source", f"name=chat,path={src},image_root={out}", "--output", str(tmp_path / "mix"),
                 "--formats", "jsonl", "--quiet"]) == 0
    mixed = (tmp_path / "mix" / "rejects" / "rejects-00000-of-00001.jsonl").read_text()
    assert '"reason":"source_file_unreadable","source":"chat:test.jsonl"' in mixed
