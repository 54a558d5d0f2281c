"""`satsft preview OUT`: a static HTML page of a seeded sample of rows, opened from the file system.

OUT/preview/ holds index.html, sample.js (the sampled rows as one JavaScript object: a page from file:// may
load scripts but not fetch JSON), the charts and a copy of every image the sample shows (so the folder can be
zipped and sent on its own). Only the metadata columns of the split files are read to draw the sample; full
rows are read for the chosen ones only, so a 20,000-tile build previews in seconds.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
from collections import defaultdict
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.publish.charts import report_charts
from pipeline.review.page import PAGE
from scoring import parse
from scoring.evaluate import EvalError, ground_key, held_out_on_shared_ground
from transforms import fileio
from transforms.classes import CLASS_NAMES, PALETTE_HEX
from transforms.ids import stable_uint64
from transforms.output import claim
from transforms.output.tree import (
    CHARTS_DIR,
    MEDIA_DIR,
    MIX_REPORT_NAME,
    PREVIEW_DIR,
    REPORT_NAME,
    OutputTree,
    parse_report,
    record_files,
)
from transforms.paths import join_path
from transforms.rows import DamagedRow, image_path_problem, read_row_lines
from transforms.tasks import is_grounding


class PreviewError(ValueError):
    """The folder cannot be previewed; the message says why."""


MADE_FROM = "made_from.txt"  # which report the page was made from: an --update that changed it removes the page


def made_from(report_bytes: bytes) -> bytes:
    """The report's digest, as preview/made_from.txt holds it: a rebuild of unchanged input writes the same
    report bytes (its timings go elsewhere), so the page stays exactly when it still shows the output."""
    return f"sha256 {hashlib.sha256(report_bytes).hexdigest()}\n".encode()


def remove_stale_preview(output: str, report_name: str = REPORT_NAME) -> bool:
    """After an --update: the preview page of the build (or mix) it replaced shows the old cards, counts and
    images, and a Hub upload of the folder would carry them. It goes (it is remade in seconds) unless the report
    it was made from is byte for byte the new one (a rebuild of unchanged input changes no file); True if it
    went."""
    folder = join_path(output, PREVIEW_DIR)
    if not fileio.is_local(output) or not os.path.isdir(folder):
        return False  # preview writes local pages only
    stamp = os.path.join(folder, MADE_FROM)
    if os.path.isfile(stamp) and fileio.read_bytes(stamp) == made_from(fileio.read_bytes(join_path(output,
                                                                                                    report_name))):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def is_preview_folder(path: str) -> bool:
    """A folder ``--to`` may replace: empty, or a page an earlier preview wrote (its index.html and sample.js,
    with nothing else beside them but its images and charts)."""
    if not os.path.isdir(path):
        return False
    entries = set(os.listdir(path))
    if not entries:
        return True
    if not {"index.html", "sample.js"} <= entries or not entries <= {"index.html", "sample.js", MEDIA_DIR,
                                                                        CHARTS_DIR, MADE_FROM}:
        return False
    with open(os.path.join(path, "sample.js"), "rb") as f:
        return f.read(24) == b"window.SATSFT_PREVIEW = "


def stratified_sample(keys: list[dict[str, Any]], per_task: int, seed: int) -> list[str]:
    """Up to ``per_task`` sample ids per task, spread over its (split, profile, source, on shared ground) groups
    in turn; within a group, in the order of a seeded hash. A pure function of the keys' set."""
    by_task: dict[str, dict[tuple[str, ...], list[str]]] = defaultdict(lambda: defaultdict(list))
    for k in keys:  # rows on shared ground form groups of their own, so a reviewer sees some of them
        group = (k["split"], k["analysis_profile"], k.get("source", ""), *(("shared",) if k.get("shared") else ()))
        by_task[k["task"]][group].append(k["sample_id"])
    chosen = []
    for _, groups in sorted(by_task.items()):
        queues = [sorted(ids, key=lambda i: (stable_uint64("preview", seed, i), i))
                  for _, ids in sorted(groups.items())]
        picked: list[str] = []
        while len(picked) < per_task and any(queues):
            for q in queues:
                if q and len(picked) < per_task:
                    picked.append(q.pop(0))
        chosen += picked
    return chosen


def _split_files(tree: OutputTree, report: dict[str, Any]) -> tuple[str, list[str]]:
    fmt, paths = record_files(report)
    if not paths:
        raise PreviewError("the output has no Parquet or JSONL rows to preview (it was written in other formats "
                           "only): build it again with --formats jsonl or parquet among them")
    return fmt, paths


