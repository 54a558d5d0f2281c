"""Writers: split files in every format, row sidecars, analysis images, overlays, image copies, rejects.

Per-file writers run inside the DoFn that has the data (pixels never cross a shuffle), write under
deterministic names via a temporary name, and emit one small count event per file for the build report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics

from transforms import fileio
from transforms.formats import FORMATS, Images
from transforms.ids import stable_uint64
from transforms.overlay import draw_regions
from transforms.paths import join_path, shard_dir
from transforms.records import reject
from transforms.render import render_analysis_png
from transforms.rows import Row
from transforms.sidecars import VALID_SPLITS

REJECTS_FILE = "rejects/rejects-00000-of-00001.jsonl"
REJECTS = "rejects"


def shard_count(n_rows: int, rows_per_shard: int) -> int:
    """Shards for a split with rows. A split without rows gets no file at all: `datasets` fails on an empty
    Parquet file, and the card simply leaves the split out."""
    return max(1, -(-n_rows // rows_per_shard))


class ShardEntry(NamedTuple):
    """What crosses the shuffle into a shard writer: row text and image paths, never pixels."""

    sample_id: str
    record: dict[str, Any]
    image_sources: tuple[tuple[str, str], ...]
    render_spec: dict[str, Any] | None
    sidecar_path: str = ""


def split_file_dir(counts: dict[str, int], rows_per_shard: int, max_files_per_dir: int, split: str,
                   shard: int) -> str:
    """The sub-folder of one split file inside its format folder: none while the folder's files fit under the
    limit (every real build), else shard folders over all splits' files in split order."""
    sizes = [shard_count(counts[s], rows_per_shard) for s in VALID_SPLITS if counts.get(s, 0)]
    total = sum(sizes)
    if total <= max_files_per_dir:
        return ""
    before = sum(shard_count(counts[s], rows_per_shard) for s in VALID_SPLITS[:VALID_SPLITS.index(split)]
                 if counts.get(s, 0))
    return shard_dir(before + shard, max_files_per_dir, total)


ShardKey = tuple[str, int, int, str]  # (split, shard, shards in the split, sub-folder)


def shard_key(row: Row, counts: dict[str, int], rows_per_shard: int, max_files_per_dir: int
              ) -> tuple[ShardKey, ShardEntry]:
    """(key, entry); the shard is a hash of the sample id, so reruns agree."""
    split = row.record["metadata"]["split"]
    n = shard_count(counts.get(split, 0), rows_per_shard)
    shard = stable_uint64("shard", row.sample_id) % n
    return (split, shard, n, split_file_dir(counts, rows_per_shard, max_files_per_dir, split, shard)), ShardEntry(
        row.sample_id, row.record, row.image_sources, row.render_spec, row.sidecar_path)


def all_shard_keys(counts: dict[str, int], rows_per_shard: int, max_files_per_dir: int
                   ) -> list[tuple[ShardKey, None]]:
    out = []
    for split in VALID_SPLITS:
        if counts.get(split, 0):
            n = shard_count(counts[split], rows_per_shard)
            out += [((split, i, n, split_file_dir(counts, rows_per_shard, max_files_per_dir, split, i)), None)
                    for i in range(n)]
    return out


def shard_images(entries: list[ShardEntry], read=fileio.read_bytes) -> list[Images | str]:
    """Each row's images in image_paths order, or why they cannot be had: copied sources read once per shard,
    analysis images rendered again from their spec (cheaper than waiting for the render step and reading its
    file back). A source that vanished or became unreadable since it was listed costs its rows, not the shard."""
    cache: dict[str, bytes | str] = {}
    out: list[Images | str] = []
    for e in entries:
        sources = dict(e.image_sources)
        imgs: Images = []
        for path in e.record["metadata"]["image_paths"]:
            if path not in cache:
                if path == e.record["metadata"]["analysis_image_path"] and e.render_spec is not None:
                    cache[path] = render_analysis_png(e.render_spec)
                else:
                    try:
                        cache[path] = read(sources[path])
                    except OSError as err:
                        cache[path] = f"{sources[path]}: {err.__class__.__name__}: {str(err)[:200]}"
            if isinstance(cache[path], str):
                imgs = cache[path]  # type: ignore[assignment]
                break
            imgs.append((path, cache[path]))  # type: ignore[arg-type]
        out.append(imgs)
    return out


