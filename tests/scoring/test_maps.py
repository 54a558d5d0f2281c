"""scoring.maps: the best map a grid can draw, and how a map does inside each region's box and outside them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from scoring.maps import cell_ceiling, region_agreement, score_map
from transforms.input.sidecars import Region


def test_cell_ceiling_takes_each_cells_commonest_class():
    truth = np.zeros((4, 4), np.uint8)
    truth[0, 0:3] = 5
    truth[1, 0] = 5  # cell (0, 0): three of its four pixels are 5; cell (0, 1): one of four
    truth[3, 3] = 2
    best = cell_ceiling(truth, 2)
    assert (best[0:2, 0:2] == 5).all() and (best[0:2, 2:4] == 0).all() and (best[2:4, 2:4] == 0).all()
    assert (cell_ceiling(truth, 1) == truth).all()
    tie = np.array([[1, 3], [3, 1]], np.uint8)
    assert (cell_ceiling(tie, 2) == 1).all()  # a tie goes to the lower class id
    assert score_map(best, truth).pixel_agreement == 13 / 16


def test_region_agreement_inside_boxes_and_outside():
    truth = np.zeros((8, 8), np.uint8)
    truth[1:3, 1:4] = 6  # a 6-pixel region, box (1, 1)-(3, 2)
    truth[6, 6] = 6  # a speck of 6 outside every box of 6
    pred = np.zeros_like(truth)
    pred[1:3, 1:3] = 6  # 4 of the region's 6 pixels
    pred[7, 0] = 6  # a 6 placed outside its boxes, wrongly
    regions = [Region("built", 6, (1, 1, 3, 2), 6)]
    per_region, (true_out, map_out, right_out) = region_agreement(pred, truth, truth, regions)
    assert per_region == [(6, 4 / 6, 1.0)]
    # Outside its class's boxes: every class-0 pixel (0 has no box) and the speck; the map's 6 at (7, 0) is
    # outside too, and of those the map has right every 0 except where it put that 6, and misses the speck.
    assert true_out == 64 - 6 and map_out == 64 - 4
    assert right_out == (64 - 6) - 2


def _palette_png(path, ids: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(ids.astype(np.uint8), "P")
    img.putpalette([v for c in range(9) for v in (c * 20, c * 20, c * 20)])
    img.save(path)


def test_map_report_scores_what_it_can_and_says_why_not_the_rest(tmp_path):
    """Every brief_only map is scored, has no label map, or has one that cannot be scored, with the reason; a
    label map drawn at another size is resampled to the map's."""
    from PIL import Image

    from scoring.maps import BRIEF_SUFFIX, map_report, map_table
    from transforms.output.tree import ANALYSIS_DIR

    truth = np.zeros((8, 8), np.uint8)
    truth[:, 4:] = 1
    pred = truth.copy()
    pred[0:2, 4:] = 0  # 8 of class 1's 32 pixels painted 0: IoU 24/32 for class 1, 32/40 for class 0
    maps, labels = tmp_path / "out" / ANALYSIS_DIR / "s00000", tmp_path / "labels"
    for stem in ("a", "b", "c", "d", "e"):
        _palette_png(maps / f"{stem}{BRIEF_SUFFIX}", pred)
    _palette_png(labels / "a.png", truth)
    Image.fromarray(truth.repeat(2, 0).repeat(2, 1).astype(np.uint16)).save(labels / "b.png")  # 16-bit, 2x size
    Image.new("RGB", (8, 8)).save(labels / "c.png")
    (labels / "d.png").write_bytes(b"not a png")
    report = map_report(str(tmp_path / "out"), str(labels))  # e has no label map
    assert report["tiles"] == 2 and report["maps"] == 5 and report["maps_without_labels"] == 1
    assert report["mean_iou"] == (24 / 32 + 32 / 40) / 2 and report["mean_iou_non_majority"] == 24 / 32
    assert report["class_iou"] == {"water": {"tiles": 2, "mean_iou": 32 / 40}, "trees": {"tiles": 2, "mean_iou": 0.75}}
    assert report["labels_not_scored"] == {"c": "mode RGB: a label map holds one class id per pixel (palette or "
                                                 "grey PNG, or a one-band GeoTIFF such as Dynamic World's label band)",
                                           "d": "not a readable image"}
    assert "| tiles scored | 2 of 5 maps (2 places) |" in map_table(report) and "not scored: d: not a readable " \
        "image" in map_table(report)
    assert "interval_95" not in report and "no interval: under 10 places" in map_table(report)
    _palette_png(labels / "b.png", np.full((8, 8), 9))
    assert map_report(str(tmp_path / "out"), str(labels))["labels_not_scored"]["b"] == \
        "class id 9: Dynamic World ids run 0-8"
    _palette_png(labels / "x" / "a.png", truth)  # a second label map for the one tile still scored: none left
    with pytest.raises(ValueError, match="could be scored: 4 named after tiles .* a: two files for one tile"):
        map_report(str(tmp_path / "out"), str(labels))
    (labels / "x" / "a.png").unlink()
    (maps / f"a{BRIEF_SUFFIX}").write_bytes(b"cut short")  # the map, not the label: it stopped eval --labels
    with pytest.raises(ValueError, match="could be scored: 4 named after tiles cannot be scored, e.g. a: its "
                                         "analysis map: not a readable image"):
        map_report(str(tmp_path / "out"), str(labels))
    _palette_png(labels / "e.png", truth)  # e scored: a is one tile not scored among others
    os.mkfifo(labels / "c2.png")  # a named pipe: reading it waited for a writer, and eval with it
    _palette_png(maps / f"c2{BRIEF_SUFFIX}", pred)
    assert "not a regular file" in map_report(str(tmp_path / "out"), str(labels))["labels_not_scored"]["c2"]
    assert map_report(str(tmp_path / "out"), str(labels))["labels_not_scored"]["a"] == \
        "its analysis map: not a readable image"


