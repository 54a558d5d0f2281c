"""Rows (FORMATS.md 2.1), row sidecars (2.2) and the per-tile view that every task reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from transforms.classes import CLASS_NAMES, display_name
from transforms.ids import stable_digest
from transforms.input.sidecars import Region, Tile
from transforms.output.tree import ANALYSIS_DIR, CHIPS_DIR, OVERLAYS_DIR, STILLS_DIR
from transforms.paths import join_path, safe_name, slot_dir, unsafe_reason
from transforms.prompts import Templates


def file_safe(name: str) -> str:
    """safe_name, plus a short digest whenever cleaning changed the name, so two stems never collide."""
    cleaned = safe_name(name)
    if cleaned == name:
        return name
    return f"{cleaned[:190]}_{stable_digest(name).hex()[:8]}"


def still_output_path(still_src: str, still_stem: str, slot: int, max_files_per_dir: int) -> str:
    """Where a still's copy goes: its slot's folder, its stem, its source's extension."""
    ext = still_src.rsplit(".", 1)[-1].lower() if "." in still_src.rsplit("/", 1)[-1] else "png"
    return join_path(STILLS_DIR, slot_dir(slot, max_files_per_dir), f"{file_safe(still_stem)}.{safe_name(ext)}")


DEFAULT_MAX_BOXES = 12
DEFAULT_MIN_BOX_PX = 100


@dataclass(frozen=True)
class TaskContext:
    """The config values tasks use; built once from BuildConfig and shipped inside the DoFn."""

    templates: Templates
    profiles: tuple[str, ...]
    shift_mode: str = "varied"
    redact_location: bool = False
    max_files_per_dir: int = 9000
    max_boxes: int = DEFAULT_MAX_BOXES  # a grounding answer lists at most this many regions, the largest first
    min_box_px: int = DEFAULT_MIN_BOX_PX  # ... and none smaller than this many pixels (0: no floor)


@dataclass(frozen=True)
class Row:
    record: dict[str, Any]  # what JSONL and Parquet store
    sidecar: dict[str, Any]  # provenance written to metadata/sft_metadata_rows/
    render_spec: dict[str, Any] | None = None  # set for production_analysis rows
    sidecar_path: str = ""  # set once the row's place among its tile's rows is known
    image_sources: tuple[tuple[str, str], ...] = ()  # (output path, input path) of copied images, for embedding
    reused: bool = False  # its tile is unchanged since the earlier build: its sidecar file is that build's

    @property
    def sample_id(self) -> str:
        return self.record["metadata"]["sample_id"]

    @property
    def task(self) -> str:
        return self.record["metadata"]["task"]

    def text(self) -> str:
        return "\n".join(part["text"] for m in self.record["messages"] for part in m["content"]
                         if part["type"] == "text")