class _WriteShardFn(beam.DoFn):
    def __init__(self, root: str, formats: tuple[str, ...], embed_images: bool):
        self.root, self.formats, self.embed_images = root, formats, embed_images
        self.files = Metrics.counter("WriteSplitFiles", "files_written")
        self.rows = Metrics.counter("WriteSplitFiles", "rows_written")
        self.dropped = Metrics.counter("WriteSplitFiles", "dropped_source_image_unreadable")

    def process(self, element):
        (split, shard, n, sub), grouped = element
        entries = sorted(grouped["rows"], key=lambda e: e.sample_id)
        images = None
        if self.embed_images:
            found = shard_images(entries)
            kept = [i for i, imgs in enumerate(found) if not isinstance(imgs, str)]
            for i in (i for i, imgs in enumerate(found) if isinstance(imgs, str)):
                yield from self._drop(entries[i], found[i])
            entries, images = [entries[i] for i in kept], [found[i] for i in kept]
        records = [e.record for e in entries]
        for name in self.formats:
            fmt = FORMATS[name]
            path = fmt.path(split, shard, n, sub)
            fileio.write_bytes(join_path(self.root, path), fmt.encode(records, images if fmt.uses_images else None))
            self.files.inc()
            yield {f"files|{name}|{path}": len(records)}
        self.rows.inc(len(records))

    def _drop(self, entry: ShardEntry, detail: str):
        """A row whose image cannot be read leaves every format of its shard, its row sidecar and the counts
        (written in the stage before this shuffle, so it is there to remove), and becomes a reject."""
        md = entry.record["metadata"]
        self.dropped.inc()
        if entry.sidecar_path:
            fileio.remove(join_path(self.root, entry.sidecar_path))
        yield {f"rows|{md['task']}|{md['split']}": -1, "row_sidecars_written": -1}
        yield beam.pvalue.TaggedOutput(REJECTS, reject(entry.sample_id, md["tile_stem"], "write",
                                                       "source_image_unreadable", detail))


@dataclass
class WriteSplitFiles(beam.PTransform):
    """Rows -> every selected format, per split, in shards of at most rows_per_shard rows.

    Shard membership is a hash of the sample id and each shard is sorted by sample id, so the bytes of every
    file are the same on every run and every runner. Emits one event per file written (files|format|path) as
    ``events``, and ``rejects`` for rows whose embedded images could not be read.
    """

    output_root: str
    formats: tuple[str, ...]
    rows_per_shard: int
    embed_images: bool = False
    max_files_per_dir: int = 9000

    def expand(self, rows):
        counts = (rows
                  | "SplitOf" >> beam.Map(lambda r: (r.record["metadata"]["split"], 1))
                  | "CountPerSplit" >> beam.CombinePerKey(sum)
                  | "Counts" >> beam.combiners.ToDict())
        keys = counts | "ShardKeys" >> beam.FlatMap(all_shard_keys, self.rows_per_shard, self.max_files_per_dir)
        keyed = rows | "KeyByShard" >> beam.Map(shard_key, beam.pvalue.AsSingleton(counts), self.rows_per_shard,
                                                self.max_files_per_dir)
        out = ({"rows": keyed, "keys": keys}
               | "GroupShards" >> beam.CoGroupByKey()
               | "Write" >> beam.ParDo(_WriteShardFn(self.output_root, self.formats, self.embed_images)).with_outputs(
                   REJECTS, main="events"))
        return {"events": out.events, REJECTS: out[REJECTS]}


