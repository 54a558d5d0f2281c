"""Rebuilds of a tree that grew and changed: unchanged tiles keep their paths and files, reuse gives the bytes a
full recompute gives, --update in place gives what --previous into a new folder gives, a reader polling
during an update never finds a row naming a missing file, and a killed update validates and finishes when run
again."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.review.validate import validate
from pipeline.sample.tree import write_sample_tree
from tests.conftest import REPO, run_cli
from transforms.output.tree import UPDATE_DIR, OutputTree
from transforms.rebuild.commit import STOP_AFTER_ENV

BUILD = ("--tasks", "production_analysis,caption,cross_view,grounding_all", "--profiles", "brief_only,wildfire",
         "--overlays", "--max-files-per-dir", "16", "--quiet")
SKIP = {"build_report.json", "README.md", "build_timings.json"}


def _files(root: Path) -> dict[str, str]:
    """Every file's digest but the report, card and timings (they name the folders and say how much was reused)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in SKIP}


def _report(root: Path) -> dict:
    return json.loads((root / "build_report.json").read_text())


def _rows(root: Path) -> dict[str, dict]:
    return {json.loads(line)["metadata"]["sample_id"]: json.loads(line)
            for f in sorted((root / "data").glob("*.jsonl")) for line in f.read_text().splitlines()}


def _manifest(root: Path) -> dict[str, dict]:
    return {r["stem"]: r for f in sorted((root / "metadata/manifest").glob("tiles-*.jsonl"))
            for r in map(json.loads, f.read_text().splitlines())}


def _update_argv(base: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "build", "--input", str(base / "big"), "--output", str(out),
            "--update", *BUILD]