@dataclass(frozen=True)
class PreparedTile:
    """A tile with its place in the output tree: sharded output paths are fixed before any row exists."""

    tile: Tile
    slot: int  # the tile's place in every per-tile family of files; kept across rebuilds (transforms/splits/place)
    ctx: TaskContext = field(default=None, repr=False)  # type: ignore[assignment]
    chip: bytes = field(default=b"", repr=False, compare=False)  # read only when a task draws on its pixels

    @property
    def stem(self) -> str:
        return self.tile.tile_stem

    def _shard(self, index: int) -> str:
        return slot_dir(index, self.ctx.max_files_per_dir)

    @cached_property
    def chip_path(self) -> str:
        ext = self.tile.chip_src.rsplit(".", 1)[-1].lower() if "." in self.tile.chip_src else "png"
        return join_path(CHIPS_DIR, self._shard(self.slot),
                         f"{file_safe(self.stem)}.{safe_name(ext)}")

    @cached_property
    def chip_sha256(self) -> str:
        return self.tile.chip_sha256 or hashlib.sha256(self.chip).hexdigest()

    @cached_property
    def still_path(self) -> str:
        if not self.tile.still_src or self.tile.still_index < 0:
            return ""
        return still_output_path(self.tile.still_src, self.tile.still_stem, self.tile.still_index,
                                 self.ctx.max_files_per_dir)

    def analysis_path(self, profile: str) -> str:
        position = self.slot * len(self.ctx.profiles) + self.ctx.profiles.index(profile)
        return join_path(ANALYSIS_DIR, self._shard(position),
                         f"{file_safe(self.stem)}__analysis_{profile}.png")

    @cached_property
    def overlay_path(self) -> str:
        return join_path(OVERLAYS_DIR, self._shard(self.slot),
                         f"{file_safe(self.stem)}__regions.png")

    @cached_property
    def fractions(self) -> dict[int, float]:
        return self.tile.normalised_fractions()

    @cached_property
    def labels_by_area(self) -> list[tuple[str, list[Region]]]:
        """Labels with regions, largest total area first, at most 6 (grounding_per_class, class_focus)."""
        groups: dict[str, list[Region]] = {}
        for r in self.tile.regions:
            groups.setdefault(r.label, []).append(r)
        ranked = sorted(groups.items(), key=lambda kv: (-sum(r.area_px for r in kv[1]), kv[0]))
        return ranked[:6]

    def percent(self, class_id: int) -> str:
        return format_percent(self.fractions.get(class_id, 0.0))

    def dominant_text(self, n: int = 3) -> str:
        top = sorted(self.fractions.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        parts = [f"{display_name(CLASS_NAMES[c])} ({format_percent(v)})" for c, v in top]
        return join_words(parts)


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def format_trace(fraction: float) -> str:
    """A share too small for one decimal ("0.0%" would deny what the labels hold): two significant digits."""
    if fraction >= 0.001:
        return format_percent(fraction)
    value = fraction * 100
    return "under 0.001%" if value < 0.001 else f"{value:.2g}%"


def join_words(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def where_in_image(region: Region, size: int) -> str:
    """A 3x3 compass name for a box centre: "upper left", "centre", "lower right" and so on."""
    x1, y1, x2, y2 = region.bbox
    cx, cy = (x1 + x2 + 1) / 2 / size, (y1 + y2 + 1) / 2 / size
    row = "upper" if cy < 1 / 3 else ("lower" if cy > 2 / 3 else "")
    col = "left" if cx < 1 / 3 else ("right" if cx > 2 / 3 else "")
    return " ".join(p for p in (row, col) if p) or "centre"


def normalise_box(bbox: tuple[int, int, int, int], size: int) -> list[float]:
    """Inclusive pixel box -> 0-1 box; the max corner is the far edge of the last pixel: (x2 + 1) / size."""
    x1, y1, x2, y2 = bbox
    return [round(x1 / size, 4), round(y1 / size, 4), round((x2 + 1) / size, 4), round((y2 + 1) / size, 4)]


def box_budget(regions: list[Region], max_boxes: int, min_box_px: int) -> tuple[list[Region], int]:
    """The regions a grounding answer lists: none under ``min_box_px`` pixels, then the ``max_boxes`` largest
    (area, then label and box, so ties break the same way everywhere); and how many were left out. Real
    scenes give 50+ regions per chip, a third of them under 100 px: a list a model cannot learn to finish."""
    ordered = sorted(regions, key=lambda r: (-r.area_px, r.label, r.bbox))
    kept = [r for r in ordered if r.area_px >= min_box_px][:max_boxes]
    return kept, len(regions) - len(kept)


def budget_text(max_boxes: int, min_box_px: int) -> str:
    """The budget as the prompt states it, so prompt and answer agree."""
    floor = f", each at least {min_box_px} pixels" if min_box_px else ""
    return f"at most {max_boxes}, largest first{floor}"


def regions_record(regions: list[Region]) -> list[dict[str, Any]]:
    """Every region of a tile as the row sidecar keeps it, whatever the answer lists."""
    return [{"label": r.label, "class_id": r.class_id, "bbox": list(r.bbox), "area_px": r.area_px}
            for r in sorted(regions, key=lambda r: (-r.area_px, r.label, r.bbox))]


def grounding_json(regions: list[Region], size: int) -> str:
    items = [{"label": r.label, "bbox": normalise_box(r.bbox, size)} for r in regions]
    return orjson.dumps(items).decode()


def row_shape_problem(row: Any) -> str:
    """What keeps a record from being a row of satsft's shape, or "": messages of typed parts, and metadata naming
    its sample, task, split and images. A loader fails on such a record, and validate's checks, eval and preview
    would stop on it (a hand-edited file, a row written by another tool) instead of naming it."""
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not isinstance(
            row.get("metadata"), dict):
        return "not a row object with messages and metadata"
    for i, message in enumerate(row["messages"]):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(
                message.get("content"), list):
            return f"message {i} is not a role with a list of content parts"
        for part in message["content"]:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "image"):
                return f"message {i} holds a content part that is neither text nor image"
            if not isinstance(part.get(kind), str):
                return f"message {i} holds {'an' if kind == 'image' else 'a'} {kind} part whose {kind} is not a string"
    md = row["metadata"]
    for key in ("sample_id", "task", "split"):
        if not isinstance(md.get(key), str):
            return f"metadata.{key} is not a string"
    for key in ("tile_stem", "analysis_profile"):
        if not isinstance(md.get(key, ""), str):
            return f"metadata.{key} is not a string"
    paths = md.get("image_paths")
    if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        return "metadata.image_paths is not a list of paths"
    if not isinstance(md.get("analysis_image_path") or "", str):
        return "metadata.analysis_image_path is not a path"
    return image_path_problem(row)


def image_path_problem(row: dict[str, Any]) -> str:
    """An image path of a row (of the row shape: a JSONL line checked, or a Parquet row, typed by its schema)
    that leaves the dataset, or "". Readers would read, and copy out, a file of the machine they run on that the
    dataset does not hold: preview into its page, eval --requests into requests sent to a model's server; a
    dataset downloaded from the Hub names whatever it likes."""
    named = [("metadata names an image", p) for p in row["metadata"].get("image_paths") or ()]
    named += [(f"message {i} holds an image part", part["image"]) for i, m in enumerate(row["messages"])
              for part in m["content"] if part.get("type") == "image"]
    if row["metadata"].get("analysis_image_path"):
        named.append(("metadata names an analysis image", row["metadata"]["analysis_image_path"]))
    for what, path in named:
        why = unsafe_reason(path)
        if why:
            return f"{what} at {path[:80]!r}, which is not a path inside the dataset ({why})"
    return ""


class DamagedRow(ValueError):
    """A line of a JSONL split file that is not a row of satsft's shape: eval and preview stop on it with one line
    pointing at validate, which names every such line."""


def read_row_lines(lines: Iterable[bytes], path: str) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL split file, blank lines passed over; DamagedRow naming the file and line of one not of
    the row shape (orjson's error when it is not JSON), as every reader of finished rows stops on it."""
    for n, line in enumerate(lines, 1):
        if line.strip():
            row = orjson.loads(line)
            problem = row_shape_problem(row)
            if problem:
                raise DamagedRow(f"{path} line {n} is not a row of satsft's shape: {problem}")
            yield row


def grounding_problem(answer: str) -> str | None:
    """Why a grounding answer is not a valid list of normalised boxes, or None when it is."""
    try:
        items = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(items, list) or not items:
        return "not a non-empty list"
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("label"), str):
            return "item without a label"
        box = item.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            return "bbox is not four numbers"
        x1, y1, x2, y2 = box
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            return f"bbox out of range or empty: {box}"
    return None


def text_part(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def make_row(pt: PreparedTile, task: str, sample_id: str, images: list[str], prompt: str, answer: str, *,
             system: str | None = None, profile: str = "", analysis_path: str = "",
             sidecar_extra: dict[str, Any] | None = None, render_spec: dict[str, Any] | None = None) -> Row:
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": [text_part(system)]})
    messages.append({"role": "user",
                     "content": [{"type": "image", "image": p} for p in images] + [text_part(prompt)]})
    messages.append({"role": "assistant", "content": [text_part(answer)]})
    metadata = {"sample_id": sample_id, "task": task, "analysis_profile": profile, "tile_stem": pt.stem,
                "split": pt.tile.split, "image_paths": list(images), "analysis_image_path": analysis_path}
    sidecar = {"sample_id": sample_id, "task": task, "tile_stem": pt.stem, "split": pt.tile.split,
               "image_paths": list(images), "chip_size_px": pt.tile.chip_px, "output_size": pt.tile.size}
    sidecar.update(sidecar_extra or {})
    return Row({"messages": messages, "metadata": metadata}, sidecar, render_spec)


def sentinel_sidecar(pt: PreparedTile) -> dict[str, Any]:
    """The tile sidecar as a row sidecar keeps it: normalised shares by name, top classes, regions, extras."""
    t = pt.tile
    top = sorted(pt.fractions.items(), key=lambda kv: (-kv[1], kv[0]))[:4]
    out: dict[str, Any] = {
        "source": t.source, "tile_stem": t.tile_stem, "caption": t.caption,
        "class_fractions": {CLASS_NAMES[c]: round(v, 6) for c, v in pt.fractions.items()},
        "dominant_classes": [CLASS_NAMES[c] for c, _ in top],
        "regions": [{"label": r.label, "class_id": r.class_id, "bbox": list(r.bbox), "area_px": r.area_px}
                    for r in t.regions],
    }
    out.update(t.extra)
    return out
