"""The Beam steps of `satsft mix` around the pure functions of transforms.mix.rows.

Rows are spooled the moment they are normalised (with any image bytes they carry), as in the build's split
writer: what crosses a shuffle is a pointer per row (and per copy), never a row. The global order is a seeded
hash per output row; shard i of n holds the i-th range of that order, sorted, so the shards read one after the
other give the whole mix in one order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
import orjson
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from transforms import fileio
from transforms.input.images import MAX_IMAGE_BYTES, png_problem
from transforms.input.sidecars import VALID_SPLITS
from transforms.mix.rows import (
    RowProblem,
    copies,
    fraction_threshold,
    matches,
    media_index,
    mix_id,
    mixed_record,
    normalise_row,
    order_key,
    plan_repeats,
    selection_hash,
    split_of_path,
)
from transforms.output.formats import MIX_METADATA_FIELDS, jsonl_bytes, parquet_bytes
from transforms.output.split_files import SPOOL_DIR, SpoolFile, read_spooled, shard_count
from transforms.paths import join_path
from transforms.records import reject

REJECTS = "rejects"
EVENTS = "events"


@dataclass(frozen=True)
class MixSource:
    """What the Beam steps need of a recipe source (pipeline.mix.recipe.Source), in recipe order."""

    index: int
    name: str
    kind: str
    root: str
    where: dict[str, tuple[str, ...]]
    dataset: str
    media_owner: str  # the first source reading the same dataset: its images are written once, under it
    folder: str = ""  # foreign files take their split from their path below it


class ImageLoc(NamedTuple):
    owner: str
    key: str
    src: str  # a file to read, or "" when the bytes are in the spool
    offset: int
    length: int


class RowPointer(NamedTuple):
    """A normalised row in a spool, with what dedup, copies and media need to know of it."""

    source: int
    dataset: str
    sample_id: str
    split: str
    order: tuple[int, int]  # (file, row) within the source: first occurrence wins a duplicate
    spool: str
    offset: int
    length: int
    images: tuple[ImageLoc, ...]


class CopyPointer(NamedTuple):
    split: str
    order_key: int
    row_id: str
    source: int
    k: int
    spool: str
    offset: int
    length: int


def image_problem_of(head: bytes, tail: bytes, size: int) -> str:
    """Why a PNG or JPEG is not usable, from its first 33 and last 64 bytes and its size; "" when it is."""
    if size == 0:
        return "empty_file"
    if size > MAX_IMAGE_BYTES:
        return "file_too_large"
    if head.startswith(b"\xff\xd8\xff"):
        return "" if b"\xff\xd9" in tail else "truncated"
    if head.startswith(b"\x89PNG"):
        return png_problem(head, tail[-12:], size)[0]
    return "not_png_or_jpeg"


def image_problem(data: bytes) -> str:
    return image_problem_of(data[:33], data[-64:], len(data))


def check_image_file(path: str) -> str:
    """The same checks on a file, reading only its head and tail."""
    try:
        if not fileio.exists(path):
            return "missing"
        head, tail, size = fileio.read_head_tail(path, 33, 64)
    except (OSError, ValueError):
        return "unreadable"
    return image_problem_of(head, tail, size)


class _ReadSpoolFn(beam.DoFn):
    """Read one source file, normalise and filter its rows, spool them (with carried image bytes), emit
    pointers; rejects and per-source counts go to their own outputs."""

    def __init__(self, sources: tuple[MixSource, ...], spool_root: str):
        self.sources, self.spool_root = sources, spool_root
        self.rows_in = Metrics.counter("MixRows", "rows_in")

    def start_bundle(self):
        self._spool = SpoolFile(self.spool_root)

    def process(self, element):
        source_index, file_index, path = element
        src = self.sources[source_index]
        file_split = split_of_path(path, src.folder)
        for row_no, raw in enumerate(_rows_of(path)):
            self.rows_in.inc()
            where = f"{src.name}:{path.rsplit('/', 1)[-1]}:{row_no + 1}"
            try:
                if raw is _BAD_LINE:
                    raise RowProblem("invalid_jsonl_line", "not JSON")
                n = normalise_row(raw, src.name, src.kind, file_split, src.root)
            except RowProblem as err:
                yield beam.pvalue.TaggedOutput(REJECTS, reject(where, "", "normalise", err.reason, err.detail))
                continue
            for column in n.dropped_columns:
                yield beam.pvalue.TaggedOutput(EVENTS, {f"dropped_columns|{src.name}|{column}": 1})
            if not matches(n.record["metadata"], src.where):
                continue
            bad = next(((img, image_problem(img.data)) for img in n.images
                        if img.data is not None and image_problem(img.data)), None)
            if bad is not None:
                yield beam.pvalue.TaggedOutput(REJECTS, reject(where, "", "media", f"image_{bad[1]}", bad[0].key))
                continue
            locs = []
            for img in n.images:
                _, offset, length = self._spool.write(img.data) if img.data is not None else ("", 0, 0)
                locs.append(ImageLoc(src.media_owner, img.key, img.src, offset, length))
            name, offset, length = self._spool.write(orjson.dumps(n.record))
            md = n.record["metadata"]
            yield RowPointer(source_index, src.dataset, md["sample_id"], md["split"], (file_index, row_no),
                             name, offset, length, tuple(locs))

    def finish_bundle(self):
        self._spool.close()


_BAD_LINE = object()


def _rows_of(path: str):
    """Rows of a Parquet file (in batches, so a large file is never whole in memory) or a JSONL file; a line
    that is not JSON becomes a row problem of its own."""
    with fileio.open_for_read(path) as f:
        if path.endswith(".parquet"):
            for batch in pq.ParquetFile(f).iter_batches(batch_size=256):
                yield from batch.to_pylist()
            return
        for line in f:
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                yield _BAD_LINE


def choose_rows(element, sources: tuple[MixSource, ...]):
    """One (dataset, sample id): validation and test rows once, from the first source in recipe order; train
    rows once per source (a source repeating a row is a duplicate, rejected); other selections are counted."""
    (_, sample_id), pointers = element
    ordered = sorted(pointers, key=lambda p: (p.source, p.order))
    seen: set[int] = set()
    for i, p in enumerate(ordered):
        name = sources[p.source].name
        if p.split != "train" and i > 0:
            yield beam.pvalue.TaggedOutput(EVENTS, {f"deduplicated|{name}|{p.split}": 1})
        elif p.source in seen:
            yield beam.pvalue.TaggedOutput(REJECTS, reject(f"{name}:{sample_id}", "", "dedup", "duplicate_row",
                                                           f"another row of {name} has the same content"))
        else:
            seen.add(p.source)
            yield p


def fraction_thresholds(grouped, repeats: dict[str, float], sources: tuple[MixSource, ...]):
    source, hashes = grouped
    name = sources[source].name
    whole = int(repeats[name])
    if repeats[name] > whole:
        yield source, fraction_threshold(hashes, repeats[name] - whole)


def expand_copies(p: RowPointer, seed: int, sources: tuple[MixSource, ...], repeats: dict[str, float],
                  thresholds: dict[int, int], bad_images: dict[tuple[str, str], str]):
    """A kept row -> its copies, or a reject when one of its images is missing or broken."""
    name = sources[p.source].name
    broken = next(((img, bad_images[(img.owner, img.key)]) for img in p.images if (img.owner, img.key) in bad_images),
                  None)
    if broken is not None:
        yield beam.pvalue.TaggedOutput(REJECTS, reject(f"{name}:{p.sample_id}", "", "media", f"image_{broken[1]}",
                                                       broken[0].src or broken[0].key))
        return
    selection = selection_hash(seed, name, p.sample_id)
    made = copies(p.split, repeats.get(name, 1.0), selection, thresholds.get(p.source, 0))
    base = mix_id(p.sample_id, name, 0)
    for k in made:
        yield CopyPointer(p.split, order_key(seed, base, k, len(made)), mix_id(p.sample_id, name, k), p.source, k,
                          p.spool, p.offset, p.length)


def _check_image(element) -> tuple[tuple[str, str], str]:
    (owner, key), (src, _, _) = element
    return (owner, key), (check_image_file(src) if src else "")


class _WriteMediaFn(beam.DoFn):
    def __init__(self, root: str):
        self.root = root

    def process(self, element, index):
        (owner, key), (src, (spool, at), length) = element
        if (owner, key) not in index:
            return
        dst = join_path(self.root, index[(owner, key)])
        if src:
            how = fileio.link_or_copy(src, dst)
        else:
            fileio.write_bytes(dst, read_spooled(join_path(self.root, SPOOL_DIR), [(spool, at, length)])[(spool, at)])
            how = "copy"
        yield {"media_linked" if how == "link" else "media_written": 1}


def read_copies(spool_root: str, pointers: list[CopyPointer]) -> list[tuple[CopyPointer, dict[str, Any]]]:
    """A shard's rows from the spools, each spooled row read once however many copies the shard holds."""
    data = read_spooled(spool_root, ((p.spool, p.offset, p.length) for p in pointers))
    parsed = {k: orjson.loads(v) for k, v in data.items()}
    return [(p, parsed[(p.spool, p.offset)]) for p in sorted(pointers, key=lambda p: (p.order_key, p.row_id))]