class _WriteSidecarFn(beam.DoFn):
    def __init__(self, root: str):
        self.root = root
        self.written = Metrics.counter("WriteRowSidecars", "files_written")

    def process(self, row: Row):
        fileio.write_bytes(join_path(self.root, row.sidecar_path),
                           orjson.dumps(row.sidecar, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        self.written.inc()
        yield {"row_sidecars_written": 1}


@dataclass
class WriteRowSidecars(beam.PTransform):
    output_root: str

    def expand(self, rows):
        return rows | "Write" >> beam.ParDo(_WriteSidecarFn(self.output_root))


class _RenderFn(beam.DoFn):
    def __init__(self, root: str):
        self.root = root
        self.rendered = Metrics.counter("RenderAnalysisImages", "images_written")
        self.bytes = Metrics.counter("RenderAnalysisImages", "bytes_written")

    def process(self, row: Row):
        if row.render_spec is None:
            return
        png = render_analysis_png(row.render_spec)
        fileio.write_bytes(join_path(self.root, row.record["metadata"]["analysis_image_path"]), png)
        self.rendered.inc()
        self.bytes.inc(len(png))
        yield {"analysis_images_written": 1, "analysis_image_bytes": len(png)}


@dataclass
class RenderAnalysisImages(beam.PTransform):
    """The hot path: render each production row's analysis image from its spec and write it in place."""

    output_root: str

    def expand(self, rows):
        return rows | "Render" >> beam.ParDo(_RenderFn(self.output_root))


class _CopyFn(beam.DoFn):
    def __init__(self, root: str):
        self.root = root
        self.copied = Metrics.counter("CopySourceImages", "files_copied")

    def process(self, element):
        dst, src = element
        try:
            how = fileio.link_or_copy(src, join_path(self.root, dst))
        except OSError as err:  # vanished or unreadable since it was listed: one bad input, not a failed job
            yield beam.pvalue.TaggedOutput(REJECTS, reject(src, "", "copy", "source_image_unreadable",
                                                           f"{dst}: {err.__class__.__name__}: {str(err)[:200]}"))
            return
        self.copied.inc()
        yield {"source_images_linked" if how == "link" else "source_images_copied": 1}


@dataclass
class CopySourceImages(beam.PTransform):
    """Each referenced chip and still once (deduplicated on destination), linked when local: ``events``, and
    ``rejects`` for a source that can no longer be read."""

    output_root: str

    def expand(self, copies):
        out = (copies
               | "Dedup" >> beam.CombinePerKey(min)
               | "Copy" >> beam.ParDo(_CopyFn(self.output_root)).with_outputs(REJECTS, main="events"))
        return {"events": out.events, REJECTS: out[REJECTS]}


class _OverlayFn(beam.DoFn):
    def __init__(self, root: str):
        self.root = root
        self.drawn = Metrics.counter("WriteOverlays", "images_written")

    def process(self, element):
        path, chip_src, size, regions = element
        fileio.write_bytes(join_path(self.root, path), draw_regions(fileio.read_bytes(chip_src), size, regions))
        self.drawn.inc()
        yield {"overlays_written": 1}


@dataclass
class WriteOverlays(beam.PTransform):
    """Region boxes and labels drawn on each chip, for people checking the labels by eye."""

    output_root: str

    def expand(self, overlays):
        return overlays | "Draw" >> beam.ParDo(_OverlayFn(self.output_root))


def write_rejects_file(root: str, rejects: list[dict]) -> dict[str, int]:
    """All rejects in one file, sorted, so a rerun writes the same bytes (an empty file when there are none)."""
    lines = sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in rejects)
    fileio.write_bytes(join_path(root, REJECTS_FILE), b"".join(line + b"\n" for line in lines))
    return {"reject_files_written": 1}


@dataclass
class WriteRejects(beam.PTransform):
    """rejects/rejects-00000-of-00001.jsonl: the dead-letter file, one JSON object with a reason per line."""

    output_root: str

    def expand(self, rejects):
        root = self.output_root
        keyed = rejects | "Key" >> beam.Map(lambda r: (None, r))
        always = keyed.pipeline | "Anchor" >> beam.Create([(None, None)])
        return ((keyed, always)
                | "Both" >> beam.Flatten()
                | "One" >> beam.GroupByKey()
                | "Write" >> beam.MapTuple(lambda _, rs: write_rejects_file(root, [r for r in rs if r is not None])))