def _copy_of_first(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(base / "first", out)
    return out


def _update_stopped_at(base: Path, out: Path, stop: str) -> None:
    """Run the update with the commit's fault injection: the process dies at ``stop``."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **{STOP_AFTER_ENV: stop})
    proc = subprocess.run(_update_argv(base, out), cwd=REPO, env=env, capture_output=True, timeout=600)
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """A 48-tile tree, built; the same tree grown to 60 tiles with two sidecars edited and two tiles gone."""
    base = tmp_path_factory.mktemp("update")
    write_sample_tree(str(base / "small"), 48, seed=5, workers=1)
    write_sample_tree(str(base / "big"), 60, seed=5, workers=1)
    sidecars = sorted((base / "big" / "metadata").rglob("*.json"))
    edited, removed = sidecars[3:5], sidecars[7:9]
    for path in edited:
        side = json.loads(path.read_text())
        side["caption"] += " Edited since the first build."
        path.write_text(json.dumps(side))
    for path in removed:
        path.unlink()
    run_cli("build", "--input", str(base / "small"), "--output", str(base / "first"), *BUILD)
    run_cli("build", "--input", str(base / "big"), "--output", str(base / "again"), "--previous",
            str(base / "first"), *BUILD)
    return base, {p.stem for p in edited}, {p.stem for p in removed}


def test_unchanged_tiles_keep_their_paths_and_files(trees):
    base, edited, removed = trees
    first, again = _manifest(base / "first"), _manifest(base / "again")
    unchanged = set(first) - edited - removed
    assert unchanged and all(again[s]["files"] == first[s]["files"] for s in unchanged), "same paths"
    before, after = _files(base / "first"), _files(base / "again")
    kept = {f for s in unchanged for f in first[s]["files"]}
    assert all(after[f] == before[f] for f in kept), "same bytes under the same names"
    for stem in edited:  # a changed tile moves to a slot no earlier row names
        assert again[stem]["slot"] > max(r["slot"] for r in first.values())
        assert not set(again[stem]["files"]) & set(before)
    assert not removed & set(again) and not {f for s in removed for f in first[s]["files"]} & set(after)
    old_rows, new_rows = _rows(base / "first"), _rows(base / "again")
    assert all(new_rows[sid] == row for sid, row in old_rows.items() if row["metadata"]["tile_stem"] in unchanged)
    rebuild = _report(base / "again")["rebuild"]
    assert rebuild["tiles_changed"] == len(edited) and rebuild["tiles_removed"] == len(removed)
    assert rebuild["tiles_reused"] == rebuild["tiles_unchanged"] == len(unchanged)
    # Their rows were taken from the first build's split files, not made again.
    assert rebuild["rows_reused"] == sum(1 for r in old_rows.values() if r["metadata"]["tile_stem"] in unchanged)
    assert rebuild["tiles_new"] == len(again) - len(unchanged) - len(edited) > 0
    assert rebuild["tiles_moved_split"] == 0
    findings, _ = validate(str(base / "again"))
    assert not findings.count, findings.lines()  # folders under the limit of 16, with the overflow folders in use


def test_no_reuse_gives_the_same_bytes(trees, tmp_path):
    base, _, _ = trees
    run_cli("build", "--input", str(base / "big"), "--output", str(tmp_path / "full"), "--previous",
            str(base / "first"), "--no-reuse", *BUILD)
    assert _files(tmp_path / "full") == _files(base / "again")
    assert _report(tmp_path / "full")["rebuild"]["tiles_reused"] == 0
    assert _report(tmp_path / "full")["rows"] == _report(base / "again")["rows"]


def test_a_damaged_row_index_costs_only_time(trees, tmp_path):
    """Rows an unreadable row index names are made again, with the same bytes; a split file changed under its
    index, or a damaged manifest, stops the build with the way out, rather than write wrong rows."""
    base, _, _ = trees
    prev = _copy_of_first(base, tmp_path)
    index = next((prev / "metadata/manifest/rows/data").glob("train*.jsonl"))
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    run_cli("build", "--input", str(base / "big"), "--output", str(tmp_path / "new"), "--previous", str(prev), *BUILD)
    assert _files(tmp_path / "new") == _files(base / "again")
    taken, all_taken = (_report(r)["rebuild"]["rows_reused"] for r in (tmp_path / "new", base / "again"))
    assert 0 < taken < all_taken
    # a split file deleted by hand, its index whole: its rows are made again too (a FileNotFoundError traceback)
    gone = _copy_of_first(base, tmp_path / "gone")
    held_out = next(f for f in sorted((gone / "data").glob("*.jsonl")) if not f.name.startswith("train"))
    held_out.unlink()
    run_cli("build", "--input", str(base / "big"), "--output", str(tmp_path / "new1"), "--previous", str(gone), *BUILD)
    assert _files(tmp_path / "new1") == _files(base / "again")
    assert 0 < _report(tmp_path / "new1")["rebuild"]["rows_reused"] < all_taken
    split_file = next(f for f in sorted((prev / "data").glob("*.jsonl")) if not f.name.startswith("train"))
    split_file.write_bytes(b'{"edited": "since"}\n' + split_file.read_bytes())  # its index is whole, its offsets off
    stills = prev / "metadata/manifest/stills.jsonl"
    kept = stills.read_bytes()
    manifest = prev / "metadata/manifest/tiles-b00000.jsonl"
    for n, damage, said in (
            (2, lambda: None, "data/"),
            (3, lambda: stills.write_bytes(kept[:-40]), "stills.jsonl is damaged"),  # stills' slots cannot be kept
            # a damaged manifest: the tiles' splits and slots cannot be kept
            (4, lambda: (stills.write_bytes(kept), manifest.write_bytes(manifest.read_bytes()[:-40])),
             "tiles-b00000.jsonl is damaged")):
        damage()
        proc = run_cli("build", "--input", str(base / "big"), "--output", str(tmp_path / f"new{n}"), "--previous",
                       str(prev), *BUILD, check=False)
        # one line that says what and how to go on, not Beam's traceback (in process, a traceback is printed)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        said_line = next(line for line in proc.stderr.splitlines() if line.startswith("satsft: error: "))
        assert said_line.startswith("satsft: error: the earlier build cannot be reused: ") and said in said_line
        assert ("run again with --no-reuse" if n == 2 else "build without --previous/--update") in said_line
        assert said_line.endswith(f"{tmp_path / f'new{n}'} holds a partial build without a report)")


def test_an_unchanged_tile_whose_still_went_has_its_rows_made_again(trees, tmp_path):
    """A still is not part of a tile's fingerprint (rows name it by path only), but its rows depend on whether
    there is one: when it goes, the tile's rows are made again, as --no-reuse makes them."""
    base, edited, _ = trees
    tree = tmp_path / "tree"
    shutil.copytree(base / "big", tree)
    first = _manifest(base / "first")
    stem, still = next((s, r["still"]) for s, r in sorted(first.items()) if r["still"] and s not in edited)
    (tree / still).unlink()  # the tree's still and its copy share the path below their roots
    for name, extra in (("taken", ()), ("made", ("--no-reuse",))):
        run_cli("build", "--input", str(tree), "--output", str(tmp_path / name), "--previous", str(base / "first"),
                *extra, *BUILD)
    assert _files(tmp_path / "taken") == _files(tmp_path / "made")
    assert not any(still in row["metadata"]["image_paths"] for row in _rows(tmp_path / "taken").values())
    assert _manifest(tmp_path / "taken")[stem]["still"] == ""


def test_rows_of_tiles_with_a_still_no_row_shows_are_taken_too(trees, tmp_path):
    """Without cross_view no row names a tile's still; its rows are still taken, and give what --no-reuse
    gives, in every format (shards with LLaVA and ShareGPT files parse the lines they take)."""
    base, edited, removed = trees
    plain = ("--tasks", "caption,grounding_all", "--formats", "jsonl,parquet,llava,sharegpt", "--quiet")
    run_cli("build", "--input", str(base / "small"), "--output", str(tmp_path / "first"), *plain)
    for name, extra in (("taken", ()), ("made", ("--no-reuse",))):
        run_cli("build", "--input", str(base / "big"), "--output", str(tmp_path / name), "--previous",
                str(tmp_path / "first"), *extra, *plain)
    assert _files(tmp_path / "taken") == _files(tmp_path / "made")
    first = _manifest(tmp_path / "first")
    unchanged = set(first) - edited - removed
    stills = {p.stem for p in (base / "big" / "mapbox_stills").rglob("*.png")}
    assert any(s.rsplit("_t", 1)[0] in stills for s in unchanged)  # stills are named by tile group
    rows = _rows(tmp_path / "first")
    assert _report(tmp_path / "taken")["rebuild"]["rows_reused"] == sum(
        1 for r in rows.values() if r["metadata"]["tile_stem"] in unchanged) > 0


def test_update_in_place_equals_previous_into_a_new_folder(trees, tmp_path):
    base, _, _ = trees
    out = _copy_of_first(base, tmp_path)
    run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *BUILD)
    assert _files(out) == _files(base / "again"), "stale files gone, new ones in place"
    assert not (out / UPDATE_DIR).exists() and not (out / "_satsft_spool").exists()
    report, expected = _report(out), _report(base / "again")
    assert report["rebuild"] == expected["rebuild"] | {"tiles_reused": report["rebuild"]["tiles_reused"]}
    assert report["config"]["update"] and report["file_count"] == sum(1 for p in out.rglob("*") if p.is_file())
    # Run again on the same tree: every tile is unchanged, nothing is drawn, no file changes.
    run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *BUILD)
    assert _files(out) == _files(base / "again")
    assert _report(out)["outputs"].get("analysis_images_written", 0) == 0


