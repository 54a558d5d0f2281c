"""Split assignment and the leakage policy (FORMATS.md 1.4)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence

from transforms.input.sidecars import VALID_SPLITS, Tile
from transforms.paths import base_poi_id

LEAKAGE_POLICIES = ("reassign", "drop")
# What goes whole to one split: a base POI, or (ground) also every base whose tiles share ground with it.
SPLIT_UNITS = ("base", "ground")
# --shared-ground: tiles of two splits on one ground counted (report), or the new ones that would pair rejected.
SHARED_GROUND_POLICIES = ("report", "drop")
# Leaking bases placed by exhaustive search (3**8 = 6561 placements); the rest go greedily, largest first.
EXHAUSTIVE_BASES = 8
UNKNOWN_SPLIT = "split_field_unrecognised"  # counter: tiles whose sidecar `split` names no split
SplitCounts = tuple[int, int, int]  # tiles per split, in VALID_SPLITS order


def hashed_split(key: str) -> str:
    """int(sha256(key)[:16 hex], 16) % 10: 0-7 train, 8 validation, 9 test."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) % 10
    return "train" if bucket < 8 else ("validation" if bucket == 8 else "test")


def initial_split(tile: Tile) -> str:
    if tile.split_field in VALID_SPLITS:
        return tile.split_field
    return hashed_split(tile.poi_id or base_poi_id(tile.tile_stem))


def split_counts(splits: Iterable[str]) -> SplitCounts:
    counts = [0, 0, 0]
    for s in splits:
        counts[VALID_SPLITS.index(s)] += 1
    return counts[0], counts[1], counts[2]


def leaks(counts: SplitCounts) -> bool:
    return sum(1 for n in counts if n) > 1


def _big_cost(residual: Sequence[int], rest: int) -> tuple[int, int]:
    """How far from the declared counts the splits must end once the big bases sit where a placement puts
    them and ``rest`` small tiles can still go anywhere: an overshoot is final, and a split short by more
    than ``rest`` cannot be filled. (worst split, total overshoot)."""
    worst = max(max(0, -r, r - rest) for r in residual)
    return worst, sum(max(0, -r) for r in residual)


def plan_reassignment(bases: Iterable[tuple[str, SplitCounts]]) -> dict[str, str]:
    """The one split each leaking base goes to whole, chosen so that the output keeps the input's split shares.

    Every leaking base must leave some split, so the tiles it held there are owed back by other leaking bases.
    The largest bases are placed by exhaustive search (they decide whether a share can be met at all), the
    rest largest first into a split they fit, preferring the split that already holds most of their tiles
    (fewest tiles move), else into the split furthest below its count. Each split ends within twice the
    largest greedily placed base of its input count. A pure function of the set of bases: any runner, any
    bundle order, the same plan.
    """
    leaking = sorted(((b, c) for b, c in bases if leaks(c)), key=lambda bc: (-sum(bc[1]), bc[0]))
    owed = [sum(c[i] for _, c in leaking) for i in range(3)]
    big, small = leaking[:EXHAUSTIVE_BASES], leaking[EXHAUSTIVE_BASES:]
    rest = sum(sum(c) for _, c in small)
    best: tuple | None = None
    for placement in itertools.product(range(3), repeat=len(big)):
        residual = list(owed)
        moved = 0
        for (_, counts), i in zip(big, placement, strict=True):
            residual[i] -= sum(counts)
            moved += sum(counts) - counts[i]
        key = (*_big_cost(residual, rest), moved, placement)
        if best is None or key < best[0]:
            best = (key, placement, residual)
    plan: dict[str, str] = {}
    residual = owed
    if best is not None:
        _, placement, residual = best
        plan.update({b: VALID_SPLITS[i] for (b, _), i in zip(big, placement, strict=True)})
    for base, counts in small:
        n = sum(counts)
        fits = [i for i in range(3) if residual[i] >= n]
        if fits:
            i = max(fits, key=lambda i: (counts[i], residual[i], -i))
        else:
            i = max(range(3), key=lambda i: (residual[i], counts[i], -i))
        residual[i] -= n
        plan[base] = VALID_SPLITS[i]
    return plan


def leakage_outcomes(
    base: str, tiles: Iterable[Tile], policy: str, plan: Mapping[str, str] | None = None
) -> Iterator[tuple[Tile, str, str | None, str]]:
    """(tile, its declared split, the split it goes to or None when rejected, why) for every tile of one base
    POI (or group of bases on shared ground), in the order given.

    A base whose tiles would land in several splits shows the same place in training and evaluation;
    ``reassign`` moves them all to the split ``plan`` (from plan_reassignment) gives the base, ``drop``
    rejects them all. ``tiles`` is read twice and never held: a group of bases joined by shared ground may be
    a whole scene, more tiles than a worker holds at once (Beam's grouped values can be read again).
    """
    if policy not in LEAKAGE_POLICIES:
        raise ValueError(f"unknown leakage policy {policy!r}; choose one of {', '.join(LEAKAGE_POLICIES)}")
    splits, bases = set(), set()
    for tile in tiles:
        splits.add(initial_split(tile))
        if policy == "drop":
            bases.add(base_poi_id(tile.tile_stem))
    if len(splits) <= 1:
        for tile in tiles:
            split = initial_split(tile)
            yield tile, split, split, ""
        return
    seen = ",".join(sorted(splits))
    if policy == "drop":
        named = sorted(bases)
        what = (f"base {base} spans" if len(named) < 2 else
                f"bases {', '.join(named[:3])}{', ...' if len(named) > 3 else ''} ({len(named)}, on shared ground) "
                "span")
        for tile in tiles:
            yield tile, initial_split(tile), None, f"{what} splits {seen}"
        return
    if plan is None or base not in plan:
        raise ValueError(f"base {base} spans splits {seen} but the reassignment plan has no split for it")
    for tile in tiles:
        yield tile, initial_split(tile), plan[base], ""


def resolve_leakage(
    base: str, tiles: Iterable[Tile], policy: str, plan: Mapping[str, str] | None = None
) -> tuple[list[Tile], list[tuple[Tile, str]], int]:
    """leakage_outcomes as lists, by stem: (kept tiles with split set, rejected (tile, detail), tiles moved)."""
    ordered = sorted(tiles, key=lambda t: (t.tile_stem, t.source))
    kept, rejected, moved = [], [], 0
    for tile, declared, split, detail in leakage_outcomes(base, ordered, policy, plan):
        if split is None:
            rejected.append((tile, detail))
        else:
            kept.append(tile.with_fields(split=split))
            moved += split != declared
    return kept, rejected, moved


def previous_split(splits: Iterable[str]) -> str | None:
    """The split a base had in an earlier build, from its tiles' splits there (one split, as every build
    leaves a base; the commonest, then the first in VALID_SPLITS, if an edited tree ever gave more); None for
    a base the earlier build did not have."""
    counts = split_counts(splits)
    if not sum(counts):
        return None
    return VALID_SPLITS[max(range(3), key=lambda i: (counts[i], -i))]


def split_drift_pp(declared: Mapping[str, int], kept: Mapping[str, int]) -> dict[str, float]:
    """Output share minus input share per split, in percentage points (2 decimals)."""
    n_in, n_out = sum(declared.values()), sum(kept.values())
    return {s: round(100 * ((kept.get(s, 0) / n_out if n_out else 0) - (declared.get(s, 0) / n_in if n_in else 0)), 2)
            for s in VALID_SPLITS}
