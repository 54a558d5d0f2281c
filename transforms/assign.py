"""Split assignment with the leakage policy, and the tile ordinals that fix every sharded output path."""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.paths import base_poi_id
from transforms.records import reject
from transforms.splits import resolve_leakage

REJECTS = "rejects"


class _AssignFn(beam.DoFn):
    def __init__(self, policy: str):
        self.policy = policy
        self.reassigned = Metrics.counter("AssignSplits", "split_reassigned")
        self.dropped = Metrics.counter("AssignSplits", "dropped_split_leakage")

    def process(self, element):
        base, tiles = element
        kept, rejected, moved = resolve_leakage(base, tiles, self.policy)
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
    """GroupByKey on base POI so that one place never lands in two splits."""

    leakage: str

    def expand(self, tiles):
        out = (tiles
               | "KeyByBase" >> beam.Map(lambda t: (base_poi_id(t.tile_stem), t))
               | "GroupByBase" >> beam.GroupByKey()
               | "Assign" >> beam.ParDo(_AssignFn(self.leakage)).with_outputs(REJECTS, "reassigned", main="tiles"))
        return {"tiles": out.tiles, REJECTS: out[REJECTS], "reassigned": out.reassigned}


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
