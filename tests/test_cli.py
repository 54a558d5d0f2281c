"""The command line starts fast: Beam (seconds of imports, with its cloud clients) loads only for a build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

_NO_BEAM = """
import contextlib, io, sys
from pipeline.cli import main
for argv in (["--help"], ["--version"], ["sample", "--help"], ["validate", "--help"], ["validate", "/nonexistent"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
import pipeline.sample.tree, pipeline.review.validate, pipeline.publish.report  # noqa: E401
import pipeline.publish.card, pipeline.sample.faults  # noqa: E401
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "apache_beam")
assert not loaded, loaded[:5]
"""


def test_help_sample_and_validate_never_import_beam():
    proc = subprocess.run([sys.executable, "-c", _NO_BEAM], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_help_into_a_closed_pipe_ends_without_a_traceback():
    """`satsft --help | head`: the reader may be gone before the usage is written (here it is gone from the
    start), and the command then ends quietly, not with a BrokenPipeError traceback."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], cwd=REPO, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_build_help_lists_the_build_options():
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "build", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--max-files-per-dir" in proc.stdout and "--leakage" in proc.stdout


def test_long_runs_tune_the_collector_and_give_it_back():
    """Builds freeze what exists and collect less often while they run; the process gets its settings back,
    also when the run fails (tests and notebooks run several builds in one process)."""
    import gc

    from transforms.collector import restore, tune, tuned

    before = gc.get_threshold()
    with tuned():
        frozen = gc.get_freeze_count()
        assert gc.get_threshold() == (10_000, 10, 10) and frozen > 0
        restore(tune())  # a DoFn inside the run: nothing to tune, nothing to give back
        assert gc.get_threshold() == (10_000, 10, 10) and gc.get_freeze_count() == frozen
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    try:
        with tuned():
            raise RuntimeError("a failed run")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_sample_overwrite_replaces_a_tree_never_a_folder_of_other_things(tmp_path):
    """`satsft sample --overwrite` removes the folder it writes to: only when all it holds is a tree."""
    from pipeline.cli import main

    tree = tmp_path / "tree"
    assert main(["sample", "--tiles", "3", "--output", str(tree), "--labels"]) == 0
    assert main(["sample", "--tiles", "4", "--output", str(tree), "--overwrite"]) == 0
    assert len(list((tree / "metadata").rglob("*.json"))) == 4 and not (tree / "labels").exists()
    (tree / "notes.txt").write_text("mine")
    assert main(["sample", "--tiles", "3", "--output", str(tree), "--overwrite"]) == 2
    assert (tree / "notes.txt").read_text() == "mine" and len(list((tree / "metadata").rglob("*.json"))) == 4


def test_sample_and_preview_refuse_what_cannot_be_done_in_one_line(tmp_path, capsys):
    """--tiles past a million planned every tile in memory until the machine killed it; --workers 10**20 forked
    without end; a --to name longer than the file system holds was an OSError traceback."""
    from pipeline.cli import main

    assert main(["sample", "--tiles", str(10**20), "--output", str(tmp_path / "t")]) == 2
    assert "--tiles must be from 1 to 1,000,000" in capsys.readouterr().err
    assert main(["sample", "--tiles", "2", "--workers", str(10**20), "--output", str(tmp_path / "t")]) == 2
    assert "up to 256 processes" in capsys.readouterr().err and not (tmp_path / "t").exists()
    assert main(["sample", "--tiles", "2", "--output", str(tmp_path / "t")]) == 0
    assert main(["build", "--input", str(tmp_path / "t"), "--output", str(tmp_path / "o"), "--tasks", "caption",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["preview", str(tmp_path / "o"), "--to", str(tmp_path / ("p" * 300))]) == 2
    assert "a path is too long for the file system" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tree_300(tmp_path_factory) -> Path:
    from tests.conftest import run_cli

    tree = tmp_path_factory.mktemp("stop") / "tree"
    run_cli("sample", "--tiles", "300", "--output", str(tree), "--seed", "5")
    return tree


MULTI = ("--direct_num_workers", "2", "--direct_running_mode", "multi_processing")


def _as_from_a_terminal() -> None:
    """A shell starts a command with Ctrl-C and SIGTERM at their defaults, unblocked; the test runner's worker
    process may not be in that state (once, under the full suite, the sample command never saw the signal and
    wrote all 4000 tiles), and a child inherits both."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize(("signum", "code", "said", "beam"), [(signal.SIGINT, 130, "satsft: interrupted;", ()),
                                                             (signal.SIGTERM, 143, "satsft: stopped by SIGTERM;", ()),
                                                             (signal.SIGINT, 130, "satsft: interrupted;", MULTI)])
def test_a_stopped_build_says_in_one_line_what_the_output_holds(tree_300, tmp_path, signum, code, said, beam):
    """Ctrl-C (SIGINT), or a scheduler's SIGTERM (`timeout`, systemd, Kubernetes), is a request, not a crash:
    Beam re-raises it from inside a DoFn as a RuntimeError with two tracebacks (SIGTERM killed the process
    without a word); the command exits 128 + the signal and says the folder holds a partial build to run again
    with --overwrite. The signal goes to the whole process group, as a terminal's Ctrl-C does: with
    multi_processing workers each of them printed its own traceback first."""
    import time

    from tests.conftest import run_cli

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", "--input", str(tree_300),
                             "--output", str(out), "--tasks", "production_analysis", "--quiet", *beam],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"), start_new_session=True,
                            preexec_fn=_as_from_a_terminal)
    deadline = time.monotonic() + 120
    while not list(out.glob("analysis_images/*/*.png")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # stopped while it draws tiles
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err and err.strip().endswith("run the build again with --overwrite"), err[-3000:]
    assert said in err and "holds a partial build" in err and not (out / "build_report.json").exists()
    validate = run_cli("validate", str(out), check=False)
    assert validate.returncode == 1 and "build_report.json (or mix_report.json) is missing" in validate.stdout
    assert f"by process {proc.pid} on host " in validate.stdout and "stopped before it finished" in validate.stdout


def test_a_full_disk_stops_a_build_with_one_line(tmp_path, monkeypatch, capsys):
    """No space left (or a quota, or a read-only mount) is the machine's state, not a bug: Beam's 100 lines of
    tracebacks become one that says so and what the output holds."""
    import errno

    from pipeline.cli import main
    from pipeline.runner import storage_refusal
    from transforms import fileio

    beam_words = RuntimeError("OSError: [Errno 28] No space left on device [while running 'WriteSplitFiles/Spool']")
    assert storage_refusal(beam_words) == "No space left on device"
    named = RuntimeError("OSError: [Errno 28] No space left on device: '/out/media/a.png' [while running 'Copy']")
    assert storage_refusal(named) == "No space left on device", "the file's name is not the reason's words"
    assert storage_refusal(RuntimeError("[Errno 2] No such file or directory")) == ""
    assert main(["sample", "--tiles", "3", "--output", str(tmp_path / "tree")]) == 0
    capsys.readouterr()
    create = fileio._create_local

    def full(path):
        if "analysis_images" in path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return create(path)

    monkeypatch.setattr(fileio, "_create_local", full)
    out = tmp_path / "out"
    assert main(["build", "--input", str(tmp_path / "tree"), "--output", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2, err[-3000:]  # the start line and this
    assert f"satsft: error: No space left on device (writing to {out}); free space" in err, err
    assert err.strip().endswith("run the build again with --overwrite"), err


def test_ctrl_c_stops_sample_workers_quietly(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: the pool's workers leave it to the parent."""
    import os
    import signal
    import time

    runner_state = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, set()))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "sample", "--tiles", "4000", "--workers", "2",
                             "--output", str(tmp_path / "tree")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_as_from_a_terminal)
    deadline = time.monotonic() + 60
    while not (tmp_path / "tree" / "images").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    waited, running = time.monotonic() - deadline + 60, proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "satsft: interrupted", (
        f"signalled after {waited:.1f} s, running: {running}; the runner's SIGINT handler and mask: {runner_state}; "
        f"stdout: {out[-500:]!r}; stderr: {err[-3000:]!r}")


