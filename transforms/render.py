"""Analysis images: a coherent predicted class map whose pixel shares equal the predicted fractions.

The map is built on a half-resolution grid (112x112 cells of 2x2 px) and upsampled, which keeps the hot
path to a few vectorised numpy passes. Sentinel boxes are painted where they are; a class that must shrink
gives up its box cells highest on one smooth seeded noise field; the cells left over are filled class by
class along the level sets of that field (sorted with a radix sort on quantised keys), the signal class
first and pulled towards its own boxes, so growth happens next to existing patches. Counts are exact per
cell, so shares match the fractions to within 1/(2*cells), far inside the 0.5 pp contract.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from transforms.classes import NUM_CLASSES, PALETTE_RGB

RENDERER = "satsft-dw-map/1"
IMAGE_SIZE = 224
GRID = 112
NOISE_KNOTS = 6
_PALETTE_BYTES = bytes(v for rgb in PALETTE_RGB for v in rgb)


def make_spec(tile_stem: str, profile: str, size: int, fractions: dict[int, float],
              regions: list[tuple[int, tuple[int, int, int, int]]], signal: int | None) -> dict[str, Any]:
    """Everything needed to re-render one analysis image; regions are rescaled to the image size."""
    scale = IMAGE_SIZE / size
    boxes = []
    for class_id, (x1, y1, x2, y2) in regions:
        boxes.append([class_id, int(x1 * scale), int(y1 * scale),
                      min(int((x2 + 1) * scale) - 1, IMAGE_SIZE - 1), min(int((y2 + 1) * scale) - 1, IMAGE_SIZE - 1)])
    return {"renderer": RENDERER, "size": IMAGE_SIZE, "grid": GRID, "seed": f"{tile_stem}|{profile}",
            "fractions": {str(c): v for c, v in sorted(fractions.items())}, "regions": boxes,
            "signal_class": -1 if signal is None else signal}


def target_counts(fractions: dict[str, float] | dict[int, float], total: int) -> np.ndarray:
    """Largest-remainder rounding: counts that sum to ``total`` and sit within 1 of frac * total."""
    frac = np.zeros(NUM_CLASSES)
    for c, v in fractions.items():
        frac[int(c)] = max(float(v), 0.0)
    if frac.sum() <= 0:
        frac[:] = 1.0
    exact = frac / frac.sum() * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        order = np.lexsort((np.arange(NUM_CLASSES), -(exact - counts)))
        counts[order[:short]] += 1
    return counts


@lru_cache(maxsize=8)
def interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    w = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] = 1 - w
    m[np.arange(n_out), lo + 1] += w
    return m


@lru_cache(maxsize=4)
def _axis(grid: int) -> np.ndarray:
    return np.arange(grid, dtype=np.float32)


def _box_distance(axis: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Distance along one axis to the interval [lo, hi] (0 inside); boxes are separable, so 2-D
    Chebyshev distances are an outer max of two of these instead of full-grid passes per box."""
    return np.maximum(np.maximum(lo - axis, axis - hi), 0)


def _quantise(field: np.ndarray) -> np.ndarray:
    """Flat uint16 keys: numpy sorts them with an O(n) radix sort, and ties break by cell index, so maps
    stay deterministic."""
    lo, hi = field.min(), field.max()
    return ((field.ravel() - lo) * (65535.0 / max(hi - lo, 1e-9))).astype(np.uint16)


