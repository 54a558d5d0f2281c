"""TiM analytics and the analysis-image renderer."""

from __future__ import annotations

import numpy as np
import pytest

from transforms.classes import CLASS_IDS
from transforms.render import class_shares, make_spec, render_analysis_png, render_class_map, target_counts
from transforms.tim import PROFILES, build_analytics, class_deltas, confidence_bin, predicted_fractions

SENTINEL = {0: 0.2, 1: 0.3, 4: 0.4, 6: 0.1}


def _analytics(profile, stem="poi_000001_t0000", mode="varied", sentinel=SENTINEL):
    return build_analytics(stem, sentinel, profile, mode, size=224, water_boxes=[(0.1, 0.1, 0.3, 0.3)],
                           latitude=1.0, longitude=2.0, cloud_cover=10.0, region_count=3, redact_location=False)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_predicted_fractions_sum_to_one(profile):
    for i in range(50):
        tim = predicted_fractions(SENTINEL, f"poi_{i}_t0000", PROFILES[profile], "varied")
        assert abs(sum(tim.values()) - 1) < 1e-5 and all(v > 0 for v in tim.values())


def test_varied_shifts_cover_increase_decrease_and_no_change():
    seen = {_analytics("flood_pulse", f"poi_{i:06d}_t0000").direction for i in range(200)}
    assert seen == {"increase", "decrease", "no_change"}


def test_fixed_shift_amounts():
    for profile, signal, shift in (("land_use_change", "built", 0.12), ("wildfire", "bare_ground", 0.10),
                                   ("flood_pulse", "water", 0.15), ("oceanscout_ship_detection", "water", 0.06)):
        a = _analytics(profile, mode="fixed")
        cid = CLASS_IDS[signal]
        assert a.tim[cid] == pytest.approx(SENTINEL.get(cid, 0.0) + shift, abs=1e-6)
        assert a.direction == "increase"


def test_deltas_and_confidence_bins():
    assert confidence_bin(0.12) == "high" and confidence_bin(-0.05) == "medium" and confidence_bin(0.01) == "low"
    rows = class_deltas({0: 0.5, 1: 0.5}, {0: 0.62, 1: 0.378, 2: 0.002})
    assert [r["class"] for r in rows] == ["trees", "water"]  # |delta| < 0.005 omitted
    assert rows[1]["confidence"] == "high" and rows[0]["delta"] == pytest.approx(-0.122)


def test_payload_shape():
    a = _analytics("land_use_change")
    out = a.payload["tim_modality_outputs"]
    assert out["LULC"]["internal_key"] == "tok_lulc@224" and out["LULC"]["kind"] == "class_logits"
    assert len(out["LULC"]["classes"]["sample"]) == 32 and out["tok_lulc@224"]["sample"] == out["LULC"]["classes"][
        "sample"]
    assert out["Coordinates"]["latitude"] == 1.0
    block = a.payload["profile_analytics"]["land_transition"]
    assert block["signal_class"] == "built" and block["direction"] == a.direction


def test_zero_water_means_zero_vessels():
    a = _analytics("oceanscout_ship_detection", mode="varied", sentinel={1: 0.6, 4: 0.4})
    if a.tim.get(0, 0.0) == 0:
        assert a.vessel_count == 0 and a.payload["profile_analytics"]["vessel_candidates"] == []
    fixed = _analytics("oceanscout_ship_detection", mode="fixed", sentinel={1: 0.6, 4: 0.4})
    assert fixed.tim[0] == pytest.approx(0.06)


def test_target_counts_exact():
    counts = target_counts({"0": 0.333333, "1": 0.333333, "2": 0.333334}, 100)
    assert counts.sum() == 100 and sorted(counts[:3]) == [33, 33, 34]


@pytest.mark.parametrize("profile", list(PROFILES))
def test_render_shares_match_fractions(profile):
    regions = [(0, (0, 0, 99, 99)), (6, (120, 120, 200, 223)), (1, (10, 150, 60, 200))]
    for i in range(10):
        a = _analytics(profile, f"poi_{i:06d}_t0001")
        spec = make_spec(f"poi_{i:06d}_t0001", profile, 224, a.tim, regions, a.signal)
        png = render_analysis_png(spec)
        shares = class_shares(png)
        for cid in set(shares) | set(a.tim):
            assert abs(shares.get(cid, 0.0) - a.tim.get(cid, 0.0)) <= 0.005
        assert png == render_analysis_png(spec)  # deterministic bytes


def test_render_keeps_regions_where_their_boxes_are():
    spec = make_spec("poi_1_t0000", "brief_only", 224, {0: 0.25, 4: 0.75}, [(0, (0, 0, 111, 111))], None)
    m = render_class_map(spec)
    assert m.shape == (224, 224) and m.dtype == np.uint8
    assert (m[:112, :112] == 0).mean() > 0.99


def test_render_scales_boxes_from_other_chip_sizes():
    spec = make_spec("poi_1_t0000", "brief_only", 448, {0: 0.25, 4: 0.75}, [(0, (0, 0, 223, 223))], None)
    assert spec["regions"] == [[0, 0, 0, 111, 111]]
