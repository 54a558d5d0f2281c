"""The CLI on generated trees: everything the core-build issue promises, checked on the output files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import orjson
import pytest

from pipeline.sample.faults import lfs_pointer
from tests.conftest import run_cli
from transforms.analysis.render import class_shares
from transforms.paths import base_poi_id
from transforms.rows import DEFAULT_MAX_BOXES, DEFAULT_MIN_BOX_PX, grounding_problem, normalise_box
from transforms.tasks import DEFAULT_TASKS


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.read_text().splitlines()]


def _files(root: Path, sub: str) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / sub).rglob("*")) if p.is_file()}


def _fingerprint_of_tree(tree: Path) -> str:
    """The input fingerprint recomputed from the files, independently of the build's own code path."""
    leaves = []
    for path in sorted(tree.rglob("*")):
        rel = str(path.relative_to(tree))
        if not path.is_file() or rel == "faults.json":
            continue
        if rel.startswith("metadata/") and rel.endswith(".json"):
            kind, digest = "sidecar", hashlib.sha256(path.read_bytes()).hexdigest()
        elif rel.startswith("data/") and rel.endswith(".jsonl"):
            kind, digest = "jsonl", ""
        elif rel.startswith(("images/", "mapbox_stills/")):
            kind, digest = "image", ""
        else:
            continue
        leaves.append(hashlib.sha256(f"{kind}\x1f{rel}\x1f{path.stat().st_size}\x1f{digest}".encode()).digest())
    return hashlib.sha256(b"".join(sorted(leaves))).hexdigest()


def _max_leaf(root: Path) -> int:
    return max(len(files) for _, dirs, files in os.walk(root) if not dirs and files)


@pytest.fixture(scope="module")
def build(sample_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "out"
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(out))
    return out, proc


def test_build_outputs_everything(build, sample_tree):
    out, proc = build
    assert "production_analysis" in proc.stdout and "tiles:" in proc.stdout and str(out) in proc.stdout
    rows = _rows(out)
    assert set(r["metadata"]["task"] for r in rows) == set(DEFAULT_TASKS)
    for r in rows:
        md = r["metadata"]
        for p in md["image_paths"]:
            assert (out / p).is_file(), p
        user = r["messages"][-2]["content"]
        assert [p["image"] for p in user if p["type"] == "image"] == md["image_paths"]
        assert [p["type"] for p in user][-1] == "text" and sum(p["type"] == "text" for p in user) == 1
    report = json.loads((out / "build_report.json").read_text())
    assert report["tiles"]["accounted"] and report["tiles"]["in"] == 150
    assert report["rows"]["total"] == len(rows)
    assert len(list((out / "metadata/sft_metadata_rows").rglob("*.json"))) == len(rows)
    assert json.loads((out / "build_timings.json").read_text())["wall_seconds"] > 0


def test_report_identifies_the_tree_without_local_paths(build, sample_tree):
    out, _ = build
    report = json.loads((out / "build_report.json").read_text())
    assert report["input_fingerprint"] == _fingerprint_of_tree(sample_tree)
    assert (report["config"]["input"], report["config"]["output"]) == (sample_tree.name, out.name)
    for name in ("build_report.json", "README.md"):
        text = (out / name).read_text()
        assert str(sample_tree.parent) not in text and str(out.parent) not in text, f"{name} quotes a local path"


def test_held_out_splits_keep_their_size(build):
    """Bases that span splits move whole, and the splits keep the tiles they declared (150 tiles: within 2)."""
    out, proc = build
    report = json.loads((out / "build_report.json").read_text())
    splits = report["splits"]
    assert sum(splits["declared"].values()) == sum(splits["written"].values()) == 150
    assert report["outputs"]["split_reassigned"] > 0, "the sample tree has leaking bases"
    for s in ("train", "validation", "test"):
        assert abs(splits["written"][s] - splits["declared"][s]) <= 2, splits
    by_base: dict[str, set[str]] = {}
    for r in _rows(out):
        base = base_poi_id(r["metadata"]["tile_stem"])
        by_base.setdefault(base, set()).add(r["metadata"]["split"])
    assert all(len(v) == 1 for v in by_base.values()), "no base in two splits"
    card = (out / "README.md").read_text()
    assert "## Splits" in card and "drift (pp)" in card
    assert "tiles by split (declared -> written, drift)" in proc.stdout


