"""Unit tests of the pure functions: paths, references, sidecars, splits and leakage, the gate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import random

import orjson
import pytest

from tests.conftest import make_sidecar
from transforms.gate import gate_problem
from transforms.input.refs import parse_line
from transforms.input.sidecars import Tile, parse_sidecar
from transforms.paths import base_poi_id, safe_name, shard_dir, still_lookup_keys, tree_relative, unsafe_reason
from transforms.rows import grounding_problem, normalise_box
from transforms.splits.plan import hashed_split, initial_split, resolve_leakage


def test_safe_name_and_shards():
    assert safe_name("poi_1 t/../x") == "poi_1_t_.._x"
    assert safe_name("..") == "__"
    assert len(safe_name("a" * 500)) == 200
    assert shard_dir(0, 50, 100) == "s00000" and shard_dir(49, 50, 100) == "s00000"
    assert shard_dir(50, 50, 100) == "s00001"
    assert shard_dir(50 * 50 - 1, 50, 50 * 50) == "s00049", "one level up to limit² files"
    assert shard_dir(50 * 50, 50, 50 * 50 + 1) == "s00001/s00000", "then a second level"
    assert shard_dir(50 * 50 - 1, 50, 50 * 50 + 1) == "s00000/s00049"
    assert shard_dir(15, 2, 16) == "s00001/s00001/s00001", "limit 2: three levels for 16 files"


@pytest.mark.parametrize("path,reason", [
    ("/etc/passwd", "absolute_path"), ("images/../../x.png", "parent_traversal"), ("C:/x.png", "drive_letter"),
    ("gs://b/x.png", "url_scheme"), ("images/a.png", None), ("", "empty_path")])
def test_unsafe_reason(path, reason):
    assert unsafe_reason(path) == reason


@pytest.mark.parametrize("path,inside", [
    ("/home/a/tree/images/s00000/x_t0000.png", "images/s00000/x_t0000.png"),
    ("/srv/images/tree/mapbox_stills/s00000/x.png", "mapbox_stills/s00000/x.png"),  # the last tree folder
    ("C:/data/tree/images/x.png", "images/x.png"), ("file:///data/tree/images/x.png", "images/x.png"),
    ("gs://bucket/tree/images/s1/x.png", "images/s1/x.png"), ("S3://b/t/images/x.png", "images/x.png"),
    ("https://example.com/images/x.png", None),  # a web image is not a file of the tree
    ("/etc/passwd", None), ("/data/images", None), ("images/x.png", None)])
def test_tree_relative_reads_an_absolute_reference_below_the_root(path, inside):
    assert tree_relative(path) == inside


@pytest.mark.parametrize("path,inside", [
    ("../images/s00000/x.png", "images/s00000/x.png"), ("../mapbox_stills/x.png", "mapbox_stills/x.png"),
    ("../data/../images/x.png", "images/x.png"), ("../../tree/images/x.png", None), ("../images/../../x", None),
    ("images/x.png", None), ("images/../x.png", None)])
def test_data_relative_reads_a_reference_made_from_the_jsonl_folder(path, inside):
    from transforms.paths import data_relative

    assert data_relative(path) == inside


def test_base_poi_and_still_keys():
    assert base_poi_id("poi_000099_g001_t0000") == "poi_000099"
    assert base_poi_id("tile_abc") == "tile_abc"
    assert still_lookup_keys("poi_000099_g001_t0000") == ["poi_000099_g001", "poi_000099"]
    assert still_lookup_keys("poi_000099_t12345") == ["poi_000099"]
    assert still_lookup_keys("other") == ["other"]


def test_parse_line_refs_order_and_rejects():
    line = orjson.dumps({"messages": [
        {"role": "system", "content": [{"type": "image", "image": "images/ignored.png"}]},
        {"role": "user", "content": [{"type": "image", "image": " images\\s00000\\a_t0000.png "},
                                     {"type": "image", "image": "mapbox_stills/s1/a.png"},
                                     {"type": "image", "image": "other/x.png"},
                                     {"type": "image", "image": "../../etc/passwd"},  # out of the tree
                                     {"type": "image", "image": "../images/s1/b_t0000.png"},  # from data/
                                     {"type": "text", "text": "hi"}]}]})
    refs, problems = parse_line(line, 1, 7)
    assert [(r.kind, r.stem, r.path) for r in refs] == [("chip", "a_t0000", "images/s00000/a_t0000.png"),
                                                        ("still", "a", "mapbox_stills/s1/a.png"),
                                                        ("other", "x", "other/x.png"),  # counted, not read
                                                        ("chip", "b_t0000", "images/s1/b_t0000.png")]
    assert [r.rebased for r in refs] == [False, False, False, True]
    assert refs[0].order == (1, 7, 1)
    assert [p.reason for p in problems] == ["unsafe_path:parent_traversal"]
    assert parse_line("{broken", 0, 1)[1][0].reason == "invalid_jsonl_line"
    assert parse_line("[1]", 0, 1)[1][0].reason == "jsonl_line_not_object"
    assert parse_line("", 0, 1) == ([], [])
    # A line that names no image reached nothing and was counted nowhere: its tile was only "not in the JSONL".
    for messages, said in (([{"role": "user", "content": "hi"}], "no user turn has an image"),
                           ([{"role": "assistant", "content": [{"type": "image", "image": "images/a.png"}]}],
                            "in a 'assistant' turn"),
                           ([{"role": "user", "content": "Describe the chip."}], "no user turn has an image")):
        refs, problems = parse_line(orjson.dumps({"messages": messages}), 0, 4)
        assert not refs and [(p.line_no, p.reason) for p in problems] == [(4, "jsonl_line_no_image")]
        assert said in problems[0].detail
    # a turn or a user turn's part that is not an object lost the image it held, the rest of the line still counts
    chip = {"type": "image", "image": "images/s0/a_t0000.png"}
    for messages, said in (([None, {"role": "user", "content": [chip]}], ["messages[0] is NoneType"]),
                           ([{"role": "user", "content": [None, chip, "x"]}],
                            ["messages[0].content[0] is NoneType", "messages[0].content[2] is str"])):
        refs, problems = parse_line(orjson.dumps({"messages": messages}), 0, 2)
        assert [r.stem for r in refs] == ["a_t0000"]
        assert [(p.reason, p.detail) for p in problems] == [("jsonl_message_not_object", d) for d in said]
    assert parse_line(b"\xef\xbb\xbf" + line, 1, 1)[0][0].stem == "a_t0000"  # a file's byte order mark
    absolute = orjson.dumps({"messages": [{"role": "user", "content": [
        {"type": "image", "image": "/old/tree/images/s0/a_t0000.png"}, {"type": "image", "image": "/etc/passwd"},
        {"type": "image", "image": "/x/images/../../etc/passwd"}]}]})
    refs, problems = parse_line(absolute, 0, 1)
    assert [(r.kind, r.path, r.rebased) for r in refs] == [("chip", "images/s0/a_t0000.png", True)]
    assert [p.reason for p in problems] == ["unsafe_path:absolute_path"] * 2
    trl = {"images": ["images/s0/a_t0000.png", {"path": "mapbox_stills/a.png", "bytes": None}], "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "hi"}]}]}
    share = {"images": trl["images"], "messages": [{"role": "user", "content": "<image>\n<image>\nhi"}]}
    for row in (trl, share):
        refs, problems = parse_line(orjson.dumps(row), 0, 1)
        assert [(r.kind, r.stem) for r in refs] == [("chip", "a_t0000"), ("still", "a")] and not problems
    refs, problems = parse_line(orjson.dumps({**trl, "images": trl["images"][:1]}), 0, 1)
    assert len(refs) == 1 and [p.reason for p in problems] == ["images_column_short"]
    # Hugging Face datasets fill a part's missing keys with null: an image of null is a placeholder
    explicit_null = {"messages": [{"role": "user", "content": [{"type": "image", "image": None, "text": None}]}]}
    assert parse_line(orjson.dumps(explicit_null), 0, 1)[1][0].reason == "images_column_short"
    assert parse_line(orjson.dumps({**explicit_null, "images": ["images/a_t0.png"]}), 0, 1)[0][0].stem == "a_t0"
    assert parse_line(orjson.dumps({"messages": [{"role": "user", "content": [{"type": "image", "image": 3}]}]}),
                      0, 1)[1][0].reason == "image_ref_not_string"
    assert parse_line(b"\xef\xbb\xbf" + line, 1, 2)[1][0].reason == "invalid_jsonl_line"  # not mid-file
    named_each_way = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "images/s0/a_t0000.png"}},
        {"type": "image_url", "image_url": "mapbox_stills/a.png"},
        {"type": "image", "path": "images/b_t0000.png"}, {"type": "image", "url": "./images/c_t0000.png"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/d_t0000.png"}}]},
        {"role": "assistant", "content": "A plain string reply, as OpenAI rows give it."}]}
    refs, problems = parse_line(orjson.dumps(named_each_way), 0, 1)
    assert [(r.kind, r.stem) for r in refs] == [("chip", "a_t0000"), ("still", "a"), ("chip", "b_t0000"),
                                                ("chip", "c_t0000"), ("other", "")]  # inline image: counted only
    assert [p.reason for p in problems] == ["unsafe_path:url_scheme"]


def test_parse_sidecar_valid_and_regions_clipped():
    side = make_sidecar(regions=[{"bbox": [-5, 10, 300, 20], "label": "water", "class_id": 0},
                                 {"bbox": [1, 1, 2, 2], "label": "trees", "class_id": 0},
                                 {"bbox": [5, 5, 1, 1], "label": "water", "class_id": 0},
                                 {"bbox": [1, 1, 2, 2], "label": "lava", "class_id": 12}])
    parsed = parse_sidecar(orjson.dumps(side), "m/x.json")
    assert parsed.tile is not None
    assert [r.bbox for r in parsed.tile.regions] == [(0, 10, 223, 20)]
    assert parsed.tile.regions[0].area_px == 224 * 11
    assert [p.reason for p in parsed.region_problems] == ["region_label_mismatch", "region_inverted_bbox",
                                                          "region_unknown_class"]
    # the reject shows what was written, so a producer's mistake is seen without opening the sidecar
    assert parsed.region_problems[1].detail == 'regions[2]: {"bbox":[5,5,1,1],"label":"water","class_id":0}'
    norm = parsed.tile.normalised_fractions()
    assert abs(sum(norm.values()) - 1) < 1e-12 and abs(norm[4] - 0.5 / 0.92) < 1e-12
    # 0-1 coordinates, as detectors write them: refused (floored, each was the chip's top-left pixel); integer
    # corners and pixel-valued floats stay pixels
    side = make_sidecar(regions=[{"bbox": [0.1, 0.25, 0.5, 0.75], "label": "water", "class_id": 0},
                                 {"bbox": [0, 0, 1, 1], "label": "water", "class_id": 0},
                                 {"bbox": [0.0, 0.0, 1.0, 1.0], "label": "water", "class_id": 0},
                                 {"bbox": [10.5, 3.2, 40.7, 9.9], "label": "water", "class_id": 0}])
    parsed = parse_sidecar(orjson.dumps(side), "m/x.json")
    assert [p.reason for p in parsed.region_problems] == ["region_bbox_normalised"]
    assert [r.bbox for r in parsed.tile.regions] == [(0, 0, 1, 1), (0, 0, 1, 1), (10, 3, 40, 9)]


def test_boxes_in_cocos_order_are_told_from_corners():
    """A tile whose boxes all fit the chip as [x, y, width, height] and some of which are inverted as corners is
    COCO's order: every region goes, a region with a problem of its own keeps its reason. A tile of corners with
    one inverted box spread over the chip keeps its other regions."""
    coco = [{"bbox": [10, 20, 30, 40], "label": "water", "class_id": 0, "area_px": 900},
            {"bbox": [120, 150, 60, 50], "label": "trees", "class_id": 1},
            {"bbox": [5, 5, 10, 10], "label": "lava", "class_id": 12}]
    parsed = parse_sidecar(orjson.dumps(make_sidecar(regions=coco)), "m/x.json")
    assert parsed.tile is not None and parsed.tile.regions == ()
    assert [p.reason for p in parsed.region_problems] == ["region_bbox_xywh", "region_bbox_xywh",
                                                          "region_unknown_class"]
    assert "x2 = x + width - 1" in parsed.region_problems[1].detail
    corners = [{"bbox": [10, 20, 200, 210], "label": "water", "class_id": 0},
               {"bbox": [120, 150, 60, 50], "label": "trees", "class_id": 1}]
    parsed = parse_sidecar(orjson.dumps(make_sidecar(regions=corners)), "m/x.json")
    assert [r.bbox for r in parsed.tile.regions] == [(10, 20, 200, 210)]
    assert [p.reason for p in parsed.region_problems] == ["region_inverted_bbox"]
    # an area larger than the box as [x, y, width, height] is no such box either
    big = [{**coco[0], "area_px": 1300}, coco[1]]
    parsed = parse_sidecar(orjson.dumps(make_sidecar(regions=big)), "m/x.json")
    assert [p.reason for p in parsed.region_problems] == ["region_inverted_bbox"]


def test_regions_and_fractions_named_as_producers_name_them():
    """A label alone, a class id alone, or a label in prose case ("Snow and ice") is one region; a label and
    class id that disagree are not."""
    side = make_sidecar(class_fractions={"Snow and ice": 0.5, "bare-ground": 0.25, "4": 0.25}, regions=[
        {"bbox": [0, 0, 9, 9], "label": "Snow and ice"}, {"bbox": [0, 0, 9, 9], "class_id": 7},
        {"bbox": [0, 0, 9, 9], "label": "flooded vegetation", "class_id": 3},
        {"bbox": [0, 0, 9, 9], "label": "Water", "class_id": 1}, {"bbox": [0, 0, 9, 9], "label": "lava"},
        {"bbox": [0, 0, 9, 9]}])
    parsed = parse_sidecar(orjson.dumps(side), "m/x.json")
    assert [(r.label, r.class_id) for r in parsed.tile.regions] == [
        ("snow_and_ice", 8), ("bare_ground", 7), ("flooded_vegetation", 3)]
    assert [p.reason for p in parsed.region_problems] == ["region_label_mismatch", "region_unknown_class",
                                                          "region_unknown_class"]
    assert parsed.tile.fractions == {8: 0.5, 7: 0.25, 4: 0.25}


def test_a_tile_pickles_to_an_equal_tile_with_the_same_types():
    """Tiles cross every shuffle pickled (as JSON inside, Tile.__reduce__): nothing may come back changed."""
    side = make_sidecar(grid={"zone": 32, "cells": [[1, 2], [3, 4]]}, latitude=45, eo_cloud_cover=12.5)
    tile = parse_sidecar(orjson.dumps(side), "m/x.json").tile.with_fields(
        chip_src="/in/images/x.png", slot=7, reuse=True, earlier=("x", "train", 7, "fp", ("a.png",), 2, 0, "",
                                                                  (("rows|caption|train", 1),), "c0ffee", 0),
        earlier_rows=(("data/train.jsonl", 9),))
    back = pickle.loads(pickle.dumps(tile))
    assert back == tile and back.extra == tile.extra == {"grid": {"zone": 32, "cells": [[1, 2], [3, 4]]}}
    names = [f.name for f in dataclasses.fields(Tile)]
    assert {n: type(getattr(back, n)) for n in names} == {n: type(getattr(tile, n)) for n in names}
    assert back.earlier == tile.earlier and back.earlier_rows == tile.earlier_rows
    assert type(back.regions[0]) is type(tile.regions[0]) and back.fractions == tile.fractions
    assert back.card == tile.card == ("crops", (("water", 1), ("crops", 1)))


def test_a_tile_s_content_is_decoded_only_when_read():
    """An unchanged tile of a rebuild crosses shuffles without its caption, fractions and regions being decoded
    or encoded again (Tile.__reduce__): the bytes it came with go on until a content field is read or changed."""
    tile = parse_sidecar(orjson.dumps(make_sidecar()), "m/x.json").tile
    crossed = pickle.loads(pickle.dumps(tile))
    moved = crossed.with_fields(slot=3, split="test")
    assert "regions" not in moved.__dict__ and "caption" not in moved.__dict__  # not decoded on the way
    again = pickle.loads(pickle.dumps(moved))
    assert again.__reduce__()[1][1] == tile.__reduce__()[1][1]  # the same content bytes, never re-encoded
    assert again.slot == 3 and again.split == "test" and again.regions == tile.regions  # read: decoded now
    assert again.with_fields(slot=4) == tile.with_fields(slot=4, split="test")
    edited = again.with_fields(caption="another")  # a changed content field: the kept bytes go
    assert pickle.loads(pickle.dumps(edited)).caption == "another"
    with pytest.raises(AttributeError):
        crossed.no_such_field  # noqa: B018


@pytest.mark.parametrize("data,reason", [
    (b"", "sidecar_empty"), (b"{nope", "sidecar_invalid_json"), (b"[1, 2]", "sidecar_not_object"),
    (orjson.dumps(make_sidecar(tile_stem=5)), "sidecar_bad_tile_stem"),
    (orjson.dumps(make_sidecar(class_fractions={"0": "a"})), "sidecar_fractions_not_numeric"),
    (orjson.dumps(make_sidecar(class_fractions={"0": -0.1})), "sidecar_fractions_negative"),
    (orjson.dumps(make_sidecar(class_fractions={"42": 0.1})), "sidecar_unknown_class"),
    (orjson.dumps(make_sidecar(regions={"a": 1})), "sidecar_regions_not_list"),
    (b'{"class_fractions": {"0": NaN}}', "sidecar_non_finite_number"),
    (b'{"regions": [{"bbox": [0, 0, Infinity, 3], "label": "water", "class_id": 0}]}', "sidecar_non_finite_number"),
    (b'{"output_size": NaN}', "sidecar_non_finite_number"),
    # Carried fields nested past what orjson writes (254) failed the job pickling the tile, and past ~1,000
    # levels Python's reader (naming why orjson refused) failed it with a RecursionError.
    (orjson.dumps(make_sidecar())[:-1] + b',"notes":' + b"[" * 300 + b"]" * 300 + b"}", "sidecar_too_deep"),
    (orjson.dumps(make_sidecar())[:-1] + b',"a":NaN,"b":' + b"[" * 990 + b"]" * 990 + b"}", "sidecar_too_deep"),
    (b"[" * 100_000 + b"]" * 100_000, "sidecar_invalid_json"),
    # an integer orjson refuses, beside a NaN that sends the sidecar to Python's reader: it reached the row
    # sidecars (orjson then failed the job writing it; past 1e308, reading a coordinate overflowed a float)
    (orjson.dumps(make_sidecar())[:-1] + b',"a":NaN,"latitude":' + b"9" * 400 + b"}", "sidecar_invalid_json"),
    (orjson.dumps(make_sidecar())[:-1] + b',"a":NaN,"b":' + str(1 << 64).encode() + b"}", "sidecar_invalid_json"),
])
def test_parse_sidecar_rejects(data, reason):
    parsed = parse_sidecar(data, "m/x.json")
    assert parsed.tile is None and parsed.problem.reason == reason


def test_sidecar_written_by_other_tools():
    """A byte order mark (Windows tools) and NaN in provenance fields (Python's json for a missing float) do
    not cost the tile: the coordinates and cloud cover read as missing, carried fields keep their place."""
    side = make_sidecar()
    side.update(eo_cloud_cover=float("nan"), latitude=float("nan"), native_tile={"x": float("inf")})
    data = b"\xef\xbb\xbf" + json.dumps(side).encode()
    tile = parse_sidecar(data, "m/x.json").tile
    assert tile is not None and tile.cloud_cover is None and tile.latitude is None
    assert tile.longitude == side["longitude"] and "native_tile" in tile.extra
    assert tile.regions == parse_sidecar(orjson.dumps(make_sidecar()), "m/x.json").tile.regions
    assert tile.sidecar_sha256 == hashlib.sha256(data).hexdigest()  # the bytes as read, mark and all
    # coordinates out of range read as missing, as NaN does (a latitude of 200 was quoted in the analysis JSON)
    tile = parse_sidecar(orjson.dumps(make_sidecar(latitude=200, longitude=-180)), "m/x.json").tile
    assert tile.latitude is None and tile.longitude == -180
    nested = make_sidecar(notes=json.loads("[" * 60 + "]" * 60))  # deep, but within what travels
    assert parse_sidecar(orjson.dumps(nested), "m/x.json").tile.extra["notes"] == nested["notes"]
    # saved as UTF-16 (Notepad's "Unicode", PowerShell's `>`): the same tile (it was sidecar_not_utf8)
    side = make_sidecar(caption="Forêt près du lac.")
    utf8 = parse_sidecar(json.dumps(side, ensure_ascii=False).encode(), "m/x.json").tile
    for data in (json.dumps(side, ensure_ascii=False).encode("utf-16"),
                 b"\xfe\xff" + json.dumps(side, ensure_ascii=False).encode("utf-16-be")):
        tile = parse_sidecar(data, "m/x.json").tile
        assert tile is not None and tile.with_fields(sidecar_sha256="") == utf8.with_fields(sidecar_sha256="")
    cut = parse_sidecar(json.dumps(side).encode("utf-16")[:-1], "m/x.json")
    assert cut.tile is None and cut.problem.reason == "sidecar_not_utf8" and "UTF-16" in cut.problem.detail


def test_stem_defaults_to_file_stem():
    side = make_sidecar()
    del side["tile_stem"]
    assert parse_sidecar(orjson.dumps(side), "metadata/s00001/poi_5_t0001.json").tile.tile_stem == "poi_5_t0001"


def test_hashed_split_rule():
    import hashlib

    for key in ("poi_000001", "poi_000002_g001", "x"):
        bucket = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) % 10
        assert hashed_split(key) == ("train" if bucket < 8 else "validation" if bucket == 8 else "test")


def _tile(stem, split=None, poi=None):
    return parse_sidecar(orjson.dumps(make_sidecar(tile_stem=stem, split=split, poi_id=poi)), f"m/{stem}.json").tile


def test_initial_split_field_then_hash():
    assert initial_split(_tile("poi_1_t0000", "TEST")) == "test"
    assert initial_split(_tile("poi_1_t0000", "bogus", "poi_1_g001")) == hashed_split("poi_1_g001")
    assert initial_split(_tile("poi_1_t0000", None, None)) == hashed_split("poi_1")
    for word, split in (("val", "validation"), (" Dev ", "validation"), ("training", "train"), ("eval", "test")):
        assert _tile("poi_1_t0000", word).split_field == split  # the words `datasets` and the mix read
    assert _tile("poi_1_t0000", "holdout").split_field == "holdout"  # kept, to be counted
    assert _tile("poi_1_t0000", 2).split_field == "2" and _tile("poi_1_t0000", " ").split_field is None


def test_leakage_reassign_and_drop():
    tiles = [_tile("poi_9_g001_t0000", "train"), _tile("poi_9_g002_t0000", "test")]
    kept, rejected, moved = resolve_leakage("poi_9", tiles, "reassign", {"poi_9": "test"})
    assert {t.split for t in kept} == {"test"} and moved == 1 and not rejected
    with pytest.raises(ValueError, match="plan has no split"):
        resolve_leakage("poi_9", tiles, "reassign", {})
    kept, rejected, moved = resolve_leakage("poi_9", tiles, "drop")
    assert not kept and len(rejected) == 2 and moved == 0
    same = [_tile("poi_8_g001_t0000", "validation"), _tile("poi_8_g001_t0001", "validation")]
    kept, rejected, moved = resolve_leakage("poi_8", same, "drop")
    assert [t.split for t in kept] == ["validation", "validation"] and moved == 0


def test_a_group_of_tiles_is_read_twice_and_never_held():
    """leakage_outcomes reads a base's (or a ground group's) tiles once to learn their splits and once to send
    each on: the second pass gives each tile as it comes, so a group as large as a scene is never held."""
    from transforms.splits.plan import leakage_outcomes

    class Tiles:  # a grouped value as Beam gives it: iterable again, each pass making its tiles afresh
        def __init__(self, n: int):
            self.n, self.passes, self.made = n, 0, 0

        def __iter__(self):
            self.passes += 1
            for i in range(self.n):
                self.made += 1
                yield _tile(f"poi_{i % 3}_g001_t{i:04d}", ("train", "test")[i % 2])

    for policy, plan, first in (("reassign", {"poi_0": "test"}, "test"), ("drop", None, None)):
        tiles = Tiles(50)
        outcomes = leakage_outcomes("poi_0", tiles, policy, plan)
        tile, declared, split, detail = next(outcomes)
        assert (tiles.passes, tiles.made) == (2, 51), "one tile of the second pass made so far"
        assert (declared, split) == ("train", first)
        joined = "bases poi_0, poi_1, poi_2 (3, on shared ground) span splits test,train"
        assert detail == ("" if split else joined)
        assert len(list(outcomes)) == 49 and tiles.passes == 2


def test_normalise_box_inclusive_corner():
    assert normalise_box((0, 0, 223, 223), 224) == [0.0, 0.0, 1.0, 1.0]
    assert normalise_box((5, 5, 5, 5), 224) == [round(5 / 224, 4), round(5 / 224, 4), round(6 / 224, 4),
                                                round(6 / 224, 4)]


def test_grounding_problem():
    assert grounding_problem('[{"label": "water", "bbox": [0.1, 0.1, 0.2, 0.2]}]') is None
    assert grounding_problem("nope") == "not JSON"
    assert grounding_problem("[]") == "not a non-empty list"
    assert "out of range" in grounding_problem('[{"label": "w", "bbox": [0.3, 0.1, 0.2, 0.2]}]')
    assert "out of range" in grounding_problem('[{"label": "w", "bbox": [0.1, 0.1, 1.2, 0.2]}]')


def test_gate(prepared):
    from transforms.tasks import caption, grounding_all

    pt = prepared()
    row = caption.rows(pt)[0]
    assert gate_problem(row) is None
    assert gate_problem(row, 10)[0] == "prompt_too_long"
    bloated = caption.rows(prepared(caption="payload npz_BASE64 here"))[0]
    assert gate_problem(bloated) == ("bloat:npz_base64", "")
    ground = grounding_all.rows(pt)[0]
    ground.record["messages"][-1]["content"][0]["text"] = '[{"label": "water", "bbox": [0.5, 0, 0.4, 1]}]'
    assert gate_problem(ground)[0] == "invalid_grounding_json"


def test_local_writes_make_missing_folders_and_leave_no_temporary_files(tmp_path):
    from transforms import fileio

    deep = tmp_path / "a" / "b" / "c.json"
    fileio.write_bytes(str(deep), b"one")
    fileio.write_bytes(str(deep), b"two")  # the folder exists now; the file is replaced whole
    fileio.write_bytes(str(tmp_path / "a" / "b" / "d.json"), b"three")
    with fileio.open_for_write(str(tmp_path / "x" / "spool.bin")) as f:
        f.write(b"spool")
    assert deep.read_bytes() == b"two" and (tmp_path / "x" / "spool.bin").read_bytes() == b"spool"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["c.json", "d.json"]


def test_newest_write_reads_each_stores_modification_time(tmp_path):
    """Local files and gcsfs give ``mtime``, s3fs ``LastModified``, adlfs ``last_modified``: all read as UTC."""
    import datetime
    import os

    from transforms import fileio

    utc = datetime.timezone.utc
    assert fileio.newest_write([str(tmp_path / "none")]) is None
    for rel, when in (("a/1", 1_000_000_000), ("b/c/2", 1_700_000_000), ("b/3", 1_600_000_000)):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
        os.utime(tmp_path / rel, (when, when))
    assert fileio.newest_write([str(tmp_path / "a"), str(tmp_path / "b")]) == datetime.datetime.fromtimestamp(
        1_700_000_000, utc)
    assert fileio.newest_write([str(tmp_path / "a")]).year == 2001
    at = datetime.datetime(2026, 12, 5, 10, 0, tzinfo=utc)
    for info in ({"mtime": at}, {"mtime": at.replace(tzinfo=None)}, {"LastModified": at},
                 {"last_modified": "2026-12-05T10:00:00Z"}, {"updated": "2026-12-05T10:00:00+00:00"}):
        assert fileio._written_at(info) == at, info
    assert fileio._written_at({"size": 3}) is None and fileio._written_at({"updated": "yesterday"}) is None


def test_a_chip_in_another_format_is_named_with_what_to_do():
    """GIS exports are often GeoTIFF or JPEG 2000; a failed download leaves an HTML page. The reject says so."""
    import io

    from PIL import Image

    from transforms.input.images import png_problem

    for fmt, name in (("TIFF", "a TIFF"), ("JPEG", "a JPEG"), ("WEBP", "a WebP"), ("GIF", "a GIF")):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, fmt)
        data = buf.getvalue()
        problem, detail, _, _ = png_problem(data[:33], data[-12:], len(data))
        assert problem == "not_png" and detail.startswith(f"{name} file"), fmt
        assert "convert it to an 8-bit PNG" in detail, fmt
    assert png_problem(b"<html>403 Forbidden</html>", b"", 26)[1].startswith("a text or HTML file")
    assert png_problem(b"\x00\x01\x02\x03garbage", b"", 11)[1] == repr(b"\x00\x01\x02\x03garb")

    # 16-bit PNGs read as 8 bits per channel by a model's loader: near black or clipped white, so refused
    import numpy as np

    from pipeline.sample.faults import reflectance_png

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 60)).save(buf, "PNG")
    chip = buf.getvalue()
    grey16 = io.BytesIO()
    Image.fromarray(np.full((8, 8), 2500, np.uint16)).save(grey16, "PNG")
    for data, kind in ((reflectance_png(chip), "RGB"), (grey16.getvalue(), "grey")):
        problem, detail, width, _ = png_problem(data[:33], data[-12:], len(data))
        assert (problem, width) == ("not_8bit", 8), kind
        assert detail.startswith(f"a 16-bit {kind} PNG") and "-ot Byte" in detail, detail
    assert Image.open(io.BytesIO(reflectance_png(chip))).convert("RGB").getextrema()[1][1] < 16, "reads near black"
    for mode in ("RGBA", "P", "L", "LA", "1"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (90, 120, 60)).convert(mode).save(buf, "PNG")
        data = buf.getvalue()
        assert png_problem(data[:33], data[-12:], len(data))[0] == "", mode


@pytest.mark.parametrize(("path", "root", "expected"), [
    ("/data/llava/coco/x.jpg", "/data/llava", "coco/x.jpg"),
    ("/home/alice/llava/coco/x.jpg", "/data/llava", "coco/x.jpg"),  # moved: from the root's own folder name on
    ("/home/alice/LLaVA/coco/x.jpg", "/data/LLaVA", "coco/x.jpg"),  # by its exact name, capitals and all
    ("/home/alice/llava/coco/x.jpg", "/data/LLaVA", None),
    ("file:///data/llava/x.jpg", "/data/llava", "x.jpg"),
    ("C:/Users/alice/llava/coco/x.jpg", "/data/llava", "coco/x.jpg"),
    ("gs://old-bucket/llava/x.jpg", "gs://new/llava", "x.jpg"),
    ("gs://new/llava/x.jpg", "gs://new/llava", "x.jpg"),
    ("/data/other/x.jpg", "/data/llava", None),
    ("/data/llava/../secret/x.jpg", "/data/llava", None),  # never above the root
    ("/llava", "/data/llava", None),  # the folder itself is no image
    ("https://example.com/llava/x.jpg", "/data/llava", None),  # a web URL is no copy of the dataset
    ("coco/x.jpg", "/data/llava", None),  # relative paths are read as they are
])
def test_absolute_mix_image_paths_below_the_image_root(path, root, expected):
    from transforms.paths import below_image_root

    assert below_image_root(path, root) == expected


def test_a_still_may_be_a_jpeg_or_a_webp():
    """Stills (and a mix's images) pass as PNG, JPEG (Mapbox serves satellite stills as JPEG) or WebP (as Hub
    datasets often store them); a JPEG cut short, or with padding after its end marker, is told apart, and so is
    a WebP shorter than its RIFF header says; other formats name the three that are taken."""
    import io

    from PIL import Image

    from transforms.input.images import TAIL_BYTES, media_problem, png_problem, still_problem

    def encoded(fmt: str, mode: str = "RGB", **kw) -> bytes:
        buf = io.BytesIO()
        Image.new(mode, (64, 64), (90, 120, 60, 200)[:len(mode)]).save(buf, fmt, **kw)
        return buf.getvalue()

    def check(data: bytes) -> tuple[str, str]:
        return still_problem(data[:33], data[-TAIL_BYTES:], len(data))[:2]

    jpeg, png = encoded("JPEG", quality=90), encoded("PNG")
    assert check(jpeg) == ("", "") and check(jpeg + b"\x00" * 20) == ("", "")
    assert check(jpeg[:len(jpeg) // 2])[0] == "truncated"
    assert check(png) == ("", "") and check(png[:-5])[0] == "truncated"
    for webp in (encoded("WEBP", quality=80), encoded("WEBP", lossless=True), encoded("WEBP", "RGBA")):
        assert check(webp) == ("", "") and media_problem(webp) == ""
        problem, detail = check(webp[:-1])
        assert problem == "truncated" and f"its RIFF header says {len(webp)}" in detail
    problem, detail = check(encoded("TIFF"))
    assert problem == "unsupported_format" and detail.startswith("a TIFF file") and "not a PNG, JPEG or WebP" in detail
    assert media_problem(encoded("GIF")) == "unsupported_format"
    crlf = png.replace(b"\r\n", b"\n")  # a text-mode transfer
    problem, detail = check(crlf)
    assert problem == "not_png" and "signature is damaged" in detail and "binary mode" in detail
    assert png_problem(crlf[:33], crlf[-12:], len(crlf))[:2] == (problem, detail)
    assert png_problem(jpeg[:33], jpeg[-12:], len(jpeg))[0] == "not_png", "a chip is still a PNG only"


def test_escapes_root_follows_file_and_folder_links(tmp_path):
    from transforms.fileio import real_path
    from transforms.input.images import escapes_root

    root, outside = tmp_path / "tree", tmp_path / "outside"
    (root / "images" / "s0").mkdir(parents=True)
    outside.mkdir()
    (outside / "x.png").write_bytes(b"x")
    (root / "images" / "s0" / "own.png").write_bytes(b"x")
    (root / "images" / "s0" / "link.png").symlink_to(outside / "x.png")
    (root / "images" / "away").symlink_to(outside, target_is_directory=True)
    (root / "images" / "s0" / "inner.png").symlink_to(root / "images" / "s0" / "own.png")
    for rel, escapes in [("images/s0/own.png", False), ("images/s0/link.png", True), ("images/away/x.png", True),
                         ("images/s0/inner.png", False)]:
        assert escapes_root(str(root), str(root / rel)) is escapes, rel
        assert real_path(str(root / rel)) == os.path.realpath(root / rel)

    # A tree folder that is itself a symlink (sidecars on another disk) is followed; below it, the same rule.
    (outside / "meta" / "s0").mkdir(parents=True)
    (outside / "meta" / "s0" / "a.json").write_bytes(b"{}")
    (outside / "meta" / "s0" / "b.json").symlink_to(outside / "x.png")
    (root / "metadata").symlink_to(outside / "meta", target_is_directory=True)
    (root / "notes").symlink_to(outside / "meta", target_is_directory=True)
    for rel, escapes in [("metadata/s0/a.json", False), ("metadata/s0/b.json", True), ("notes/s0/a.json", True)]:
        assert escapes_root(str(root), str(root / rel)) is escapes, rel


def test_images_identity_follows_what_fixes_the_rows_image_paths():
    tile = parse_sidecar(orjson.dumps(make_sidecar()), "m/x.json").tile.with_fields(chip_src="/in/images/x.png")
    with_still = tile.with_fields(still_src="/in/mapbox_stills/p.PNG", still_stem="p", still_index=4)
    ids = {tile.images_identity(), with_still.images_identity(),
           with_still.with_fields(still_index=5).images_identity(),
           tile.with_fields(chip_src="/in/images/x.tif").images_identity()}
    assert len(ids) == 4, "chip type, still or not, still slot: each changes the paths rows name"
    assert tile.with_fields(chip_src="/elsewhere/x.PNG").images_identity() == tile.images_identity()


def test_the_common_region_path_answers_as_the_full_checks_do():
    """parse_region takes well-formed regions on a short path; any region, well-formed or not, must get the same
    answer (region and reason, value types included) as the full checks give it."""
    from transforms.classes import CLASS_NAMES
    from transforms.input.sidecars import _parse_region_checked, parse_region

    rng = random.Random(7)
    odd = [0, 1, -1, 223, 224, 300, 2**60, 2**60 + 1, 3.0, 3.5, True, None, "3", float("nan"), float("inf")]
    for _ in range(6000):
        bbox = rng.choice([[rng.choice(odd) for _ in range(4)], [rng.randrange(-3, 230) for _ in range(4)],
                           (1, 2, 3, 4), [1, 2, 3]])
        item = {"class_id": rng.choice([0, 4, 8, 9, -1, True, 2.0]), "bbox": bbox,
                "label": rng.choice([*CLASS_NAMES, "lava"])}
        if rng.random() < 0.7:
            item["area_px"] = rng.choice([*odd, rng.randrange(-5, 60000)])
        size = rng.choice([224, 8])
        fast, full = parse_region(item, size), _parse_region_checked(item, size)
        assert fast == full, (item, size)
        assert fast[0] is None or [type(v) for v in fast[0]] == [type(v) for v in full[0]]


def test_clean_root_names_one_place_or_says_why_not(tmp_path):
    from transforms.fileio import BadLocation, clean_root

    assert clean_root(f"file://{tmp_path}/tree/") == str(tmp_path / "tree")  # a local folder written as a URL
    assert clean_root("gs://bucket/out/") == "gs://bucket/out"
    for url in ("gs://", "gs:///out", "file://"):  # `gs://` was built into the local folder `gs:`
        with pytest.raises(BadLocation, match="names no bucket"):
            clean_root(url)
