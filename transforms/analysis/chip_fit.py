"""The chip's own layout as class scores: which class each analysis-map cell most likely shows.

A tile sidecar says where each class's patches are (region boxes and how many pixels of each box are the
class) and how much of the tile each class covers; the chip says what the classes look like in this scene.
Per tile, a colour model per class is fitted from the cells its boxes cover (linear discriminants with one
pooled covariance, refitted once on the box cells that the model itself assigns to the class, so a box that
is mostly another class does not spoil its colour). Every cell then scores each class by colour and by a
prior from the boxes (a cell in a box of class c is c with the box's fill ratio; elsewhere c is as likely as
the pixels c has outside its regions). Then each region's box is drawn with exactly its area of its class
(``patches``), the colours are fitted again on that drawn map (a small class now has cells of its own to
learn from, where before it shared its boxes with the classes around it), and the boxes are drawn again.
Nothing assumes particular chip colours: murky, hazy or colour-cast chips only shift the models.

Scores and the drawn map are computed once per tile; each analysis profile then fixes exact counts from them
(``render``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from transforms.analysis.patches import Region, draw_regions

FIT_ROUNDS = 1
SMOOTHING = 0.3  # share of a cell's colour taken from its 3x3 neighbourhood: a light smoothness prior
RIDGE = 4.0  # added to the pooled covariance's diagonal (8-bit levels squared): sensor noise floor
MIN_PRIOR = 1e-4


@dataclass(frozen=True)
class Layout:
    """Per-cell scores (cells x classes, row-major cells) of the classes the tile has, in ``classes`` order;
    ``first``: the first labelling (region boxes drawn, the best-scoring class elsewhere) and ``held``: the
    cells a region drew, which keep their class while counts settle."""

    classes: np.ndarray
    scores: np.ndarray
    first: np.ndarray
    held: np.ndarray
    columns: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A plain dict: the profiles look columns up a few dozen times per tile, numpy would cost 5 us each.
        object.__setattr__(self, "columns", {int(c): i for i, c in enumerate(self.classes)})

    def column(self, class_id: int) -> int:
        """Where ``class_id`` is in ``scores``, or -1 when the tile does not have it."""
        return self.columns.get(int(class_id), -1)


class ChipError(ValueError):
    """The chip cannot be used for the map: it does not decode, or it is not the chip the spec names."""


def _as_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB of any chip mode; 16-bit and float greys are stretched to their own range first (Pillow's
    own conversion clips them, which would paint a 16-bit chip white)."""
    if img.mode.startswith(("I", "F")):
        values = np.asarray(img, dtype=np.float32)
        top = float(values.max())
        grey = (values * (255.0 / top) if top > 0 else values).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return img.convert("RGB")


def chip_cells(chip: bytes, grid: int) -> np.ndarray:
    """Per cell: the chip's colour averaged onto the grid, each cell mixed with its 3x3 neighbourhood (a light
    smoothness prior: noise and texture speckle less, edges stay put), and its texture, the spread of the
    brightness within the cell averaged over the same neighbourhood (roofs, yards and streets are rough where
    fields of the same colour are smooth): (grid*grid, 4) float32. Pillow does the colour work in C, several
    times faster than numpy on arrays this small."""
    try:
        with Image.open(io.BytesIO(chip)) as img:
            img.load()
            rgb = img if img.mode == "RGB" else _as_rgb(img)
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, zlib and bomb errors
        raise ChipError(f"chip does not decode: {err.__class__.__name__}: {str(err)[:200]}") from err
    if rgb.size[0] != 2 * grid:  # every chip size at two pixels per cell (a grid-sized chip has no texture)
        rgb = rgb.resize((2 * grid, 2 * grid), Image.BOX)
    luma = np.asarray(rgb.convert("L"), dtype=np.float32)
    corners = luma[0::2, 0::2], luma[0::2, 1::2], luma[1::2, 0::2], luma[1::2, 1::2]
    mean = sum(corners) * np.float32(0.25)  # four strided slices: ten times faster than var over two axes
    spread = sum((c - mean) ** 2 for c in corners) * np.float32(0.25)
    texture = np.sqrt(_neighbourhood_mean(spread))
    cells = rgb.reduce(2)
    smooth = Image.blend(cells, cells.filter(ImageFilter.BoxBlur(1)), SMOOTHING)
    out = np.empty((grid * grid, 4), np.float32)
    out[:, :3] = np.asarray(smooth, dtype=np.float32).reshape(-1, 3)
    out[:, 3] = texture.ravel()
    return out


def _neighbourhood_mean(a: np.ndarray) -> np.ndarray:
    """Each cell's 3x3 neighbourhood mean, edges repeated."""
    padded = np.pad(a, 1, mode="edge")
    n, m = a.shape
    total = np.zeros_like(a)
    for dy in range(3):
        for dx in range(3):
            total += padded[dy:dy + n, dx:dx + m]
    return total / 9