def test_update_usage_errors(trees, tmp_path, capsys):
    base, _, _ = trees
    from pipeline.cli import main

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not a build")
    assert main(["build", "--input", str(base / "big"), "--output", str(tmp_path / "notes"), "--update"]) == 2
    assert "give an empty folder or one a build wrote" in capsys.readouterr().err
    assert main(["build", "--input", str(base / "big"), "--output", str(base / "first"), "--update",
                 "--overwrite"]) == 2
    assert "give one of the two" in capsys.readouterr().err
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "mix_report.json").write_text('{"kind": "mix"}')  # a mix of the build: not one to update
    assert main(["build", "--input", str(base / "big"), "--output", str(tmp_path / "mix"), "--update"]) == 2
    assert "--output" in (err := capsys.readouterr().err) and "is a satsft mix (it has mix_report.json)" in err
    assert main(["build", "--input", str(base / "big"), "--output", str(tmp_path / "new"), "--previous",
                 str(tmp_path / "mix")]) == 2
    assert "give the earlier build of the same tree" in capsys.readouterr().err
    (tmp_path / "listed").mkdir()
    (tmp_path / "listed" / "build_report.json").write_text("[]")  # parses, but is no report: a usage error too
    assert main(["build", "--input", str(base / "big"), "--output", str(tmp_path / "new"), "--previous",
                 str(tmp_path / "listed")]) == 2
    assert "build_report.json cannot be read: not a JSON object" in capsys.readouterr().err


