"""Counting outcomes in the graph: every source of events becomes (key, n) pairs summed per key.

The summed counts feed the build report; because write steps also emit events, the report can only be
written once every file it describes has been written.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
import orjson

from transforms.input.sidecars import VALID_SPLITS
from transforms.records import TILE_STAGES
from transforms.splits.plan import split_drift_pp
from transforms.tasks import is_grounding


def row_keys(row) -> list[tuple[str, int]]:
    """rows|task|split for every row; boxes|n for grounding rows (the card's boxes-per-row histogram)."""
    md = row.record["metadata"]
    keys = [(f"rows|{md['task']}|{md['split']}", 1)]
    if is_grounding(md["task"]):
        answer = row.record["messages"][-1]["content"][-1]["text"]
        keys.append((f"boxes|{len(orjson.loads(answer))}", 1))
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


def summarise(counts: dict[str, int]) -> dict:
    """Flat counter keys -> the nested counts of build_report.json, with the accounting identity checked."""
    rows: dict[str, dict[str, int]] = {}
    rejects: dict[str, int] = {}
    tiles_by_split: dict[str, int] = {}
    declared: dict[str, int] = {}
    tiles_rejected = 0
    classes: dict[str, dict[str, int]] = {}
    boxes: dict[int, int] = {}
    files: dict[str, dict[str, int]] = {}
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
        elif kind == "declared":
            declared[rest] = n
        elif kind in ("dominant", "regions"):
            classes.setdefault(rest, {"dominant_tiles": 0, "regions": 0})[
                "dominant_tiles" if kind == "dominant" else "regions"] = n
        elif kind == "boxes":
            boxes[int(rest)] = n
        elif kind == "files":
            fmt, path = rest.split("|", 1)
            files.setdefault(fmt, {})[path] = n
        else:
            other[key] = n
    tiles_in = other.pop("tiles_in", 0)
    with_rows = sum(tiles_by_split.values())
    return {
        "tiles": {"in": tiles_in, "with_rows": with_rows, "rejected": tiles_rejected,
                  "by_split": tiles_by_split, "accounted": tiles_in == with_rows + tiles_rejected},
        "splits": {"declared": {s: declared.get(s, 0) for s in VALID_SPLITS},
                   "written": {s: tiles_by_split.get(s, 0) for s in VALID_SPLITS},
                   "drift_pp": split_drift_pp(declared, tiles_by_split)},
        "rows": {"total": sum(sum(v.values()) for v in rows.values()), "by_task_split": rows},
        "rejects_by_reason": dict(sorted(rejects.items(), key=lambda kv: (-kv[1], kv[0]))),
        "classes": dict(sorted(classes.items())),
        "boxes_per_row": {str(k): boxes[k] for k in sorted(boxes)},
        "files": files,
        "outputs": other,
    }