def test_label_maps_as_earth_engine_exports_them_are_read(tmp_path):
    """Dynamic World's label band exported from Earth Engine is a one-band GeoTIFF (compressed, often tiled):
    eval --labels listed PNGs only and said no label map was named after a tile. A .tif or .TIFF scores as the
    same ids in a PNG do; a GeoTIFF of reflectances (float) is named as no label map."""
    from PIL import Image

    from scoring.maps import BRIEF_SUFFIX, map_report
    from transforms.output.tree import ANALYSIS_DIR

    truth = np.zeros((16, 16), np.uint8)
    truth[:, 5:] = 4
    pred = truth.copy()
    pred[:3] = 0
    maps, labels = tmp_path / "out" / ANALYSIS_DIR / "s00000", tmp_path / "labels"
    for stem in ("a", "b", "c"):
        _palette_png(maps / f"{stem}{BRIEF_SUFFIX}", pred)
    _palette_png(labels / "png" / "a.png", truth)
    want = map_report(str(tmp_path / "out"), str(labels / "png"))
    (labels / "tif").mkdir(parents=True)
    Image.fromarray(truth, "L").save(labels / "tif" / "a.tif", compression="tiff_adobe_deflate")
    Image.fromarray(truth, "L").save(labels / "tif" / "b.TIFF", compression="tiff_lzw")
    Image.fromarray(truth.astype(np.float32), "F").save(labels / "tif" / "c.tif")
    got = map_report(str(tmp_path / "out"), str(labels / "tif"))
    assert got["tiles"] == 2 and got["mean_iou"] == want["mean_iou"] and got["class_iou"] == {
        k: {**v, "tiles": 2} for k, v in want["class_iou"].items()}
    assert got["labels_not_scored"]["c"].startswith("mode F: a label map holds one class id per pixel")
    nodata = truth.astype(np.int32)
    nodata[0, 0] = -1  # a 32-bit GeoTIFF's no-data value, which indexing would have read as the last class
    Image.fromarray(nodata, "I").save(labels / "tif" / "c.tif")
    assert map_report(str(tmp_path / "out"), str(labels / "tif"))["labels_not_scored"]["c"] == \
        "class id -1: Dynamic World ids run 0-8"


def test_a_label_map_claiming_more_pixels_than_a_chip_has_is_not_decoded():
    """A 20,000 px square label map stopped eval --labels with Pillow's DecompressionBombError traceback; one
    under Pillow's limit was decoded whole. Both are refused from the header (a 1 px PNG claiming the size)."""
    import io
    import struct
    import zlib

    from PIL import Image

    from scoring.maps import read_label_map

    def claiming(side: int) -> bytes:
        buf = io.BytesIO()
        Image.new("L", (1, 1)).save(buf, "PNG")
        data = bytearray(buf.getvalue())
        ihdr = struct.pack(">II", side, side) + bytes(data[24:29])
        data[16:33] = ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        return bytes(data)

    for side in (5000, 20000):
        with pytest.raises(ValueError, match="than a chip's map holds"):
            read_label_map(claiming(side), (224, 224))
    assert read_label_map(_png_bytes(np.full((4, 4), 2)), (8, 8)).shape == (8, 8)  # a small one: resampled


def _png_bytes(ids: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(ids.astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def test_map_intervals_resample_places_as_averaging_the_drawn_tiles_would():
    """Two views of each of 12 places: the interval is the spread of the mean over tiles when places are drawn
    with replacement (a place's views go together), checked against averaging each draw's tiles outright."""
    from scoring.intervals import weights
    from scoring.maps import MAP_MEASURES, MapScore, map_intervals

    scores = {}
    for p in range(12):
        for view in range(2):
            iou = 0.5 + 0.04 * p + 0.01 * view
            scores[f"poi_{p:06d}_g001_t{view:04d}"] = MapScore(iou, None if p % 3 == 0 else iou - 0.1, 0.9, 0.6)
    got = map_intervals(scores)
    assert got["places"] == 12 and set(got["interval_95"]) == set(MAP_MEASURES)
    drawn = weights(12)
    means = []
    for counts in drawn:
        tiles = [s for p, n in enumerate(counts) for _ in range(n) for s in
                 (scores[f"poi_{p:06d}_g001_t0000"], scores[f"poi_{p:06d}_g001_t0001"])]
        rest = [s.mean_iou_non_majority for s in tiles if s.mean_iou_non_majority is not None]
        means.append((np.mean([s.mean_iou for s in tiles]), np.mean(rest) if rest else 0.0))
    for j, name in enumerate(("mean_iou", "mean_iou_non_majority")):
        expected = np.percentile([m[j] for m in means], [2.5, 97.5])
        assert got["interval_95"][name] == pytest.approx(list(expected), abs=1e-6), name
    assert got["interval_95"]["pixel_agreement"] == [0.9, 0.9]
    low, high = got["interval_95"]["mean_iou"]
    assert low < np.mean([s.mean_iou for s in scores.values()]) < high


def test_labels_given_a_mix_whose_report_is_damaged_still_say_it_is_a_mix(tmp_path, capsys):
    """The advice names a mix's builds from its report; one that cannot be read (since reports are checked for
    their shape) stopped with "cannot be read" instead of saying what to score."""
    from pipeline.cli import main

    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "mix_report.json").write_text("{}")
    (tmp_path / "labels").mkdir()
    assert main(["eval", str(tmp_path / "mix"), "--labels", str(tmp_path / "labels")]) == 2
    assert "is a mix; `satsft eval --labels` scores the maps of a build" in capsys.readouterr().err
