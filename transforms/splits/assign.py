"""Split assignment with the leakage policy; with --previous, every known tile and base keeps its split."""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.gather import GatherByKeyFn, gathered
from transforms.input.sidecars import VALID_SPLITS
from transforms.paths import base_poi_id
from transforms.records import reject
from transforms.splits.plan import (
    UNKNOWN_SPLIT,
    initial_split,
    leakage_outcomes,
    plan_reassignment,
    previous_split,
    split_counts,
)

REJECTS = "rejects"
DECLARED = "declared"


def base_pins(previous) -> tuple[dict[str, str], str | None]:
    """The split an earlier build gave each base of a group (--previous), and the group's own (its commonest):
    a base keeps its split; new bases joined to known ones by shared ground join the group's."""
    by_base: dict[str, list[str]] = {}
    for stem, split in previous:
        by_base.setdefault(base_poi_id(stem), []).append(split)
    return ({base: previous_split(splits) for base, splits in by_base.items()},
            previous_split(split for _, split in previous))


def base_counts(element) -> tuple[str, tuple[int, int, int]]:
    """(base, tiles per split): all the reassignment plan needs to know of a base (or of a group of bases on
    shared ground). A base an earlier build had (--previous) stays where it is, new tiles included: it reaches
    the plan as one that does not leak."""
    base, (tiles, previous, known) = element
    _, pinned = base_pins(previous)
    if pinned is not None:
        return base, split_counts(pinned for _ in range(len(tiles) + len(known)))
    return base, split_counts(initial_split(t) for t in tiles)


def declared_event(element) -> dict[str, int]:
    """Tiles per declared split (as the input declares them), for the report's split table, and the tiles whose
    `split` names no split (placed by hash: a held-out tile may land in train, so the summary warns)."""
    _, (tiles, _, known) = element
    counts = split_counts([*(initial_split(t) for t in tiles), *(declared for _, declared, _ in known)])
    events = {f"declared|{s}": n for s, n in zip(VALID_SPLITS, counts, strict=True) if n}
    unknown = sum(1 for t in tiles if t.split_field is not None and t.split_field not in VALID_SPLITS)
    return {**events, UNKNOWN_SPLIT: unknown} if unknown else events


def rebuild_events(now: dict[str, str], previous: list[tuple[str, str]]) -> dict[str, int]:
    """What a rebuild did with one base (``now``: stem -> split of its tiles in this build): tiles kept from the
    earlier build, new, removed; bases kept and new; and tiles that moved split (0 by construction, counted so
    the report proves it)."""
    before = dict(previous)
    kept = [s for s in now if s in before]
    return {"rebuild|tiles_kept": len(kept), "rebuild|tiles_new": len(now) - len(kept),
            "rebuild|tiles_removed": len(set(before) - set(now)),
            "rebuild|tiles_moved_split": sum(1 for s in kept if now[s] != before[s]),
            "rebuild|bases_kept": int(bool(before) and bool(now)), "rebuild|bases_new": int(not before and bool(now)),
            "rebuild|bases_removed": int(bool(before) and not now)}


class _AssignFn(beam.DoFn):
    def __init__(self, policy: str, rebuild: bool = False):
        self.policy, self.rebuild = policy, rebuild
        self.reassigned = Metrics.counter("AssignSplits", "split_reassigned")
        self.dropped = Metrics.counter("AssignSplits", "dropped_split_leakage")

    def process(self, element, plan):
        base, (tiles, previous, known) = element
        previous = sorted(set(previous))
        pins, pinned = base_pins(previous)
        if pinned is not None:  # a base the earlier build had keeps its split, new tiles of it included
            outcomes = ((t, "", pins.get(base_poi_id(t.tile_stem), pinned), "") for t in tiles)
        else:
            outcomes = leakage_outcomes(base, tiles, self.policy, plan)
        moved, placed = 0, []
        for tile, declared, split, detail in outcomes:  # one tile at a time: a group may be a whole scene
            if split is None:
                self.dropped.inc()
                yield beam.pvalue.TaggedOutput(REJECTS, reject(tile.source, tile.tile_stem, "split", "split_leakage",
                                                               detail))
                continue
            moved += pinned is None and split != declared
            if self.rebuild:
                placed.append((tile.tile_stem, split))
            yield tile.with_fields(split=split)
        if self.rebuild:
            yield beam.pvalue.TaggedOutput("events", self._rebuild_events(placed, previous, known))
        if moved:
            self.reassigned.inc(moved)
            yield beam.pvalue.TaggedOutput("reassigned", moved)

    @staticmethod
    def _rebuild_events(placed, previous, known) -> dict[str, int]:
        """rebuild_events per base of the group, summed (``placed``: stem and split of the tiles kept here)."""
        now: dict[str, dict[str, str]] = {}
        for stem, split in [*placed, *((stem, split) for stem, _, split in known)]:
            now.setdefault(base_poi_id(stem), {})[stem] = split
        before: dict[str, list[tuple[str, str]]] = {}
        for stem, split in previous:
            before.setdefault(base_poi_id(stem), []).append((stem, split))
        total: dict[str, int] = {}
        for base in sorted({*now, *before}):
            for key, n in rebuild_events(now.get(base, {}), before.get(base, [])).items():
                total[key] = total.get(key, 0) + n
        return total


