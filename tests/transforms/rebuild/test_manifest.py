"""The rebuild's pure core: slot folders at any size, slot allocation, the manifest's records, stale files."""

from __future__ import annotations

import posixpath
from collections import defaultdict

import orjson
import pytest

from transforms.paths import shard_dir, slot_dir
from transforms.rebuild.manifest import (
    PreviousTile,
    allocate_slots,
    drawn_folders,
    encode_row_index,
    encode_stills,
    encode_tiles,
    first_free_slot,
    mark_gone,
    parse_row_index,
    parse_stills,
    parse_tiles,
    stale_files,
    still_paths,
    still_slots,
    tile_fingerprint,
    tile_record,
    tiles_file,
    unnamed_files,
)


@pytest.mark.parametrize("limit", [2, 3, 16])
def test_slot_folders_never_pass_the_limit_and_never_move(limit):
    n = limit ** 4 + 7
    paths = [f"{slot_dir(i, limit)}/f{i}" for i in range(n)]
    entries: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        parent, name = posixpath.split(path)
        while True:
            entries[parent].add(name)
            if not parent:
                break
            parent, name = posixpath.split(parent)
    assert max(len(v) for v in entries.values()) <= limit
    assert len({posixpath.dirname(p) for p in paths[: limit]}) == 1, "a folder holds limit consecutive places"
    assert len(set(paths)) == n


def test_slot_folders_are_the_one_level_folders_of_every_real_build():
    assert all(slot_dir(i, 9000) == shard_dir(i, 9000, 9000 * 8999) for i in (0, 8999, 9000, 80_990_999))
    assert slot_dir(80_991_000, 9000) == "s08999/s00000/s00000", "then the overflow entry, which keeps its name"
    with pytest.raises(ValueError):
        slot_dir(-1, 9000)


def test_new_slots_start_a_folder_of_their_own():
    assert first_free_slot(-1, 16) == 0, "a first build starts at 0"
    assert first_free_slot(0, 16) == 16 and first_free_slot(15, 16) == 16 and first_free_slot(16, 16) == 32
    # A changed tile's new slot shares no folder with its old one, in any family (k files per slot).
    for k in (1, 2, 5, 23):
        old, new = 9, first_free_slot(9, 16)
        assert {slot_dir(old * k + j, 16) for j in range(k)}.isdisjoint({slot_dir(new * k + j, 16) for j in range(k)})
    # An --update that narrows a family (23 row sidecars per tile before, 1 now): the new slots' places begin
    # past every place the build in place used, so no new file lands on an old one's path before the commit.
    for highest in (0, 9, 47, 400):
        for before, now in ((23, 1), (5, 2), (2, 5), (7, 7)):
            new = first_free_slot(highest, 16, ((before, now), (1, 1)))
            used = {slot_dir(place, 16) for place in range((highest + 1) * before)}
            assert used.isdisjoint({slot_dir(new * now + j, 16) for j in range(now * 3)}), (highest, before, now)
            assert new % 16 == 0 and new > highest
    assert first_free_slot(47, 16, ((23, 1),)) == 48 * 23 // 16 * 16 + 16 * (48 * 23 % 16 > 0)


def test_allocation_is_in_stem_order_after_the_start():
    assert allocate_slots(["b", "a", "c", "a"], 32) == [("a", 32), ("b", 33), ("c", 34)]
    assert still_slots(["x", "new2", "new1"], {"x": 5, "gone": 9}) == {"x": 5, "new1": 10, "new2": 11}


def test_manifest_records_round_trip_and_sort_by_slot():
    counts = [("rows|caption|train", 1), ("boxes|3", 1)]
    records = [tile_record("t2", "train", 7, "f2", "c2", ["b", "a", "a"], 2, 1, "st/t2.png", counts),
               tile_record("t1", "test", 3, "f1", "c1", [], 0, 0, "", [])]
    data = encode_tiles(records)
    assert data == encode_tiles(reversed(records)), "same records, same bytes"
    assert parse_tiles(data) == [PreviousTile("t1", "test", 3, "f1", (), 0, 0, "", (), "c1"),
                                 PreviousTile("t2", "train", 7, "f2", ("a", "b"), 2, 1, "st/t2.png",
                                              (("boxes|3", 1), ("rows|caption|train", 1)), "c2")]
    older = b'{"stem":"t","split":"train","slot":1,"fingerprint":"f","chip_sha256":"c","files":[]}\n'
    assert parse_tiles(older) == [PreviousTile("t", "train", 1, "f", (), chip_sha256="c")], \
        "a manifest without row counts"
    assert tiles_file(49_999) == "metadata/manifest/tiles-b00000.jsonl" != tiles_file(50_000)
    stills = encode_stills({"s1": (4, "mapbox_stills/s00000/s1.png"), "s0": (2, "")})
    assert parse_stills(stills) == {"s0": 2, "s1": 4} and still_paths(stills) == {"mapbox_stills/s00000/s1.png"}


