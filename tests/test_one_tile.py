"""A hand-written one-tile tree (two regions, one still, fractions summing to 0.8), asserted field by field."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from PIL import Image

from tests.conftest import run_cli
from transforms.analysis.render import class_shares

STEM = "poi_000042_g002_t0001"
SIDECAR = {
    "tile_stem": STEM, "poi_id": "poi_000042_g002", "split": "Validation", "output_size": 224,
    "caption": "A reservoir beside a small town.",
    "class_fractions": {"0": 0.4, "6": 0.2, "2": 0.2},  # sums to 0.8: shares are normalised to 0.5/0.25/0.25
    "regions": [{"bbox": [0, 0, 111, 89], "label": "water", "class_id": 0, "area_px": 9000},
                {"bbox": [150, 150, 199, 179], "label": "built", "class_id": 6, "area_px": 1200}],
    "latitude": -12.5, "longitude": 130.75, "stac_item_id": "S2B_X", "stac_datetime": "2022-06-01T01:02:03Z",
    "eo_cloud_cover": 3.5, "grid": {"crs": "EPSG:32752"},
}


def _write_tree(root: Path, sidecar: dict) -> None:
    (root / "metadata/s00000").mkdir(parents=True)
    (root / "metadata/s00000" / f"{STEM}.json").write_bytes(orjson.dumps(sidecar))
    (root / "images/s00000").mkdir(parents=True)
    Image.new("RGB", (224, 224), (30, 60, 90)).save(root / "images/s00000" / f"{STEM}.png")
    (root / "mapbox_stills/s00000").mkdir(parents=True)
    Image.new("RGB", (64, 64), (90, 90, 90)).save(root / "mapbox_stills/s00000/poi_000042_g002.png")
    (root / "data").mkdir()
    line = {"messages": [{"role": "user", "content": [
        {"type": "image", "image": f"images/s00000/{STEM}.png"},
        {"type": "image", "image": "mapbox_stills/s00000/poi_000042_g002.png"}, {"type": "text", "text": "?"}]}]}
    (root / "data/validation.jsonl").write_bytes(orjson.dumps(line) + b"\n")


@pytest.fixture(scope="module")
def one_tile(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("one") / "tree"
    _write_tree(root, SIDECAR)
    out = root.parent / "out"
    (root.parent / "tmp").mkdir()
    run_cli("build", "--input", str(root), "--output", str(out), env={"TMPDIR": str(root.parent / "tmp")})
    return out


def test_build_leaves_no_temporary_files(one_tile):
    """A scheduled build on a long-lived machine must not fill its temporary folder (Beam makes one per Pipeline
    and removes it only in run(); staging for a remote runner makes more)."""
    assert list((one_tile.parent / "tmp").iterdir()) == []


def _rows(out: Path) -> dict[str, dict]:
    rows = [json.loads(x) for x in (out / "data/validation.jsonl").read_text().splitlines()]
    assert not (out / "data/train.jsonl").exists() and not (out / "data/test.jsonl").exists()
    return {r["metadata"]["sample_id"]: r for r in rows}


def test_expected_sample_ids(one_tile):
    rows = _rows(one_tile)
    asked = [s for s in rows if "__absence_" in s]
    present = [s for s in asked if rows[s]["messages"][-1]["content"][0]["text"].startswith("Yes")]
    absent = [s for s in asked if s not in present]
    assert len(absent) == 1 and len(present) == 1, asked
    assert present[0].rsplit("_", 1)[-1] in ("water", "built")
    assert set(rows) == {f"{STEM}__caption", f"{STEM}__ground_all", f"{STEM}__ground_water", f"{STEM}__ground_built",
                         f"{STEM}__focus_water", f"{STEM}__focus_built", f"{STEM}__cross_view", *asked,
                         *(f"{STEM}__analysis_{p}" for p in ("brief_only", "land_use_change", "wildfire",
                                                             "flood_pulse", "oceanscout_ship_detection"))}
    assert absent[0].rsplit("_", 1)[-1] not in ("water", "built", "grass")


def test_caption_row_field_by_field(one_tile):
    row = _rows(one_tile)[f"{STEM}__caption"]
    assert row["messages"][0]["role"] == "user"
    assert row["messages"][0]["content"][0] == {"type": "image", "image": f"images/s00000/{STEM}.png"}
    assert row["messages"][1] == {"role": "assistant", "content": [{"type": "text",
                                                                    "text": "A reservoir beside a small town."}]}
    assert row["metadata"] == {"sample_id": f"{STEM}__caption", "task": "caption", "analysis_profile": "",
                               "tile_stem": STEM, "split": "validation",
                               "image_paths": [f"images/s00000/{STEM}.png"], "analysis_image_path": ""}


def test_grounding_rows_field_by_field(one_tile):
    rows = _rows(one_tile)
    water = [0.0, 0.0, 0.5, round(90 / 224, 4)]
    built = [round(150 / 224, 4), round(150 / 224, 4), round(200 / 224, 4), round(180 / 224, 4)]
    assert json.loads(rows[f"{STEM}__ground_all"]["messages"][-1]["content"][0]["text"]) == [
        {"label": "water", "bbox": water}, {"label": "built", "bbox": built}]
    assert json.loads(rows[f"{STEM}__ground_built"]["messages"][-1]["content"][0]["text"]) == [
        {"label": "built", "bbox": built}]


def test_focus_and_cross_view_use_normalised_shares(one_tile):
    rows = _rows(one_tile)
    assert "50.0%" in rows[f"{STEM}__focus_water"]["messages"][-1]["content"][0]["text"]
    assert "25.0%" in rows[f"{STEM}__focus_built"]["messages"][-1]["content"][0]["text"]
    cv = rows[f"{STEM}__cross_view"]
    assert cv["metadata"]["image_paths"] == ["mapbox_stills/s00000/poi_000042_g002.png", f"images/s00000/{STEM}.png"]
    assert "water (50.0%)" in cv["messages"][-1]["content"][0]["text"]


def test_production_rows_and_sidecars(one_tile):
    rows = _rows(one_tile)
    row = rows[f"{STEM}__analysis_flood_pulse"]
    md = row["metadata"]
    assert md["analysis_image_path"] == f"analysis_images/s00000/{STEM}__analysis_flood_pulse.png"
    assert md["image_paths"] == [f"images/s00000/{STEM}.png", "mapbox_stills/s00000/poi_000042_g002.png",
                                 md["analysis_image_path"]]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    text = row["messages"][1]["content"][-1]["text"]
    payload = json.loads(text[text.index("{"): text.rindex("}") + 1])
    block = payload["profile_analytics"]["water_change"]
    assert block["signal_class"] == "water" and block["sentinel_fraction"] == 0.5
    assert payload["tim_modality_outputs"]["Coordinates"] == {"kind": "coordinates_wgs84", "latitude": -12.5,
                                                              "longitude": 130.75, "confidence": 0.9}
    answer = row["messages"][-1]["content"][0]["text"]
    word = {"increase": "increase", "decrease": "decrease", "no_change": "no change"}[block["direction"]]
    assert word in answer.lower() and "50.0%" in answer
    shares = class_shares((one_tile / md["analysis_image_path"]).read_bytes())
    predicted = payload["tim_modality_outputs"]["LULC"]["class_fractions"]
    for name, cid in (("water", 0), ("built", 6), ("grass", 2)):
        assert abs(shares.get(cid, 0) - predicted.get(name, 0)) <= 0.005
    sidecar = json.loads((one_tile / "metadata/sft_metadata_rows/s00000" / f"{STEM}__analysis_flood_pulse.json")
                         .read_text())
    assert sidecar["sentinel_sidecar"]["class_fractions"] == {"water": 0.5, "grass": 0.25, "built": 0.25}
    assert sidecar["sentinel_sidecar"]["dominant_classes"] == ["water", "grass", "built"]
    assert sidecar["sentinel_sidecar"]["grid"] == {"crs": "EPSG:32752"}
    assert sidecar["analysis_image_spec"]["seed"] == f"{STEM}|flood_pulse"
    report = json.loads((one_tile / "build_report.json").read_text())
    assert report["tiles"] == {"in": 1, "with_rows": 1, "rejected": 0, "by_split": {"validation": 1},
                               "accounted": True}


def test_boxes_in_cocos_order_are_named_and_none_is_kept(tmp_path):
    """A producer writing [x, y, width, height] (COCO's order): the boxes on the right read as inverted corners
    and were rejected, those near the top left kept as wrong boxes in the grounding rows. Every region of such a
    tile is now rejected as region_bbox_xywh, and the summary says how to convert them."""
    coco = [{**r, "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1]}
            for r in SIDECAR["regions"] for x1, y1, x2, y2 in [r["bbox"]]]
    assert coco[1]["bbox"] == [150, 150, 50, 30]
    _write_tree(tmp_path / "tree", {**SIDECAR, "regions": coco})
    proc = run_cli("build", "--input", str(tmp_path / "tree"), "--output", str(tmp_path / "out"))
    assert "WARNING: 2 region(s) were rejected (region_bbox_xywh)" in proc.stdout, proc.stdout
    rejects = [json.loads(x) for x in (tmp_path / "out/rejects/rejects-00000-of-00001.jsonl").read_text().splitlines()]
    assert [(r["reason"], r["detail"][:11]) for r in rejects] == [("region_bbox_xywh", "regions[0]:"),
                                                                   ("region_bbox_xywh", "regions[1]:")]
    tasks = {r["metadata"]["task"] for r in _rows(tmp_path / "out").values()}
    assert "caption" in tasks and not tasks & {"grounding_all", "grounding_per_class"}


def test_boxes_past_the_default_frame_without_output_size_are_named(tmp_path):
    """448 px chips whose sidecars give no output_size and boxes in the chip's pixels: read in the default 224 px
    frame, boxes past it were rejected as outside the chip and the others clipped to it, wrong in the grounding
    rows. Every region of such a tile is now rejected, and the summary says to write output_size; with it the
    same tile builds its grounding rows."""
    doubled = [{**r, "bbox": [2 * v + (i > 1) for i, v in enumerate(r["bbox"])], "area_px": 4 * r["area_px"]}
               for r in SIDECAR["regions"]]
    sidecar = {k: v for k, v in SIDECAR.items() if k != "output_size"} | {"regions": doubled}
    _write_tree(tmp_path / "tree", sidecar)
    Image.new("RGB", (448, 448), (30, 60, 90)).save(tmp_path / "tree/images/s00000" / f"{STEM}.png")
    proc = run_cli("build", "--input", str(tmp_path / "tree"), "--output", str(tmp_path / "out"))
    assert "WARNING: 2 region(s) were rejected (region_past_default_frame)" in proc.stdout, proc.stdout
    rejects = (tmp_path / "out/rejects/rejects-00000-of-00001.jsonl").read_text().splitlines()
    assert [json.loads(x)["reason"] for x in rejects] == ["region_past_default_frame"] * 2
    assert "runs to 399 px" in rejects[1] or "run to 399 px" in rejects[1]
    assert not {r["metadata"]["task"] for r in _rows(tmp_path / "out").values()} & {"grounding_all"}
    (tmp_path / "tree/metadata/s00000" / f"{STEM}.json").write_bytes(orjson.dumps(sidecar | {"output_size": 448}))
    run_cli("build", "--input", str(tmp_path / "tree"), "--output", str(tmp_path / "out"), "--overwrite")
    grounding = [r for r in _rows(tmp_path / "out").values() if r["metadata"]["task"] == "grounding_all"]
    assert len(grounding) == 1 and not (tmp_path / "out/rejects/rejects-00000-of-00001.jsonl").read_text()


def test_chat_files_in_sub_folders_of_data_are_named(tmp_path):
    """A tree whose chat rows are partly in data/<split>/part-00000.jsonl (as Spark and Beam write them) beside a
    data/*.jsonl: the rows below data/ itself are not read, and those tiles were stem_not_in_jsonl rejects with
    nothing said about the files. The summary and the report now count them."""
    tree = tmp_path / "tree"
    _write_tree(tree, SIDECAR)
    (tree / "data/validation").mkdir()
    (tree / "data/validation.jsonl").rename(tree / "data/validation/part-00000.jsonl")
    (tree / "data/.ipynb_checkpoints").mkdir()
    (tree / "data/.ipynb_checkpoints/train-checkpoint.jsonl").write_text("")
    (tree / "data/train.jsonl").write_text("")
    proc = run_cli("build", "--input", str(tree), "--output", str(tmp_path / "out"))
    assert ("WARNING: 1 chat file(s) in sub-folders of data/ were not read (only data/*.jsonl and data/*.json are), "
            "and 1 tile(s) have no chip reference (stem_not_in_jsonl)") in proc.stdout, proc.stdout
    outputs = json.loads((tmp_path / "out/build_report.json").read_text())["outputs"]
    assert outputs["chat_files_in_subfolders_not_read"] == 1 and outputs["hidden_files_skipped"] == 1


def test_stems_apart_in_case_only_are_named_by_validate(tmp_path):
    """Two tiles whose stems differ in case only build two sets of files, one set in a clone on macOS or
    Windows: validate says so in a note (the dataset itself is sound, so it still passes)."""
    tree = tmp_path / "tree"
    _write_tree(tree, SIDECAR)
    twin = STEM.upper()
    (tree / "metadata/s00000" / f"{twin}.json").write_bytes(orjson.dumps({**SIDECAR, "tile_stem": twin}))
    Image.new("RGB", (224, 224), (40, 60, 90)).save(tree / "images/s00000" / f"{twin}.png")
    line = {"messages": [{"role": "user", "content": [{"type": "image", "image": f"images/s00000/{twin}.png"},
                                                      {"type": "text", "text": "?"}]}]}
    with (tree / "data/validation.jsonl").open("ab") as f:
        f.write(orjson.dumps(line) + b"\n")
    run_cli("build", "--input", str(tree), "--output", str(tmp_path / "out"), "--quiet")
    proc = run_cli("validate", str(tmp_path / "out"))
    assert proc.stdout.startswith("OK:") and "file name(s) differ from another in case only (first: " in proc.stdout
    assert (f"{twin}__analysis_brief_only.png and analysis_images/s00000/{STEM}__analysis_brief_only.png"
            in proc.stdout), proc.stdout
    assert (tmp_path / "out/images/s00000" / f"{twin}.png").is_file()
    assert (tmp_path / "out/images/s00000" / f"{STEM}.png").is_file()


def test_tree_folders_in_another_case_are_named_and_references_read(tmp_path):
    """A tree made on a Mac or on Windows may hold Images/ while its JSONL names images/... (one folder there):
    every chip was chip_missing here, nothing said of the folder. The build now stops at once saying to rename
    it; references written Images/... read as images/... (they named nothing: stem_not_in_jsonl)."""
    tree = tmp_path / "tree"
    _write_tree(tree, SIDECAR)
    (tree / "images").rename(tree / "Images")
    proc = run_cli("build", "--input", str(tree), "--output", str(tmp_path / "out"), check=False)
    assert proc.returncode == 2 and "has Images/ where a sat-bbox tree has images/" in proc.stderr, proc.stderr
    assert "rename it images/" in proc.stderr and not (tmp_path / "out").exists()
    (tree / "Images").rename(tree / "images")
    jsonl = tree / "data/validation.jsonl"
    jsonl.write_text(jsonl.read_text().replace('"images/', '"Images/').replace('"mapbox_stills/', '"Mapbox_Stills/'))
    run_cli("build", "--input", str(tree), "--output", str(tmp_path / "out"))
    tasks = {r["metadata"]["task"] for r in _rows(tmp_path / "out").values()}
    assert {"caption", "grounding_all", "cross_view"} <= tasks


def test_a_jsonl_written_whole_reads_its_rows(tmp_path):
    """`json.dump(rows, f, indent=2)` into data/validation.jsonl: each of its lines was an invalid_jsonl_line
    reject and the tile stem_not_in_jsonl. The rows are read as the JSON the file holds, and counted; a first
    line cut short still leaves the file to be read a line at a time."""
    tree = tmp_path / "tree"
    _write_tree(tree, SIDECAR)
    jsonl = tree / "data/validation.jsonl"
    line = json.loads(jsonl.read_text())
    jsonl.write_text(json.dumps(line, indent=2) + "\n")
    proc = run_cli("build", "--input", str(tree), "--output", str(tmp_path / "out"))
    assert "note: 1 data/*.jsonl file(s) hold JSON written whole" in proc.stdout, proc.stdout
    assert json.loads((tmp_path / "out/build_report.json").read_text())["outputs"]["jsonl_files_read_whole"] == 1
    assert "caption" in {r["metadata"]["task"] for r in _rows(tmp_path / "out").values()}
    assert not (tmp_path / "out/rejects/rejects-00000-of-00001.jsonl").read_text()
    jsonl.write_text('{"messages": [{"role": "user",\n' + json.dumps(line) + "\n")
    run_cli("build", "--input", str(tree), "--output", str(tmp_path / "out"), "--overwrite")
    assert "caption" in {r["metadata"]["task"] for r in _rows(tmp_path / "out").values()}
    rejects = (tmp_path / "out/rejects/rejects-00000-of-00001.jsonl").read_text().splitlines()
    assert [json.loads(r)["reason"] for r in rejects] == ["invalid_jsonl_line"]
