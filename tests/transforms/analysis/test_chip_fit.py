"""The chip's cells as features for the colour models (transforms/analysis/chip_fit.py)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from transforms.analysis.chip_fit import chip_cells

GRID = 112


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_texture_tells_a_rough_half_from_a_smooth_one_of_the_same_colour():
    pixels = np.full((224, 224, 3), 120, np.int16)
    checker = (np.indices((224, 112)).sum(0) % 2) * 60 - 30  # +-30 levels, one pixel each: rough, mean 120
    pixels[:, 112:] += checker[..., None]
    cells = chip_cells(_png(pixels), GRID).reshape(GRID, GRID, 4)
    smooth, rough = cells[:, :50], cells[:, 62:]
    assert np.allclose(smooth[..., :3], 120, atol=0.5) and np.allclose(rough[..., :3], 120, atol=0.5)
    assert np.allclose(smooth[..., 3], 0) and np.allclose(rough[..., 3], 30, atol=0.5)


def test_a_chip_at_the_grid_size_has_colour_and_no_texture():
    pixels = np.random.default_rng(3).integers(0, 256, (GRID, GRID, 3))
    cells = chip_cells(_png(pixels), GRID)
    assert cells.shape == (GRID * GRID, 4) and not cells[:, 3].any()
