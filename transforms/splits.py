"""Split assignment and the leakage policy (FORMATS.md 1.4)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from transforms.paths import base_poi_id
from transforms.sidecars import VALID_SPLITS, Tile

LEAKAGE_POLICIES = ("reassign", "drop")


def hashed_split(key: str) -> str:
    """int(sha256(key)[:16 hex], 16) % 10: 0-7 train, 8 validation, 9 test."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) % 10
    return "train" if bucket < 8 else ("validation" if bucket == 8 else "test")


def initial_split(tile: Tile) -> str:
    if tile.split_field in VALID_SPLITS:
        return tile.split_field
    return hashed_split(tile.poi_id or base_poi_id(tile.tile_stem))


def resolve_leakage(
    base: str, tiles: Iterable[Tile], policy: str
) -> tuple[list[Tile], list[tuple[Tile, str]], int]:
    """All tiles of one base POI in, (kept tiles with split set, rejected (tile, detail), tiles reassigned).

    A base whose tiles would land in several splits shows the same place in training and evaluation;
    ``reassign`` moves them all to the split hashed from the base id, ``drop`` rejects them all.
    """
    if policy not in LEAKAGE_POLICIES:
        raise ValueError(f"unknown leakage policy {policy!r}; choose one of {', '.join(LEAKAGE_POLICIES)}")
    ordered = sorted(tiles, key=lambda t: (t.tile_stem, t.source))
    splits = [initial_split(t) for t in ordered]
    if len(set(splits)) <= 1:
        return [t.with_fields(split=s) for t, s in zip(ordered, splits, strict=True)], [], 0
    seen = ",".join(sorted(set(splits)))
    if policy == "drop":
        return [], [(t, f"base {base} spans splits {seen}") for t in ordered], 0
    target = hashed_split(base)
    return [t.with_fields(split=target) for t in ordered], [], len(ordered)
