"""`satsft validate OUTPUT`: check a built tree the way a loader and the Hub will see it, and list every problem.

Checks: the report and card exist; every file the report or the card names exists and every split file on disk
is named by them; each file parses in its format with the fixed schema; row counts agree with the report;
every referenced image exists; grounding answers are valid boxes; no folder holds more than the limit.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow.parquet as pq
import yaml

from pipeline.card import CARD_NAME
from pipeline.report import REPORT_NAME
from transforms.formats import FORMATS, GROUNDING_TASKS, IMAGE_TOKEN, SCHEMA_EMBEDDED, SCHEMA_PLAIN
from transforms.rows import grounding_problem
from transforms.sidecars import VALID_SPLITS

SHOWN_PER_CHECK = 20
ROW_SIDECARS = "metadata/sft_metadata_rows"


@dataclass
class Findings:
    """Problems grouped by check, so a thousand missing images print as twenty lines and a count."""

    by_check: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, check: str, message: str) -> None:
        self.by_check[check].append(message)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_check.values())

    def lines(self) -> list[str]:
        out = []
        for check in sorted(self.by_check):
            problems = self.by_check[check]
            out.append(f"{check}: {len(problems)} problem(s)")
            out += [f"  - {p}" for p in problems[:SHOWN_PER_CHECK]]
            if len(problems) > SHOWN_PER_CHECK:
                out.append(f"  ... and {len(problems) - SHOWN_PER_CHECK} more")
        return out


def _records(path: str, fmt: str, findings: Findings) -> Iterator[dict[str, Any]]:
    """Rows of one file in the shared row shape (jsonl, parquet); llava and sharegpt are checked on their own."""
    rel = os.path.basename(path)
    if fmt == "jsonl":
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as err:
                    findings.add("jsonl", f"{rel} line {n}: not valid JSON ({err})")
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list) or not isinstance(
                        obj.get("metadata"), dict):
                    findings.add("jsonl", f"{rel} line {n}: not a row object with messages and metadata")
                    continue
                yield obj
    elif fmt == "parquet":
        try:
            pf = pq.ParquetFile(path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for damaged files
            findings.add("parquet", f"{rel}: unreadable ({err})")
            return
        schema = pf.schema_arrow
        if not (schema.equals(SCHEMA_PLAIN) or schema.equals(SCHEMA_EMBEDDED)):
            findings.add("parquet", f"{rel}: schema differs from the fixed satsft schema")
            return
        embedded = "images" in schema.names
        for batch in pf.iter_batches(batch_size=256):
            for row in batch.to_pylist():
                if embedded and [i["path"] for i in row["images"]] != row["metadata"]["image_paths"]:
                    findings.add("parquet", f"{rel} {row['metadata']['sample_id']}: embedded images do not match "
                                            "image_paths")
                if embedded and not all(i["bytes"] for i in row["images"]):
                    findings.add("parquet", f"{rel} {row['metadata']['sample_id']}: an embedded image is empty")
                row.pop("images", None)
                yield row


def _check_llava_sharegpt(path: str, fmt: str, findings: Findings) -> int:
    rel = os.path.relpath(path)
    try:
        with open(path, "rb") as f:
            items = orjson.loads(f.read()) if fmt == "llava" else [orjson.loads(line) for line in f]
    except orjson.JSONDecodeError as err:
        findings.add(fmt, f"{rel}: not valid JSON ({err})")
        return 0
    for item in items:
        if fmt == "llava":
            images = item.get("images") or ([item["image"]] if "image" in item else [])
            turns = item.get("conversations", [])
            first = turns[0]["value"] if turns and turns[0].get("from") == "human" else None
        else:
            images = item.get("images", [])
            first = next((m["content"] for m in item.get("messages", []) if m.get("role") == "user"), None)
        if first is None:
            findings.add(fmt, f"{rel}: a row without a first human/user turn")
        elif first.count(IMAGE_TOKEN) != len(images):
            findings.add(fmt, f"{rel}: {first.count(IMAGE_TOKEN)} {IMAGE_TOKEN} tokens for {len(images)} images")
    return len(items)


def _check_row(row: dict[str, Any], split: str, root: str, findings: Findings, seen_images: dict[str, bool]) -> None:
    md = row["metadata"]
    sid = md.get("sample_id", "?")
    if md.get("split") != split:
        findings.add("rows", f"{sid}: split {md.get('split')!r} in the {split} file")
    user = next((m for m in row["messages"] if m.get("role") == "user"), None)
    if user is None:
        findings.add("rows", f"{sid}: no user message")
        return
    parts = user["content"]
    images = [p["image"] for p in parts if p.get("type") == "image"]
    if images != md.get("image_paths"):
        findings.add("rows", f"{sid}: image parts differ from metadata.image_paths")
    for path in [*images, md.get("analysis_image_path") or ""]:
        if path and path not in seen_images:
            seen_images[path] = os.path.isfile(os.path.join(root, path))
        if path and not seen_images[path]:
            findings.add("images", f"{sid}: missing {path}")
    if md.get("task") in GROUNDING_TASKS:
        answer = "".join(p.get("text") or "" for p in row["messages"][-1]["content"])
        problem = grounding_problem(answer)
        if problem:
            findings.add("grounding", f"{sid}: {problem}")


def _card_files(root: str, findings: Findings) -> set[str]:
    path = os.path.join(root, CARD_NAME)
    if not os.path.isfile(path):
        findings.add("card", f"{CARD_NAME} is missing")
        return set()
    text = open(path, encoding="utf-8").read()
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        findings.add("card", f"{CARD_NAME} has no YAML header")
        return set()
    try:
        header = yaml.safe_load(text[4:text.index("\n---\n", 4)])
    except yaml.YAMLError as err:
        findings.add("card", f"{CARD_NAME} YAML header does not parse: {err}")
        return set()
    files: set[str] = set()
    for config in (header or {}).get("configs", []):
        for entry in config.get("data_files", []):
            paths = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
            files.update(paths)
    return files


def _folder_limits(root: str, limit: int, findings: Findings) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        n = len(dirnames) + len(filenames)
        if n > limit:
            findings.add("folders", f"{os.path.relpath(dirpath, root)} holds {n} entries (limit {limit})")


def validate(root: str) -> tuple[Findings, dict[str, int]]:
    """All problems found in the built tree at ``root``, and what was checked (for the closing line)."""
    findings = Findings()
    checked: Counter[str] = Counter()
    report_path = os.path.join(root, REPORT_NAME)
    if not os.path.isfile(report_path):
        findings.add("report", f"{REPORT_NAME} is missing: is {root!r} a satsft build output?")
        return findings, checked
    report = orjson.loads(open(report_path, "rb").read())
    files: dict[str, dict[str, int]] = report.get("files", {})
    card_files = _card_files(root, findings)
    listed = {p for paths in files.values() for p in paths}
    for p in sorted(card_files - listed):
        findings.add("card", f"{CARD_NAME} names {p}, which the build did not write")
    for fmt in ("parquet", "jsonl"):
        for p in sorted(set(files.get(fmt, {})) - card_files):
            findings.add("card", f"{p} is not named in the {CARD_NAME} configs")
    for spec in FORMATS.values():
        folder = os.path.join(root, spec.folder)
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                if f"{spec.folder}/{name}" not in listed and name.endswith(spec.suffix):
                    findings.add("files", f"{spec.folder}/{name} is not listed in {REPORT_NAME}")
    counted: Counter[tuple[str, str]] = Counter()
    sample_ids: Counter[str] = Counter()
    seen_images: dict[str, bool] = {}
    record_formats = [f for f in ("jsonl", "parquet") if f in files]
    for fmt, paths in sorted(files.items()):
        for rel, expected in sorted(paths.items()):
            path = os.path.join(root, rel)
            split = os.path.basename(rel).split(".")[0].split("-")[0]
            if not os.path.isfile(path):
                findings.add("files", f"{rel} is missing ({expected} rows expected)")
                continue
            checked["files"] += 1
            if fmt in ("llava", "sharegpt"):
                n = _check_llava_sharegpt(path, fmt, findings)
            else:
                n = 0
                for row in _records(path, fmt, findings):
                    n += 1
                    if fmt == record_formats[0]:
                        _check_row(row, split, root, findings, seen_images)
                        md = row["metadata"]
                        counted[(md.get("task", "?"), split)] += 1
                        sample_ids[md.get("sample_id", "?")] += 1
                checked["rows"] += n if fmt == record_formats[0] else 0
            if n != expected:
                findings.add("counts", f"{rel}: {n} rows, {REPORT_NAME} says {expected}")
    split_rows = Counter()
    for splits in report["rows"]["by_task_split"].values():
        split_rows.update(splits)
    for split in VALID_SPLITS:
        if not split_rows[split]:
            continue
        for fmt in record_formats:
            if not any(os.path.basename(p).startswith((f"{split}.", f"{split}-")) for p in files[fmt]):
                findings.add("files", f"no {fmt} file for split {split}")
    if record_formats:
        by_task = report["rows"]["by_task_split"]
        expected_counts = {(t, s): n for t, splits in by_task.items() for s, n in splits.items()}
        for key in sorted(set(expected_counts) | set(counted)):
            if expected_counts.get(key, 0) != counted.get(key, 0):
                findings.add("counts", f"{key[0]}/{key[1]}: {counted.get(key, 0)} rows in files, {REPORT_NAME} "
                                       f"says {expected_counts.get(key, 0)}")
        for sid, n in sample_ids.items():
            if n > 1:
                findings.add("rows", f"sample_id {sid} appears {n} times")
    checked["images"] = len(seen_images)
    sidecar_dir = os.path.join(root, ROW_SIDECARS)
    n_sidecars = sum(len(fs) for _, _, fs in os.walk(sidecar_dir))
    if n_sidecars != report["rows"]["total"]:
        findings.add("counts", f"{n_sidecars} row sidecars under {ROW_SIDECARS}, {report['rows']['total']} rows")
    _folder_limits(root, int(report["config"].get("max_files_per_dir", 9000)), findings)
    return findings, checked