def test_a_first_update_makes_the_first_build(trees, tmp_path):
    """A scheduled --update's first run: nothing in --output yet, so it writes the first build. A first run
    killed before its commit (here of another tree) does not block the next: its files are undone."""
    base, _, _ = trees
    _update_stopped_at(base, tmp_path / "out", "before")
    run_cli("build", "--input", str(base / "small"), "--output", str(tmp_path / "out"), "--update", *BUILD)
    assert _files(tmp_path / "out") == _files(base / "first")
    assert "rebuild" not in _report(tmp_path / "out") and not (tmp_path / "out" / UPDATE_DIR).exists()


def _check_reader_view(out: Path) -> int:
    """What a reader does: list the split files, read each one whole, and look for every file its rows name. A
    row naming a missing file is a failure unless the split file has been replaced since it was read (the
    reader then holds superseded rows and reads again)."""
    checked = 0
    for split_file in sorted((out / "data").glob("*.jsonl")):
        try:
            data = split_file.read_bytes()
        except FileNotFoundError:
            continue  # replaced between the listing and the read: the next pass reads the new one
        rows = [json.loads(line) for line in data.splitlines()]  # complete: every line parses
        missing = [p for r in rows for p in r["metadata"]["image_paths"] if not (out / p).exists()]
        if missing and split_file.read_bytes() == data:
            raise AssertionError(f"{split_file.name} names missing files: {missing[:3]}")
        checked += len(rows)
    return checked


def test_a_reader_polling_during_update_never_finds_a_gap(trees, tmp_path):
    base, _, _ = trees
    out = _copy_of_first(base, tmp_path)
    errors: list[BaseException] = []
    polls = [0]
    done = threading.Event()

    def poll():
        while not done.is_set():
            try:
                assert _check_reader_view(out) > 0, "never no rows"
                polls[0] += 1
            except BaseException as err:  # noqa: BLE001 - reported by the test below
                errors.append(err)
                return

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *BUILD)
    finally:
        done.set()
        reader.join()
    assert not errors, errors[0]
    assert polls[0] > 5, "the reader read the output many times while the update ran"
    assert _files(out) == _files(base / "again")


@pytest.mark.parametrize("stop_after", [0, 3])
def test_a_killed_update_validates_and_finishes_when_run_again(trees, tmp_path, stop_after):
    base, _, _ = trees
    out = _copy_of_first(base, tmp_path)
    _update_stopped_at(base, out, str(stop_after))
    assert (out / UPDATE_DIR / "journal.json").exists(), "killed during its commit"
    findings, checked = validate(str(out))
    assert not findings.count and checked["update_unfinished"], findings.lines()
    tree = OutputTree(str(out))
    assert json.loads(tree.read("build_report.json"))["rebuild"]["tiles_changed"] == 2, "readers see the new build"
    assert _check_reader_view(out) > 0
    mixed = tmp_path / "mixed"  # a mix reads it as the commit leaves it too (it read the report's files in place)
    run_cli("mix", "--source", f"name=sat,path={out}", "--output", str(mixed), "--formats", "jsonl", "--quiet")
    assert {sid.split("#")[0] for sid in _rows(mixed)} == set(_rows(base / "again"))
    run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *BUILD)
    assert _files(out) == _files(base / "again")
    assert not (out / UPDATE_DIR).exists()


