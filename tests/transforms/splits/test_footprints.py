"""Tiles of different splits that show the same ground (transforms/splits/footprints.py): what a footprint is,
which overlaps count, that the cell-by-cell search finds every pair exactly once, and that --split-unit ground
joins exactly the bases connected by shared ground."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.splits.footprints import (
    CELL_DEG,
    METRES_PER_DEGREE,
    MIN_SHARE,
    as_box,
    as_written,
    cell_boxes,
    cells_of,
    first_pairs,
    footprint,
    ground_conflicts_in_cell,
    ground_groups,
    ground_links_in_cell,
    pairs_in_cell,
    shared_share,
)

CHIP_DEG = 0.02  # about a 224 px chip at 10 m


def test_a_footprint_is_the_wgs84_box_else_a_square_around_the_centre():
    assert footprint({"bbox_wgs84": [12.5, 52.5, 12.53, 52.52]}, 0.0, 0.0, 224) == (12.5, 52.5, 12.53, 52.52)
    box = footprint({"grid": {"crs": "EPSG:32633", "resolution_m": 10}}, 52.5, 12.5, 224)
    assert box is not None
    assert math.isclose((box[3] - box[1]) * METRES_PER_DEGREE, 2240)
    assert math.isclose((box[2] - box[0]) * METRES_PER_DEGREE * math.cos(math.radians(52.5)), 2240)
    assert math.isclose((box[0] + box[2]) / 2, 12.5) and math.isclose((box[1] + box[3]) / 2, 52.5)
    # A box that names no area, or a value that is no number, falls back to the centre, else to nothing.
    for bad in ([1, 2, 1, 3], [1, 2, 3], ["a", 0, 1, 1], [0, 0, float("nan"), 1], [170, 0, 190, 1], True):
        assert footprint({"bbox_wgs84": bad}, None, None, 224) is None, bad
        assert footprint({"bbox_wgs84": bad, "grid": {"resolution_m": 10}}, 1.0, 2.0, 224) is not None, bad
    assert footprint({}, 52.5, 12.5, 224) is None, "no ground size without grid.resolution_m"
    assert footprint({"grid": {"resolution_m": "10"}}, 52.5, 12.5, 224) is None
    assert footprint({"grid": {"resolution_m": 10}}, None, 12.5, 224) is None


def test_a_chip_across_the_antimeridian_is_one_box_past_180():
    """A box across the antimeridian (GeoJSON writes west > east) once fell back to the centre, whose square ran
    past 180 degrees and met no tile on the line's western side; then such chips went unchecked. Now it is one
    box unwrapped past 180, written back as GeoJSON writes it."""
    grid = {"grid": {"resolution_m": 10}}
    across = footprint({"bbox_wgs84": [179.99, -17.02, -179.99, -17.0], **grid}, -17.01, 180.0, 224)
    assert across is not None and math.isclose(across[2], 180.01) and across[0] == 179.99
    assert as_written(across) == pytest.approx([179.99, -17.02, -179.99, -17.0])
    assert as_box(as_written(across)) == pytest.approx(across)
    east = footprint(grid, -17.01, 179.995, 224)
    west = footprint(grid, -17.01, -179.995, 224)
    assert east is not None and east[0] < 180 < east[2], "a square past 180 from the centre alone"
    assert west is not None and west[0] < 180 < west[2] and math.isclose(west[0], east[0] + 0.01), "and past -180"
    beside = footprint(grid, -17.01, 179.9, 224)
    assert beside is not None and beside[2] < 180, "a chip beside the line keeps its square"
    assert as_box([180, 0, -179.9, 1]) == (-180, 0, -179.9, 1), "west at 180 itself: a box east of -180"
    assert as_box([12.53, 52.5, 12.5, 52.52]) is None, "edges swapped (the centre's square serves), not 359.97 degrees"


def test_chips_on_both_sides_of_the_antimeridian_meet_the_one_across_it():
    """Fiji: a test chip across the line, a train chip just west of -180 (east longitudes negative), a
    validation chip just east of 180; each shares half with the one across, and the two beside it meet nothing.
    Every pair once, though the chip near -180 is compared on both sides of the line."""
    across = as_box([179.99, -17.02, -179.99, -17.0])
    west_side = as_box([-180.0, -17.02, -179.98, -17.0])
    east_side = as_box([179.98, -17.02, 180.0, -17.0])
    members = [("x", "test", across), ("w", "train", west_side), ("e", "validation", east_side),
               ("w2", "validation", west_side)]
    assert _pairs(members) == [("e", "validation", "x", "test", 0.5), ("w", "train", "w2", "validation", 1.0),
                               ("w", "train", "x", "test", 0.5), ("w2", "validation", "x", "test", 0.5)]
    assert _groups([("x", across), ("w", west_side), ("e", east_side)]) == {"e": "e", "w": "e", "x": "e"}
    assert _drops([("x", "test", across, False), ("w", "train", west_side, False)]) == {"w": ("x", "test")}


def test_cells_of_a_chip_and_of_what_is_no_chip():
    assert cells_of((0.01, 0.01, 0.03, 0.03)) == [(0, 0)]
    assert sorted(cells_of((0.09, 0.09, 0.11, 0.11))) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert cells_of((-0.01, -0.01, 0.01, 0.01)) == [(-1, -1), (-1, 0), (0, -1), (0, 0)]
    assert cells_of((0.0, 0.0, 2.0, 2.0)) == [], "a footprint of 200 km is not compared"


def _pairs(members):
    by_cell: dict = {}
    for m in members:
        for cell, here in cell_boxes(m[2]):
            by_cell.setdefault(cell, []).append((m[0], m[1], here))
    return sorted(p for cell, ms in by_cell.items() for g in pairs_in_cell(cell, ms) for p in first_pairs(g, 10**6))


def test_overlapping_windows_share_ground_and_touching_chips_do_not():
    half = [("a", "train", (0.09, 0.09, 0.09 + CHIP_DEG, 0.09 + CHIP_DEG)),
            ("b", "test", (0.10, 0.09, 0.10 + CHIP_DEG, 0.09 + CHIP_DEG))]  # half a chip apart, across a cell edge
    assert _pairs(half) == [("a", "train", "b", "test", 0.5)], "once, though both lie in two cells"
    touching = [("a", "train", (0.0, 0.0, 0.02, 0.02)), ("b", "test", (0.02, 0.0, 0.04, 0.02))]
    assert _pairs(touching) == []
    # The WGS84 box of a UTM chip is a few percent wider than the chip: neighbours overlap that much in their
    # boxes without sharing a pixel.
    rotated = [("a", "train", (0.0, 0.0, 0.0207, 0.0207)), ("b", "test", (0.0200, 0.0, 0.0407, 0.0207))]
    assert 0 < shared_share(rotated[0][2], rotated[1][2])[0] < MIN_SHARE
    assert _pairs(rotated) == []
    same_split = [("a", "test", half[0][2]), ("b", "test", half[1][2])]
    assert _pairs(same_split) == []


def test_views_and_dates_of_one_place_are_paired_with_each_tile_of_the_other():
    box, near = (5.0, 5.0, 5.02, 5.02), (5.005, 5.0, 5.025, 5.02)
    members = [("p_orig", "test", box), ("p_flip", "test", box), ("q_2020", "train", near), ("q_2021", "train", near)]
    assert _pairs(members) == [("q_2020", "train", "p_flip", "test", 0.75), ("q_2020", "train", "p_orig", "test", 0.75),
                               ("q_2021", "train", "p_flip", "test", 0.75), ("q_2021", "train", "p_orig", "test", 0.75)]


def test_validation_comes_before_test_in_a_pair():
    members = [("z", "test", (1.0, 1.0, 1.02, 1.02)), ("a", "validation", (1.0, 1.0, 1.02, 1.02))]
    assert _pairs(members) == [("a", "validation", "z", "test", 1.0)]


boxes = st.builds(lambda x, y, w, h: (x, y, x + w, y + h),
                  st.integers(-20, 20).map(lambda v: v * 0.013), st.integers(-20, 20).map(lambda v: v * 0.011),
                  st.sampled_from([0.01, 0.02, 0.02, 0.05]), st.sampled_from([0.01, 0.02, 0.02, 0.05]))
tiles = st.lists(st.tuples(st.sampled_from(["train", "validation", "test"]), boxes), max_size=30)


@settings(max_examples=150, deadline=None)
@given(tiles)
def test_the_cell_search_finds_every_pair_once(drawn):
    """Against comparing every pair: the sweep, the grouping of equal footprints and the one-cell rule lose and
    repeat nothing."""
    members = [(f"t{n:02d}", split, box) for n, (split, box) in enumerate(drawn)]
    expected = []
    for (a, sa, ba), (b, sb, bb) in itertools.combinations(members, 2):
        share = shared_share(ba, bb)[0]
        if sa != sb and share >= MIN_SHARE:
            order = {"train": 0, "validation": 1, "test": 2}
            first, second = sorted([(order[sa], a, sa), (order[sb], b, sb)])
            expected.append((first[1], first[2], second[1], second[2], round(share, 3)))
    assert _pairs(members) == sorted(expected)


def _on_the_line(box):
    """A box drawn around 180 degrees as the sidecar would give it: west of 180 as it is (across the line when
    it reaches past), east of 180 moved to -180 and on."""
    return box if box[0] < 180 else (box[0] - 360, box[1], box[2] - 360, box[3])


near_the_line = st.builds(lambda x, y, w, h: _on_the_line((x, y, x + w, y + h)),
                          st.integers(-20, 20).map(lambda v: 180 + v * 0.013),
                          st.integers(-5, 5).map(lambda v: v * 0.011),
                          st.sampled_from([0.01, 0.02, 0.05, 0.3]), st.sampled_from([0.01, 0.02, 0.05]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["train", "validation", "test"]), near_the_line), max_size=20))
def test_the_cell_search_finds_every_pair_across_the_antimeridian_once(drawn):
    """Against comparing every pair on a globe (each pair also one lap apart): the copies of chips near -180
    find each pair with a chip across the line, and no pair twice."""
    members = [(f"t{n:02d}", split, box) for n, (split, box) in enumerate(drawn)]
    expected = []
    for (a, sa, ba), (b, sb, bb) in itertools.combinations(members, 2):
        share = max(shared_share(ba, (bb[0] + k, bb[1], bb[2] + k, bb[3]))[0] for k in (-360, 0, 360))
        if sa != sb and share >= MIN_SHARE:
            order = {"train": 0, "validation": 1, "test": 2}
            first, second = sorted([(order[sa], a, sa), (order[sb], b, sb)])
            expected.append((first[1], first[2], second[1], second[2], round(share, 3)))
    assert _pairs(members) == sorted(expected)


@pytest.mark.parametrize("lat", [0.0, 52.5, 70.0])
def test_a_grid_of_chips_a_chip_apart_shares_nothing(lat):
    """Chips cut edge to edge (a stride of the chip size) at 10 m: no pair, whatever the latitude."""
    members = []
    for i, j in itertools.product(range(6), range(6)):
        centre = footprint({"grid": {"resolution_m": 10}}, lat + i * 2240 / METRES_PER_DEGREE, 0.0, 224)
        assert centre is not None
        width = centre[2] - centre[0]
        members.append((f"t{i}{j}", ("train", "test")[(i + j) % 2], (j * width, centre[1], (j + 1) * width, centre[3])))
    assert _pairs(members) == []
    assert CELL_DEG > 2240 / METRES_PER_DEGREE


def test_thousands_of_dates_of_two_places_are_one_comparison():
    """A place with 3,000 dates in train beside one with 3,000 in test (dates split by tile, not by place): one
    pair of footprints with both sides, nine million tile pairs counted without being listed."""
    box, near = (5.0, 5.0, 5.02, 5.02), (5.01, 5.0, 5.03, 5.02)
    members = [(f"a{n:04d}", "train", box) for n in range(3000)] + [(f"b{n:04d}", "test", near) for n in range(3000)]
    (group,) = [g for cell in cells_of(box) for g in pairs_in_cell(cell, members)]
    assert (len(group[0]), group[1], len(group[2]), group[3], group[4]) == (3000, "train", 3000, "test", 0.5)
    assert first_pairs(group, 2) == [("a0000", "train", "b0000", "test", 0.5), ("a0000", "train", "b0001", "test", 0.5)]


def test_find_shared_ground_counts_what_the_report_shows():
    """The Beam stage over manifest records (a tile without one has no rows and is not checked): each tile once
    however many pairs and cells it is in, a tile without a footprint counted, examples in sorted order, and
    per held-out tile the tiles of other splits it shares ground with."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.splits.shared_ground import FindSharedGround

    made = [{"stem": "a", "split": "train", "footprint": [0.09, 0.0, 0.11, 0.02]},
            {"stem": "b", "split": "test", "footprint": [0.10, 0.0, 0.12, 0.02]},
            {"stem": "d", "split": "validation", "footprint": None}]
    taken = [{"stem": "c", "split": "test", "footprint": [0.095, 0.0, 0.115, 0.02]}]
    with TestPipeline() as p:
        found = (p | "Made" >> beam.Create(made), p | "Taken" >> beam.Create(taken)) | FindSharedGround()
        events = found["events"] | beam.FlatMap(lambda e: e.items()) | beam.CombinePerKey(sum)
        assert_that(found["held_out"], equal_to([(("b", "test"), 1), (("c", "test"), 1)]), label="HeldOut")
        assert_that(events, equal_to([
            ("shared_ground|pairs|train|test", 2), ("shared_ground|tiles|train", 1),
            ("shared_ground|tiles|test", 2), ("shared_ground|tiles_without_footprint", 1),
            ("shared_ground|example|a\ttrain\tb\ttest\t0.500", 1),
            ("shared_ground|example|a\ttrain\tc\ttest\t0.750", 1)]))