def test_grounding_answers_match_source_boxes(build, sample_tree):
    out, _ = build
    sidecars = {p.stem: json.loads(p.read_text()) for p in (sample_tree / "metadata").rglob("*.json")}
    checked = 0
    for r in _rows(out):
        md = r["metadata"]
        if md["task"] not in ("grounding_all", "grounding_per_class"):
            continue
        answer = r["messages"][-1]["content"][0]["text"]
        assert grounding_problem(answer) is None
        src = sidecars[md["tile_stem"]]
        expected = Counter((g["label"], tuple(normalise_box(tuple(g["bbox"]), src["output_size"])))
                           for g in src["regions"])
        got = Counter((b["label"], tuple(b["bbox"])) for b in orjson.loads(answer))
        assert not got - expected
        if md["task"] == "grounding_all":  # the box budget: the 12 largest of at least 100 px, largest first
            kept = sorted((g for g in src["regions"] if g["area_px"] >= DEFAULT_MIN_BOX_PX),
                          key=lambda g: (-g["area_px"], g["label"], g["bbox"]))[:DEFAULT_MAX_BOXES]
            assert [(b["label"], tuple(b["bbox"])) for b in orjson.loads(answer)] == [
                (g["label"], tuple(normalise_box(tuple(g["bbox"]), src["output_size"]))) for g in kept]
        checked += 1
    assert checked > 100


def test_analysis_images_match_their_json(build):
    out, _ = build
    n = 0
    for r in _rows(out):
        md = r["metadata"]
        if md["task"] != "production_analysis":
            continue
        text = r["messages"][-2]["content"][-1]["text"]
        payload = json.loads(text[text.index("{"): text.rindex("}") + 1])
        fractions = payload["tim_modality_outputs"]["LULC"]["class_fractions"]
        from transforms.classes import CLASS_IDS

        shares = class_shares((out / md["analysis_image_path"]).read_bytes())
        for name, v in fractions.items():
            assert abs(shares.get(CLASS_IDS[name], 0.0) - v) <= 0.0002  # 0.02 pp
        n += 1
    assert n == 150 * 5


def test_rebuild_is_byte_identical_and_folders_are_capped(build, sample_tree, tmp_path):
    out, _ = build
    first = _files(out, ".")
    run_cli("build", "--input", str(sample_tree), "--output", str(out), "--overwrite")
    second = _files(out, ".")
    first.pop("build_timings.json")
    second.pop("build_timings.json")
    assert any(p.startswith("parquet/") for p in first) and "README.md" in first
    assert first.keys() == second.keys()
    assert [p for p in first if first[p] != second[p]] == [], "every file, JSONL and Parquet included, is identical"
    small = tmp_path / "small"
    run_cli("build", "--input", str(sample_tree), "--output", str(small), "--max-files-per-dir", "20")
    assert _max_leaf(out) > 20
    entries = {str(d.relative_to(small)): len(list(d.iterdir())) for d in [small, *small.rglob("*")] if d.is_dir()}
    assert max(entries.values()) <= 20, sorted(entries.items(), key=lambda kv: -kv[1])[:3]
    assert any(p.count("/") == 3 for p in entries if p.startswith("metadata/sft_metadata_rows/")), \
        "row sidecars need a second level of shard folders at this limit"
    for r in _rows(small):
        for p in r["metadata"]["image_paths"]:
            assert (small / p).is_file()
    proc = run_cli("validate", str(small))
    assert proc.stdout.startswith("OK:"), proc.stdout