def test_an_update_killed_before_its_commit_leaves_the_old_build(trees, tmp_path):
    base, _, _ = trees
    out = _copy_of_first(base, tmp_path)
    before = _files(out)
    _update_stopped_at(base, out, "before")
    after = _files(out)
    assert set(after) > set(before) and all(after[f] == d for f, d in before.items()), "new files beside the old"
    findings, checked = validate(str(out))
    assert not findings.count and checked["update_unfinished"], findings.lines()
    note = run_cli("validate", str(out)).stdout  # says who began it and when it last wrote, to judge if it runs
    assert re.search(r"has not finished \(begun 20\d\d-\d\d-\d\d [\d:]+ UTC by process \d+ on host .+, last wrote "
                     r"20\d\d-\d\d-\d\d [\d:]+ UTC\)", note), note
    # its process is gone from this machine: the note says it stopped (it said it may still be running)
    assert "it has stopped (its process is gone from this machine): run the same update again" in note, note
    assert _rows(out) == _rows(base / "first"), "the old build, whole"
    # run again on a tree that changed meanwhile (here: back as it was): what the stopped run wrote goes
    run_cli("build", "--input", str(base / "small"), "--output", str(out), "--update", *BUILD)
    assert _files(out) == before and not validate(str(out))[0].count
    run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *BUILD)
    assert _files(out) == _files(base / "again")


def test_an_update_killed_while_it_draws_leaves_a_build_that_validates(trees, tmp_path):
    base, _, _ = trees
    out = _copy_of_first(base, tmp_path)
    before = len(list((out / "analysis_images").rglob("*.png")))
    proc = subprocess.Popen(_update_argv(base, out), cwd=REPO, env=dict(os.environ, PYTHONWARNINGS="ignore"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and len(list((out / "analysis_images").rglob("*.png"))) == before:
        threading.Event().wait(0.01)
    proc.kill()
    proc.wait()
    findings, _ = validate(str(out))
    assert not findings.count, findings.lines()
    run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *BUILD)
    assert _files(out) == _files(base / "again")


def test_a_second_update_leaves_one_still_running_alone(trees, tmp_path):
    """A second update of a folder while the first still runs on this machine (here frozen while it draws)
    must not undo the first's files under it: it exits 1 and touches nothing, and the first then commits."""
    base, _, _ = trees
    out = _copy_of_first(base, tmp_path)
    before = len(list((out / "analysis_images").rglob("*.png")))
    first = subprocess.Popen(_update_argv(base, out), cwd=REPO, env=dict(os.environ, PYTHONWARNINGS="ignore"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while first.poll() is None and len(list((out / "analysis_images").rglob("*.png"))) == before:
            threading.Event().wait(0.01)
        os.kill(first.pid, signal.SIGSTOP)
        during = _files(out)
        second = run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *BUILD,
                         check=False)
        assert second.returncode == 1, second.stderr[-2000:]
        assert f"another --update of this output is running (process {first.pid} on this machine" in second.stderr
        assert _files(out) == during, "the second run touched nothing"
        plain = run_cli("build", "--input", str(base / "big"), "--output", str(out), "--overwrite", *BUILD,
                        check=False)  # nor does a plain build told to replace the folder
        assert plain.returncode == 1 and f"an --update of this output is running (process {first.pid}" in (
            plain.stderr) and "--overwrite would delete the files it is writing" in plain.stderr, plain.stderr
        assert _files(out) == during
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=600) == 0, first.stderr.read().decode()[-2000:]
    assert _files(out) == _files(base / "again") and not validate(str(out))[0].count


def test_an_unfinished_update_from_another_machine_is_left_alone_until_taken_over(trees, tmp_path):
    """A Dataflow job runs on after the launcher that wrote the marker exits, so nothing can tell whether an
    update begun elsewhere still runs: for --take-over-after hours (default 12) a later update exits 1 and
    touches nothing; with --take-over-after 0 it undoes that run's files and builds as usual."""
    import datetime

    base, _, _ = trees
    out = _copy_of_first(base, tmp_path)
    _update_stopped_at(base, out, "before")  # an unfinished update: its marker and its files at new slots
    marker = out / UPDATE_DIR / "started.txt"
    began = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=11)
    text = marker.read_text()
    text = re.sub(r"^machine .*$", "machine 0f8a-elsewhere", text, flags=re.MULTILINE)
    text = re.sub(r"^host .*$", "host launcher-vm-7", text, flags=re.MULTILINE)
    marker.write_text(re.sub(r"^began .*$", f"began {began:%Y-%m-%d %H:%M:%S} UTC", text, flags=re.MULTILINE))
    during = _files(out)
    proc = run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *BUILD, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "on another machine (host launcher-vm-7" in proc.stderr and "--take-over-after 0" in proc.stderr
    assert "Traceback" not in proc.stderr and _files(out) == during, "nothing touched"
    run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *BUILD,
            "--take-over-after", "0")
    assert _files(out) == _files(base / "again") and not validate(str(out))[0].count


