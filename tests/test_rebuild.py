"""--previous: a tree that grows keeps every tile and base in the split an earlier build gave it; new bases
are placed as a first build would; the report's rebuild section says what happened."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.sample.tree import write_sample_tree
from tests.conftest import held_out_tile_over_a_train_tile
from transforms import generate
from transforms.output.split_files import earlier_shard_counts, split_shard_count
from transforms.paths import base_poi_id
from transforms.splits.plan import previous_split


def _splits(out: Path) -> dict[str, str]:
    return {json.loads(line)["metadata"]["tile_stem"]: json.loads(line)["metadata"]["split"]
            for f in (out / "data").glob("*.jsonl") for line in f.read_text().splitlines()}


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """A 120-tile tree and the same tree grown to 140 tiles (same seed: the first 120 tiles are identical),
    the small one built."""
    base = tmp_path_factory.mktemp("rebuild")
    write_sample_tree(str(base / "small"), 120, seed=3, workers=1)
    write_sample_tree(str(base / "big"), 140, seed=3, workers=1)
    assert main(["build", "--input", str(base / "small"), "--output", str(base / "first"), "--quiet",
                 "--formats", "jsonl,parquet", "--tasks", "caption"]) == 0
    return base


def test_previous_split_of_a_base():
    assert previous_split([]) is None
    assert previous_split(["validation", "validation"]) == "validation"
    assert previous_split(["test", "train", "train"]) == "train"


def test_a_grown_tree_keeps_every_split(grown):
    first = _splits(grown / "first")
    assert main(["build", "--input", str(grown / "big"), "--output", str(grown / "fresh"), "--quiet",
                 "--tasks", "caption"]) == 0
    fresh = _splits(grown / "fresh")
    assert sum(first[s] != fresh[s] for s in first) > 0  # the defect --previous removes: splits move
    assert main(["build", "--input", str(grown / "big"), "--output", str(grown / "again"), "--quiet",
                 "--tasks", "caption", "--previous", str(grown / "first")]) == 0
    again = _splits(grown / "again")
    assert {s: again[s] for s in first} == first
    bases = {base_poi_id(s): sp for s, sp in first.items()}
    assert all(again[s] == bases[base_poi_id(s)] for s in again if base_poi_id(s) in bases)  # new tile, known base
    report = json.loads((grown / "again" / "build_report.json").read_text())
    assert report["rebuild"]["tiles_kept"] == len(first) and report["rebuild"]["tiles_moved_split"] == 0
    assert report["rebuild"]["tiles_new"] == len(again) - len(first) and report["rebuild"]["tiles_removed"] == 0
    assert report["config"]["previous"] == "first"


def test_a_shrunk_tree_counts_removed_tiles(grown):
    assert main(["build", "--input", str(grown / "big"), "--output", str(grown / "big_first"), "--quiet",
                 "--tasks", "caption"]) == 0
    assert main(["build", "--input", str(grown / "small"), "--output", str(grown / "shrunk"), "--quiet",
                 "--tasks", "caption", "--previous", str(grown / "big_first")]) == 0
    report = json.loads((grown / "shrunk" / "build_report.json").read_text())
    big, small = _splits(grown / "big_first"), _splits(grown / "shrunk")
    assert report["rebuild"]["tiles_removed"] == len(big) - len(small) > 0
    assert {s: big[s] for s in small} == small


@pytest.mark.parametrize(("previous", "message"), [("missing", "not a finished satsft build"),
                                                   ("out", "another folder than --output")])
def test_previous_must_be_another_finished_build(grown, tmp_path, previous, message, capsys):
    argv = ["build", "--input", str(grown / "big"), "--output", str(tmp_path / "out"), "--previous",
            str(tmp_path / previous)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def _shards(out: Path) -> dict[str, int]:
    return earlier_shard_counts(p.name for p in (out / "data").glob("*.jsonl"))


def test_a_grown_split_keeps_its_shard_count_and_reuse_changes_no_byte(grown):
    """A split whose rows grow past a shard boundary keeps the earlier build's shard count while its shards stay
    within a quarter over --rows-per-shard (a clean build of the same tree has one more), with and without
    reuse, to the byte."""
    per = ["--rows-per-shard", "25", "--quiet", "--tasks", "caption"]
    assert main(["build", "--input", str(grown / "small"), "--output", str(grown / "first25"), *per]) == 0
    for name, extra in (("fresh25", []), ("again25", ["--previous", str(grown / "first25")]),
                        ("noreuse25", ["--previous", str(grown / "first25"), "--no-reuse"])):
        assert main(["build", "--input", str(grown / "big"), "--output", str(grown / name), *per, *extra]) == 0
    before, fresh, again = _shards(grown / "first25"), _shards(grown / "fresh25"), _shards(grown / "again25")
    rows = {split: sum(len(p.read_text().splitlines()) for p in (grown / "again25" / "data").glob(f"{split}*"))
            for split in again}
    assert any(fresh[s] != before[s] for s in before), "the tree must cross a shard boundary for this test"
    for split, n in again.items():
        kept = before.get(split, 0) and rows[split] <= before[split] * 25 * 5 // 4
        assert n == (before[split] if kept else fresh[split]), split
    assert again != fresh
    for folder in ("data", "parquet"):
        assert {p.name: p.read_bytes() for p in (grown / "again25" / folder).iterdir()} == \
            {p.name: p.read_bytes() for p in (grown / "noreuse25" / folder).iterdir()}


def test_split_shard_count_keeps_the_earlier_count_near_the_target():
    assert earlier_shard_counts(["data/train-00002-of-00012.jsonl", "parquet/test.parquet",
                                 "parquet/sub/validation-00000-of-00003.parquet"]) == {
        "train": 12, "test": 1, "validation": 3}
    counts = {"train": 240_001, "test": 10, "validation": 0}
    assert split_shard_count(counts, "train", 20_000) == 13  # a first build
    assert split_shard_count(counts, "train", 20_000, {"train": 12}) == 12  # within a quarter over
    assert split_shard_count({"train": 300_001}, "train", 20_000, {"train": 12}) == 16  # too full: counted again
    assert split_shard_count({"train": 110_001}, "train", 20_000, {"train": 12}) == 12  # over half full
    assert split_shard_count({"train": 110_000}, "train", 20_000, {"train": 12}) == 6  # too empty
    assert split_shard_count(counts, "test", 20_000, {"test": 3}) == 1  # far under half full: counted again


def test_a_build_that_knew_chips_by_sha256_is_rebuilt_as_unchanged(grown, monkeypatch):
    """Builds before 2026-12-04 put each chip's SHA-256 into its tile's fingerprint, where builds now put its
    PNG chunk digest: a rebuild over such a build still finds its unchanged tiles unchanged (no tile redrawn,
    no path moved), and writes what a rebuild over a current build writes."""
    flags = ["--quiet", "--formats", "jsonl,parquet", "--tasks", "caption"]
    with monkeypatch.context() as m:
        m.setattr(generate, "png_digest", lambda data: hashlib.sha256(data).hexdigest())
        assert main(["build", "--input", str(grown / "small"), "--output", str(grown / "sha_first"), *flags]) == 0
    old = (grown / "sha_first" / "metadata" / "manifest" / "tiles-b00000.jsonl").read_bytes()
    assert old != (grown / "first" / "metadata" / "manifest" / "tiles-b00000.jsonl").read_bytes()
    for first, out in (("sha_first", "from_sha"), ("first", "from_now")):
        assert main(["build", "--input", str(grown / "big"), "--output", str(grown / out), *flags,
                     "--previous", str(grown / first)]) == 0
    rebuild, now = (json.loads((grown / out / "build_report.json").read_text())["rebuild"]
                    for out in ("from_sha", "from_now"))
    assert rebuild.get("tiles_changed", 0) == 0 and rebuild["tiles_unchanged"] == rebuild["tiles_kept"] > 0
    assert rebuild == now
    for folder in ("data", "parquet", "metadata/manifest"):
        assert {p.name: p.read_bytes() for p in (grown / "from_sha" / folder).iterdir() if p.is_file()} == \
            {p.name: p.read_bytes() for p in (grown / "from_now" / folder).iterdir() if p.is_file()}, folder


def test_tiles_of_two_splits_on_the_same_ground_are_counted(tmp_path):
    """A test tile cut half over a train tile (overlapping windows) is found by its footprint, whatever its POI
    id, and still after an --update that took every tile's rows from the earlier build; a tile whose sidecar
    says nothing of where it lies is counted as not checked. metadata/shared_ground.jsonl lists the test tile,
    `satsft eval` scores the other test rows apart, an update with --shared-ground drop keeps both (it rejects
    new tiles only) and names a fresh build as the remedy, and an update that moves the tile away removes the
    list."""
    from scoring.evaluate import evaluate
    from tests.conftest import preview_cards, run_cli

    tree, out = tmp_path / "tree", tmp_path / "out"
    sidecars, train, test = held_out_tile_over_a_train_tile(tree)
    x0, y0, x1, y1 = sidecars[train]["bbox_wgs84"]
    unplaced = next(p for p, s in sidecars.items() if p not in (train, test))
    for field in ("bbox_wgs84", "grid"):
        sidecars[unplaced].pop(field)
    unplaced.write_text(json.dumps(sidecars[unplaced]))
    argv = ("build", "--input", str(tree), "--output", str(out), "--tasks", "caption")
    said = run_cli(*argv).stdout
    assert "WARNING: 1 held-out tile(s) (test 1) show ground that a tile of another split shows too" in said, said
    assert "NOTE: 1 tile(s) say nothing of where they lie, so they were not checked" in said
    assert "their sidecars give neither a usable bbox_wgs84 nor latitude, longitude and grid.resolution_m" in said
    first = json.loads((out / "build_report.json").read_text())["splits"]["shared_ground"]
    assert first == {"pairs": {"train|validation": 0, "train|test": 1, "validation|test": 0},
                     "tiles": {"train": 1, "validation": 0, "test": 1}, "tiles_without_footprint": 1,
                     "examples": [{"tile": train.stem, "split": "train", "other_tile": test.stem,
                                   "other_split": "test", "share": 0.5}]}
    listed = (out / "metadata" / "shared_ground.jsonl").read_text()
    assert listed == json.dumps({"other_split_tiles": 1, "split": "test", "stem": test.stem},
                                separators=(",", ":")) + "\n", "held-out tiles only"
    # eval scores the test rows on ground no other split shows apart as well
    scored = evaluate(str(out), "test", baseline="majority")
    test_rows = scored["tasks"]["caption"]["n"]
    assert scored["shared_ground"] == {"tiles": 1, "rows": 1, "counted_in": "build_report.json",
                                       "tiles_not_checked": 1}
    assert scored["tasks"]["caption"]["unseen_ground"]["n"] == test_rows - 1 > 0
    assert "shared_ground" not in evaluate(str(out), "train", baseline="majority"), "the list names held-out tiles"
    # the preview marks the rows of that tile, and only those
    cards = preview_cards(out, "--tasks", "caption")
    assert {c["metadata"]["tile_stem"] for c in cards if c["shared_ground"]} == {test.stem}
    assert any(c["split"] == "train" for c in cards) and all(c["split"] == "test" for c in cards if c["shared_ground"])
    # a damaged list: validate names it, eval says so in one line instead of scoring without it
    listed_file = out / "metadata" / "shared_ground.jsonl"
    listed_file.write_text(listed[:-10] + "\n")
    said = run_cli("validate", str(out), check=False).stdout
    assert "metadata/shared_ground.jsonl does not parse" in said, said
    proc = run_cli("eval", str(out), "--baseline", "majority", "--split", "test", check=False)
    assert proc.returncode != 0 and "shared_ground.jsonl does not parse" in proc.stderr, proc.stderr
    listed_file.write_text(listed)
    # an update with --shared-ground drop keeps both tiles, which an earlier build placed, and says what would not
    said = run_cli(*argv, "--update", "--shared-ground", "drop").stdout
    assert "This rebuild keeps every tile an earlier build placed in its split, and --shared-ground drop" in said
    assert "build afresh (without --previous or --update)" in said, said
    assert f"removed preview/, which showed the build before this update: run `satsft preview {out}`" in said
    assert not (out / "preview").exists()
    # the same update again (unchanged input and options) writes the same report: a page made since stays
    preview_cards(out, "--tasks", "caption")
    said = run_cli(*argv, "--update", "--shared-ground", "drop").stdout
    assert "removed preview/" not in said and (out / "preview" / "index.html").is_file()
    report = json.loads((out / "build_report.json").read_text())
    assert report["rebuild"]["rows_reused"] > 0 and report["rebuild"]["tiles_unchanged"] == 24
    assert report["splits"]["shared_ground"] == first
    assert (out / "metadata" / "shared_ground.jsonl").read_text() == listed
    # the test tile moved off the train tile's ground: the update removes the list, eval scores all rows alike
    sidecars[test]["bbox_wgs84"] = [x0 + 2 * (x1 - x0), y0, x1 + 2 * (x1 - x0), y1]
    test.write_text(json.dumps(sidecars[test]))
    run_cli(*argv, "--update")
    assert not (out / "metadata" / "shared_ground.jsonl").exists()
    assert json.loads((out / "build_report.json").read_text())["splits"]["shared_ground"]["tiles"]["test"] == 0
    scored = evaluate(str(out), "test", baseline="majority")
    assert scored["shared_ground"] == {"tiles": 0, "rows": 0, "counted_in": "build_report.json",
                                       "tiles_not_checked": 1} and "unseen_ground" not in scored["tasks"]["caption"]


def test_tiles_on_two_sides_of_the_antimeridian_are_compared(tmp_path):
    """The train tile cut across the antimeridian (its bbox_wgs84 west > east, as GeoJSON writes it) and the
    test tile half over it on the line's other side: the build finds the pair (such a chip went unchecked
    before), the manifest keeps the footprint as GeoJSON's box, a mix of the build finds the pair again from
    it, and --shared-ground drop takes the train tile."""
    from tests.conftest import run_cli

    tree, out = tmp_path / "tree", tmp_path / "out"
    sidecars, train, test = held_out_tile_over_a_train_tile(tree)
    x0, y0, x1, y1 = sidecars[train]["bbox_wgs84"]
    width = x1 - x0
    sidecars[train]["bbox_wgs84"] = [180 - width / 2, y0, -180 + width / 2, y1]
    sidecars[test]["bbox_wgs84"] = [-180.0, y0, -180 + width, y1]
    for path in (train, test):
        path.write_text(json.dumps(sidecars[path]))
    argv = ("build", "--input", str(tree), "--output", str(out), "--tasks", "caption")
    run_cli(*argv)
    shared = json.loads((out / "build_report.json").read_text())["splits"]["shared_ground"]
    assert shared["pairs"]["train|test"] == 1 and shared["tiles_without_footprint"] == 0, shared
    assert shared["examples"][0]["share"] == 0.5
    assert run_cli("validate", str(out)).stdout.startswith("OK:")
    run_cli("mix", "--source", f"name=s,path={out}", "--output", str(tmp_path / "mix"), "--quiet")
    mixed = json.loads((tmp_path / "mix" / "mix_report.json").read_text())["shared_ground"]
    assert mixed["pairs"]["train|test"] == 1 and mixed["tiles_without_footprint"] == 0, mixed
    listed = [json.loads(line) for f in sorted((tmp_path / "mix" / "metadata" / "footprints").iterdir())
              for line in f.read_text().splitlines()]
    across = next(r["footprint"] for r in listed if r["stem"] == train.stem)
    assert across[0] > across[2], "written as GeoJSON writes a box across the line"
    assert run_cli("validate", str(tmp_path / "mix")).stdout.startswith("OK:")
    run_cli("build", "--input", str(tree), "--output", str(tmp_path / "dropped"), "--tasks", "caption",
            "--shared-ground", "drop")
    rejects = [json.loads(line) for p in (tmp_path / "dropped" / "rejects").rglob("*.jsonl")
               for line in p.read_text().splitlines()]
    assert [r["tile_stem"] for r in rejects if r["reason"] == "split_shared_ground"] == [train.stem]


def test_split_unit_ground_keeps_shared_ground_in_one_split(tmp_path, capsys):
    """--split-unit ground: the train place and the test place whose tiles overlap go whole to one split, so no
    tile of one split shares ground with another's; the card says how many bases were joined. With
    --leakage drop the joined places are rejected, with a reason that names both."""
    tree = tmp_path / "tree"
    sidecars, train, test = held_out_tile_over_a_train_tile(tree)
    joined = {base_poi_id(train.stem), base_poi_id(test.stem)}
    flags = ["--quiet", "--tasks", "caption", "--split-unit", "ground"]
    assert main(["build", "--input", str(tree), "--output", str(tmp_path / "out"), *flags]) == 0
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    shared = report["splits"]["shared_ground"]
    assert sum(shared["pairs"].values()) == 0 and sum(shared["tiles"].values()) == 0
    assert not (tmp_path / "out" / "metadata" / "shared_ground.jsonl").exists()
    splits = _splits(tmp_path / "out")
    assert len({splits[p.stem] for p in sidecars if base_poi_id(p.stem) in joined}) == 1
    assert len(splits) == 24, "no tile lost"
    outputs = report["outputs"]
    assert (outputs["ground_groups"], outputs["bases_joined_by_ground"], outputs["ground_largest_group_bases"]) == \
        (1, 2, 2)
    assert outputs["split_reassigned"] > 0 and report["config"]["split_unit"] == "ground"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "2 base POIs were joined into 1 group(s)" in card and "--split-unit ground" in card
    # Without it the same tree leaks, as test_tiles_of_two_splits_on_the_same_ground_are_counted shows.
    assert main(["build", "--input", str(tree), "--output", str(tmp_path / "drop"), *flags, "--leakage", "drop"]) == 0
    rejects = [json.loads(line) for f in (tmp_path / "drop" / "rejects").glob("*.jsonl")
               for line in f.read_text().splitlines()]
    named = [r for r in rejects if base_poi_id(r["tile_stem"]) in joined]
    assert named and all(r["reason"] == "split_leakage" for r in named)
    assert len(named) == sum(1 for p in sidecars if base_poi_id(p.stem) in joined), "every tile of both places"
    assert f"bases {', '.join(sorted(joined))} (2, on shared ground) span splits test,train" in named[0]["detail"]
    capsys.readouterr()


def _new_place_over_a_held_out_tile(grown: Path, tmp_path: Path, first: dict[str, str]
                                    ) -> tuple[Path, dict[Path, dict], Path, Path]:
    """A copy of the grown tree in which a tile of a new place wholly in train (no reassignment moves it) is cut
    half over a tile the first build holds out: (tree, sidecars by path, the held-out tile, the new tile)."""
    tree = tmp_path / "big"
    shutil.copytree(grown / "big", tree)
    sidecars = {p: json.loads(p.read_text()) for p in sorted((tree / "metadata").rglob("*.json"))}
    declared: dict[str, set[str]] = {}
    for p, sidecar in sidecars.items():
        declared.setdefault(base_poi_id(p.stem), set()).add(sidecar.get("split"))
    known = {base_poi_id(stem) for stem in first}
    held = next(p for p in sidecars if first.get(p.stem) in ("validation", "test"))
    new = next(p for p in sidecars if base_poi_id(p.stem) not in known and declared[base_poi_id(p.stem)] == {"train"})
    x0, y0, x1, y1 = sidecars[held]["bbox_wgs84"]
    sidecars[new]["bbox_wgs84"] = [x0 + (x1 - x0) / 2, y0, x1 + (x1 - x0) / 2, y1]
    new.write_text(json.dumps(sidecars[new]))
    return tree, sidecars, held, new


def test_split_unit_ground_in_a_rebuild_keeps_every_split(grown, tmp_path):
    """A rebuild keeps every split the earlier build gave, whatever ground the tiles share; a new place whose tile
    lies half over a known held-out tile joins that tile's split, where a first build would place it alone."""
    first = _splits(grown / "first")
    tree, sidecars, held, new = _new_place_over_a_held_out_tile(grown, tmp_path, first)
    assert main(["build", "--input", str(tree), "--output", str(tmp_path / "again"), "--quiet", "--tasks", "caption",
                 "--split-unit", "ground", "--previous", str(grown / "first")]) == 0
    again = _splits(tmp_path / "again")
    assert {s: again[s] for s in first} == first
    assert {again[p.stem] for p in sidecars if base_poi_id(p.stem) == base_poi_id(new.stem)} == {first[held.stem]}
    report = json.loads((tmp_path / "again" / "build_report.json").read_text())
    assert report["rebuild"]["tiles_moved_split"] == 0 and report["rebuild"]["tiles_kept"] == len(first)
    assert report["rebuild"]["tiles_unchanged"] == len(first), "the unit changes no kept tile: none drawn again"
    assert sum(report["splits"]["shared_ground"]["tiles"].values()) == 0