class _WriteMixShardFn(beam.DoFn):
    def __init__(self, root: str, formats: tuple[str, ...], embed_images: bool, sources: tuple[MixSource, ...]):
        self.root, self.formats, self.embed_images, self.sources = root, formats, embed_images, sources

    def process(self, element, index, image_locs):
        (split, shard, n), grouped = element
        rows = read_copies(join_path(self.root, SPOOL_DIR), list(grouped["rows"]))
        records, images = [], []
        for p, record in rows:
            src = self.sources[p.source]
            paths = {key: index[(src.media_owner, key)] for key in record["metadata"]["image_paths"]}
            out = mixed_record(record, paths, src.name, p.k)
            records.append(out)
            if self.embed_images:
                images.append([(paths[key], self._bytes(image_locs[(src.media_owner, key)]))
                               for key in record["metadata"]["image_paths"]])
            md = out["metadata"]
            yield {f"rows|{md['task']}|{split}": 1, f"source|{src.name}|out|{split}": 1}
        for name in self.formats:
            if name == "parquet":
                path = f"parquet/{split}-{shard:05d}-of-{n:05d}.parquet"
                data = parquet_bytes(records, images if self.embed_images else None, MIX_METADATA_FIELDS)
            else:
                path = f"data/{split}.jsonl" if n == 1 else f"data/{split}-{shard:05d}-of-{n:05d}.jsonl"
                data = jsonl_bytes(records)
            fileio.write_bytes(join_path(self.root, path), data)
            yield {f"files|{name}|{path}": len(records)}

    def _bytes(self, loc: tuple[str, tuple[str, int], int]) -> bytes:
        src, (spool, offset), length = loc
        if src:
            return fileio.read_bytes(src)
        return read_spooled(join_path(self.root, SPOOL_DIR), [(spool, offset, length)])[(spool, offset)]


