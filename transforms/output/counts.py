"""Counting outcomes in the graph: every source of events becomes (key, n) pairs summed per key.

The summed counts feed the report (pipeline/publish/report.py nests them); because write steps also emit
events, the report can only be written once every file it describes has been written.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
import orjson

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


@dataclass
class CountOutcomes(beam.PTransform):
    """Named PCollections of rows, rejects, split names of finished tiles, reassignments, events -> counts."""

    def expand(self, parts):
        keyed = [
            parts["rows"] | "RowKeys" >> beam.FlatMap(row_keys),
            parts["rejects"] | "RejectKeys" >> beam.Map(reject_key),
            parts["tiles_done"] | "TileKeys" >> beam.FlatMap(tile_keys),
            parts["reassigned"] | "ReassignKeys" >> beam.Map(lambda n: ("split_reassigned", n)),
            parts["events"] | "EventKeys" >> beam.FlatMap(event_items),
        ]
        return (keyed
                | "All" >> beam.Flatten()
                | "Sum" >> beam.CombinePerKey(sum)
                | "Collect" >> beam.combiners.ToDict())