def test_absolute_image_paths_are_read_below_the_input_root(build, sample_tree, tmp_path):
    """Producers that write ``str(path)`` name chips by where their own copy lay (a POSIX path, a Windows path,
    a bucket URL), and tools that resolve an image from the file naming it write ``../images/...``: every such
    reference was rejected (unsafe_path:absolute_path, :parent_traversal) and the build made no rows. Each is
    now read below the input root from its images/ (mapbox_stills/) folder on; the rows are the same."""
    out, _ = build
    tree = tmp_path / "moved"
    shutil.copytree(sample_tree, tree)
    forms = ("/home/alice/exports/tree/", r"C:\\Users\\alice\\tree\\", "gs://alice-bucket/tree/", "../")  # JSON-escaped
    n = 0
    for f in sorted((tree / "data").glob("*.jsonl")):
        lines = f.read_text().splitlines()
        for i, line in enumerate(lines):
            form = forms[i % len(forms)]
            sep = r"\\" if "\\" in form else "/"
            for folder in ("images/", "mapbox_stills/"):
                n += line.count(f'"{folder}')
                line = line.replace(f'"{folder}', f'"{form}{folder.rstrip("/")}{sep}')
            lines[i] = line
        f.write_text("\n".join(lines) + "\n")
    assert n > 100 and "alice" in (tree / "data" / "train.jsonl").read_text()
    moved = tmp_path / "out"
    proc = run_cli("build", "--input", str(tree), "--output", str(moved), "--quiet")
    said = f"note: {n} image reference(s) in data/*.jsonl are absolute paths or URLs, or relative to data/"
    assert said in proc.stdout, proc.stdout
    assert json.loads((moved / "build_report.json").read_text())["outputs"]["image_refs_rebased"] == n
    assert not (moved / "rejects" / "rejects-00000-of-00001.jsonl").read_text().count("unsafe_path")
    for sub in ("data", "parquet", "images", "analysis_images"):
        assert _files(moved, sub) == _files(out, sub), sub


def test_references_in_another_case_find_their_file(build, sample_tree, tmp_path):
    """A tree made on a Mac or on Windows works there when a reference says x.png of a chip saved as x.PNG, or
    names a still's folder in another case; on Linux and in a bucket those chips and stills were lost
    (chip_missing, still_missing). The one file a reference matches ignoring case is read: the same rows."""
    out, _ = build
    tree = tmp_path / "from_a_mac"
    shutil.copytree(sample_tree, tree)
    chips = sorted((tree / "images").rglob("*.png"))[::3]
    for chip in chips:
        chip.rename(chip.with_suffix(".PNG"))
    stills = tree / "mapbox_stills" / "s00000"
    stills.rename(stills.with_name("S00000"))
    n_stills = len(list((tree / "mapbox_stills" / "S00000").iterdir()))
    moved = tmp_path / "out"
    proc = run_cli("build", "--input", str(tree), "--output", str(moved), "--quiet")
    n = len(chips) + n_stills
    assert f"note: {n} image reference(s) in data/*.jsonl name their file in another case" in proc.stdout, proc.stdout
    assert json.loads((moved / "build_report.json").read_text())["outputs"]["image_refs_case_matched"] == n
    assert not (moved / "rejects" / "rejects-00000-of-00001.jsonl").read_text().count("_missing")
    for sub in ("data", "parquet", "images", "mapbox_stills", "analysis_images"):
        assert _files(moved, sub) == _files(out, sub), sub


def test_jpeg_and_webp_stills_are_used_as_they_are(build, sample_tree, tmp_path):
    """The Mapbox Static Images API serves its satellite style as JPEG, and Hub datasets often store WebP: a tree
    of such stills lost every still (still_not_png) and every cross_view row. JPEG and WebP stills now pass,
    copied byte for byte; a JPEG or WebP cut short and a TIFF are still rejects, and only their tiles go without
    a still."""
    from PIL import Image

    out, _ = build
    tree = tmp_path / "photos"
    shutil.copytree(sample_tree, tree)
    stills = sorted((tree / "mapbox_stills").rglob("*.png"))
    ext = {p.stem: (".jpg", ".webp")[i % 2] for i, p in enumerate(stills)}
    for p in stills:
        Image.open(p).convert("RGB").save(p.with_suffix(ext[p.stem]), quality=90)
        p.unlink()
    for f in (tree / "data").glob("*.jsonl"):
        f.write_text(re.sub(r'(mapbox_stills/[^"]*/([^"/]*))\.png"', lambda m: m[1] + ext[m[2]] + '"', f.read_text()))
    cut, tiff, cut_webp = (p.with_suffix(ext[p.stem]) for p in stills[:3])
    cut.write_bytes(cut.read_bytes()[:2000])
    Image.open(tiff).save(tiff, format="TIFF")
    cut_webp.write_bytes(cut_webp.read_bytes()[:-100])
    photo_out = tmp_path / "out"
    run_cli("build", "--input", str(tree), "--output", str(photo_out), "--quiet")
    rejects = [json.loads(line) for line in (photo_out / "rejects" / "rejects-00000-of-00001.jsonl").open()]
    assert Counter(r["reason"] for r in rejects) == {"still_truncated": 2, "still_unsupported_format": 1}
    assert "not a PNG, JPEG or WebP" in next(r["detail"] for r in rejects if r["reason"].endswith("format"))

    def cross_view(root: Path) -> dict[str, str]:
        return {r["metadata"]["sample_id"]: r["metadata"]["image_paths"][0] for r in _rows(root)
                if r["metadata"]["task"] == "cross_view"}

    lost = {cut.stem, tiff.stem, cut_webp.stem}
    before, after = cross_view(out), cross_view(photo_out)
    assert {s: p[:-4] + ext[Path(p).stem] for s, p in before.items() if Path(p).stem not in lost} == after
    assert {Path(p).suffix for p in after.values()} == {".jpg", ".webp"}
    for path in after.values():
        source = next((tree / "mapbox_stills").rglob(Path(path).name))
        assert (photo_out / path).read_bytes() == source.read_bytes()
    assert run_cli("validate", str(photo_out)).stdout.startswith("OK:")