def test_an_earlier_build_without_a_manifest_still_keeps_its_splits(trees, tmp_path):
    """Builds made before manifests existed: splits come from their rows; their tiles get new slots once."""
    base, _, _ = trees
    old = tmp_path / "old"
    shutil.copytree(base / "first", old)
    shutil.rmtree(old / "metadata" / "manifest")
    run_cli("build", "--input", str(base / "big"), "--output", str(tmp_path / "new"), "--previous", str(old), *BUILD)
    splits = {r["metadata"]["tile_stem"]: r["metadata"]["split"] for r in _rows(base / "first").values()}
    again = {r["metadata"]["tile_stem"]: r["metadata"]["split"] for r in _rows(tmp_path / "new").values()}
    assert all(again[s] == sp for s, sp in splits.items() if s in again)
    rebuild = _report(tmp_path / "new")["rebuild"]
    assert rebuild["tiles_moved_split"] == 0 and "tiles_unchanged" not in rebuild
    assert sorted(r["slot"] for r in _manifest(tmp_path / "new").values()) == list(range(len(again)))


def test_an_update_that_would_empty_or_gut_the_dataset_is_refused(trees, tmp_path):
    """An update that keeps the tiles but loses most rows (here a narrower --tasks) is refused. So is a scheduled
    update whose input broke (here the chat JSONL names its chips under another folder, so every
    tile is rejected; then only the test file is repaired) must not publish what is left over a good dataset:
    exit 1, one line saying why, the old build whole and valid, until --max-removed-share allows it. The
    summary of a build with no rows says where the references went."""
    base, _, _ = trees
    out, tree = _copy_of_first(base, tmp_path), tmp_path / "broken"
    narrower = ("--tasks", "caption", *BUILD[2:])  # every tile kept, most rows gone
    proc = run_cli("build", "--input", str(base / "big"), "--output", str(out), "--update", *narrower, check=False)
    assert proc.returncode == 1 and "rows where the build in place has" in proc.stderr, proc.stderr[-2000:]
    # the refused run's files at new slots are gone: the folder is the old build, plus why it was refused
    left = {p: d for p, d in _files(out).items() if not p.startswith("_satsft_update/refused/")}
    assert left == _files(base / "first") and not validate(str(out))[0].count
    refused = json.loads((out / "_satsft_update/refused/build_report.json").read_text())
    assert refused["rows"]["total"] < _report(out)["rows"]["total"]
    shutil.copytree(base / "big", tree)
    for path in (tree / "data").glob("*.jsonl"):
        path.write_text(path.read_text().replace('"images/', '"chips/'))
    proc = run_cli("build", "--input", str(tree), "--output", str(out), "--update", *BUILD, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "satsft: error: --update of" in proc.stderr and "(100%, more than --max-removed-share" in proc.stderr
    assert _rows(out) == _rows(base / "first") and not validate(str(out))[0].count
    empty = run_cli("build", "--input", str(tree), "--output", str(tmp_path / "empty"), *BUILD)
    assert "WARNING: no rows were built" in empty.stdout and "lie outside images/ and mapbox_stills/" in empty.stdout
    assert _report(tmp_path / "empty")["outputs"]["image_refs_ignored"] > 0
    (tree / "data" / "test.jsonl").write_text((base / "big" / "data" / "test.jsonl").read_text())
    proc = run_cli("build", "--input", str(tree), "--output", str(out), "--update", *BUILD, check=False)
    assert proc.returncode == 1 and "more than --max-removed-share 0.5" in proc.stderr, proc.stderr[-2000:]
    assert _rows(out) == _rows(base / "first")
    run_cli("build", "--input", str(tree), "--output", str(out), "--update", "--max-removed-share", "1", *BUILD)
    assert 0 < len(_rows(out)) < len(_rows(base / "first")) and not validate(str(out))[0].count


def test_drawn_files_deleted_by_hand_are_drawn_again_by_the_next_update(trees, tmp_path):
    """An unchanged tile's analysis image, overlay, row sidecar or chip deleted from the build (by hand, or by a
    bucket's lifecycle rule) stayed gone through every --update, which took the tile's files as they were
    (validate said to update with --no-reuse); with --previous it was a previous_file_unreadable reject. The
    rebuild lists the folders its manifest names (a request per thousand files in a bucket) and draws such a
    tile again in its slot: the same bytes as the first build, every other tile still taken."""
    base, _, _ = trees
    out = _copy_of_first(base, tmp_path)
    owner = {f: t["stem"] for m in sorted((out / "metadata" / "manifest").glob("tiles-*.jsonl"))
             for t in map(json.loads, m.read_text().splitlines()) for f in t["files"]}
    gone = [sorted(p for p in (out / folder).rglob("*") if p.is_file())[3 * i] for i, folder in enumerate(
        ("analysis_images", "overlays", "metadata/sft_metadata_rows", "images"))]
    assert len(set(gone)) == 4 and all(str(p.relative_to(out)) in owner for p in gone)
    for path in gone:
        path.unlink()
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    run_cli("build", "--input", str(base / "small"), "--output", str(out), "--update", *BUILD)
    assert all(p.exists() for p in gone) and validate(str(out))[0].count == 0
    assert _files(out) == _files(base / "first")
    redrawn = len({owner[str(p.relative_to(out))] for p in gone})
    rebuild = _report(out)["rebuild"]
    assert rebuild["tiles_redrawn"] == redrawn and rebuild["tiles_reused"] == 48 - redrawn
    again = tmp_path / "again"
    run_cli("build", "--input", str(base / "small"), "--output", str(again), "--previous", str(damaged), *BUILD)
    assert _files(again) == _files(base / "first") and _report(again)["rejects_by_reason"] == _report(
        base / "first")["rejects_by_reason"]
    assert _report(again)["rebuild"]["tiles_redrawn"] == redrawn


def test_an_earlier_build_naming_files_outside_it_is_not_updated(trees, tmp_path):
    """A manifest record is a list of files an update deletes (a tile gone) or copies (--previous); a build from
    elsewhere (a clone of a dataset repository) may name `../victim.txt`, which the update deleted. It stops on
    such a manifest with one line, and nothing outside the output is touched."""
    base, _, _ = trees
    out = _copy_of_first(base, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    manifest = sorted((out / "metadata" / "manifest").glob("tiles-*.jsonl"))[0]
    lines = manifest.read_text().splitlines()
    record = json.loads(lines[0])
    record["files"].append("../victim.txt")
    manifest.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    for extra in (("--update",), ("--previous", str(out))):
        target = out if extra[0] == "--update" else tmp_path / "again"
        proc = run_cli("build", "--input", str(base / "big"), "--output", str(target), *extra, *BUILD, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "names '../victim.txt', which is not a path inside the build" in proc.stderr, proc.stderr[-2000:]
        assert victim.read_text() == "mine"