def render_class_map(spec: dict[str, Any]) -> np.ndarray:
    """The class map (uint8, size x size) described by ``spec``; deterministic for a given spec."""
    grid, size = int(spec["grid"]), int(spec["size"])
    cell = size // grid
    targets = target_counts(spec["fractions"], grid * grid)
    noise = np.frombuffer(hashlib.shake_256(f"{spec['seed']}\x1frender".encode()).digest(
        2 * NOISE_KNOTS * NOISE_KNOTS + NUM_CLASSES), dtype=np.uint8)
    axis = _axis(grid)

    m = interp_matrix(grid, NOISE_KNOTS)
    knots = noise[:2 * NOISE_KNOTS * NOISE_KNOTS].view("<u2").reshape(NOISE_KNOTS, NOISE_KNOTS) / 65535.0
    field = m @ knots @ m.T
    shrink_keys = _quantise(field)
    box_class = np.full((grid, grid), -1, dtype=np.int16)
    signal = int(spec["signal_class"])
    near_signal = None
    boxes = sorted(spec["regions"], key=lambda b: -((b[3] - b[1] + 1) * (b[4] - b[2] + 1)))
    for class_id, x1, y1, x2, y2 in boxes:  # large first, so small boxes stay visible on top
        cx1, cy1, cx2, cy2 = x1 // cell, y1 // cell, x2 // cell, y2 // cell
        box_class[cy1:cy2 + 1, cx1:cx2 + 1] = class_id
        if class_id == signal:
            dist = np.maximum(_box_distance(axis, cy1, cy2)[:, None], _box_distance(axis, cx1, cx2)[None, :])
            near_signal = dist if near_signal is None else np.minimum(near_signal, dist)

    flat_class = box_class.ravel()
    have = np.bincount(flat_class + 1, minlength=NUM_CLASSES + 1)[1:]  # slot 0 counts the empty cells
    _shrink_to_targets(flat_class, shrink_keys, targets, have)
    remaining = targets - np.minimum(have, targets)  # shrinking leaves exactly the target in each class

    order_classes = [int(c) for c in np.argsort(noise[-NUM_CLASSES:], kind="stable")]
    grow_keys = shrink_keys
    if signal >= 0 and near_signal is not None:  # grow the signal class next to its own regions
        grow_keys = _quantise(field - 2.0 * np.exp(near_signal * (-16.0 / grid)))
        order_classes.remove(signal)
        order_classes.insert(0, signal)
    free = np.flatnonzero(flat_class < 0)
    ranked = free[np.argsort(grow_keys[free], kind="stable")]
    flat_class[ranked] = np.repeat(np.array(order_classes, dtype=np.int16), remaining[order_classes])
    return _upsample(flat_class.reshape(grid, grid).astype(np.uint8), cell)


def _shrink_to_targets(flat_class: np.ndarray, keys: np.ndarray, targets: np.ndarray, have: np.ndarray) -> None:
    """Empty the box cells of each over-full class that sit highest on the noise field, so what stays is one
    piece; ties go by cell index. Usually one or two classes are over; sorting only their cells is cheaper
    than ranking every box cell at once."""
    for c in np.flatnonzero(have > targets):
        idx = np.flatnonzero(flat_class == c)
        flat_class[idx[np.argsort(keys[idx], kind="stable")[targets[c]:]]] = -1


def _upsample(grid_map: np.ndarray, cell: int) -> np.ndarray:
    """Each grid cell to a cell x cell block. For 2x2, one uint8 -> uint16 multiply doubles every column (both
    bytes equal, so byte order does not matter) and one broadcast doubles the rows: 6 us against 47 for
    two np.repeat calls."""
    n = grid_map.shape[0]
    if cell == 2:  # the only size specs carry today (224 px over a 112 grid)
        wide = (grid_map.astype(np.uint16) * 257).view(np.uint8)
        out = np.empty((n, 2, 2 * n), np.uint8)
        out[:] = wide[:, None, :]
        return out.reshape(2 * n, 2 * n)
    return grid_map.repeat(cell, axis=0).repeat(cell, axis=1) if cell > 1 else grid_map


def encode_palette_png(class_map: np.ndarray) -> bytes:
    img = Image.fromarray(class_map, mode="P")
    img.putpalette(_PALETTE_BYTES)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def render_analysis_png(spec: dict[str, Any]) -> bytes:
    return encode_palette_png(render_class_map(spec))


def class_shares(png: bytes) -> dict[int, float]:
    """Per-class pixel shares of a rendered analysis PNG (used by tests and ``satsft`` checks)."""
    arr = np.asarray(Image.open(io.BytesIO(png)))
    counts = np.bincount(arr.ravel(), minlength=NUM_CLASSES)
    return {c: float(counts[c]) / arr.size for c in range(NUM_CLASSES) if counts[c]}


__all__ = ["make_spec", "render_class_map", "render_analysis_png", "class_shares", "target_counts"]
