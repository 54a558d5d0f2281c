"""Writers: JSONL per split, row sidecars, analysis images, source image copies and rejects.

Per-file writers run inside the DoFn that has the data (pixels never cross a shuffle), write under
deterministic names via a temporary name, and emit one small count event per file for the build report.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics

from transforms import fileio
from transforms.paths import join_path
from transforms.render import render_analysis_png
from transforms.rows import Row
from transforms.sidecars import VALID_SPLITS


def row_json(row: Row) -> str:
    return orjson.dumps(row.record).decode()


@dataclass
class WriteJsonl(beam.PTransform):
    """data/<split>.jsonl for every split (an empty file for an empty split, so loaders find all three)."""

    output_root: str

    def expand(self, rows):
        parts = rows | "BySplit" >> beam.Partition(lambda r, n: VALID_SPLITS.index(r.record["metadata"]["split"]),
                                                   len(VALID_SPLITS))
        written = []
        for split, part in zip(VALID_SPLITS, parts, strict=True):
            written.append(
                part
                | f"Json_{split}" >> beam.Map(row_json)
                | f"Write_{split}" >> beam.io.WriteToText(join_path(self.output_root, "data", split),
                                                          file_name_suffix=".jsonl", shard_name_template="",
                                                          num_shards=1))
        return written | "Files" >> beam.Flatten()


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
        how = fileio.link_or_copy(src, join_path(self.root, dst))
        self.copied.inc()
        yield {"source_images_linked" if how == "link" else "source_images_copied": 1}


@dataclass
class CopySourceImages(beam.PTransform):
    """Each referenced chip and still once (deduplicated on destination), linked when local."""

    output_root: str

    def expand(self, copies):
        return (copies
                | "Dedup" >> beam.CombinePerKey(min)
                | "Copy" >> beam.ParDo(_CopyFn(self.output_root)))


@dataclass
class WriteRejects(beam.PTransform):
    output_root: str

    def expand(self, rejects):
        return (rejects
                | "Json" >> beam.Map(lambda r: orjson.dumps(r).decode())
                | "Write" >> beam.io.WriteToText(join_path(self.output_root, "rejects", "rejects"),
                                                 file_name_suffix=".jsonl", num_shards=1))