def box_fill(regions: list[Region], classes: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(fill: classes x grid x grid, the best fill ratio of a box of the class over each cell, 0 outside its
    boxes; region cells per class). Regions of classes the tile does not have are ignored."""
    column = {int(c): i for i, c in enumerate(classes)}
    fill = np.zeros((len(classes), grid, grid), np.float32)
    area = np.zeros(len(classes))
    for c, x1, y1, x2, y2, cells in regions:
        if c not in column:
            continue
        i = column[c]
        ratio = min(cells / ((x2 - x1 + 1) * (y2 - y1 + 1)), 1.0)
        view = fill[i, y1:y2 + 1, x1:x2 + 1]
        np.maximum(view, ratio, out=view)
        area[i] += cells
    return fill, area


def _discriminants(features: np.ndarray, weights: np.ndarray, have: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class means, pooled inverse covariance and the linear discriminant (A, b) with score = x.A_c + b_c
    (float64 features, centred, so the scatter's subtraction keeps its precision)."""
    wsum = weights.sum(1)
    means = np.zeros((len(weights), features.shape[1]))
    means[have] = (weights[have] @ features) / wsum[have, None]
    scatter = (features.T * weights.sum(0)) @ features - (means[have].T * wsum[have]) @ means[have]
    cov = scatter / max(float(wsum.sum()), 1.0) + np.eye(features.shape[1]) * RIDGE
    precision = np.linalg.inv(cov)
    a = means @ precision
    return means, precision, a.astype(np.float32), (-0.5 * (a * means).sum(1)).astype(np.float32)


def chip_layout(chip: bytes, regions: list[Region], targets: np.ndarray, grid: int) -> Layout:
    """Scores of every class the tile has at every cell, for a chip, its regions (grid cells) and its exact
    class counts. Colour models are fitted on every other cell in each direction (a quarter of the cells is
    plenty for 3 numbers per class and costs a quarter); the scores cover every cell."""
    features = chip_cells(chip, grid)
    n = grid * grid
    classes = np.flatnonzero(targets > 0)
    fill, region_cells = box_fill(regions, classes, grid)
    features -= 128.0  # scores do not care, and the second moments below keep their precision
    sample = features.reshape(grid, grid, -1)[::2, ::2].reshape(-1, features.shape[1])
    sample64 = sample.astype(np.float64)
    fill_s = fill[:, ::2, ::2].reshape(len(classes), -1)
    inside_s = fill_s > 0
    seeded = inside_s.any(1)
    # First guess: box cells weighted by how much of their box is the class, shared where boxes overlap.
    weights = fill_s * fill_s / np.maximum(inside_s.sum(0), 1)
    rows = np.arange(len(classes))[:, None]
    for _ in range(FIT_ROUNDS if seeded.any() else 0):
        _, _, a, b = _discriminants(sample64, weights, seeded)
        score = sample @ a[seeded].T + b[seeded]
        picked = np.flatnonzero(seeded)[score.argmax(1)]
        refit = (inside_s & (picked[None, :] == rows)).astype(np.float32)
        kept = refit.any(1)  # a class its own boxes never pick keeps its first guess
        weights[kept] = refit[kept]
    means, precision, a, b = _discriminants(sample64, weights, seeded)
    unseeded = np.flatnonzero(~seeded)
    if unseeded.size:  # no box: model it on the cells that the seeded classes explain worst
        need = min(max(int(targets[classes[unseeded]].sum()) // 4, 1), len(sample))
        if seeded.any():
            spread = ((sample @ precision.astype(np.float32)) * sample).sum(1)
            dist = spread - 2 * (sample @ a[seeded].T + b[seeded]).max(1)
        else:
            dist = np.zeros(len(sample), np.float32)
        worst = np.argpartition(-dist, need - 1)[:need]
        means[unseeded] = sample[worst].mean(0)
        a64 = means @ precision
        a, b = a64.astype(np.float32), (-0.5 * (a64 * means).sum(1)).astype(np.float32)
    # Priors: inside its boxes a class has the box's fill ratio; outside, its pixels not in any region,
    # spread over the cells outside its boxes.
    fill = fill.reshape(len(classes), n)
    outside_cells = np.maximum(n - np.count_nonzero(fill, axis=1), 1)
    p_out = np.clip(np.maximum(targets[classes] - region_cells, 0.5) / outside_cells, MIN_PRIOR, 0.9)
    prior = np.log(np.maximum(fill.T, p_out.astype(np.float32)))
    scores = prior + b
    scores += features @ a.T
    first, held = draw_regions(scores, classes, regions, grid)
    if held.any():  # refit the colours on the drawn map: small classes get cells of their own to learn from
        drawn = first.reshape(grid, grid)[::2, ::2].ravel()
        weights = (drawn[None, :] == classes[:, None]).astype(np.float32)
        have = weights.any(1)
        _, _, a2, b2 = _discriminants(sample64, weights, have)
        a[have], b[have] = a2[have], b2[have]
        scores = prior + b
        scores += features @ a.T
        first, held = draw_regions(scores, classes, regions, grid)
    return Layout(classes, scores, first, held)
