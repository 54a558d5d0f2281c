"""How far a score could move on another draw of places: a 95% interval from resampling the split's places
with replacement (a bootstrap over clusters; scoring.places says what a place is: the rows of one place are not
independent draws). Each place's rows are scored once; since every metric is a ratio of sums over rows
(TaskScore.sums, F1 from precision and recall), a resample adds the places' sums instead of scoring again, so
1,000 resamples cost one matrix product per task. Seeded: the same rows and answers give the same bounds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.metrics import TaskScore, f1

RESAMPLES = 1000
MIN_PLACES = 10  # below this a percentile bootstrap is unreliable: no interval, and the table says so
SEED = 0
DERIVED = {"f1@0.5": ("precision@0.5", "recall@0.5")}

Scorer = Callable[[list[dict[str, Any]]], TaskScore | None]


def weights(places: int, resamples: int = RESAMPLES) -> np.ndarray:
    """How many times each place is drawn in each resample (resamples x places), seeded."""
    return np.random.default_rng(SEED).multinomial(places, np.full(places, 1 / places), size=resamples)


def percentiles(values: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """metric -> [2.5th, 97.5th percentile] of its resampled values, rounded as the report rounds scores."""
    return {name: [round(float(v), 6) for v in np.percentile(v_all, [2.5, 97.5])] for name, v_all in values.items()}


def resampled_ratios(sums: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """(places x metrics x 2) numerators and denominators -> each metric's ratio in each resample (resamples x
    metrics); 0 where a resample counted nothing, as the scorers give."""
    num, den = np.einsum("rp,pm->rm", drawn, sums[:, :, 0]), np.einsum("rp,pm->rm", drawn, sums[:, :, 1])
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


@dataclass(frozen=True)
class PlaceSums:
    """One task's answers scored place by place: what every resample is made from."""

    places: int
    names: tuple[str, ...]  # the metrics, in the order of ``sums``' second axis
    shown: tuple[str, ...]  # the metrics the whole score has, in its order (derived ones included)
    sums: np.ndarray  # places x metrics x (numerator, denominator)

    @classmethod
    def of(cls, by_place: Sequence[list[dict[str, Any]]], whole: TaskScore, scored: Scorer) -> PlaceSums:
        names = tuple(sorted(whole.sums))
        sums = np.zeros((len(by_place), len(names), 2))
        for i, place_rows in enumerate(by_place):
            part = scored(place_rows)
            for j, name in enumerate(names):
                sums[i, j] = part.sums.get(name, (0.0, 0.0)) if part is not None else (0.0, 0.0)
        return cls(len(by_place), names, tuple(whole.metrics), sums)

    def resampled(self, drawn: np.ndarray) -> dict[str, np.ndarray]:
        """metric -> its value in each resample (``drawn``: resamples x places): what scoring the resample's
        rows (each place's as often as it is drawn) would give."""
        ratios = resampled_ratios(self.sums, drawn)
        values = {name: ratios[:, j] for j, name in enumerate(self.names)}
        for name, (p, r) in DERIVED.items():
            if name in self.shown and p in values and r in values:
                values[name] = np.array([f1(a, b) for a, b in zip(values[p], values[r], strict=True)])
        return {name: values[name] for name in self.shown if name in values}


def intervals_of(sums: PlaceSums) -> dict[str, Any]:
    """{"places", "interval_95": {metric: [low, high]}}; no interval under MIN_PLACES places."""
    out: dict[str, Any] = {"places": sums.places}
    if sums.places >= MIN_PLACES and sums.names:
        out["interval_95"] = percentiles(sums.resampled(weights(sums.places)))
    return out


def difference_intervals(model: PlaceSums, baseline: PlaceSums) -> dict[str, list[float]]:
    """metric -> the 95% interval of the model's score minus the baseline's over the same draws of places (a
    paired bootstrap: both answer the same rows, so the draws that flatter one flatter the other); empty under
    MIN_PLACES places."""
    if model.places < MIN_PLACES or not model.names:
        return {}
    drawn = weights(model.places)
    a, b = model.resampled(drawn), baseline.resampled(drawn)
    return percentiles({name: a[name] - b[name] for name in a if name in b})
