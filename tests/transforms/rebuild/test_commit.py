"""The --update commit on its own: the journal carried out (again, after a stop), and readers' view of it."""

from __future__ import annotations

import json

import orjson
import pytest

from transforms.output.tree import PROGRESS_DIR, OutputTree
from transforms.rebuild.commit import JOURNAL, STAGE_DIR, STARTED, apply_journal, begin, commit, recover, running_update


def _write(root, rel, data: bytes = b"x"):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def staged(tmp_path):
    """An output with an old build (two split files) and a new one staged (one split file, a new report)."""
    report = {"files": {"jsonl": {"data/train.jsonl": 1, "data/test.jsonl": 1}}}
    _write(tmp_path, "build_report.json", orjson.dumps(report))
    _write(tmp_path, "data/train.jsonl", b"old train\n")
    _write(tmp_path, "data/test.jsonl", b"old test\n")
    _write(tmp_path, "metadata/manifest/tiles-b00000.jsonl", b"old manifest\n")
    _write(tmp_path, f"{STAGE_DIR}/data/train.jsonl", b"new train\n")
    _write(tmp_path, f"{STAGE_DIR}/metadata/manifest/tiles-b00000.jsonl", b"new manifest\n")
    _write(tmp_path, f"{STAGE_DIR}/build_report.json", orjson.dumps({"files": {"jsonl": {"data/train.jsonl": 1}}}))
    return tmp_path


def test_commit_moves_the_report_last_and_removes_what_the_new_build_lacks(staged):
    journal = commit(str(staged))
    assert journal["moves"][-1] == "build_report.json" and journal["deletes"] == ["data/test.jsonl"]
    assert (staged / "data/train.jsonl").read_bytes() == b"new train\n" and not (staged / "data/test.jsonl").exists()
    saved = staged / "_satsft_update/previous/g00/tiles-b00000.jsonl"
    assert saved.read_bytes() == b"old manifest\n", "the old manifest stays until its stale files are gone"
    assert not (staged / JOURNAL).exists() and not (staged / STAGE_DIR).exists()


def test_a_mix_commit_keeps_the_images_its_update_left_in_place(tmp_path):
    """A mix --update into a bucket leaves an image the mix in place holds with the new bytes where it is, and
    lists it (transforms.mix.stages.WriteMedia): the commit keeps it, and removes the image no list names. A
    list an earlier run left does not count for the next (begin clears them)."""
    _write(tmp_path, "mix_report.json", orjson.dumps({"rows": {"total": 4}, "files": {}}))
    for name in ("kept.png", "gone.png", "stale.png"):
        _write(tmp_path, f"media/a/s00000/{name}")
    _write(tmp_path, "_satsft_update/kept/earlier.txt", b"media/a/s00000/stale.png\n")
    token = begin(str(tmp_path), kind="mix")
    assert not (tmp_path / "_satsft_update/kept").exists()
    _write(tmp_path, "_satsft_update/kept/0123.txt", b"media/a/s00000/kept.png\n")
    _write(tmp_path, f"{STAGE_DIR}/media/a/s00000/new.png")
    _write(tmp_path, f"{STAGE_DIR}/mix_report.json", orjson.dumps({"rows": {"total": 4}, "files": {}}))
    journal = commit(str(tmp_path), token, kind="mix")
    assert journal["deletes"] == ["media/a/s00000/gone.png", "media/a/s00000/stale.png"]
    assert sorted(p.name for p in (tmp_path / "media/a/s00000").iterdir()) == ["kept.png", "new.png"]


