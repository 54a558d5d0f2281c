"""`satsft mix --update`: the new mix is staged beside the one in --output and replaces it whole, as a build's
--update does: the result is byte for byte a fresh mix of the same recipe, a mix that would lose most of its rows
is refused, and a run stopped before or during its commit leaves the old mix or one readers complete."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from tests.conftest import REPO, run_cli
from transforms.output.tree import UPDATE_DIR
from transforms.rebuild.commit import STOP_AFTER_ENV, begin

SKIP = {"mix_report.json", "mix_timings.json"}  # they name the folder and time the run


def _files(root: Path) -> dict[str, str]:
    """Every file's digest but the report and timings, and but what a refused update leaves to read."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in SKIP
            and not str(p.relative_to(root)).startswith(f"{UPDATE_DIR}/refused/")}


def _report(root: Path) -> dict:
    report = json.loads((root / "mix_report.json").read_text())
    report["config"].pop("output")
    return report


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("mixupdate")
    run_cli("sample", "--tiles", "16", "--output", str(base / "tree"), "--seed", "5")
    assert main(["build", "--input", str(base / "tree"), "--output", str(base / "sat"), "--quiet",
                 "--tasks", "caption,grounding_all", "--profiles", "brief_only"]) == 0
    return base / "sat"


def _mix(build: Path, out: Path, *extra: str, where: str = "") -> int:
    return main(["mix", "--source", f"name=sat,path={build}{where}", "--output", str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def fresh(build, tmp_path_factory) -> Path:
    """The whole build mixed into a new folder: what every update to the same recipe must give."""
    out = tmp_path_factory.mktemp("fresh") / "fresh"
    assert _mix(build, out) == 0
    return out


def test_a_preview_written_elsewhere_leaves_the_output_alone(fresh, tmp_path, capsys):
    """--to DIR (what a bucket's output needs): the page lands there, again over itself, never over other
    files, never inside the output, never in a bucket."""
    before = _files(fresh)
    page = tmp_path / "page"
    for _ in range(2):
        assert main(["preview", str(fresh), "--n", "3", "--to", str(page)]) == 0
    assert (page / "index.html").is_file() and not (page / "made_from.txt").exists() and _files(fresh) == before
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    capsys.readouterr()
    for to, said in ((tmp_path / "notes", "holds other files"), (fresh / "metadata" / "page", "lies inside the output"),
                     ("gs://bucket/page", "the page is a local folder")):
        assert main(["preview", str(fresh), "--to", str(to)]) == 2
        assert said in capsys.readouterr().err
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine" and _files(fresh) == before


def test_an_update_replaces_the_mix_as_a_fresh_mix_would(build, fresh, tmp_path, capsys):
    out = tmp_path / "out"
    assert _mix(build, out, "--update", where=",task=caption") == 0, "into an empty folder: the first mix"
    assert not (out / UPDATE_DIR).exists() and main(["validate", str(out)]) == 0
    assert main(["preview", str(out), "--n", "4"]) == 0
    first = _report(out)
    capsys.readouterr()
    assert _mix(build, out, "--update") == 0
    said = capsys.readouterr().out
    assert "removed preview/, which showed the mix before this update" in said, said
    assert _files(out) == _files(fresh) and _report(out) == _report(fresh), "the same bytes as a fresh mix"
    assert not (out / UPDATE_DIR).exists() and _report(out)["rows"]["total"] > first["rows"]["total"]
    # a recipe that keeps under half the rows is refused, and the mix in place stays
    before, report_bytes = _files(out), (out / "mix_report.json").read_bytes()
    capsys.readouterr()
    assert _mix(build, out, "--update", where=",split=validation") == 1
    err = capsys.readouterr().err
    assert "the new mix would have" in err and "more than --max-removed-share 0.5" in err, err
    assert _files(out) == before and (out / "mix_report.json").read_bytes() == report_bytes
    assert (out / UPDATE_DIR / "refused" / "mix_report.json").exists()
    assert main(["validate", str(out)]) == 0
    # allowed: the images no row names any more go too
    assert _mix(build, out, "--update", "--max-removed-share", "1", where=",split=validation") == 0
    named = {p for f in (out / "parquet").glob("*.parquet")
             for md in pq.read_table(f, columns=["metadata"]).column("metadata").to_pylist()
             for p in md["image_paths"]}
    media = {str(p.relative_to(out)) for p in (out / "media").rglob("*") if p.is_file()}
    assert media == named and len(media) < len([k for k in before if k.startswith("media/")])
    assert not (out / UPDATE_DIR).exists() and main(["validate", str(out)]) == 0


@pytest.mark.parametrize(("argv_of", "message"), [
    (lambda b, d: ["--update", "--overwrite"], "--update replaces the mix in --output once the new one is whole"),
    (lambda b, d: ["--update", "--max-removed-share", "2"], "--max-removed-share takes a share from 0 to 1"),
])
def test_update_flags_that_contradict_are_usage_errors(argv_of, message, build, tmp_path, capsys):
    assert _mix(build, tmp_path / "out", *argv_of(build, tmp_path)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_update_replaces_only_a_mix(build, tmp_path, capsys):
    """A build, or a folder of other files, is not a mix to replace: a usage error before anything is written."""
    assert _mix(build, build.parent / "into_build", "--update") == 0  # a sibling, not the build itself
    for target, message in ((build, "holds a satsft build (it has build_report.json)"),
                            (tmp_path / "other", "holds files but no finished mix (first: notes.txt)")):
        if target.name == "other":
            target.mkdir()
            (target / "notes.txt").write_text("mine")
        listed = sorted(p for p in target.rglob("*"))
        capsys.readouterr()
        assert main(["mix", "--source", f"name=sat,path={build.parent / 'into_build'}", "--output", str(target),
                     "--update", "--quiet"]) == 2
        assert message in capsys.readouterr().err
        assert sorted(p for p in target.rglob("*")) == listed, "nothing written"
    # a mix whose report is damaged: nothing to weigh the new mix against (--max-removed-share), so not replaced
    damaged = tmp_path / "damaged"
    shutil.copytree(build.parent / "into_build", damaged)
    (damaged / "mix_report.json").write_text("[]")
    listed = sorted(p for p in damaged.rglob("*"))
    capsys.readouterr()
    assert main(["mix", "--source", f"name=sat,path={build}", "--output", str(damaged), "--update", "--quiet"]) == 2
    assert "mix_report.json cannot be read: not a JSON object; mix --update cannot weigh" in capsys.readouterr().err
    assert sorted(p for p in damaged.rglob("*")) == listed, "nothing written"


def test_an_update_leaves_an_unfinished_update_of_the_other_command_alone(build, tmp_path, capsys):
    """Its marker says which command began it: the other command's recovery would finish or undo it."""
    for kind, command in (("build", ["mix", "--source", f"name=sat,path={build}"]),
                          ("mix", ["build", "--input", str(build.parent / "tree")])):
        target = tmp_path / kind
        target.mkdir()
        begin(str(target), kind=kind)
        listed = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
        capsys.readouterr()
        assert main([*command, "--output", str(target), "--update", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"holds a `satsft {kind} --update` that is running or stopped" in err, err
        assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == listed, "nothing written"


def _stopped_update(build: Path, out: Path, stop: str) -> None:
    env = dict(os.environ, PYTHONWARNINGS="ignore", **{STOP_AFTER_ENV: stop})
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "mix", "--source", f"name=sat,path={build}",
                           "--output", str(out), "--update", "--quiet"], cwd=REPO, env=env, capture_output=True,
                          timeout=600)
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]


def test_a_stopped_update_leaves_the_old_mix_or_one_readers_complete(build, fresh, tmp_path, capsys):
    out = tmp_path / "out"
    assert _mix(build, out, where=",task=caption") == 0
    old = _files(out)
    _stopped_update(build, out, "before")  # the whole new mix staged, nothing moved
    assert _files(out).keys() >= old.keys() and {k: v for k, v in _files(out).items() if k in old} == old
    capsys.readouterr()
    assert main(["validate", str(out)]) == 0
    said = capsys.readouterr().out
    assert "OK:" in said and "readers see the mix as its commit leaves it;" in said, said
    assert _mix(build, out, "--update") == 0, "the next update undoes the stopped one, then commits"
    assert "undid an --update stopped before its commit" in capsys.readouterr().err
    assert _files(out) == _files(fresh) and not (out / UPDATE_DIR).exists()
    # stopped halfway through the moves: readers see the new mix, and the next update finishes the commit
    assert _mix(build, out, "--overwrite", where=",task=caption") == 0
    _stopped_update(build, out, "3")
    assert (out / UPDATE_DIR / "journal.json").exists()
    capsys.readouterr()
    assert main(["validate", str(out)]) == 0
    assert f"{_report(fresh)['rows']['total']} rows" in capsys.readouterr().out
    assert _mix(build, out, "--update") == 0
    assert "finished the commit of an interrupted --update" in capsys.readouterr().err
    assert _files(out) == _files(fresh) and not (out / UPDATE_DIR).exists()
    # a first update into an empty folder stopped before its report moved: files but no report there yet, which
    # is no folder of other things to refuse; the next update finishes that commit, then runs
    first = tmp_path / "first"
    shutil.copytree(fresh, first)
    (first / UPDATE_DIR / "stage").mkdir(parents=True)
    (first / "mix_report.json").rename(first / UPDATE_DIR / "stage" / "mix_report.json")
    (first / UPDATE_DIR / "journal.json").write_text(json.dumps({"moves": ["mix_report.json"], "deletes": []}))
    assert _mix(build, first, "--update") == 0, capsys.readouterr().err
    assert "finished the commit of an interrupted --update" in capsys.readouterr().err
    assert _files(first) == _files(fresh) and not (first / UPDATE_DIR).exists()
