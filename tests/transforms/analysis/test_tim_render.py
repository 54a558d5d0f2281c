"""TiM analytics and the analysis-image renderer."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from pipeline.sample.tree import BIOME_NAMES, CHIP_STYLES, label_map, region_components, sidecar_regions
from transforms.analysis.render import (
    chip_sha256,
    class_shares,
    encode_palette_png,
    make_spec,
    render_analysis_png,
    render_class_map,
    render_tile_pngs,
    target_counts,
    tile_map,
)
from transforms.analysis.tim import PROFILES, build_analytics, class_deltas, confidence_bin, predicted_fractions
from transforms.classes import CLASS_IDS, PALETTE_RGB

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


def _tile(i: int, style: str = "clean"):
    """A generated tile as the build sees it: chip bytes, observed fractions, regions (class, box, area_px)
    and the true label map at 224 px."""
    cells = label_map(f"poi_{i:06d}_g001_t0000", 3, BIOME_NAMES[i % len(BIOME_NAMES)])
    counts = np.bincount(cells.ravel(), minlength=9)
    observed = {c: float(counts[c]) / cells.size for c in range(9) if counts[c]}
    regions = [(r["class_id"], tuple(r["bbox"]), r["area_px"]) for r in sidecar_regions(region_components(cells))]
    chip = CHIP_STYLES[style](cells, f"poi_{i:06d}_g001_t0000", 3)
    return chip, observed, regions, cells.repeat(4, 0).repeat(4, 1)


def _spec(i: int, profile: str, style: str = "clean"):
    chip, observed, regions, truth = _tile(i, style)
    a = _analytics(profile, f"poi_{i:06d}_g001_t0000", sentinel=observed)
    spec = make_spec(f"poi_{i:06d}_g001_t0000", profile, 224, a.tim, regions, a.signal, observed,
                     "images/s00000/x.png", chip_sha256(chip))
    return spec, chip, a, truth


@pytest.mark.parametrize("profile", list(PROFILES))
def test_render_shares_match_fractions(profile):
    for i in range(8):
        spec, chip, a, _ = _spec(i, profile)
        png = render_analysis_png(spec, chip)
        shares = class_shares(png)
        for cid in set(shares) | set(a.tim):
            assert abs(shares.get(cid, 0.0) - a.tim.get(cid, 0.0)) <= 0.0002  # 0.02 pp
        assert png == render_analysis_png(spec, chip)  # deterministic bytes
        assert png == render_tile_pngs(chip, [spec])[0]  # the per-tile path draws the same map


@pytest.mark.parametrize("shape,cell", [((112, 112), 2), ((37, 53), 1), ((1, 5), 3)])
def test_palette_png_decodes_to_the_map(shape, cell):
    """The hand-written PNG: repeated rows (Up filter) and rows that differ (no filter) both decode exactly,
    as a palette image with the class colours."""
    grid = np.random.default_rng(3).integers(0, len(PALETTE_RGB), shape).astype(np.uint8)
    class_map = grid.repeat(cell, 0).repeat(cell, 1)
    with Image.open(io.BytesIO(encode_palette_png(class_map))) as img:
        img.load()
        assert img.mode == "P" and img.size == class_map.shape[::-1]
        assert (np.asarray(img) == class_map).all()
        assert img.getpalette()[:3 * len(PALETTE_RGB)] == [v for rgb in PALETTE_RGB for v in rgb]


@pytest.mark.parametrize("style", ["clean", "murky"])
def test_brief_map_follows_the_chip(style):
    """The map is drawn from the chip's own layout: most cells agree with the true label map (the generator's
    labels, which the renderer never sees), far beyond painting the majority everywhere."""
    agree, majority = [], []
    for i in range(6):
        spec, chip, _, truth = _spec(i, "brief_only", style)
        m = render_class_map(spec, chip)
        agree.append((m == truth).mean())
        majority.append(np.bincount(truth.ravel()).max() / truth.size)
    assert np.mean(agree) >= 0.95 and np.mean(agree) > np.mean(majority) + 0.05


def _distance(mask: np.ndarray) -> np.ndarray:
    """Chebyshev distance to the mask by repeated dilation (test-only, slow and obvious)."""
    dist = np.where(mask, 0, -1)
    reached, step = mask.copy(), 0
    while not reached.all():
        step += 1
        grown = reached.copy()
        grown[1:] |= reached[:-1]
        grown[:-1] |= reached[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        dist[grown & ~reached] = step
        reached = grown
    return dist


def test_signal_grows_next_to_its_own_patches_and_shrinks_from_them():
    grown = shrunk = 0
    for i in range(40):
        spec, chip, a, _ = _spec(i, "flood_pulse")
        if a.signal not in a.sentinel or a.direction == "no_change":
            continue
        tile = tile_map(spec, chip)
        before = tile.observed.reshape(112, 112) == a.signal
        after = render_class_map(spec, chip, tile)[::2, ::2] == a.signal
        if a.direction == "increase":
            new = after & ~before
            distance = _distance(before)
            assert not (before & ~after).any()  # nothing of the signal is lost
            # it grew ring by ring into the nearest cells, however small its patches were
            assert np.percentile(distance[new], 75) <= np.percentile(distance[~after], 25)
            grown += 1
        else:
            assert (after & ~before).sum() == 0  # only cells that were the signal change
            shrunk += 1
    assert grown and shrunk


def test_render_refuses_a_chip_the_spec_does_not_name():
    spec, chip, _, _ = _spec(1, "brief_only")
    other, _, _, _ = _tile(2)
    with pytest.raises(ValueError, match="sha256"):
        render_class_map(spec, other)
    assert spec["chip"] == {"path": "images/s00000/x.png", "sha256": hashlib.sha256(chip).hexdigest()}


def test_render_refuses_a_spec_another_renderer_made():
    spec, chip, _, _ = _spec(1, "brief_only")
    with pytest.raises(ValueError, match="satsft-dw-map/2"):
        render_class_map({**spec, "renderer": "satsft-dw-map/2"}, chip)


def test_the_renderer_is_part_of_every_tiles_fingerprint(monkeypatch):
    """Maps of a new renderer differ, so a rebuild must not keep an earlier renderer's maps beside them."""
    import pipeline.build.config as config
    from transforms.rebuild.manifest import options_digest

    cfg = config.BuildConfig.create(input="/in", output="/out", check_paths=False)
    before = options_digest(cfg.shaping_options("0.1.0"))
    monkeypatch.setattr(config, "RENDERER", "satsft-dw-map/next")
    assert options_digest(cfg.shaping_options("0.1.0")) != before


