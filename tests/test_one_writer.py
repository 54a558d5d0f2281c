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