def test_a_stopped_commit_reads_whole_and_is_finished_by_recover(staged):
    moves = ["data/train.jsonl", "metadata/manifest/tiles-b00000.jsonl", "build_report.json"]
    _write(staged, JOURNAL, json.dumps({"moves": moves, "deletes": ["data/test.jsonl"]}).encode())
    (staged / "data/train.jsonl").write_bytes((staged / STAGE_DIR / "data/train.jsonl").read_bytes())
    (staged / STAGE_DIR / "data/train.jsonl").unlink()  # the first move was done when the run stopped
    tree = OutputTree(str(staged))
    assert tree.read("build_report.json") == (staged / STAGE_DIR / "build_report.json").read_bytes()
    assert not tree.isfile("data/test.jsonl") and tree.read("data/train.jsonl") == b"new train\n"
    assert tree.update_unfinished()
    assert recover(str(staged)) == "finished the commit of an interrupted --update"
    assert not (staged / "data/test.jsonl").exists() and orjson.loads((staged / "build_report.json").read_bytes())[
        "files"] == {"jsonl": {"data/train.jsonl": 1}}
    assert apply_journal(str(staged)) is False, "nothing left to do"


def test_recover_drops_what_a_run_stopped_before_its_commit_staged(staged):
    _write(staged, f"{PROGRESS_DIR}/build-dead.json", b'{"done": 7}')  # summed into the next run's progress else
    assert recover(str(staged)) == "undid an --update stopped before its commit (its stage)", "no files at new slots"
    assert (staged / "data/test.jsonl").exists() and not (staged / STAGE_DIR).exists()
    assert not (staged / PROGRESS_DIR).exists()
    assert recover(str(staged)) == ""


def test_an_update_overtaken_by_another_or_staged_short_commits_nothing(staged):
    mine = begin(str(staged))
    theirs = begin(str(staged))  # a second update of the same output began while the first ran
    with pytest.raises(RuntimeError, match="another update of this output began"):
        commit(str(staged), mine)
    assert (staged / "data/test.jsonl").read_bytes() == b"old test\n", "the old build stays whole"
    (staged / STAGE_DIR / "data/train.jsonl").unlink()  # its stage lost a split file its report lists
    with pytest.raises(RuntimeError, match="lacks 1 of the split files"):
        commit(str(staged), theirs)
    assert (staged / "data/train.jsonl").read_bytes() == b"old train\n" and not (staged / JOURNAL).exists()


def test_a_commit_refuses_a_build_that_lost_most_tiles_or_every_row(tmp_path):
    from transforms.rebuild.commit import refusal

    empty = {"rows": {"total": 0}, "tiles": {"in": 3, "rejected": 3},
             "rejects_by_reason": {"stem_not_in_jsonl": 2, "chip_missing": 1}}
    assert refusal(str(tmp_path), empty) == ""  # nothing in place: a first update may be empty
    _write(tmp_path, "build_report.json", orjson.dumps({"rows": {"total": 0}}))
    assert refusal(str(tmp_path), empty) == ""
    _write(tmp_path, "build_report.json", orjson.dumps({"rows": {"total": 40}}))
    why = refusal(str(tmp_path), empty)
    assert "no rows" in why and "stem_not_in_jsonl 2, chip_missing 1" in why and "has 40" in why
    assert refusal(str(tmp_path), empty, 1.0) == ""
    shrunk = {"rows": {"total": 30}, "rebuild": {"tiles_kept": 4, "tiles_removed": 6}}
    why = refusal(str(tmp_path), shrunk)
    assert "remove 6 of the 10 tiles" in why and "60%" in why and "--max-removed-share 0.5" in why
    assert refusal(str(tmp_path), shrunk, 0.6) == ""
    # every tile kept, most rows gone (sidecars that lost their regions, a narrower --tasks)
    thinned = {"rows": {"total": 15}, "rebuild": {"tiles_kept": 10, "tiles_removed": 0}}
    why = refusal(str(tmp_path), thinned)
    assert "15 rows where the build in place has 40" in why and "62% fewer" in why
    assert refusal(str(tmp_path), thinned, 0.7) == "" and refusal(str(tmp_path), {"rows": {"total": 20}}) == ""
    assert refusal(str(tmp_path), {"rows": {"total": 400}}) == ""  # growth is never refused


