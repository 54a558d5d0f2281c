"""One run writes an output at a time: a second build or mix given --overwrite (an overlapping scheduled run,
the same command started twice) must not delete the files a running one is writing; once that run has
stopped, --overwrite proceeds."""

from __future__ import annotations

import datetime
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from pipeline.review.validate import validate
from pipeline.sample.tree import write_sample_tree
from tests.conftest import REPO, run_cli
from transforms.output import claim
from transforms.output.claim import WRITER

BUILD = ("--tasks", "production_analysis,caption", "--profiles", "brief_only", "--quiet")


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def _from_elsewhere(path: Path, command: str, hours_ago: float) -> None:
    """A marker as a launcher on another machine writes it."""
    began = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours_ago)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"a satsft {command} is writing this output\ncommand {command}\nmachine 0f8a-elsewhere\npid 7\n"
                    f"pid start 9\nbegan {began:%Y-%m-%d %H:%M:%S} UTC\nhost launcher-vm-7\ndetached -\n")
    os.utime(path, (began.timestamp(), began.timestamp()))  # written when that run began


def test_overwrite_leaves_a_running_build_alone(tmp_path):
    tree, out = tmp_path / "tree", tmp_path / "out"
    write_sample_tree(str(tree), 24, seed=3, workers=1)
    argv = ["build", "--input", str(tree), "--output", str(out), *BUILD]
    first = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    try:
        while first.poll() is None and not list(out.glob("analysis_images/*/*.png")):
            threading.Event().wait(0.01)
        os.kill(first.pid, signal.SIGSTOP)  # frozen while it draws
        during = _files(out)
        for extra, doing in ((["--overwrite"], "--overwrite would delete the files it is writing"),
                             ([], "wait for it, or pick a new folder"),
                             (["--update"], "an --update now would replace it before it has finished")):
            second = run_cli(*argv, *extra, check=False)
            assert second.returncode == 1, second.stderr[-2000:]
            assert (f"{out} is being written: a satsft build into it is running (process {first.pid} on this "
                    f"machine, began ") in second.stderr and doing in second.stderr, second.stderr
            assert _files(out) == during, "the second run touched nothing"
        said = run_cli("validate", str(out), check=False)
        assert said.returncode == 1 and f"by process {first.pid} on host " in said.stdout + said.stderr
        assert "is still running; validate it once it has finished" in said.stdout + said.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=600) == 0, first.stderr.read().decode()[-2000:]
    assert not (out / WRITER).exists() and not validate(str(out))[0].count, "the marker goes with the spool"

    # A build from another machine that stopped (or runs on there): left alone for --take-over-after hours.
    _from_elsewhere(out / WRITER, "build", hours_ago=1)
    refused = run_cli(*argv, "--overwrite", check=False)
    assert refused.returncode == 1 and "--take-over-after 0" in refused.stderr, refused.stderr
    assert re.search(r"a satsft build into it began [\d: -]+ UTC on another machine \(host launcher-vm-7, process 7",
                     refused.stderr), refused.stderr
    run_cli(*argv, "--overwrite", "--take-over-after", "0")
    assert not (out / WRITER).exists() and not validate(str(out))[0].count

    # A mix likewise.
    mixed = tmp_path / "mix"
    _from_elsewhere(mixed / WRITER, "mix", hours_ago=1)
    mix = ["mix", "--source", f"name=sat,path={out}", "--output", str(mixed), "--quiet", "--overwrite"]
    refused = run_cli(*mix, check=False)
    assert refused.returncode == 1 and "a satsft mix into it began" in refused.stderr, refused.stderr
    run_cli(*mix, "--take-over-after", "0")
    assert (mixed / "mix_report.json").exists() and not (mixed / WRITER).exists()
    assert not validate(str(mixed))[0].count

    # --overwrite replaces an output of its own command: a mix over a build left a folder of both
    wrong = run_cli(*argv[:4], str(mixed), *BUILD, "--overwrite", check=False)
    assert wrong.returncode == 2 and "holds a satsft mix (it has mix_report.json)" in wrong.stderr, wrong.stderr
    wrong = run_cli("mix", "--source", f"name=again,path={mixed}", "--output", str(out), "--quiet", "--overwrite",
                    check=False)
    assert wrong.returncode == 2 and "holds a satsft build (it has build_report.json)" in wrong.stderr, wrong.stderr
    assert not validate(str(mixed))[0].count and not validate(str(out))[0].count, "both left as they were"


