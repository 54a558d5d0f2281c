"""gs:// in and out, against a Cloud Storage emulator on loopback: same bytes as a build from a local folder."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ALL_OUTPUTS, REPO, assert_same_outputs, run_cli
from tests.gcs_emulator import BUCKET, download, gcs_emulator, gcsfs_client, upload
from transforms.rebuild.commit import STOP_AFTER_ENV

GS_TREE = f"gs://{BUCKET}/tree"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory, damaged_tree):
    """The emulator, holding a copy of the damaged tree; yields the client environment and the request log."""
    workdir = tmp_path_factory.mktemp("gcs")
    with gcs_emulator(workdir) as env:
        assert upload(env, damaged_tree, BUCKET, "tree") > 50
        yield env, workdir / "gcs-emulator.log"


def test_gs_build_matches_local_build(emulator, damaged_tree, direct_build, tmp_path):
    env, request_log = emulator
    fs = gcsfs_client(env)
    gs_out = f"gs://{BUCKET}/out"
    proc = run_cli("build", "--input", GS_TREE, "--output", gs_out, *ALL_OUTPUTS, env=env)
    assert "24 in, 22 with rows, 2 rejected" in proc.stdout, proc.stdout

    requests = request_log.read_text()
    assert "POST /upload/storage/v1/b/" in requests, "the log shows the build's uploads"
    assert "/copyTo/" not in requests, "objects are written to final names, not copied there from temporary ones"
    # the tree's chips and stills are copied by the store itself (fileio.copy_file), each straight to its name
    copied = re.findall(r"/o/(\S+?)/rewriteTo/b/[^/]+/o/(\S+?)\?", requests)
    assert copied and all(src.startswith("tree%2F") and dst.startswith("out%2F") and ".tmp" not in dst
                          for src, dst in copied), copied[:3]
    assert {dst.split("%2F")[1] for _, dst in copied} <= {"images", "mapbox_stills"}, copied[:3]
    assert not [p for p in fs.find(f"{BUCKET}/out") if ".tmp" in p or "beam-temp" in p]
    fetched = tmp_path / "fetched"
    assert download(env, BUCKET, "out", fetched) > 400
    assert_same_outputs(direct_build, fetched, {f"--input {GS_TREE}": f"--input {damaged_tree.name}",
                                                f"--output {gs_out}": f"--output {direct_build.name}"})
    # The output validates where it lies, in the bucket; damage there is found there.
    proc = run_cli("validate", gs_out, env=env)
    assert proc.stdout.startswith("OK:"), proc.stdout
    analysis = sorted(p for p in fs.find(f"{BUCKET}/out/analysis_images"))[0]
    fs.rm(analysis)
    proc = run_cli("validate", gs_out, check=False, env=env)
    assert proc.returncode == 1 and analysis.split("/out/", 1)[1] in proc.stdout, proc.stdout


def test_gs_output_refuses_old_build_unless_overwrite(emulator):
    env, _ = emulator
    fs = gcsfs_client(env)
    fs.pipe(f"{BUCKET}/old/data/stale-00000-of-00001.jsonl", b"{}\n")
    fs.pipe(f"{BUCKET}/old/notes/keep.txt", b"not ours\n")
    gs_out = f"gs://{BUCKET}/old"
    proc = run_cli("build", "--input", GS_TREE, "--output", gs_out, check=False, env=env)
    assert proc.returncode == 2 and "pass --overwrite" in proc.stderr, proc.stderr
    # a build launched elsewhere (a Dataflow job whose launcher has exited) names itself there: left alone
    began = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    fs.pipe(f"{BUCKET}/old/_satsft_spool/writer.txt", (
        f"command build\nmachine boot-x\npid 7\npid start 9\nbegan {began:%Y-%m-%d %H:%M:%S} UTC\nhost cron-1\n"
        "detached DataflowRunner\n").encode())
    proc = run_cli("build", "--input", GS_TREE, "--output", gs_out, "--overwrite", check=False, env=env)
    assert proc.returncode == 1 and "as a DataflowRunner job launched from host cron-1" in proc.stderr, proc.stderr
    said = run_cli("validate", gs_out, check=False, env=env).stdout
    assert "build begun" in said and "as a DataflowRunner job launched from host cron-1 has not finished" in said, said
    assert f"{BUCKET}/old/data/stale-00000-of-00001.jsonl" in fs.find(f"{BUCKET}/old"), "nothing deleted"
    run_cli("build", "--input", GS_TREE, "--output", gs_out, "--overwrite", "--take-over-after", "0", "--tasks",
            "caption", env=env)
    names = fs.find(f"{BUCKET}/old")
    assert not [n for n in names if "_satsft_spool" in n], "the marker goes with the spool"
    assert f"{BUCKET}/old/data/stale-00000-of-00001.jsonl" not in names
    assert f"{BUCKET}/old/build_report.json" in names
    assert f"{BUCKET}/old/notes/keep.txt" in names, "--overwrite removes only what a build writes"


def test_gs_folder_names_with_wildcards(emulator):
    """A bucket folder named `runs[1]` is not the pattern `runs[1]`: --overwrite (and every removal of an update's
    stage) took the objects of `runs1` with it, since `ours` were told apart by the first folder below the match."""
    env, _ = emulator
    fs = gcsfs_client(env)
    theirs = f"{BUCKET}/runs1/data/theirs-00000-of-00001.jsonl"
    stale = f"{BUCKET}/runs[1]/data/old-00000-of-00001.jsonl"
    fs.pipe(theirs, b"{}\n")
    fs.pipe(stale, b"{}\n")
    fs.pipe(f"{BUCKET}/runs[1]/build_report.json", b"{}")  # an earlier build's (--overwrite removes only such)
    run_cli("build", "--input", GS_TREE, "--output", f"gs://{BUCKET}/runs[1]", "--overwrite", "--tasks", "caption",
            env=env)
    fs.invalidate_cache()
    assert fs.exists(theirs) and not fs.exists(stale)
    assert fs.exists(f"{BUCKET}/runs[1]/build_report.json")


def test_missing_gs_input_fails_fast(emulator, tmp_path: Path):
    env, _ = emulator
    proc = run_cli("build", "--input", GS_TREE, "--output", "gs://no-such-bucket/out", check=False, env=env)
    assert proc.returncode == 2 and "cannot write to 'gs://no-such-bucket/out' (NotFound" in proc.stderr, proc.stderr
    proc = run_cli("build", "--input", f"gs://{BUCKET}/no-such-tree", "--output", str(tmp_path / "o"), check=False,
                   env=env)
    assert proc.returncode == 2 and "no-such-tree has no metadata/" in proc.stderr.replace("'", ""), proc.stderr


def test_gs_update_in_place(emulator, damaged_tree, tmp_path):
    """--update on a bucket: the commit moves whole objects, the stale ones go, the result validates there."""
    env, _ = emulator
    fs = gcsfs_client(env)
    changed = tmp_path / "tree"
    shutil.copytree(damaged_tree, changed)
    sidecars = sorted(p for p in (changed / "metadata").rglob("*.json") if "broken" not in p.read_text())
    side = json.loads(sidecars[2].read_text())
    side["caption"] += " Edited."
    sidecars[2].write_text(json.dumps(side))
    sidecars[4].unlink()
    assert upload(env, changed, BUCKET, "tree2") > 50
    gs_out, flags = f"gs://{BUCKET}/upd", ("--tasks", "production_analysis,caption", "--profiles", "brief_only")
    # the first run of a scheduled --update, into an empty prefix: it makes the first build (its own check-in
    # object there once made it take the prefix for a build, and stop on a traceback)
    proc = run_cli("build", "--input", GS_TREE, "--output", gs_out, "--update", *flags, env=env)
    assert "dataset written to" in proc.stdout and "against the build it updated" not in proc.stdout
    before = set(fs.find(f"{BUCKET}/upd"))
    # refused (most rows would go): every object the refused run wrote is withdrawn, its report kept to read
    proc = run_cli("build", "--input", f"gs://{BUCKET}/tree2", "--output", gs_out, "--update", "--tasks", "caption",
                   "--profiles", "brief_only", env=env, check=False)
    assert proc.returncode == 1 and "rows where the build in place has" in proc.stderr, proc.stderr[-2000:]
    refused = set(fs.find(f"{BUCKET}/upd")) - before
    assert refused and all(p.startswith(f"{BUCKET}/upd/_satsft_update/refused/") for p in refused), refused
    # an unchanged tile's analysis image deleted from the bucket (a lifecycle rule, a hand): drawn again
    lost = next(p for p in sorted(before) if "/analysis_images/" in p and sidecars[2].stem not in p
                and sidecars[4].stem not in p)
    fs.rm(lost)
    run_cli("build", "--input", f"gs://{BUCKET}/tree2", "--output", gs_out, "--update", *flags, env=env)
    after = set(fs.find(f"{BUCKET}/upd"))
    report = json.loads(fs.cat(f"{BUCKET}/upd/build_report.json"))
    assert report["rebuild"]["tiles_changed"] == 1 and report["rebuild"]["tiles_removed"] == 1
    assert lost in after and report["rebuild"]["tiles_redrawn"] == 1
    assert not [p for p in after if "_satsft_update" in p or "_satsft_spool" in p]
    gone = {p.rsplit("/", 1)[-1] for p in before - after}
    assert any(sidecars[4].stem in name for name in gone) and any(sidecars[2].stem in name for name in gone)
    assert len(after) == report["file_count"], "the count the report gives is the objects there"
    proc = run_cli("validate", gs_out, env=env)
    assert proc.stdout.startswith("OK:"), proc.stdout
    # a preview of the bucket's build, into a local folder: the sampled rows' images only
    proc = run_cli("preview", gs_out, "--n", "4", env=env, check=False)
    assert proc.returncode == 2 and f"satsft preview {gs_out} --to DIR" in proc.stderr, proc.stderr
    run_cli("preview", gs_out, "--n", "4", "--to", str(tmp_path / "page"), env=env)
    page = (tmp_path / "page" / "sample.js").read_text()
    cards = json.loads(page[page.index("=") + 1:].strip().rstrip(";"))["cards"]
    shown = {image for card in cards for image in card["images"]}
    assert cards and shown and all((tmp_path / "page" / image).is_file() for image in shown)
    assert {card["task"] for card in cards} == {"production_analysis", "caption"}
    assert set(fs.find(f"{BUCKET}/upd")) == after, "nothing written to the bucket"
    # an update begun on another machine a day ago whose workers wrote a progress object just now still runs
    began = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=24)
    fs.pipe(f"{BUCKET}/upd/_satsft_update/started.txt", f"run x\nmachine boot-b\npid 7\npid start 9\nbegan "
            f"{began:%Y-%m-%d %H:%M:%S} UTC\nhost dataflow-launcher\n".encode())
    fs.pipe(f"{BUCKET}/upd/_satsft_spool/progress/build-1.json", b"{}")
    proc = run_cli("build", "--input", f"gs://{BUCKET}/tree2", "--output", gs_out, "--update", *flags, env=env,
                   check=False)
    assert proc.returncode == 1 and "last wrote to it" in proc.stderr, proc.stderr[-2000:]
    assert set(fs.find(f"{BUCKET}/upd")) == after | {f"{BUCKET}/upd/_satsft_update/started.txt",
                                                     f"{BUCKET}/upd/_satsft_spool/progress/build-1.json"}


def test_maps_are_scored_where_they_lie(emulator, direct_build, tmp_path):
    """`satsft eval --labels` on a bucket: the same report as on the local copy, bad label maps named alike."""
    from scoring.maps import BRIEF_SUFFIX, map_report

    env, _ = emulator
    labels = tmp_path / "labels" / "s00000"
    labels.mkdir(parents=True)
    maps = sorted((direct_build / "analysis_images").rglob(f"*{BRIEF_SUFFIX}"))
    for i, path in enumerate(maps):  # the maps themselves, every third one painted water everywhere, one unreadable
        data = path.read_bytes() if i % 3 else _one_class_png(path.read_bytes())
        (labels / path.name.replace(BRIEF_SUFFIX, ".png")).write_bytes(b"junk" if i == 4 else data)
    upload(env, direct_build / "analysis_images", BUCKET, "mapped/analysis_images")
    upload(env, tmp_path / "labels", BUCKET, "mapped_labels")
    run_cli("eval", "--dataset", f"gs://{BUCKET}/mapped", "--labels", f"gs://{BUCKET}/mapped_labels/", "--output",
            str(tmp_path / "report.json"), env=env)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report == map_report(str(direct_build), str(tmp_path / "labels"))
    assert report["tiles"] == len(maps) - 1 and report["labels_not_scored"] == {
        maps[4].name.replace(BRIEF_SUFFIX, ""): "not a readable image"}
    assert 0.3 < report["mean_iou"] < 1.0


def _one_class_png(data: bytes) -> bytes:
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    Image.new("P", img.size, 0).save(out, format="PNG")
    return out.getvalue()


_HOLD_CHECK_IN = """
import sys
from transforms.output.check_in import checking_in
with checking_in(sys.argv[1], 12.0):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _check_in_from(host: str, hours_ago: float) -> bytes:
    """A check-in object as a launcher on another machine leaves it."""
    began = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours_ago)
    return (f"a satsft run is checking this output for other writers\nrun 5e1f\nmachine boot-x\npid 7\n"
            f"pid start 9\nbegan {began:%Y-%m-%d %H:%M:%S} UTC\nhost {host}\ndetached -\n").encode()