def _keys(tree: OutputTree, fmt: str, paths: list[str]) -> list[dict[str, Any]]:
    fields = ("sample_id", "task", "split", "analysis_profile", "source", "tile_stem")
    out = []
    for path in paths:
        with tree.open(path) as f:
            if fmt == "parquet":
                for md in pq.read_table(f, columns=["metadata"]).column("metadata").to_pylist():
                    out.append({k: md.get(k, "") for k in fields})
            else:
                out.extend({k: row["metadata"].get(k, "") for k in fields} for row in read_row_lines(f, path))
    return out


def _rows(tree: OutputTree, fmt: str, paths: list[str], wanted: set[str], tiles: set[str]
          ) -> dict[str, dict[str, Any]]:
    """Full rows (with embedded image bytes, if any) of the wanted sample ids, plus the grounding_all row of
    each of their tiles (its boxes are the tile's regions). Parquet files are read column-wise and only the
    wanted rows become Python objects."""
    def keep(md: dict[str, Any]) -> bool:
        return md["sample_id"] in wanted or (md["task"] == "grounding_all" and md.get("tile_stem") in tiles)

    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        with tree.open(path) as f:
            if fmt == "parquet":
                table = pq.read_table(f)
                metadata = table.column("metadata").to_pylist()
                picked = [i for i, md in enumerate(metadata) if keep(md)]
                if not picked:  # take() of an empty list has no kernel for list columns
                    continue
                for row in table.take(pa.array(picked, type=pa.int64())).to_pylist():
                    problem = image_path_problem(row)
                    if problem:
                        raise DamagedRow(f"{path} row {row['metadata']['sample_id']}: {problem}")
                    out[row["metadata"]["sample_id"]] = row
            else:
                out.update((row["metadata"]["sample_id"], row) for row in read_row_lines(f, path)
                           if keep(row["metadata"]))
    return out


def _text(message: dict[str, Any]) -> str:
    return "\n".join(p.get("text") or "" for p in message["content"] if p.get("type") == "text")


