"""Region boxes drawn into the analysis map (transforms/analysis/patches.py)."""

from __future__ import annotations

import numpy as np

from transforms.analysis.patches import MAX_DRAWN_CELLS, draw_regions

GRID = 16
CLASSES = np.array([1, 4, 6])


def _flat(lead_for: int | None = None, cells: list[int] | None = None, lead: float = 1.0) -> np.ndarray:
    """Scores that favour class 4 everywhere a little; ``lead_for`` leads by ``lead`` nats at ``cells``."""
    scores = np.zeros((GRID * GRID, len(CLASSES)), np.float32)
    scores[:, 1] = 0.5
    if lead_for is not None:
        scores[cells, list(CLASSES).index(lead_for)] = 0.5 + lead
    return scores


def test_a_region_takes_exactly_its_area_inside_its_box_and_holds_it():
    labels, held = draw_regions(_flat(), CLASSES, [(6, 2, 3, 7, 8, 11.0)], GRID)
    grid = labels.reshape(GRID, GRID)
    assert (grid == 6).sum() == 11 and held.sum() == 11
    ys, xs = np.nonzero(grid == 6)
    assert ys.min() >= 3 and ys.max() <= 8 and xs.min() >= 2 and xs.max() <= 7
    assert (labels[~held] == 4).all()  # elsewhere the best-scoring class


def test_with_no_colour_to_go_by_the_patch_fills_its_box_from_the_middle():
    labels, _ = draw_regions(_flat(), CLASSES, [(6, 0, 0, 8, 8, 9.0)], GRID)
    ys, xs = np.nonzero(labels.reshape(GRID, GRID) == 6)
    assert sorted(zip(ys.tolist(), xs.tolist(), strict=True)) == [(y, x) for y in (3, 4, 5) for x in (3, 4, 5)]


def test_colour_picks_the_cells_within_the_box():
    cells = [5 * GRID + 1, 5 * GRID + 2, 6 * GRID + 1]  # an off-centre corner of the box that looks like class 1
    labels, _ = draw_regions(_flat(1, cells, lead=2.0), CLASSES, [(1, 0, 4, 7, 11, 3.0)], GRID)
    assert sorted(np.flatnonzero(labels == 1).tolist()) == sorted(cells)


def test_a_small_region_inside_a_bigger_ones_box_keeps_its_cells():
    small = (1, 6, 6, 7, 7, 4.0)  # a 2x2 patch, drawn first
    big = (6, 4, 4, 11, 11, 40.0)  # its box covers the small one's
    labels, held = draw_regions(_flat(), CLASSES, [big, small], GRID)
    grid = labels.reshape(GRID, GRID)
    assert (grid[6:8, 6:8] == 1).all() and (grid == 6).sum() == 40 and held.sum() == 44


def test_a_cell_confidently_another_class_is_not_taken_while_others_are_free():
    box = [y * GRID + x for y in range(2) for x in range(2)]
    scores = _flat()
    scores[box[:2], 1] = 10.0  # class 4 by 9.5 nats over class 6
    labels, _ = draw_regions(scores, CLASSES, [(6, 0, 0, 1, 1, 2.0)], GRID)
    assert sorted(np.flatnonzero(labels == 6).tolist()) == box[2:]
    labels, _ = draw_regions(scores, CLASSES, [(6, 0, 0, 1, 1, 3.0)], GRID)  # too few others: area still holds
    assert (labels == 6).sum() == 3


def test_sprawling_regions_and_classes_the_tile_lacks_are_left_to_colour():
    big = (6, 0, 0, GRID - 1, GRID - 1, float(MAX_DRAWN_CELLS + 1))
    absent = (9, 0, 0, 3, 3, 4.0)
    labels, held = draw_regions(_flat(), CLASSES, [big, absent], GRID)
    assert not held.any() and (labels == 4).all()


def test_drawing_is_deterministic_under_ties():
    regions = [(6, 0, 0, 5, 5, 7.0), (1, 3, 3, 9, 9, 7.0)]
    first = draw_regions(_flat(), CLASSES, regions, GRID)
    again = draw_regions(_flat(), CLASSES, list(reversed(regions)), GRID)
    assert (first[0] == again[0]).all() and (first[1] == again[1]).all()


def test_counts_settle_outside_the_drawn_cells():
    from transforms.analysis.chip_fit import Layout
    from transforms.analysis.render import neighbourhood_shares, settle_counts

    scores = _flat()
    labels, held = draw_regions(scores, CLASSES, [(6, 0, 0, 3, 3, 10.0)], GRID)
    layout = Layout(CLASSES, scores, labels, held)
    targets = np.zeros(9, np.int64)
    targets[[1, 4, 6]] = [0, GRID * GRID - 20, 20]  # class 6 needs 10 more cells than its region drew
    beside = neighbourhood_shares(labels, CLASSES, GRID)
    settled = settle_counts(labels, layout, beside, targets, held=held)
    assert (settled[held] == 6).all() and (settled == 6).sum() == 20
    targets[[4, 6]] = [GRID * GRID - 4, 4]  # fewer than drawn: only then are drawn cells given up
    settled = settle_counts(labels, layout, beside, targets, held=held)
    assert (settled == 6).sum() == 4 and (settled[~held] == 4).all()