def test_shared_ground_drop_keeps_the_held_out_ground_apart(grown, tmp_path):
    """--shared-ground drop: of the test tile cut half over a train tile, the train tile is rejected
    (split_shared_ground, naming the test tile) and nothing else; in a rebuild a new place's tile cut half over
    a kept held-out tile is the one that goes, and every kept tile stays where it was."""
    tree = tmp_path / "tree"
    sidecars, train, test = held_out_tile_over_a_train_tile(tree)
    assert main(["build", "--input", str(tree), "--output", str(tmp_path / "out"), "--quiet", "--tasks", "caption",
                 "--shared-ground", "drop"]) == 0
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["rejects_by_reason"] == {"split_shared_ground": 1} and report["tiles"]["accounted"]
    assert sum(report["splits"]["shared_ground"]["tiles"].values()) == 0
    (rejected,) = [json.loads(line) for f in (tmp_path / "out" / "rejects").glob("*.jsonl")
                   for line in f.read_text().splitlines()]
    assert rejected["tile_stem"] == train.stem
    assert rejected["detail"] == f"train tile sharing ground with test tile {test.stem} (--shared-ground drop)"
    assert "With `--shared-ground drop` 1 new tile(s)" in (tmp_path / "out" / "README.md").read_text()
    # a rebuild: the kept held-out tile stays, the new tile over it goes
    first = _splits(grown / "first")
    big, _, _, new = _new_place_over_a_held_out_tile(grown, tmp_path, first)
    assert main(["build", "--input", str(big), "--output", str(tmp_path / "again"), "--quiet", "--tasks", "caption",
                 "--shared-ground", "drop", "--previous", str(grown / "first")]) == 0
    again = _splits(tmp_path / "again")
    assert {s: again[s] for s in first} == first and new.stem not in again
    report = json.loads((tmp_path / "again" / "build_report.json").read_text())
    assert report["rejects_by_reason"] == {"split_shared_ground": 1}
    assert report["rebuild"]["tiles_unchanged"] == len(first) and report["rebuild"]["tiles_moved_split"] == 0
