"""Counting outcomes in the graph: every source of events becomes (key, n) pairs summed per key.

The summed counts feed the report (pipeline/publish/report.py nests them); because write steps also emit
events, the report can only be written once every file it describes has been written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.transforms.window import GlobalWindows

from transforms.tasks import is_grounding


def row_keys(row) -> list[tuple[str, int]]:
    """rows|task|split for every row; boxes|n for grounding rows (the card's boxes-per-row histogram)."""
    md = row.record["metadata"]
    keys = [(f"rows|{md['task']}|{md['split']}", 1)]
    if is_grounding(md["task"]):
        answer = row.record["messages"][-1]["content"][-1]["text"]
        keys.append((f"boxes|{len(orjson.loads(answer))}", 1))
        keys.append((f"boxes_left_out|{md['task']}", row.sidecar.get("boxes_left_out", 0)))
    return keys


def tile_keys(summary: dict) -> list[tuple[str, int]]:
    keys = [(f"tiles|{summary['split']}", 1)]
    if summary["dominant"]:
        keys.append((f"dominant|{summary['dominant']}", 1))
    keys += [(f"regions|{label}", n) for label, n in summary["regions"].items()]
    return keys


def reject_key(record: dict) -> tuple[str, int]:
    return f"rejects|{record['stage']}|{record['reason']}", 1


def event_items(event: dict[str, int]) -> list[tuple[str, int]]:
    return list(event.items())


class _SumKeysFn(beam.DoFn):
    """(key, n) pairs of each element, summed over the bundle and passed on once per key when it ends: a row
    has three keys and a tile a dozen, and each pair would otherwise cross the flatten and the combine on
    its own (about 5 us apiece, several CPU seconds in a 20,000-tile build)."""

    def __init__(self, keys):
        self.keys = keys

    def start_bundle(self):
        self._sums: dict[str, int] = {}

    def process(self, element):
        sums = self._sums
        for key, n in self.keys(element):
            sums[key] = sums.get(key, 0) + n

    def finish_bundle(self):
        for key, n in sorted(self._sums.items()):
            yield GlobalWindows.windowed_value((key, n))
        self._sums = {}


@dataclass
class SumEvents(beam.PTransform):
    """Elements -> (key, n) pairs (``keys`` of each; by default an event dict's items), summed over each bundle
    in the producer's own stage: a writer that emits an event per row or file would otherwise send each across
    every flatten and the final combine on its own."""

    keys: Callable[[Any], Iterable[tuple[str, int]]] = event_items

    def expand(self, events):
        return events | "SumKeys" >> beam.ParDo(_SumKeysFn(self.keys))


def _one(fn):
    return lambda element: [fn(element)]


@dataclass
class CountOutcomes(beam.PTransform):
    """Named PCollections of rows, rejects, split names of finished tiles, reassignments, events -> counts.
    Events may come as several PCollections, named ``events`` and ``events/<name>``: each is summed in its own
    stage before they meet, so only a few sums per bundle cross the flatten (a 20,000-tile rebuild has some
    120,000 events, each a dict)."""

    def expand(self, parts):
        summed = [parts[name] | f"EventKeys{name[len('events'):]}" >> SumEvents()
                  for name in sorted(parts) if name == "events" or name.startswith("events/")]
        keyed = [
            parts["rows"] | "RowKeys" >> SumEvents(row_keys),
            parts["rejects"] | "RejectKeys" >> SumEvents(_one(reject_key)),
            parts["tiles_done"] | "TileKeys" >> SumEvents(tile_keys),
            parts["reassigned"] | "ReassignKeys" >> beam.Map(lambda n: ("split_reassigned", n)),
            *summed,
        ]
        return (keyed
                | "All" >> beam.Flatten()
                | "Sum" >> beam.CombinePerKey(sum)
                | "Collect" >> beam.combiners.ToDict())
