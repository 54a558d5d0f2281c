"""What a bootstrap draws whole: base POIs, joined where their tiles show the same ground."""

from __future__ import annotations

import json

from scoring.places import ground_joined, neighbouring_places, place_of, rows_by_place
from transforms.splits.footprints import SAME_GROUND_SHARE

CHIP = 0.02  # degrees: about a 224 px chip at 10 m


def _box(x: float, y: float, size: float = CHIP) -> list[float]:
    return [x, y, x + size, y + size]


def test_views_and_dates_of_one_chip_are_one_place_and_neighbours_are_not():
    footprints = {
        "t33uuu_y0000_x0000_orig": _box(12.60, 52.90), "t33uuu_y0000_x0000_flip": _box(12.60, 52.90),
        "t33uuu_y0000_x0112_orig": _box(12.61, 52.90),  # half a chip east: a window cut with overlap
        "t33uuu_y0000_x0224_orig": _box(12.62, 52.90),  # touching the first
        "poi_000007_g001_t0000": _box(12.70, 52.90), "poi_000031_g002_t0000": _box(12.7005, 52.9005),  # a date
        "poi_000031_g003_t0000": _box(12.90, 52.90),  # that POI's other ground: the group joins the base
        "poi_000040_g001_t0000": None, "poi_000041_g001_t0000": [1, 2, 3],  # nothing to say where they lie
    }
    joined = ground_joined(footprints)
    assert joined == {"t33uuu_y0000_x0000_flip": "t33uuu_y0000_x0000_flip",
                      "t33uuu_y0000_x0000_orig": "t33uuu_y0000_x0000_flip",
                      "poi_000007": "poi_000007", "poi_000031": "poi_000007"}
    assert ground_joined(dict(reversed(footprints.items()))) == joined, "a function of the mapping, not its order"
    rows = [{"tile_stem": stem, "sample_id": f"{stem}__caption"} for stem in footprints]
    rows.append({"tile_stem": "", "sample_id": "foreign_17"})
    assert [len(place) for place in rows_by_place(rows, joined)] == [1, 3, 1, 1, 2, 1, 1]  # foreign_17 first
    assert place_of(rows[-1], joined) == "foreign_17" and place_of(rows[2]) == "t33uuu_y0000_x0112_orig"
    # the window half a chip east shares half of each side's ground: three places with a neighbour (the joined
    # views count once, the touching window only through the middle one); the dated POI and its group none
    assert neighbouring_places(footprints, joined) == 3
    assert neighbouring_places({k: v for k, v in footprints.items() if "x0112" not in k}, joined) == 0


def test_the_threshold_sits_between_a_view_and_an_overlapping_neighbour():
    """A quarter of a chip off is three quarters shared: the same ground; half a chip off, neighbours."""
    base = _box(12.6, 52.9)
    near = _box(12.6 + CHIP * (1 - SAME_GROUND_SHARE) * 0.9, 52.9)
    assert ground_joined({"a": base, "b": near}) == {"a": "a", "b": "a"}
    assert ground_joined({"a": base, "b": _box(12.6 + CHIP / 2, 52.9)}) == {}
    assert json.dumps(ground_joined({"a": base, "b": base, "c": base})) == '{"a": "a", "b": "a", "c": "a"}'
    # a chip across the antimeridian (GeoJSON: west > east) and its view written from the line's other side
    assert ground_joined({"a": [179.99, -17.02, -179.99, -17.0], "b": [-180.0, -17.02, -179.99, -17.0]}) == {
        "a": "a", "b": "a"}


def test_a_mixs_places_are_named_by_the_source_each_row_came_from():
    """A mix names a tile <source>/<stem>; its list names every base on the same ground under each source
    reading the build, and a mix row finds its place by the source it came from."""
    from transforms.splits.footprints import encode_places, place_cells, read_places

    box = _box(12.6, 52.9)
    assert {m for _, m in place_cells({"stem": "tr/poi_000031_g002_t0000", "footprint": box})} == {
        ("tr/poi_000031", tuple(box))}
    assert place_cells({"stem": "tr/poi_000031_g002_t0000", "footprint": None}) == []
    listed = read_places(encode_places({"tr/a_orig": "tr/a_flip", "tr/a_flip": "tr/a_flip"},
                                       {"tr": ("tr", "held")}))
    assert listed == {"held/a_flip": "tr/a_flip", "held/a_orig": "tr/a_flip", "tr/a_flip": "tr/a_flip",
                      "tr/a_orig": "tr/a_flip"}
    row = {"tile_stem": "a_orig", "sample_id": "s", "metadata": {"source": "held"}}
    assert place_of(row, listed) == "tr/a_flip"
    assert place_of({**row, "metadata": {"source": "other"}}, listed) == "a_orig"