def shard_of(p: CopyPointer, counts: dict[str, int], rows_per_shard: int):
    n = shard_count(counts.get(p.split, 0), rows_per_shard)
    return (p.split, (p.order_key * n) >> 64, n), p


def all_mix_shards(counts: dict[str, int], rows_per_shard: int):
    return [((s, i, shard_count(counts[s], rows_per_shard)), None) for s in VALID_SPLITS if counts.get(s, 0)
            for i in range(shard_count(counts[s], rows_per_shard))]


@dataclass
class MixRows(beam.PTransform):
    """(source index, file index, path) of every source file -> the mix's split files and media, with
    ``events`` (counts for the report) and ``rejects``."""

    sources: tuple[MixSource, ...]
    seed: int
    output_root: str
    formats: tuple[str, ...]
    embed_images: bool
    rows_per_shard: int
    max_files_per_dir: int
    repeats: dict[str, float | None]
    shares: dict[str, float | None]

    def expand(self, files):
        sources, seed, root = self.sources, self.seed, self.output_root
        spool_root = join_path(root, SPOOL_DIR)
        read = (files
                | "Spread" >> beam.Reshuffle()
                | "ReadNormaliseSpool" >> beam.ParDo(_ReadSpoolFn(sources, spool_root)).with_outputs(
                    REJECTS, EVENTS, main="rows"))
        chosen = (read.rows
                  | "KeyByRow" >> beam.Map(lambda p: ((p.dataset, p.sample_id), p))
                  | "GroupRows" >> beam.GroupByKey()
                  | "Choose" >> beam.FlatMap(choose_rows, sources).with_outputs(REJECTS, EVENTS, main="kept"))
        kept = chosen.kept
        names = {s.index: s.name for s in sources}
        rows_in = read.rows | "InEvents" >> beam.Map(lambda p: {f"source|{names[p.source]}|in|{p.split}": 1})
        train = (kept
                 | "TrainOnly" >> beam.Filter(lambda p: p.split == "train")
                 | "TrainPerSource" >> beam.Map(lambda p: (names[p.source], 1))
                 | "CountTrain" >> beam.CombinePerKey(sum)
                 | "TrainCounts" >> beam.combiners.ToDict())
        repeats = train | "PlanRepeats" >> beam.Map(plan_repeats, self.repeats, self.shares)
        thresholds = (kept
                      | "TrainHashes" >> beam.FlatMap(lambda p: [(p.source, selection_hash(seed, names[p.source],
                                                                                            p.sample_id))]
                                                      if p.split == "train" else [])
                      | "HashesPerSource" >> beam.GroupByKey()
                      | "Thresholds" >> beam.FlatMap(fraction_thresholds, beam.pvalue.AsSingleton(repeats), sources)
                      | "ThresholdDict" >> beam.combiners.ToDict())
        images = (kept
                  | "Images" >> beam.FlatMap(lambda p: [((i.owner, i.key), (i.src, (p.spool, i.offset), i.length))
                                                        for i in p.images])
                  | "OnePerImage" >> beam.CombinePerKey(min))
        checked = images | "CheckImages" >> beam.Map(_check_image)
        bad = (checked | "Bad" >> beam.Filter(lambda kv: kv[1] != "") | "BadDict" >> beam.combiners.ToDict())
        copied = kept | "Copies" >> beam.FlatMap(
            expand_copies, seed, sources, beam.pvalue.AsSingleton(repeats), beam.pvalue.AsSingleton(thresholds),
            beam.pvalue.AsSingleton(bad)).with_outputs(REJECTS, main="copies")
        index = (checked
                 | "Good" >> beam.Filter(lambda kv: kv[1] == "")
                 | "Keys" >> beam.Map(lambda kv: kv[0])
                 | "CollectKeys" >> beam.combiners.ToList()
                 | "Index" >> beam.Map(media_index, self.max_files_per_dir))
        locs = images | "Locations" >> beam.combiners.ToDict()
        counts = (copied.copies
                  | "SplitOf" >> beam.Map(lambda p: (p.split, 1))
                  | "CountPerSplit" >> beam.CombinePerKey(sum)
                  | "Counts" >> beam.combiners.ToDict())
        keys = counts | "ShardKeys" >> beam.FlatMap(all_mix_shards, self.rows_per_shard)
        keyed = copied.copies | "KeyByShard" >> beam.Map(shard_of, beam.pvalue.AsSingleton(counts),
                                                         self.rows_per_shard)
        written = ({"rows": keyed, "keys": keys}
                   | "GroupShards" >> beam.CoGroupByKey()
                   | "WriteShards" >> beam.ParDo(_WriteMixShardFn(root, self.formats, self.embed_images, sources),
                                                 beam.pvalue.AsSingleton(index), beam.pvalue.AsSingleton(locs)))
        events = [written, rows_in, read[EVENTS], chosen[EVENTS]]
        if not self.embed_images:
            events.append(images | "WriteMedia" >> beam.ParDo(_WriteMediaFn(root), beam.pvalue.AsSingleton(index)))
        all_events = events | "AllEvents" >> beam.Flatten()
        cleanup = (all_events
                   | "Done" >> beam.combiners.Count.Globally()
                   | "RemoveSpool" >> beam.FlatMap(lambda _: fileio.remove_tree(spool_root) or []))
        repeat_events = repeats | "RepeatEvents" >> beam.Map(
            lambda r: {f"repeat_milli|{name}": round(v * 1000) for name, v in r.items()})
        rejects = ([read[REJECTS], chosen[REJECTS], copied[REJECTS]] | "AllRejects" >> beam.Flatten())
        return {EVENTS: (all_events, cleanup, repeat_events) | "WithCleanup" >> beam.Flatten(), REJECTS: rejects}