def _groups(members):
    """ground_groups over the links of every cell, as JoinBasesOnSharedGround gathers them."""
    by_cell: dict = {}
    for base, box in members:
        for cell, here in cell_boxes(box):
            by_cell.setdefault(cell, []).append((base, here))
    return ground_groups(link for cell, ms in sorted(by_cell.items()) for link in ground_links_in_cell(cell, ms))


def test_bases_joined_through_each_other_make_one_group():
    """A chain of chips half a chip apart across a cell edge is one group, named by its first base; a chip that
    only touches the chain, or overlaps it by a box's few percent, stays alone; two tiles of one base join
    nothing."""
    chain = [(f"p{n}", (0.07 + n * CHIP_DEG / 2, 0.0, 0.07 + n * CHIP_DEG / 2 + CHIP_DEG, CHIP_DEG)) for n in range(5)]
    end = chain[-1][1][2]
    touching = ("q", (end, 0.0, end + CHIP_DEG, CHIP_DEG))
    rotated = ("r", (0.0, 0.5, 0.0207, 0.5207)), ("s", (0.0200, 0.5, 0.0407, 0.5207))
    views = ("t", (1.0, 1.0, 1.02, 1.02)), ("t", (1.01, 1.0, 1.03, 1.02))
    assert _groups([*reversed(chain), touching, *rotated, *views]) == {f"p{n}": "p0" for n in range(5)}
    assert _groups([]) == {}


