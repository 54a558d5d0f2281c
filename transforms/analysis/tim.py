"""TiM-shaped analytics for production analysis (FORMATS.md 4), built procedurally from a tile sidecar.

No model runs: the "prediction" is the observed (sentinel) class mix with the profile's signal class
shifted by a deterministic per-tile amount, so every number in a prompt and answer can be re-derived.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from transforms.classes import CLASS_IDS, CLASS_NAMES
from transforms.ids import stable_rng, stable_uniform

SCHEMA_VERSION = "1.0"
DELTA_MIN = 0.005
CONFIDENCE_HIGH = 0.12
CONFIDENCE_MEDIUM = 0.04
SHIFT_MODES = ("varied", "fixed")
SAMPLE_LEN = 32


@dataclass(frozen=True)
class Profile:
    name: str
    signal: int | None  # class id whose share the profile watches
    fixed_shift: float
    block: str


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("brief_only", None, 0.0, "summary"),
        Profile("land_use_change", CLASS_IDS["built"], 0.12, "land_transition"),
        Profile("wildfire", CLASS_IDS["bare_ground"], 0.10, "burn_change"),
        Profile("flood_pulse", CLASS_IDS["water"], 0.15, "water_change"),
        Profile("oceanscout_ship_detection", CLASS_IDS["water"], 0.06, "vessel_candidates"),
    )
}
PROFILE_ALIASES = {"vessel_monitoring": "oceanscout_ship_detection"}


def canonical_profile(name: str) -> str:
    return PROFILE_ALIASES.get(name, name)


def signal_shift(stem: str, profile: Profile, current: float, mode: str) -> float:
    """How much the signal class moves for this tile: increases, decreases and no-change cases."""
    if profile.signal is None:
        return 0.0
    if mode == "fixed":
        return min(profile.fixed_shift, 1.0 - current)
    if mode != "varied":
        raise ValueError(f"unknown shift mode {mode!r}; choose one of {', '.join(SHIFT_MODES)}")
    kind = stable_uniform(stem, profile.name, "shift-kind")
    size = stable_uniform(stem, profile.name, "shift-size")
    if kind < 0.2:
        return 0.0
    if kind < 0.45:
        return -current * (0.15 + 0.6 * size)
    return min(0.02 + 0.2 * size, (1.0 - current) * 0.9)


def predicted_fractions(sentinel: dict[int, float], stem: str, profile: Profile, mode: str) -> dict[int, float]:
    """Sentinel shares with the signal class shifted; the mass comes from (or goes to) the other classes."""
    if profile.signal is None or not sentinel:
        return {c: round(v, 6) for c, v in sentinel.items()}
    sig = profile.signal
    current = sentinel.get(sig, 0.0)
    shift = signal_shift(stem, profile, current, mode)
    new_signal = min(max(current + shift, 0.0), 1.0)
    others = {c: v for c, v in sentinel.items() if c != sig and v > 0}
    rest = sum(others.values())
    out: dict[int, float] = {}
    if rest > 0:
        scale = (1.0 - new_signal) / rest
        out = {c: v * scale for c, v in others.items()}
    elif new_signal < 1.0:  # the tile was all signal class: freed mass becomes bare ground (or grass)
        fallback = CLASS_IDS["grass"] if sig == CLASS_IDS["bare_ground"] else CLASS_IDS["bare_ground"]
        out = {fallback: 1.0 - new_signal}
    if new_signal > 0:
        out[sig] = new_signal
    return {c: round(v, 6) for c, v in sorted(out.items()) if round(v, 6) > 0}


def confidence_bin(delta: float) -> str:
    a = abs(delta)
    return "high" if a >= CONFIDENCE_HIGH else ("medium" if a >= CONFIDENCE_MEDIUM else "low")


def direction(delta: float) -> str:
    if abs(delta) < DELTA_MIN:
        return "no_change"
    return "increase" if delta > 0 else "decrease"


def class_deltas(sentinel: dict[int, float], tim: dict[int, float]) -> list[dict[str, Any]]:
    rows = []
    for cid in sorted(set(sentinel) | set(tim)):
        s, t = round(sentinel.get(cid, 0.0), 6), tim.get(cid, 0.0)
        d = round(t - s, 6)
        if abs(d) >= DELTA_MIN:
            rows.append({"class": CLASS_NAMES[cid], "sentinel": s, "tim": t, "delta": d,
                         "confidence": confidence_bin(d)})
    rows.sort(key=lambda r: (-abs(r["delta"]), r["class"]))
    return rows


def class_sample(tim: dict[int, float], stem: str, profile: str) -> list[float]:
    """32 class ids drawn at evenly spaced quantiles of the predicted mix, in a seeded order."""
    ids: list[float] = []
    cum, classes = [], sorted(tim)
    total = 0.0
    for c in classes:
        total += tim[c]
        cum.append(total)
    fallback = classes[-1] if classes else 0
    for i in range(SAMPLE_LEN):
        q = (i + 0.5) / SAMPLE_LEN * (total or 1.0)
        at = bisect_left(cum, q)  # the first class whose cumulative share reaches q
        ids.append(float(classes[at] if at < len(classes) else fallback))
    order = stable_rng(stem, profile, "sample").permutation(SAMPLE_LEN)
    return [ids[i] for i in order]


def dominant(fractions: dict[int, float], n: int = 4) -> list[tuple[int, float]]:
    return sorted(fractions.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


@dataclass(frozen=True)
class Analytics:
    profile: str
    signal: int | None
    sentinel: dict[int, float]
    tim: dict[int, float]
    delta: float
    direction: str
    confidence: str
    vessel_count: int
    payload: dict[str, Any] = field(repr=False)


def _vessels(tile_stem: str, water: float, water_boxes: list[tuple[float, float, float, float]]
             ) -> list[dict[str, Any]]:
    """Candidate count grows with predicted water; no water means no candidates, by construction."""
    if water <= 0:
        return []
    rng = stable_rng(tile_stem, "oceanscout", "vessels")
    count = int(math.floor(water * 8 * rng.random() + 0.5))
    out = []
    for i in range(count):
        x1, y1, x2, y2 = water_boxes[i % len(water_boxes)] if water_boxes else (0.0, 0.0, 1.0, 1.0)
        out.append({"id": f"v{i + 1:02d}", "x": round(x1 + (x2 - x1) * rng.random(), 4),
                    "y": round(y1 + (y2 - y1) * rng.random(), 4), "score": round(0.3 + 0.69 * rng.random(), 3)})
    return out


def build_analytics(
    tile_stem: str,
    sentinel: dict[int, float],
    profile_name: str,
    mode: str,
    *,
    size: int,
    water_boxes: list[tuple[float, float, float, float]],
    latitude: float | None,
    longitude: float | None,
    cloud_cover: float | None,
    region_count: int,
    redact_location: bool,
) -> Analytics:
    profile = PROFILES[canonical_profile(profile_name)]
    tim = predicted_fractions(sentinel, tile_stem, profile, mode)
    sample = class_sample(tim, tile_stem, profile.name)
    outputs: dict[str, Any] = {
        "LULC": {"internal_key": f"tok_lulc@{size}", "kind": "class_logits", "shape": [size, size],
                 "class_fractions": {CLASS_NAMES[c]: v for c, v in tim.items()}, "classes": {"sample": sample}},
        f"tok_lulc@{size}": {"kind": "token_grid", "sample": sample, "shape": [size, size]},
    }
    if not redact_location and latitude is not None and longitude is not None:
        outputs["Coordinates"] = {"kind": "coordinates_wgs84", "latitude": round(latitude, 6),
                                  "longitude": round(longitude, 6), "confidence": 0.9}
    sig = profile.signal
    s_sig = round(sentinel.get(sig, 0.0), 6) if sig is not None else 0.0
    t_sig = tim.get(sig, 0.0) if sig is not None else 0.0
    delta = round(t_sig - s_sig, 6)
    thresholds: dict[str, float] = {"delta_min": DELTA_MIN, "confidence_high": CONFIDENCE_HIGH,
                                    "confidence_medium": CONFIDENCE_MEDIUM}
    analytics: dict[str, Any] = {"profile": profile.name, "schema_version": SCHEMA_VERSION, "thresholds": thresholds}
    deltas = class_deltas(sentinel, tim)
    vessels: list[dict[str, Any]] = []
    if profile.block == "summary":
        analytics["summary"] = {
            "dominant_classes": [{"class": CLASS_NAMES[c], "fraction": round(v, 6)} for c, v in dominant(tim)],
            "classes_present": sum(1 for v in tim.values() if v >= 0.01),
            "region_count": region_count,
        }
    elif profile.block == "vessel_candidates":
        thresholds["score_min"] = 0.5
        vessels = _vessels(tile_stem, t_sig, water_boxes)
        scores = [v["score"] for v in vessels]
        analytics["vessel_candidates"] = vessels
        analytics["observation_coverage"] = {
            "water_fraction_sentinel": s_sig, "water_fraction_tim": t_sig, "water_delta": delta,
            "cloud_cover": None if cloud_cover is None else round(cloud_cover / 100.0, 4)}
        analytics["detection_score_summary"] = {
            "count": len(vessels), "max": max(scores) if scores else 0.0,
            "mean": round(sum(scores) / len(scores), 3) if scores else 0.0,
            "above_score_min": sum(1 for s in scores if s >= 0.5)}
        analytics["shoreline_policy"] = {"buffer_px": 2, "drop_candidates_on_land": True}
    else:
        analytics[profile.block] = {
            "signal_class": CLASS_NAMES[sig] if sig is not None else None,
            "sentinel_fraction": s_sig, "tim_fraction": t_sig, "delta": delta,
            "direction": direction(delta), "confidence": confidence_bin(delta), "deltas": deltas}
    payload = {"tim_modality_outputs": outputs, "profile_analytics": analytics}
    return Analytics(profile.name, sig, sentinel, tim, delta, direction(delta), confidence_bin(delta),
                     len(vessels), payload)
