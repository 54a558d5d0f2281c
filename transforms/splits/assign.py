"""Split assignment with the leakage policy, and the tile ordinals that fix every sharded output path."""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.input.sidecars import VALID_SPLITS
from transforms.paths import base_poi_id
from transforms.records import reject
from transforms.splits.plan import initial_split, plan_reassignment, resolve_leakage, split_counts

REJECTS = "rejects"
DECLARED = "declared"


def base_counts(element) -> tuple[str, tuple[int, int, int]]:
    """(base, tiles per declared split): all the reassignment plan needs to know of a base."""
    base, tiles = element
    return base, split_counts(initial_split(t) for t in tiles)


def declared_event(element) -> dict[str, int]:
    """Tiles per declared split, for the report's input-versus-output split table."""
    _, counts = element
    return {f"declared|{s}": n for s, n in zip(VALID_SPLITS, counts, strict=True) if n}


class _AssignFn(beam.DoFn):
    def __init__(self, policy: str):
        self.policy = policy
        self.reassigned = Metrics.counter("AssignSplits", "split_reassigned")
        self.dropped = Metrics.counter("AssignSplits", "dropped_split_leakage")

    def process(self, element, plan):
        base, tiles = element
        kept, rejected, moved = resolve_leakage(base, tiles, self.policy, plan)
        if moved:
            self.reassigned.inc(moved)
            yield beam.pvalue.TaggedOutput("reassigned", moved)
        for tile, detail in rejected:
            self.dropped.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, reject(tile.source, tile.tile_stem, "split", "split_leakage",
                                                           detail))
        yield from kept


@dataclass
class AssignSplits(beam.PTransform):
    """GroupByKey on base POI so that one place never lands in two splits; where one would, the whole base
    goes to the split a global plan gives it, so the splits keep their declared shares.

    Only (base, three counts) per base reaches the plan, never tiles. ``declared`` carries one count event per
    base: {"declared|<split>": tiles}."""

    leakage: str

    def expand(self, tiles):
        grouped = (tiles
                   | "KeyByBase" >> beam.Map(lambda t: (base_poi_id(t.tile_stem), t))
                   | "GroupByBase" >> beam.GroupByKey())
        counts = grouped | "CountPerBase" >> beam.Map(base_counts)
        plan = (counts
                | "CollectCounts" >> beam.combiners.ToList()
                | "Plan" >> beam.Map(plan_reassignment))
        out = grouped | "Assign" >> beam.ParDo(_AssignFn(self.leakage), beam.pvalue.AsSingleton(plan)).with_outputs(
            REJECTS, "reassigned", main="tiles")
        declared = counts | "DeclaredEvents" >> beam.Map(declared_event)
        return {"tiles": out.tiles, REJECTS: out[REJECTS], "reassigned": out.reassigned, DECLARED: declared}


def index_tiles(stems: list[str]) -> dict[str, int]:
    """Ordinal of each kept tile in stem order: with it, shard folders are known before any file exists."""
    return {stem: i for i, stem in enumerate(sorted(stems))}


@dataclass
class IndexTiles(beam.PTransform):
    def expand(self, tiles):
        return (tiles
                | "Stems" >> beam.Map(lambda t: t.tile_stem)
                | "Collect" >> beam.combiners.ToList()
                | "Index" >> beam.Map(index_tiles))