def test_render_scales_boxes_from_other_chip_sizes():
    chip, observed, regions, _ = _tile(4)
    spec = make_spec("poi_1_t0000", "brief_only", 224, observed, regions, None, observed, "x.png", chip_sha256(chip))
    big_regions = [(c, tuple(2 * v + (k >= 2) for k, v in enumerate(box)), 4 * area) for c, box, area in regions]
    big = io.BytesIO()
    Image.open(io.BytesIO(chip)).resize((448, 448), Image.NEAREST).save(big, format="PNG")
    big_spec = make_spec("poi_1_t0000", "brief_only", 448, observed, big_regions, None, observed, "x.png",
                         chip_sha256(big.getvalue()))
    assert big_spec["regions"] == spec["regions"]
    assert (render_class_map(big_spec, big.getvalue()) == render_class_map(spec, chip)).mean() > 0.99


def test_sixteen_bit_grey_chips_are_stretched_not_clipped():
    """A 16-bit grey chip (some exports are) is scaled to its own range and draws the map its 8-bit grey
    version draws; clipped to 8 bits it would be white, leaving only the boxes to go by."""
    chip, observed, regions, truth = _tile(5)
    grey8 = np.asarray(Image.open(io.BytesIO(chip)).convert("L"))
    agreement = []
    for grey in (grey8, grey8.astype(np.uint16) * 200):
        buf = io.BytesIO()
        Image.fromarray(grey).save(buf, format="PNG")
        spec = make_spec("poi_1_t0000", "brief_only", 224, observed, regions, None, observed, "x.png",
                         chip_sha256(buf.getvalue()))
        agreement.append((render_class_map(spec, buf.getvalue()) == truth).mean())
    assert agreement[1] >= agreement[0] - 0.02, agreement  # clipped: 0.62 against 0.97
