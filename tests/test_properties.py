"""Property-based tests (hypothesis) for the pure functions every row depends on."""

from __future__ import annotations

import hashlib
import json
import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.input.images import png_problem
from transforms.input.sidecars import VALID_SPLITS, parse_sidecar
from transforms.paths import safe_name, unsafe_reason
from transforms.rows import grounding_problem, normalise_box
from transforms.splits.plan import hashed_split

json_scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=10), kids, max_size=4), max_leaves=20)
region = st.fixed_dictionaries({
    "bbox": st.lists(st.integers(-50, 300) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3),
                     min_size=0, max_size=5),
    "label": st.sampled_from(["water", "trees", "built", "crops", "lava", ""]),
    "class_id": st.integers(-2, 12) | st.text(max_size=2),
    "area_px": st.integers(-5, 60000) | st.none(),
})
sidecar = st.fixed_dictionaries(
    {},
    optional={
        "tile_stem": st.text(max_size=40) | st.integers() | st.none(),
        "split": st.sampled_from(["train", "TEST", "validation", "dev", ""]) | st.integers(),
        "output_size": st.integers(-10, 5000) | st.floats() | st.text(max_size=4),
        "caption": st.text(max_size=60) | st.none() | st.integers(),
        "class_fractions": st.dictionaries(st.sampled_from([str(i) for i in range(-1, 11)] + ["water", "x"]),
                                           st.floats() | st.integers(-3, 3) | st.text(max_size=3), max_size=6)
        | st.lists(st.integers(), max_size=2),
        "regions": st.lists(region, max_size=5) | st.text(max_size=5),
        "latitude": st.floats() | st.text(max_size=3),
    })


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | json_values.map(orjson.dumps))
def test_parse_sidecar_never_raises_on_any_bytes(data):
    parsed = parse_sidecar(data, "metadata/s00000/t.json")
    assert (parsed.tile is None) != (parsed.problem is None)
    if parsed.problem is not None:
        assert parsed.problem.reason


@settings(max_examples=400, deadline=None)
@given(sidecar)
def test_parse_sidecar_keeps_only_valid_tiles(obj):
    parsed = parse_sidecar(json.dumps(obj).encode(), "metadata/s00000/poi_1_t0000.json")
    if parsed.tile is None:
        assert parsed.problem and parsed.problem.reason.startswith("sidecar_")
        return
    t = parsed.tile
    assert 8 <= t.size <= 4096 and t.tile_stem and "/" not in t.tile_stem
    assert all(v >= 0 and math.isfinite(v) for v in t.fractions.values())
    fractions = t.normalised_fractions()
    assert not fractions or abs(sum(fractions.values()) - 1) < 1e-9
    for r in t.regions:
        x1, y1, x2, y2 = r.bbox
        assert 0 <= x1 <= x2 < t.size and 0 <= y1 <= y2 < t.size and r.area_px > 0
    assert len(t.regions) + len(parsed.region_problems) == (len(obj["regions"]) if isinstance(
        obj.get("regions"), list) else 0)


@given(st.integers(8, 1024).flatmap(lambda size: st.tuples(
    st.just(size), st.integers(0, size - 1), st.integers(0, size - 1), st.integers(0, size - 1),
    st.integers(0, size - 1))))
def test_normalised_boxes_are_always_valid(args):
    size, a, b, c, d = args
    x1, x2 = sorted((a, c))
    y1, y2 = sorted((b, d))
    box = normalise_box((x1, y1, x2, y2), size)
    assert grounding_problem(json.dumps([{"label": "water", "bbox": box}])) is None
    assert box[2] - box[0] >= 1 / size - 1e-4 - 1e-9  # a one-pixel box keeps its width (two roundings)


@given(st.text(max_size=60))
def test_split_hashing_follows_the_rule(key):
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) % 10
    split = hashed_split(key)
    assert split in VALID_SPLITS and split == hashed_split(key)
    assert split == ("train" if bucket < 8 else "validation" if bucket == 8 else "test")


@given(st.text(max_size=300))
def test_safe_names_are_one_safe_segment(name):
    cleaned = safe_name(name)
    assert cleaned and len(cleaned) <= 200 and "/" not in cleaned and cleaned not in (".", "..")
    assert unsafe_reason(f"images/{cleaned}.png") is None


@given(st.binary(max_size=40), st.binary(max_size=12), st.integers(0, 10**9))
def test_png_check_never_raises(head, tail, n):
    problem, _, w, h = png_problem(head, tail, n)
    assert problem or (w > 0 and h > 0)