def test_a_cell_sends_fewer_links_than_it_has_bases():
    """Chips cut every 16 px of a 224 px window, 20 x 20 of them in one cell: every one overlaps dozens of
    others, yet the cell yields one link per base but the first, and one group."""
    step = CHIP_DEG * 16 / 224
    members = [(f"b{i:02d}{j:02d}", (0.01 + i * step, 0.01 + j * step, 0.01 + i * step + CHIP_DEG,
                                    0.01 + j * step + CHIP_DEG)) for i in range(20) for j in range(20)]
    links = list(ground_links_in_cell((0, 0), members))
    assert len(links) == 399 and all(b == "b0000" for _, b in links)
    assert set(ground_groups(links).values()) == {"b0000"}


bases = st.lists(st.tuples(st.sampled_from([f"p{n}" for n in range(12)]), boxes), max_size=30)


@settings(max_examples=150, deadline=None)
@given(bases)
def test_groups_are_the_connected_bases(drawn):
    """Against a plain search over every pair: each base with another whose footprints overlap by a tenth or
    more (directly or through others) is in one group named by its first base; other bases are in none."""
    names = sorted({b for b, _ in drawn})
    joined = {b: {b} for b in names}
    for (a, ba), (b, bb) in itertools.combinations(drawn, 2):
        if a != b and shared_share(ba, bb)[0] >= MIN_SHARE:
            merged = joined[a] | joined[b]
            for name in merged:
                joined[name] = merged
    expected = {b: min(group) for b, group in joined.items() if len(group) > 1}
    assert _groups(drawn) == expected