def _to_group(element):
    """(base, {"items", "group"}) -> (group, item) for each item; a base in no group is its own."""
    base, parts = element
    group = next(iter(parts["group"]), base)
    for item in parts["items"]:
        yield group, item


def by_group(items, groups, label: str):
    """Re-key (base, item) pairs by the group JoinBasesOnSharedGround gives their base."""
    return ({"items": items, "group": groups}
            | f"{label}WithGroup" >> beam.CoGroupByKey()
            | f"{label}ByGroup" >> beam.FlatMap(_to_group))


@dataclass
class AssignSplits(beam.PTransform):
    """GroupByKey on base POI so that one place never lands in two splits; where one would, the whole base
    goes to the split a global plan gives it, so the splits keep their declared shares.

    Only (base, three counts) per base reaches the plan, never tiles. In a rebuild the tiles the earlier build
    had keep their split there (JoinOnTileStem) and reach this as ``known`` records only; new tiles of a base
    it had join that base's split. ``declared`` carries one count event per base: {"declared|<split>": tiles}.
    With ``groups`` (--split-unit ground) a group of bases whose tiles share ground is placed as one base."""

    leakage: str
    previous: beam.PCollection | None = None  # (tile stem, split) of every tile of an earlier build
    known: beam.PCollection | None = None  # JoinOnTileStem's known records: (base, (stem, declared, split))
    groups: beam.PCollection | None = None  # (base, group) from JoinBasesOnSharedGround

    def expand(self, tiles):
        keyed = tiles | "KeyByBase" >> beam.Map(lambda t: (base_poi_id(t.tile_stem), t))
        if self.groups is not None:
            keyed = by_group(keyed, self.groups, "Tiles")
        if self.previous is None:
            grouped = (keyed
                       | "GroupByBase" >> beam.GroupByKey()
                       | "NoPrevious" >> beam.Map(lambda kv: (kv[0], (kv[1], (), ()))))
        else:  # small records per tile of the earlier build, gathered and joined per base: nothing is broadcast
            before = self.previous | "PreviousByBase" >> beam.Map(lambda p: (base_poi_id(p[0]), p))
            known = self.known
            if self.groups is not None:
                before = by_group(before, self.groups, "Previous")
                known = by_group(known, self.groups, "Known") if known is not None else None
            parts = {"tiles": keyed, "previous": before | "GatherPrevious" >> beam.ParDo(GatherByKeyFn())}
            if known is not None:
                parts["known"] = known | "GatherKnown" >> beam.ParDo(GatherByKeyFn())
            grouped = (parts
                       | "GroupByBase" >> beam.CoGroupByKey()
                       | "Parts" >> beam.Map(lambda kv: (kv[0], (list(kv[1]["tiles"]), gathered(kv[1]["previous"]),
                                                                 gathered(kv[1].get("known", ()))))))
        counts = grouped | "CountPerBase" >> beam.Map(base_counts)
        plan = (counts
                | "CollectCounts" >> beam.combiners.ToList()
                | "Plan" >> beam.Map(plan_reassignment))
        out = grouped | "Assign" >> beam.ParDo(_AssignFn(self.leakage, self.previous is not None),
                                               beam.pvalue.AsSingleton(plan)).with_outputs(
            REJECTS, "reassigned", "events", main="tiles")
        declared = grouped | "DeclaredEvents" >> beam.Map(declared_event)
        events = (declared, out.events) | "SplitEvents" >> beam.Flatten()
        return {"tiles": out.tiles, REJECTS: out[REJECTS], "reassigned": out.reassigned, DECLARED: events}