def card_boxes(row: dict[str, Any], tile_regions: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """What to draw on the chip: a grounding row's answer boxes; class_focus, and absence asked about a class
    that is there: the regions of its class; absence of a class: none; other rows: all regions of the tile
    (from its grounding_all answer)."""
    md = row["metadata"]
    if is_grounding(md["task"]):
        found = parse.boxes(_text(row["messages"][-1])) or []
        return [{"label": label, "bbox": list(box)} for label, box in found]
    regions = tile_regions.get(md.get("tile_stem", ""), [])
    if md["task"] == "class_focus":
        label = md["sample_id"].rsplit("__focus_", 1)[-1]
        return [r for r in regions if r["label"] == label]
    if md["task"] == "absence":
        label = md["sample_id"].rsplit("__absence_", 1)[-1]
        return [r for r in regions if r["label"] == label] if _asked_present(row) else []
    return regions


def _asked_present(row: dict[str, Any]) -> bool:
    return parse.yes_no(_text(row["messages"][-1])) == "yes"


def card_note(row: dict[str, Any]) -> str:
    """A line above an absence card's messages: which way the question goes (its boxes alone do not say)."""
    if row["metadata"]["task"] != "absence":
        return ""
    return f"asked about a class that is {'present' if _asked_present(row) else 'absent'}"


def no_match_message(keys: list[dict[str, Any]], tasks: set[str] | None, splits: set[str] | None) -> str:
    """Why a filter shows nothing, naming what the output does hold, so the fix is one edit away."""
    have_tasks = sorted({k["task"] for k in keys})
    have_splits = sorted({k["split"] for k in keys})
    asked = " ".join(f"--{name} {','.join(sorted(v))}" for name, v in (("tasks", tasks), ("splits", splits)) if v)
    if not keys:
        return "the output has no rows to preview"
    combos = sorted({(k["task"], k["split"]) for k in keys})
    return (f"no rows match {asked}; the output holds tasks {', '.join(have_tasks)} and splits "
            f"{', '.join(have_splits)} ({len(combos)} task/split pairs)")


def build_preview(root: str, per_task: int = 60, tasks: set[str] | None = None, splits: set[str] | None = None,
                  seed: int = 0, to: str | None = None) -> dict[str, Any]:
    """The page, in ``to`` (default ``root``/preview/): a build or mix in a bucket is previewed into a local
    folder, reading only the chosen rows' images from the bucket."""
    tree = OutputTree(root)
    name = next((n for n in (REPORT_NAME, MIX_REPORT_NAME) if tree.isfile(n)), None)
    if name is None:
        state = claim.unfinished_in(tree)
        raise PreviewError(f"no {REPORT_NAME} or {MIX_REPORT_NAME} in {root!r}: {state}; preview it once it has "
                           "finished" if state else f"no {REPORT_NAME} or {MIX_REPORT_NAME} in {root!r}; pass the "
                           "--output folder of a build or mix")
    report_bytes = tree.read(name)
    report = parse_report(report_bytes, name)
    fmt, paths = _split_files(tree, report)
    every = _keys(tree, fmt, paths)
    try:
        listed = held_out_on_shared_ground(tree, name, report) or {}
    except EvalError:
        listed = {}  # a damaged list: `satsft validate` names it; the preview shows the rows unmarked
    mix = name == MIX_REPORT_NAME
    for k in every:
        k["shared"] = bool(k["tile_stem"]) and listed.get(ground_key(k, mix)) == k["split"]
    keys = [k for k in every if (not tasks or k["task"] in tasks) and (not splits or k["split"] in splits)]
    if not keys:
        raise PreviewError(no_match_message(every, tasks, splits))
    chosen = stratified_sample(keys, per_task, seed)
    keyed = {k["sample_id"]: k for k in keys}
    tiles_of = {sid: k["tile_stem"] for sid, k in keyed.items()}
    rows = _rows(tree, fmt, paths, set(chosen), {tiles_of[sid] for sid in chosen if tiles_of[sid]})
    tile_regions = {r["metadata"]["tile_stem"]: [{"label": label, "bbox": list(box)} for label, box in
                                                  parse.boxes(_text(r["messages"][-1])) or []]
                    for r in rows.values() if r["metadata"]["task"] == "grounding_all"}
    out_dir = to or join_path(root, PREVIEW_DIR)
    fileio.remove_tree(out_dir)
    copied: dict[str, str] = {}
    missing: dict[str, str] = {}  # an image a row names that cannot be read -> why: the card says so
    cards = []
    for sid in chosen:
        row = rows[sid]
        md = row["metadata"]
        embedded = {img["path"]: img["bytes"] for img in row.get("images") or []}
        images = []
        for path in md["image_paths"]:
            if path not in copied and path not in missing:
                data = embedded.get(path)
                try:
                    data = data if data is not None else fileio.read_within(root, path)
                except OSError as err:  # gone from the output (or a bucket refuses it): one card says so
                    missing[path] = "missing" if isinstance(err, FileNotFoundError) else f"unreadable ({err})"
                else:
                    copied[path] = posixpath.join(MEDIA_DIR, path)
                    fileio.write_bytes(join_path(out_dir, copied[path]), data)
            images.append(copied.get(path, ""))
        messages = [{"role": m["role"], "text": _text(m)} for m in row["messages"]]
        card = {"id": sid, "task": md["task"], "split": md["split"], "profile": md.get("analysis_profile", ""),
                "source": md.get("source", ""), "images": images, "shared_ground": keyed[sid]["shared"],
                "chip": 1 if md["task"] == "cross_view" and len(images) > 1 else 0,
                "boxes": card_boxes(row, tile_regions), "note": card_note(row), "messages": messages,
                "metadata": {k: v for k, v in md.items() if k != "image_paths"}}
        gone = {str(i): f"{path}: {missing[path]}" for i, path in enumerate(md["image_paths"]) if path in missing}
        if gone:  # by the image's place in the card
            card["missing"] = gone
        cards.append(card)
    charts = report_charts(report)
    for chart, svg in charts.items():
        fileio.write_bytes(join_path(out_dir, CHARTS_DIR, chart), svg.encode())
    counts = defaultdict(int)
    for c in cards:
        counts[c["task"]] += 1
    data = {"title": "satsft mix" if name == MIX_REPORT_NAME else "satsft build", "report": {
        "rows": report["rows"], "tiles": report.get("tiles"), "rejects_by_reason": report.get("rejects_by_reason", {}),
        "splits": report.get("splits")}, "cards": cards, "sample_per_task": dict(sorted(counts.items())),
        "charts": [f"{CHARTS_DIR}/{c}" for c in sorted(charts)],
        "palette": dict(zip(CLASS_NAMES, PALETTE_HEX, strict=True))}
    fileio.write_bytes(join_path(out_dir, "sample.js"),
                       b"window.SATSFT_PREVIEW = " + orjson.dumps(data).replace(b"</", b"<\\/") + b";\n")
    fileio.write_bytes(join_path(out_dir, "index.html"), PAGE.encode())
    if to is None:  # the page in the output folder, which an --update removes once it no longer shows it
        fileio.write_bytes(join_path(out_dir, MADE_FROM), made_from(report_bytes))
    return {"cards": len(cards), "images": len(copied), "missing": sorted(missing),
            "path": join_path(out_dir, "index.html")}