def test_a_tile_share_builds_whole_places_of_the_tree(build, sample_tree, tmp_path):
    """--tile-share: a try-out of part of a large tree. Whole base POIs are in or out, by a hash of the base
    (the same on every run); only their sidecars and chips are read; their rows are the full build's rows; the
    report accounts for the tiles left out. A rebuild takes the whole tree."""
    from transforms.input.share import in_share
    from transforms.paths import base_poi_id

    out, _ = build
    share = tmp_path / "share"
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(share), "--tile-share", "0.3", "--quiet")
    report = json.loads((share / "build_report.json").read_text())
    stems = sorted(p.stem for p in (sample_tree / "metadata").rglob("*.json"))
    chosen = [s for s in stems if in_share(s, 0.3)]
    assert 0 < len(chosen) < len(stems) and report["config"]["tile_share"] == 0.3
    assert report["tiles"]["in"] == report["tiles"]["with_rows"] == len(chosen) and report["rejects_by_reason"] == {}
    assert report["outputs"]["tiles_outside_share"] == len(stems) - len(chosen)
    assert f"{len(chosen)} of {len(stems)} tile sidecars are in it" in proc.stdout
    card = (share / "README.md").read_text()
    assert "--tile-share 0.3" in card and f"{len(chosen)} of {len(stems)} tile sidecars" in card
    full = {r["metadata"]["sample_id"]: r for r in _rows(out)}
    rows = _rows(share)
    assert {r["metadata"]["tile_stem"] for r in rows} == set(chosen)
    assert {base_poi_id(s) for s in chosen}.isdisjoint(base_poi_id(s) for s in stems if s not in chosen)
    assert all(r["messages"] == full[r["metadata"]["sample_id"]]["messages"] for r in rows)
    # every row of the chosen tiles, cross_view with its still included: a still is looked up by its place
    assert {r["metadata"]["sample_id"] for r in rows} == {sid for sid, r in full.items()
                                                          if r["metadata"]["tile_stem"] in set(chosen)}
    assert any(r["metadata"]["task"] == "cross_view" for r in rows)
    stills = {p.name for p in (share / "mapbox_stills").rglob("*.png")}
    assert stills == {Path(p).name for r in rows for p in r["metadata"]["image_paths"] if "mapbox_stills/" in p}
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(share), "--update", "--tile-share", "0.5",
                   check=False)
    assert proc.returncode == 2 and "a rebuild (--update, --previous) takes the whole tree" in proc.stderr