def test_a_refused_commit_withdraws_the_run_and_a_retry_is_refused_alike(tmp_path):
    """What a refused update wrote at new slots goes, the old build's files (and those an earlier interrupted
    update still has to clean up) stay, its report and rejects wait in _satsft_update/refused/, and a runner
    that retries the commit step hears the same refusal, not that another update began."""
    from transforms.rebuild.commit import REFUSED_DIR, STARTED
    from transforms.rebuild.manifest import encode_tiles, tile_record

    def manifest(rel, stem, slot, files):
        _write(tmp_path, rel, encode_tiles([tile_record(stem, "train", slot, "f", "c", files, 2, 0, "", ())]))
        for f in files:
            _write(tmp_path, f)

    old = ["images/s00000/a.png", "metadata/sft_metadata_rows/s00000/a__caption.json"]
    new = ["images/s00001/a.png", "metadata/sft_metadata_rows/s00002/a__caption.json"]
    _write(tmp_path, "build_report.json", orjson.dumps({"rows": {"total": 40}, "files": {}}))
    manifest("metadata/manifest/tiles-b00000.jsonl", "a", 0, old)
    manifest("_satsft_update/previous/g00/tiles-b00000.jsonl", "z", 1, ["images/s00000/z.png"])
    manifest(f"{STAGE_DIR}/metadata/manifest/tiles-b00000.jsonl", "a", 16, new)
    _write(tmp_path, f"{STAGE_DIR}/rejects/rejects-00000-of-00001.jsonl", b'{"reason": "chip_missing"}\n')
    _write(tmp_path, f"{STAGE_DIR}/build_report.json", orjson.dumps({"rows": {"total": 0}, "files": {}}))
    token = begin(str(tmp_path))
    with pytest.raises(RuntimeError) as first:
        commit(str(tmp_path), token)
    assert "made no rows" in str(first.value)
    assert all((tmp_path / f).exists() for f in [*old, "images/s00000/z.png"])
    assert not any((tmp_path / f).exists() for f in new), "the refused run's files are withdrawn"
    assert not (tmp_path / STAGE_DIR).exists() and not (tmp_path / STARTED).exists()
    assert (tmp_path / REFUSED_DIR / "rejects/rejects-00000-of-00001.jsonl").exists()
    assert json.loads((tmp_path / REFUSED_DIR / "build_report.json").read_text())["rows"]["total"] == 0
    assert OutputTree(str(tmp_path)).update_unfinished(), "the earlier update's stale file is still to go"
    with pytest.raises(RuntimeError) as again:
        commit(str(tmp_path), token)  # Dataflow retries a failed step
    assert str(again.value) == str(first.value)
    (tmp_path / "_satsft_update/previous/g00/tiles-b00000.jsonl").unlink()
    assert not OutputTree(str(tmp_path)).update_unfinished(), "a refusal's record alone is no update under way"


def test_an_update_from_elsewhere_that_still_writes_is_not_taken_over(tmp_path):
    """An update begun on another machine a day ago whose workers wrote a progress file an hour ago still runs
    (a job longer than --take-over-after); once silent for longer than that, it is taken as stopped."""
    import datetime
    import os
    import time

    began = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=24)
    marker = (f"run abc\nmachine boot-elsewhere\npid 7\npid start 9\nbegan {began:%Y-%m-%d %H:%M:%S} UTC\n"
              "host dataflow-launcher\n").encode()
    _write(tmp_path, STARTED, marker)
    _write(tmp_path, f"{PROGRESS_DIR}/build-1234.json", b"{}")
    # not read: an unchanged tile's files keep older times, a linked chip its input's
    _write(tmp_path, "analysis_images/s00000/t__analysis_brief.png")
    for hours_ago, running in ((1, True), (13, False)):
        when = time.time() - hours_ago * 3600
        os.utime(tmp_path / PROGRESS_DIR / "build-1234.json", (when, when))
        why = running_update(str(tmp_path), marker, 12)
        assert bool(why) == running, (hours_ago, why)
    assert not running_update(str(tmp_path), marker, 0)
    _write(tmp_path, f"{STAGE_DIR}/data/train.jsonl", b"staged just now\n")
    why = running_update(str(tmp_path), marker, 12)
    assert "on another machine (host dataflow-launcher, process 7, last wrote to it " in why, why
    with pytest.raises(RuntimeError, match="--take-over-after 0"):
        recover(str(tmp_path), 12)
    assert (tmp_path / STARTED).exists(), "nothing touched"