def test_join_bases_on_shared_ground_gives_each_joined_base_its_group():
    """The Beam stage: bases whose tiles share ground get the group of their first base, through a third base
    in another cell; a tile without a footprint and a base alone get none; the counts the card shows."""
    from types import SimpleNamespace

    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.splits.shared_ground import JoinBasesOnSharedGround

    def tile(box):
        return SimpleNamespace(extra={"bbox_wgs84": list(box)} if box else {}, latitude=None, longitude=None,
                               size=224)

    tiles = [("poi_000003_g001_t0000", tile((0.09, 0.0, 0.11, 0.02))),
             ("poi_000001_g001_t0000", tile((0.10, 0.0, 0.12, 0.02))),
             ("poi_000002_g001_t0000", tile((0.11, 0.0, 0.13, 0.02))),
             ("poi_000002_g002_t0000", tile(None)), ("poi_000004_g001_t0000", tile((3.0, 3.0, 3.02, 3.02))),
             ("poi_000005_g001_t0000", tile((0.0, 5.0, 0.02, 5.02))),
             ("poi_000006_g001_t0000", tile((0.0, 5.0, 0.02, 5.02)))]
    with TestPipeline() as p:
        found = p | beam.Create(tiles) | JoinBasesOnSharedGround()
        assert_that(found["groups"], equal_to([("poi_000001", "poi_000001"), ("poi_000002", "poi_000001"),
                                               ("poi_000003", "poi_000001"), ("poi_000005", "poi_000005"),
                                               ("poi_000006", "poi_000005")]), label="Groups")
        assert_that(found["events"], equal_to([{"ground_groups": 2, "bases_joined_by_ground": 5,
                                                "ground_largest_group_bases": 3}]), label="Events")