def test_usage_errors_fail_fast(build, sample_tree, tmp_path):
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(tmp_path / "o"), "--tasks", "captions",
                   check=False)
    assert proc.returncode == 2 and "unknown task 'captions'" in proc.stderr and "grounding_all" in proc.stderr
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(tmp_path / "o"), "--profiles", "fire",
                   check=False)
    assert proc.returncode == 2 and "wildfire" in proc.stderr
    proc = run_cli("build", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "no metadata/ folder" in proc.stderr
    (tmp_path / "bare" / "metadata").mkdir(parents=True)  # an empty tree built nothing, and said exit 0
    (tmp_path / "bare" / "data").mkdir()
    (tmp_path / "bare" / "data" / "train.jsonl").write_text("")
    proc = run_cli("build", "--input", str(tmp_path / "bare"), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "has nothing under metadata/" in proc.stderr, proc.stderr
    nested = tmp_path / "nested"
    for sub in ("metadata", "data/v2"):
        (nested / sub).mkdir(parents=True)
    (nested / "data" / "v2" / "train.jsonl").write_text("")
    (nested / "metadata" / "t.json").write_text("{}")
    proc = run_cli("build", "--input", str(nested), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "no data/*.jsonl" in proc.stderr and "found data/v2/train.jsonl" in proc.stderr
    # a build's own output has metadata/ and data/*.jsonl too: its row sidecars must not pass for tile sidecars
    proc = run_cli("build", "--input", str(build[0]), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "is a satsft output (it has build_report.json)" in proc.stderr, proc.stderr
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(tmp_path / "o"), "--bogus", check=False)
    assert proc.returncode == 2 and "--bogus" in proc.stderr
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(tmp_path / "o"), "--rows-per-shard",
                   str(1 << 70), check=False)  # it built, then failed writing the report with a traceback
    assert proc.returncode == 2 and f"--rows-per-shard {1 << 70} is too large" in proc.stderr, proc.stderr
    # words no flag takes: Beam passed over them, so the second task built nothing and the paths were not read
    for command, word in ((("build", "--input", str(sample_tree), "--output", str(tmp_path / "o"), "--tasks",
                            "caption", "grounding_all"), "'grounding_all'"),
                          (("build", str(sample_tree), str(tmp_path / "o")), "--input TREE --output OUT"),
                          (("mix", "--source", f"name=a,path={build[0]}", "--output", str(tmp_path / "o"), "extra"),
                           "'extra'")):
        proc = run_cli(*command, check=False)
        assert proc.returncode == 2 and "unexpected argument(s)" in proc.stderr and word in proc.stderr, proc.stderr
    for command in (("build", "--input", str(sample_tree), "--output", "gs://"), ("validate", "gs:///x")):
        proc = run_cli(*command, check=False, cwd=tmp_path)  # `gs://` was built into the local folder `gs:`
        assert proc.returncode == 2 and "names no bucket: write gs://BUCKET/FOLDER" in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("gs*"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(tmp_path / "full"), check=False)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    for command in (("build", "--input", str(sample_tree)), ("sample", "--tiles", "1"),
                    ("build", "--update", "--input", str(sample_tree))):  # each was a traceback
        proc = run_cli(*command, "--output", str(tmp_path / "full" / "x"), check=False)
        assert proc.returncode == 2 and "is a file, not a folder; pick a folder" in proc.stderr, proc.stderr
    proc = run_cli("build", "--update", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "new"),
                   check=False)
    assert proc.returncode == 2 and "no metadata/ folder" in proc.stderr, proc.stderr
    assert not (tmp_path / "new").exists() and not (tmp_path / "o").exists(), "a usage error leaves no folder"
    clone = tmp_path / "clone"  # a Hub repository cloned without Git LFS: every data/*.jsonl is a pointer
    shutil.copytree(sample_tree / "metadata", clone / "metadata")
    for f in sorted((sample_tree / "data").glob("*.jsonl")):
        (clone / "data").mkdir(exist_ok=True)
        (clone / "data" / f.name).write_bytes(lfs_pointer(f.read_bytes()))
    proc = run_cli("build", "--input", str(clone), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "every data/*.jsonl (3 files) is a Git LFS pointer" in proc.stderr, proc.stderr
    assert "git lfs pull" in proc.stderr and not (tmp_path / "o").exists()


def test_selected_tasks_profiles_and_drop_policy(sample_tree, tmp_path):
    out = tmp_path / "sel"
    run_cli("build", "--input", str(sample_tree), "--output", str(out), "--tasks", "production_analysis,caption",
            "--profiles", "vessel_monitoring", "--leakage", "drop", "--tim-shift", "fixed", "--redact-location")
    rows = _rows(out)
    assert {r["metadata"]["task"] for r in rows} == {"production_analysis", "caption"}
    assert {r["metadata"]["analysis_profile"] for r in rows} == {"", "oceanscout_ship_detection"}
    assert all('"Coordinates"' not in r["messages"][-2]["content"][-1]["text"] for r in rows)
    report = json.loads((out / "build_report.json").read_text())
    assert report["tiles"]["accounted"]
    assert report["rejects_by_reason"].get("split_leakage", 0) > 0