def test_a_run_submitted_to_dataflow_is_known_by_any_spelling_of_the_runner():
    """Beam takes --runner dataflow as DataflowRunner: its launcher must not wait for the job, and its marker
    must say the job runs on after the launcher exits."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.runner import detached_runner

    for runner in ("DataflowRunner", "dataflow", "dataflowrunner"):
        assert detached_runner(PipelineOptions(["--runner", runner])) == "DataflowRunner", runner
    for argv in ([], ["--runner", "DirectRunner"], ["--runner", "direct"], ["--runner", "FlinkRunner"]):
        assert detached_runner(PipelineOptions(argv)) == "", argv


def _waits_for_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked on a file lock (/proc/locks marks waiters with "->")."""
    return any(line.split()[1] == "->" and line.split()[5] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines() if len(line.split()) > 5)


def test_two_runs_started_together_do_not_both_write(tmp_path):
    """The check for a writer and the marker naming this run are one step for runs on this machine: a build that
    reaches its check while another run is between its own check and its marker waits, then sees that run."""
    tree, out = tmp_path / "tree", tmp_path / "out"
    write_sample_tree(str(tree), 3, seed=3, workers=1)
    argv = ["build", "--input", str(tree), "--output", str(out), *BUILD]
    run_cli(*argv)
    before = _files(out)
    for extra in (["--overwrite"], ["--update"]):
        with claim.exclusive(str(out)):  # this process is the first run, between its check and its marker
            second = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *argv, *extra], cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=dict(os.environ, PYTHONWARNINGS="ignore"))
            while second.poll() is None and not _waits_for_lock(second.pid):
                threading.Event().wait(0.02)
            assert second.poll() is None, second.communicate()
            claim.claim(str(out), "build")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 1 and f"a satsft build into it is running (process {os.getpid()} " in err, err
        (out / WRITER).unlink()
        assert _files(out) == before, "the second run touched nothing"
    for where in (str(out), "gs://bucket/out"):  # a bucket's output is held through a lock file on this machine
        with claim.exclusive(where):
            probe = subprocess.run([sys.executable, "-c", "import fcntl, sys\nfrom transforms.output import claim\n"
                                    "fd = claim._lock_handle(sys.argv[1])\n"
                                    "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n"
                                    "    sys.exit(3)\n", where], cwd=REPO, timeout=60)
            assert probe.returncode == 3, f"{where} was not held"


def test_a_check_in_is_judged_like_a_marker():
    """A bucket output's check-in (transforms.output.check_in; the store's side is in tests/test_gcs.py): one of a
    process here that still runs refuses; one whose process has gone, or from elsewhere and older than
    --take-over-after, is taken as stopped."""
    from transforms.output.check_in import check_in_text, refusal
    from transforms.rebuild import holder

    text = check_in_text("r1").decode()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            running = text.replace(f"pid {os.getpid()}\n", f"pid {other.pid}\n").replace(
                f"pid start {holder.pid_start(os.getpid())}\n", f"pid start {holder.pid_start(other.pid)}\n")
            assert "is checking it for writers right now" in refusal("gs://b/o", running, 12)
        finally:
            other.kill()
    assert refusal("gs://b/o", running, 12) == "", "its process has gone: taken over at once"
    began = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)).strftime(holder.BEGAN_FORMAT)
    elsewhere = f"run r2\nmachine boot-x\npid 7\npid start 9\nbegan {began}\nhost launcher-vm-7\ndetached -\n"
    assert "on host launcher-vm-7 (process 7)" in refusal("gs://b/o", elsewhere, 3)
    assert refusal("gs://b/o", elsewhere, 1) == "" and refusal("gs://b/o", elsewhere, 0) == ""
    assert refusal("gs://b/o", "not a check-in", 12) == ""
