"""Analysis images: a coherent predicted class map whose pixel shares equal the predicted fractions.

The map is built on a half-resolution grid (112x112 cells of 2x2 px) and upsampled, which keeps the hot
path to a few vectorised numpy passes: sentinel boxes are painted where they are, classes that must shrink
give up their box cells farthest from the box centres, and the cells left over are filled class by class
along the level sets of one smooth seeded noise field, with the signal class first and pulled towards its
own boxes, so that growth happens next to existing patches. Counts are exact per cell, so shares match the
fractions to within 1/(2*cells), far inside the 0.5 pp contract.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from transforms.classes import NUM_CLASSES, PALETTE_RGB
from transforms.ids import stable_rng

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
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    w = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] = 1 - w
    m[np.arange(n_out), lo + 1] += w
    return m


@lru_cache(maxsize=4)
def _cell_coords(grid: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:grid, 0:grid]
    return ys.astype(np.float32), xs.astype(np.float32)


def render_class_map(spec: dict[str, Any]) -> np.ndarray:
    """The class map (uint8, size x size) described by ``spec``; deterministic for a given spec."""
    grid, size = int(spec["grid"]), int(spec["size"])
    cell = size // grid
    n_cells = grid * grid
    targets = target_counts(spec["fractions"], n_cells)
    rng = stable_rng(spec["seed"], "render")
    ys, xs = _cell_coords(grid)

    box_class = np.full((grid, grid), -1, dtype=np.int16)
    box_prio = np.zeros((grid, grid), dtype=np.float32)
    signal = int(spec["signal_class"])
    near_signal = np.full((grid, grid), np.inf, dtype=np.float32)
    boxes = sorted(spec["regions"], key=lambda b: -((b[3] - b[1] + 1) * (b[4] - b[2] + 1)))
    for class_id, x1, y1, x2, y2 in boxes:  # large first, so small boxes stay visible on top
        cx1, cy1, cx2, cy2 = x1 // cell, y1 // cell, x2 // cell, y2 // cell
        box_class[cy1:cy2 + 1, cx1:cx2 + 1] = class_id
        hx, hy = (cx2 - cx1) / 2 + 0.5, (cy2 - cy1) / 2 + 0.5
        sub_y, sub_x = ys[cy1:cy2 + 1, cx1:cx2 + 1], xs[cy1:cy2 + 1, cx1:cx2 + 1]
        box_prio[cy1:cy2 + 1, cx1:cx2 + 1] = np.maximum(
            np.abs(sub_x - (cx1 + cx2) / 2) / hx, np.abs(sub_y - (cy1 + cy2) / 2) / hy)
        if class_id == signal:
            dist = np.maximum(np.maximum(cx1 - xs, xs - cx2), np.maximum(cy1 - ys, ys - cy2)).clip(min=0)
            np.minimum(near_signal, dist, out=near_signal)

    flat_class = box_class.ravel()
    flat_prio = box_prio.ravel()
    have = np.bincount(flat_class[flat_class >= 0], minlength=NUM_CLASSES)
    for c in np.flatnonzero(have > targets):  # shrink towards the box centres
        idx = np.flatnonzero(flat_class == c)
        drop = idx[np.argsort(flat_prio[idx], kind="stable")[targets[c]:]]
        flat_class[drop] = -1
    remaining = targets - np.bincount(flat_class[flat_class >= 0], minlength=NUM_CLASSES)

    knots = rng.random((NOISE_KNOTS, NOISE_KNOTS))
    m = _interp_matrix(grid, NOISE_KNOTS)
    field = (m @ knots @ m.T).astype(np.float32)
    order_classes = list(rng.permutation(NUM_CLASSES))
    if signal >= 0 and np.isfinite(near_signal).any():
        field -= 2.0 * np.exp(-near_signal / (grid / 16))
        order_classes.remove(signal)
        order_classes.insert(0, signal)
    free = np.flatnonzero(flat_class < 0)
    ranked = free[np.argsort(field.ravel()[free], kind="stable")]
    bands = np.repeat(np.array(order_classes, dtype=np.int16), remaining[order_classes])
    flat_class[ranked] = bands
    out = flat_class.reshape(grid, grid).astype(np.uint8)
    return out.repeat(cell, axis=0).repeat(cell, axis=1) if cell > 1 else out


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
