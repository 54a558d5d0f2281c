"""How far a task's scores could move on another draw of tiles: a 95% interval from resampling the split's
tiles with replacement (a bootstrap over clusters). Rows of one tile share its chip and labels, so they are not
independent draws: on a 2,000-tile sample tree's 236 test tiles, a production summary's percent_within_2pp of
0.102 (1,180 rows, five per tile) reads [0.068, 0.141] over tiles, where resampling rows would claim [0.086,
0.119]. Each tile's rows are scored once; since every metric is a ratio of sums over rows (TaskScore.sums, F1
from precision and recall), a resample adds the tiles' sums instead of scoring again, so 1,000 resamples cost
one matrix product per task. Seeded: the same rows and answers give the same bounds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from scoring.metrics import TaskScore, f1

RESAMPLES = 1000
MIN_TILES = 10  # below this a percentile bootstrap is unreliable: no interval, and the table says so
SEED = 0
DERIVED = {"f1@0.5": ("precision@0.5", "recall@0.5")}


def tile_of(row: dict[str, Any]) -> str:
    """What a row is resampled with: its tile (rows of foreign sources, without one, each on their own)."""
    return row.get("tile_stem") or row["sample_id"]


def bootstrap_intervals(rows: list[dict[str, Any]], whole: TaskScore,
                        scored: Callable[[list[dict[str, Any]]], TaskScore | None]) -> dict[str, Any]:
    """{"tiles": how many tiles the rows come from, "interval_95": {metric: [low, high]}} for one task's rows,
    whose score over all of them is ``whole``; ``scored`` scores any subset of them. No interval below
    MIN_TILES tiles."""
    by_tile = rows_by_tile(rows)
    out: dict[str, Any] = {"tiles": len(by_tile)}
    if len(by_tile) < MIN_TILES or not whole.sums:
        return out
    values = resampled_scores(by_tile, whole, scored, weights(len(by_tile)))
    out["interval_95"] = {name: [round(float(v), 6) for v in np.percentile(values[name], [2.5, 97.5])]
                          for name in whole.metrics if name in values}
    return out


def rows_by_tile(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows grouped by tile_of, the groups in sorted order of their tiles."""
    by_tile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_tile[tile_of(r)].append(r)
    return [by_tile[stem] for stem in sorted(by_tile)]


def weights(tiles: int, resamples: int = RESAMPLES) -> np.ndarray:
    """How many times each tile is drawn in each resample (resamples x tiles), seeded."""
    return np.random.default_rng(SEED).multinomial(tiles, np.full(tiles, 1 / tiles), size=resamples)


def resampled_scores(by_tile: list[list[dict[str, Any]]], whole: TaskScore,
                     scored: Callable[[list[dict[str, Any]]], TaskScore | None], drawn: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """metric -> its value in each resample (``drawn``: resamples x tiles), from each tile's sums: what scoring
    the resample's rows (each tile's as often as it is drawn) would give."""
    names = sorted(whole.sums)
    sums = np.zeros((len(by_tile), len(names), 2))
    for i, tile_rows in enumerate(by_tile):
        part = scored(tile_rows)
        for j, name in enumerate(names):
            sums[i, j] = part.sums.get(name, (0.0, 0.0)) if part is not None else (0.0, 0.0)
    num, den = drawn @ sums[:, :, 0], drawn @ sums[:, :, 1]
    values = {name: np.divide(num[:, j], den[:, j], out=np.zeros(len(drawn)), where=den[:, j] > 0)
              for j, name in enumerate(names)}
    for name, (p, r) in DERIVED.items():
        if name in whole.metrics and p in values and r in values:
            values[name] = np.array([f1(a, b) for a, b in zip(values[p], values[r], strict=True)])
    return values