def test_a_check_in_on_a_bucket_is_one_step_across_machines(emulator, tmp_path):
    """Two launches of one scheduled rebuild on two machines share no file lock: while one checks a bucket output
    for writers (its check-in object, created only where none is), the other is refused and writes nothing; a
    check-in left by a run from elsewhere refuses until it is --take-over-after hours old, then is taken over."""
    env, _ = emulator
    fs = gcsfs_client(env)
    gs_out, check_in = f"gs://{BUCKET}/twice", f"{BUCKET}/twice/_satsft_check_in.txt"
    build = ("build", "--input", GS_TREE, "--output", gs_out, "--tasks", "caption", "--quiet")
    # Another machine: its own temporary folder, so the two processes share no lock file here.
    elsewhere = dict(os.environ, **env, TMPDIR=str(tmp_path), PYTHONWARNINGS="ignore")
    first = subprocess.Popen([sys.executable, "-c", _HOLD_CHECK_IN, gs_out], cwd=REPO, env=elsewhere,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "held\n"
        fs.invalidate_cache()
        assert fs.find(f"{BUCKET}/twice") == [check_in]
        proc = run_cli(*build, check=False, env=env)
        assert proc.returncode == 1 and "is checking it for writers right now" in proc.stderr, proc.stderr
        fs.invalidate_cache()
        assert fs.find(f"{BUCKET}/twice") == [check_in], "the refused run wrote nothing"
    finally:
        first.communicate("\n", timeout=60)
    assert first.returncode == 0
    fs.invalidate_cache()
    assert fs.find(f"{BUCKET}/twice") == [], "a check-in goes when it is done"

    fs.pipe(check_in, _check_in_from("launcher-vm-7", 0.1))
    proc = run_cli(*build, check=False, env=env)
    assert proc.returncode == 1 and "on host launcher-vm-7 (process 7), began checking" in proc.stderr, proc.stderr
    assert "--take-over-after 0" in proc.stderr
    fs.invalidate_cache()
    assert fs.find(f"{BUCKET}/twice") == [check_in]
    fs.pipe(check_in, _check_in_from("launcher-vm-7", 13))  # past --take-over-after's 12 h: taken as stopped
    proc = run_cli(*build, env=env)
    assert "took over the check-in" in proc.stderr and "host launcher-vm-7" in proc.stderr, proc.stderr
    fs.invalidate_cache()
    names = fs.find(f"{BUCKET}/twice")
    assert f"{BUCKET}/twice/build_report.json" in names and check_in not in names
    # an --update checks in the same way (an --overwrite goes through the build's own check-in above)
    fs.pipe(check_in, _check_in_from("launcher-vm-8", 0.1))
    proc = run_cli(*build, "--update", check=False, env=env)
    assert proc.returncode == 1 and "host launcher-vm-8" in proc.stderr, proc.stderr
    fs.invalidate_cache()
    assert set(fs.find(f"{BUCKET}/twice")) == {*names, check_in}
    run_cli(*build, "--update", "--take-over-after", "0", env=env)
    fs.invalidate_cache()
    assert check_in not in fs.find(f"{BUCKET}/twice")


def test_gs_mix_update_in_place(emulator, direct_build):
    """mix --update on a bucket: the staged mix moves into place as whole objects, the old mix's objects the new
    one lacks go, and the count its report gives is the objects there."""
    env, request_log = emulator
    fs = gcsfs_client(env)
    gs_mix = f"gs://{BUCKET}/mixupd"
    run_cli("mix", "--source", f"name=sat,path={direct_build},task=caption", "--output", gs_mix, "--update",
            "--quiet", env=env)
    first = json.loads(fs.cat(f"{BUCKET}/mixupd/mix_report.json"))
    first_files = set(fs.find(f"{BUCKET}/mixupd"))
    second = ("mix", "--source", f"name=sat,path={direct_build},task=caption|cross_view", "--output", gs_mix,
              "--update", "--quiet")
    # killed after three of the commit's copies: the next run finishes that commit before its own
    proc = run_cli(*second, env={**env, STOP_AFTER_ENV: "3"}, check=False)
    assert proc.returncode == 137, proc.stderr[-2000:]
    fs.invalidate_cache()
    assert fs.exists(f"{BUCKET}/mixupd/_satsft_update/journal.json")
    mark = len(request_log.read_text().splitlines())
    proc = run_cli(*second, env=env)
    assert "finished the commit of an interrupted --update" in proc.stderr, proc.stderr[-2000:]
    after = set(fs.find(f"{BUCKET}/mixupd"))
    # the commit moves each staged object by the store's own copy: none is read back through this process, none
    # is looked up one by one, and the old objects go in batches, not a request each; an image whose bytes are
    # in place already (the chips of the first mix) is not copied again
    requests = [line.replace("%2F", "/") for line in request_log.read_text().splitlines()[mark:]]
    staged = [line for line in requests if "mixupd/_satsft_update/stage/" in line]
    media = [re.search(r"/rewriteTo/b/[^/]+/o/(\S+?)\?", line).group(1) for line in staged
             if "/rewriteTo/" in line and "/stage/media/" in line]
    assert media and not {f"{BUCKET}/{path}" for path in media} & first_files, "new images only (the stills)"
    # nor staged again by the run after it (its images are all in place, with the same bytes): it writes the
    # split files and lists, not the images
    uploads = sum(line.startswith('"POST /upload/') for line in requests)
    assert uploads < len([p for p in after if "/media/" in p]) / 2, uploads
    assert not [line for line in staged if ("/download/" in line or "alt=media" in line)
                and "_satsft_spool" not in line and "mix_report.json" not in line], "staged objects downloaded"
    looked_up = [line for line in staged if line.startswith('"GET /storage/v1/b/') and "/o/mixupd/" in line]
    assert not [line for line in looked_up if "_satsft_spool" not in line], "a staged object looked up alone"
    # two commits (the one finished, this run's): a few batches each (the journal's deletes, the journal, the
    # stage, the kept lists), where a request per staged object was some 30 each
    assert sum(line.startswith('"POST /batch/') for line in requests) <= 8, "a delete request per object"
    report = json.loads(fs.cat(f"{BUCKET}/mixupd/mix_report.json"))
    assert report["rows"]["total"] > first["rows"]["total"]
    assert not [p for p in after if "_satsft_" in p], "no stage, spool or marker left"
    assert len(after) == report["file_count"], "the count the report gives is the objects there"
    proc = run_cli("validate", gs_mix, env=env)
    assert proc.stdout.startswith("OK:"), proc.stdout


def test_a_mix_update_of_unchanged_sources_reads_no_image_again(emulator):
    """A mix --update from a build in the bucket: an image whose bytes (size and MD5, listed) the mix in place
    holds was checked when that mix was made, and is neither read nor copied again; an image whose bytes changed
    since (here cut short) is read, and its rows are rejected."""
    env, request_log = emulator
    fs = gcsfs_client(env)
    source, gs_mix = f"gs://{BUCKET}/mixsrc", f"gs://{BUCKET}/mixkeep"
    run_cli("build", "--input", GS_TREE, "--output", source, "--tasks", "caption", "--quiet", env=env)
    mix = ("mix", "--source", f"name=s,path={source}", "--output", gs_mix, "--update", "--quiet")
    run_cli(*mix, env=env)
    first = json.loads(fs.cat(f"{BUCKET}/mixkeep/mix_report.json"))
    mark = len(request_log.read_text().splitlines())
    run_cli(*mix, env=env)
    requests = [line.replace("%2F", "/") for line in request_log.read_text().splitlines()[mark:]]
    assert not [line for line in requests if "/o/mixsrc/images/" in line and "alt=media" in line], "images read"
    assert not [line for line in requests if "/rewriteTo/" in line and "/mixsrc/images/" in line], "images copied"
    assert json.loads(fs.cat(f"{BUCKET}/mixkeep/mix_report.json")) == first
    chip = sorted(p for p in fs.find(f"{BUCKET}/mixsrc/images") if p.endswith(".png"))[0]
    fs.pipe(chip, fs.cat(chip)[:-20])
    run_cli(*mix, env=env)
    report = json.loads(fs.cat(f"{BUCKET}/mixkeep/mix_report.json"))
    assert report["rejects_by_reason"].get("image_truncated", 0) >= 1, report["rejects_by_reason"]
    assert report["rows"]["total"] < first["rows"]["total"]
    assert run_cli("validate", gs_mix, env=env).stdout.startswith("OK:")


def test_a_copy_within_the_bucket_is_the_stores_own(emulator, monkeypatch):
    """fileio.copy_file between two objects: the same bytes, by rewriteTo, none read here; a source gone is the
    FileNotFoundError callers already count as an unreadable input."""
    env, request_log = emulator
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from transforms import fileio
    from transforms.input.images import media_file_problem

    src, dst = f"gs://{BUCKET}/copy/src.bin", f"gs://{BUCKET}/copy/dst.bin"
    fileio.write_bytes(src, b"chip bytes")
    with monkeypatch.context() as patched:
        patched.setattr(fileio, "read_bytes", lambda *a, **k: pytest.fail("bytes read through this process"))
        fileio.copy_file(src, dst)
    assert fileio.read_bytes(dst) == b"chip bytes"
    assert "copy%2Fsrc.bin/rewriteTo/" in request_log.read_text()
    with pytest.raises(FileNotFoundError, match="copy/gone.bin"):
        fileio.copy_file(f"gs://{BUCKET}/copy/gone.bin", dst)
    # many at once (a commit), each thread with its own client; a source gone passed over only when asked
    pairs = [(src, f"gs://{BUCKET}/copy/many/{i}.bin") for i in range(5)] + [(f"gs://{BUCKET}/copy/gone.bin", dst)]
    assert fileio.copy_files(pairs, gone_ok=True) == 5
    assert [fileio.read_bytes(d) for _, d in pairs[:5]] == [b"chip bytes"] * 5
    with pytest.raises(FileNotFoundError, match="copy/gone.bin"):
        fileio.copy_files(pairs)
    # deleted in batches sent several at a time (two names a batch here), those already gone passed over
    monkeypatch.setattr(fileio, "DELETE_BATCH", 2)
    before = request_log.read_text().count('"POST /batch/')
    fileio.delete_files([d for _, d in pairs[:5]] + [f"gs://{BUCKET}/copy/gone.bin"])
    assert request_log.read_text().count('"POST /batch/') - before == 3
    assert not any(fileio.exists(d) for _, d in pairs[:5])
    # one request each, through this thread's one client (Beam's file system made a client per call, and each
    # fetched the bucket's metadata in the background: the client made above has done so by now)
    time.sleep(1)
    for step in (lambda: fileio.write_bytes(src, b"chip bytes"), lambda: fileio.read_bytes(src),
                 lambda: fileio.exists(src), lambda: fileio.copy_file(src, dst)):
        before = request_log.read_text().count("\n")
        step()
        assert request_log.read_text().count("\n") - before == 1, request_log.read_text().splitlines()[before:]
    # the two ends and the size, of an object of a size known from a listing or not: small ones read whole in
    # one request (a mix's analysis images), large ones by two ranges, and a third request for the size unknown
    for size, requests in ((0, (1, 1)), (10, (1, 1)), (20_000, (1, 3)), (200_000, (2, 3))):
        data = bytes(i % 251 for i in range(size))
        fileio.write_bytes(src, data)
        for listed, expected in zip((size, None), requests, strict=True):
            before = request_log.read_text().count("\n")
            assert fileio.read_head_tail(src, 33, 64, listed) == (data[:33], data[-64:], size), (size, listed)
            assert request_log.read_text().count("\n") - before == expected, (size, listed)
    assert fileio.read_head_tail(src, 64, 0) == (data[:64], b"", 200_000)
    # listed at another size than it has now (rewritten since): read as it is
    assert fileio.read_head_tail(src, 33, 64, 300_000) == (data[:33], data[-64:], 200_000)
    # one read each, no existence check first: what a mix's media check and a marker read rest on
    assert fileio.read_if_there(f"gs://{BUCKET}/copy/gone.bin") is None
    assert media_file_problem(f"gs://{BUCKET}/copy/gone.bin") == "missing"
    assert media_file_problem(dst) == "unsupported_format"  # there, read: not an image