def test_fingerprint_follows_every_input():
    base = tile_fingerprint("opts", "side", "chip")
    assert base == tile_fingerprint("opts", "side", "chip")
    assert len({base, tile_fingerprint("opts2", "side", "chip"), tile_fingerprint("opts", "side2", "chip"),
                tile_fingerprint("opts", "side", "chip2"),
                tile_fingerprint("opts", "side", "chip", "poi_1|3|png")}) == 5


def test_stale_files_are_what_no_new_record_names():
    before = [PreviousTile("t", "train", 1, "f", ("images/s00000/t.png", "overlays/s00000/t.png"))]
    assert stale_files(before, [("images/s00000/t.png",)]) == ["overlays/s00000/t.png"]
    assert stale_files(before, []) == ["images/s00000/t.png", "overlays/s00000/t.png"], "a removed tile"
    assert stale_files([], [("x",)]) == []


def test_row_index_groups_each_tiles_run_and_round_trips():
    rows = [("a", "a__caption", 0, 10), ("a", "a__grounding", 10, 20), ("b", "b__caption", 30, 5)]
    data = encode_row_index("data/train.jsonl", rows)
    assert data.count(b"\n") == 2, "a line per run of one tile's rows"
    assert parse_row_index(data) == [("a", ("data/train.jsonl", (("a__caption", 0, 10), ("a__grounding", 10, 20)))),
                                     ("b", ("data/train.jsonl", (("b__caption", 30, 5),)))]
    assert encode_row_index("data/train.jsonl", []) == b""


@pytest.mark.parametrize("parse", [True, False])
def test_a_taken_line_must_hold_its_row(parse):
    from transforms.output.split_files import RowPointer, taken_entry
    from transforms.output.spool import previous_spool

    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": 'say "sample_id":"b_1"'}]}],
           "metadata": {"sample_id": "a_1", "tile_stem": "a"}}
    line = orjson.dumps(row) + b"\n"
    pointer = RowPointer("train", "a_1", previous_spool("data/train.jsonl"), 0, len(line), "", "a")
    entry = taken_entry(pointer, line, "/prev", parse)
    assert entry.sample_id == "a_1" and (entry.record == row if parse else entry.line == line and entry.stem == "a")
    other = pointer._replace(sample_id="b_1")  # only quoted inside a text: not the row's key
    for wrong, bad in ((other, line), (pointer, line[:-5]), (pointer, line + line)):
        with pytest.raises(RuntimeError, match="run again with --no-reuse"):
            taken_entry(wrong, bad, "/prev", parse)


def test_unnamed_files_are_the_per_tile_files_no_record_still_or_listed_file_names():
    live = encode_tiles([tile_record("a", "train", 0, "f", "c", ["images/s00000/a.png"], 1, 0, "", ())])
    saved = encode_tiles([tile_record("z", "train", 1, "f", "c", ["images/s00000/z.png"], 1, 0, "", ())])
    stills = encode_stills({"p": (0, "mapbox_stills/s00000/p.png")})
    found = ["images/s00000/a.png", "images/s00000/z.png", "images/s00001/b.png", "mapbox_stills/s00000/p.png",
             "mapbox_stills/s00000/q.png", "metadata/sft_metadata_rows/rows-00000-of-00001.parquet"]
    assert unnamed_files(found, [live, saved], stills, ["metadata/sft_metadata_rows/rows-00000-of-00001.parquet"]
                         ) == ["images/s00001/b.png", "mapbox_stills/s00000/q.png"]
    assert unnamed_files(found[:2], [live], None, []) == ["images/s00000/z.png"]


def test_a_tile_knows_how_many_of_its_files_are_gone_from_one_listing_per_folder():
    a = PreviousTile("a", "train", 0, "fp", ("images/s00000/a.png", "analysis_images/s00000/a__brief.png"))
    b = PreviousTile("b", "train", 1, "fp", ("images/s00000/b.png", "overlays/s00001/b.png"))
    assert drawn_folders([a, b]) == ["analysis_images/s00000", "images/s00000", "overlays/s00001"]
    present = {"images/s00000": {"a.png", "b.png"}, "analysis_images/s00000": {"a__brief.png"}}
    assert [t.gone for t in mark_gone([a, b], present)] == [0, 1]  # b's overlay folder was not there at all
    assert [t.gone for t in mark_gone([a, b], {})] == [2, 2]
    assert mark_gone([a], present)[0]._replace(gone=0) == a