def _drops(members):
    """ground_conflicts_in_cell over every cell: stem -> (witness, its split), the first witness per stem."""
    by_cell: dict = {}
    for m in members:
        for cell, here in cell_boxes(m[2]):
            by_cell.setdefault(cell, []).append((m[0], m[1], here, m[3]))
    found: dict = {}
    for cell, ms in sorted(by_cell.items()):
        for stem, witness, split, own in ground_conflicts_in_cell(cell, ms):
            assert own == next(m[1] for m in ms if m[0] == stem) != split
            found[stem] = min(found.get(stem, (witness, split)), (witness, split))
    return found


def test_the_tile_that_goes_is_the_new_one_of_the_earlier_split():
    """Of two new tiles on one ground, the train one goes (then the validation one); against a tile a rebuild
    keeps, the new one goes, even a test tile; two kept tiles stay; views of one place go together."""
    a, b = (0.0, 0.0, 0.02, 0.02), (0.01, 0.0, 0.03, 0.02)
    assert _drops([("t", "train", a, False), ("x", "test", b, False)]) == {"t": ("x", "test")}
    assert _drops([("v", "validation", a, False), ("x", "test", b, False)]) == {"v": ("x", "test")}
    assert _drops([("t", "train", a, True), ("x", "test", b, False)]) == {"x": ("t", "train")}
    assert _drops([("t", "train", a, True), ("x", "test", b, True)]) == {}
    assert _drops([("t1", "train", a, False), ("t2", "train", a, False), ("x", "test", b, False)]) == {
        "t1": ("x", "test"), "t2": ("x", "test")}
    assert _drops([("t", "train", a, False), ("u", "train", b, False)]) == {}, "one split: nothing to keep apart"


members_kept = st.lists(st.tuples(st.sampled_from(["train", "validation", "test"]), boxes, st.booleans()),
                        max_size=30)


@settings(max_examples=150, deadline=None)
@given(members_kept)
def test_dropping_leaves_no_held_out_tile_on_another_splits_ground(drawn):
    """Against comparing every pair: once the tiles named are dropped, no two tiles of different splits share
    ground but pairs of kept tiles; no kept tile is named; every tile named was in such a pair."""
    members = [(f"t{n:02d}", split, box, kept) for n, (split, box, kept) in enumerate(drawn)]
    dropped = _drops(members)
    kept_stems = {m[0] for m in members if m[3]}
    assert not set(dropped) & kept_stems
    left = [m for m in members if m[0] not in dropped]
    for (a, sa, ba, ka), (b, sb, bb, kb) in itertools.combinations(left, 2):
        if sa != sb and shared_share(ba, bb)[0] >= MIN_SHARE:
            assert ka and kb, (a, b)
    for stem in dropped:
        me = next(m for m in members if m[0] == stem)
        assert any(o[1] != me[1] and shared_share(me[2], o[2])[0] >= MIN_SHARE for o in members if o is not me)
