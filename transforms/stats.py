"""Counting outcomes in the graph: every source of events becomes (key, n) pairs summed per key.

The summed counts feed the build report; because write steps also emit events, the report can only be
written once every file it describes has been written.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from transforms.records import TILE_STAGES


def row_key(row) -> tuple[str, int]:
    md = row.record["metadata"]
    return f"rows|{md['task']}|{md['split']}", 1


def reject_key(record: dict) -> tuple[str, int]:
    return f"rejects|{record['stage']}|{record['reason']}", 1


def event_items(event: dict[str, int]) -> list[tuple[str, int]]:
    return list(event.items())


@dataclass
class CountOutcomes(beam.PTransform):
    """Named PCollections of rows, rejects, split names of finished tiles, reassignments, events -> counts."""

    def expand(self, parts):
        keyed = [
            parts["rows"] | "RowKeys" >> beam.Map(row_key),
            parts["rejects"] | "RejectKeys" >> beam.Map(reject_key),
            parts["tiles_done"] | "TileKeys" >> beam.Map(lambda split: (f"tiles|{split}", 1)),
            parts["reassigned"] | "ReassignKeys" >> beam.Map(lambda n: ("split_reassigned", n)),
            parts["events"] | "EventKeys" >> beam.FlatMap(event_items),
        ]
        return (keyed
                | "All" >> beam.Flatten()
                | "Sum" >> beam.CombinePerKey(sum)
                | "Collect" >> beam.combiners.ToDict())


def summarise(counts: dict[str, int]) -> dict:
    """Flat counter keys -> the nested counts of build_report.json, with the accounting identity checked."""
    rows: dict[str, dict[str, int]] = {}
    rejects: dict[str, int] = {}
    tiles_by_split: dict[str, int] = {}
    tiles_rejected = 0
    other: dict[str, int] = {}
    for key, n in sorted(counts.items()):
        kind, _, rest = key.partition("|")
        if kind == "rows":
            task, split = rest.split("|")
            rows.setdefault(task, {})[split] = n
        elif kind == "rejects":
            stage, reason = rest.split("|", 1)
            rejects[reason] = rejects.get(reason, 0) + n
            if stage in TILE_STAGES:
                tiles_rejected += n
        elif kind == "tiles":
            tiles_by_split[rest] = n
        else:
            other[key] = n
    tiles_in = other.pop("tiles_in", 0)
    with_rows = sum(tiles_by_split.values())
    return {
        "tiles": {"in": tiles_in, "with_rows": with_rows, "rejected": tiles_rejected,
                  "by_split": tiles_by_split, "accounted": tiles_in == with_rows + tiles_rejected},
        "rows": {"total": sum(sum(v.values()) for v in rows.values()), "by_task_split": rows},
        "rejects_by_reason": dict(sorted(rejects.items(), key=lambda kv: (-kv[1], kv[0]))),
        "outputs": other,
    }
