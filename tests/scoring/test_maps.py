"""scoring.maps: the best map a grid can draw, and how a map does inside each region's box and outside them."""

from __future__ import annotations

import numpy as np

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