@pytest.mark.parametrize("argv", [["validate"], ["eval", "--baseline", "majority"], ["preview", "--n", "3"]])
def test_readers_of_a_dataset_say_when_the_path_is_none(tmp_path, capsys, argv):
    """A mistyped output path read "holds no files", "is not a folder" or "no build_report.json" by command."""
    from pipeline.cli import main

    (tmp_path / "a_file").write_text("x")
    for name, said in (("no_such_output", "does not exist"), ("a_file", "is a file")):
        assert main([*argv, str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert f"{str(tmp_path / name)!r} {said}; pass the --output folder of a build or mix" in err, err


@pytest.mark.parametrize("argv", [
    ["build", "--input", "s3://b/tree", "--output", "{t}/o"], ["build", "--input", "{t}", "--output", "s3://b/o"],
    ["build", "--input", "{t}", "--output", "{t}/o", "--previous", "az://c/old"],
    ["mix", "--source", "name=a,path=s3://b/x", "--output", "{t}/o"],
    ["mix", "--recipe", "s3://b/r.yaml", "--output", "{t}/o"],
    ["mix", "--source", "name=a,path={t},image_root=hf://datasets/o/x", "--output", "{t}/o"],
    ["validate", "hf://datasets/org/x"], ["eval", "S3://b/x", "--baseline", "majority"],
    ["eval", "{t}", "--predictions", "s3://b/p.jsonl"], ["preview", "s3://b/x", "--to", "{t}/page"],
])
def test_a_store_satsft_cannot_reach_is_one_line_before_anything_runs(tmp_path, capsys, argv):
    """s3:// and hf:// stopped build, mix, validate and eval with tracebacks (Beam's "Must provide one of client
    or options", fsspec's "Install s3fs", a failed name lookup)."""
    from pipeline.cli import main

    assert main([a.replace("{t}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "satsft reads and writes local folders and gs:// buckets, not " in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_a_reading_command_ends_its_process_at_once(monkeypatch, tmp_path, capsys):
    """eval, preview and validate end with os._exit once their output is flushed: Arrow reader threads alive
    in the interpreter's teardown can abort a finished command (SIGABRT, "terminate called without an active
    exception"). Called as a function (tests, Python callers), main returns as before."""
    import pipeline.cli as cli

    ended = []

    def fake_exit(code):
        ended.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setattr(cli.sys, "argv", ["satsft", "validate", str(tmp_path / "missing")])
    with pytest.raises(SystemExit):
        cli.main()
    assert ended == [2] and "does not exist" in capsys.readouterr().err
    assert cli.main(["validate", str(tmp_path / "missing")]) == 2 and ended == [2], "a call with argv returns"
    monkeypatch.setattr(cli.sys, "argv", ["satsft", "sample", "--tiles", "0", "--output", str(tmp_path / "t")])
    assert cli.main() == 2 and ended == [2], "a command that may start other processes ends as Python ends"