def test_an_update_submitted_to_dataflow_from_this_machine_is_judged_by_time(tmp_path):
    """The launcher of a Dataflow job exits once it has submitted the job, which runs on: its marker names this
    machine and a process that no longer runs, yet the update must count as running until it has been silent
    for --take-over-after (a second update launched from the same cron host would undo the job's files)."""
    from transforms.rebuild import holder

    begin(str(tmp_path), "DataflowRunner")
    marker = (tmp_path / STARTED).read_bytes()
    assert holder.parse(marker.decode()).detached == "DataflowRunner"
    why = running_update(str(tmp_path), marker, 12)
    assert "as a DataflowRunner job launched from host " in why and "--take-over-after 0" in why, why
    assert not running_update(str(tmp_path), marker, 0)
    begin(str(tmp_path))  # waited for here: this process's own marker names no other run
    assert not running_update(str(tmp_path), (tmp_path / STARTED).read_bytes(), 12)


def test_a_reader_is_told_whether_an_unfinished_update_still_runs_here(tmp_path):
    """validate's note said "it may still be running" of an update whose process had ended on this very machine."""
    import subprocess

    from transforms.rebuild import holder
    from transforms.rebuild.commit import unfinished_update

    child = subprocess.Popen(["sleep", "60"])
    try:
        marker = holder.Holder(holder.machine_id(), child.pid, holder.pid_start(child.pid), "2026-12-07 10:00:00 UTC",
                               holder.socket.gethostname())
        _write(tmp_path, STARTED, marker.lines().encode())
        assert unfinished_update(str(tmp_path))[1] == "running"
    finally:
        child.kill()
        child.wait()
    assert unfinished_update(str(tmp_path))[1] == "stopped"
    elsewhere = holder.Holder("another-boot", child.pid, "", "2026-12-07 10:00:00 UTC", "cron-1")
    _write(tmp_path, STARTED, elsewhere.lines().encode())
    who, state = unfinished_update(str(tmp_path))
    assert state == "unknown" and "cron-1" in who


def test_a_journal_from_elsewhere_moves_and_deletes_inside_the_output_only(tmp_path):
    """A journal is a file of the output folder, and a folder cloned from a dataset repository brings its own: one
    naming `../victim.txt` had the next update delete (or move over) a file beside the output."""
    from transforms.rebuild.commit import apply_journal
    from transforms.rebuild.manifest import still_paths

    out = tmp_path / "out"
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    _write(out, "data/old.jsonl")
    _write(out, f"{STAGE_DIR}/data/new.jsonl")
    _write(tmp_path, "elsewhere.txt", b"theirs")
    journal = {"moves": ["data/new.jsonl", "../victim.txt", "/etc/hostname"],
               "deletes": ["data/old.jsonl", "../victim.txt", "../out/../victim.txt", "/tmp/x"]}
    _write(out, JOURNAL, orjson.dumps(journal))
    assert apply_journal(str(out))
    assert victim.read_text() == "mine" and (out / "data/new.jsonl").exists() and not (out / "data/old.jsonl").exists()
    stills = b'{"path": "mapbox_stills/s00000/a.png", "slot": 0, "stem": "a"}\n{"path": "../victim.txt", "slot": 1, ' \
             b'"stem": "b"}\n'
    assert still_paths(stills) == {"mapbox_stills/s00000/a.png"}
