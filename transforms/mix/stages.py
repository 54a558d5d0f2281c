"""The Beam stages of `satsft mix` around the pure functions of transforms.mix.rows; pipeline/mix/graph.py
wires them: ReadMixSources -> ChooseRows -> CheckMedia -> PlanCopies -> WriteMixShards (+ WriteMedia).

Rows are spooled the moment they are normalised (with any image bytes they carry), in the build's spool: what
crosses a shuffle is a pointer per row (and per copy), a plain tuple that Beam's coder writes field by field,
never a row. The global order is a seeded hash per output row; shard i of n holds the i-th range of that
order, sorted, so the shards read one after the other give the whole mix in one order. Shards are written
by the build's split-file writer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from transforms import fileio
from transforms.input import lfs
from transforms.input.images import media_file_problem, media_problem
from transforms.input.sidecars import UTF8_BOM, VALID_SPLITS
from transforms.json_array import HEAD_BYTES, NotAnArray, json_array_rows, written_whole
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
    tile_key,
)
from transforms.output.counts import SumEvents
from transforms.output.formats import MIX_METADATA_FIELDS, use_system_memory_pool
from transforms.output.split_files import shard_count, write_shard
from transforms.output.spool import SpoolFile, read_one, read_spooled, spool_root
from transforms.output.tree import MEDIA_DIR, UPDATE_KEPT_DIR
from transforms.paths import join_path
from transforms.progress import ProgressCounter
from transforms.records import reject
from transforms.splits.shared_ground import DROP_REASON, FindGroundConflicts, FindSharedGround, record_cells

REJECTS = "rejects"
EVENTS = "events"
TILES = "tiles"  # (dataset, owner, tile_key, split) of each build's or mix's tile the recipe selects

# Pointers, as plain tuples (field order below):
#   row:   (source, dataset, sample_id, split, (file, row), spool, offset, length, images, tile)
#          images: ((owner, key, src, offset, length), ...); src "" when the bytes are in the spool
#          tile: the stem of a build's or mix's tile, "" for a foreign row
#   copy:  (split, order_key, row_id, source, k, spool, offset, length)
#   image: (owner, key) -> (src, (spool, offset), length)
RowPointer = tuple
CopyPointer = tuple


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


_BAD_LINE = object()


def _rows_of(path: str, head: bytes | None = None):
    """Rows of a Parquet or Arrow file (in batches, so a large file is never whole in memory), a JSON array or a
    JSONL file; a line that is not JSON becomes a row problem of its own. ``head``: the file's first HEAD_BYTES,
    when the caller has read them already."""
    if path.endswith(".parquet"):
        with fileio.open_for_read(path) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=256):
                yield from batch.to_pylist()
        return
    if path.endswith(".arrow"):  # `datasets`' save_to_disk and cache files: Arrow IPC streams (older: IPC files)
        with fileio.open_for_read(path) as f:
            try:
                reader = pa.ipc.open_stream(f)
            except pa.ArrowInvalid:
                f.seek(0)
                file_reader = pa.ipc.open_file(f)
                reader = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
            for batch in reader:
                yield from batch.to_pylist()
        return
    whole = path.endswith(".jsonl") and written_whole(
        fileio.read_head_tail(path, HEAD_BYTES, 0)[0] if head is None else head)
    if path.endswith(".json") or whole:  # one array of rows (LLaVA's shape), read element by element
        with fileio.open_for_read(path) as f:
            yield from json_array_rows(f, one_after_another=whole)
        return
    for line_no, line in enumerate(fileio.read_lines(path)):  # .jsonl, or compressed: .jsonl.gz, ...
        if line_no == 0:
            line = line.removeprefix(UTF8_BOM)
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError:
            yield _BAD_LINE


@dataclass(frozen=True)
class _Unreadable:
    detail: str
    reason: str = "source_file_unreadable"


def _readable_rows(path: str):
    """``_rows_of``, ending with an _Unreadable where the file stops being readable (Arrow cannot decode it: a
    truncated or damaged Parquet file; a damaged .jsonl.gz, ...). Storage errors still fail the bundle, for the
    runner to retry; a named pipe, which no retry makes a file, is unreadable at once."""
    try:
        fileio.refuse_special(path)
    except fileio.NotAFile as err:
        yield _Unreadable(f"{path.rsplit('/', 1)[-1]}: {err.strerror}")
        return
    with fileio.open_for_read(path) as f:
        head = f.read(HEAD_BYTES)
    if lfs.is_pointer(head):
        yield _Unreadable(f"{path.rsplit('/', 1)[-1]}: {lfs.DETAIL}", "source_file_lfs_pointer")
        return
    rows = _rows_of(path, head)  # the head read once: the LFS check and whether a .jsonl was written whole
    while True:
        try:
            yield next(rows)
        except StopIteration:
            return
        except NotAnArray as err:  # dataset_info.json and the like, beside the data
            yield _Unreadable(f"{path.rsplit('/', 1)[-1]}: {err}", "source_file_not_rows")
            return
        except (pa.ArrowException, fileio.DamagedFile) as err:
            yield _Unreadable(f"{path.rsplit('/', 1)[-1]}: {err.__class__.__name__}: {str(err)[:200]}")
            return


class _ReadSpoolFn(beam.DoFn):
    """Read one source file, normalise its rows once and filter them per source reading the file, spool them
    (each carried image and each build's row once; a foreign row per source, whose name is its task), emit a
    pointer per source; rejects and per-source counts go to their own outputs, per source as if each had read
    the file alone."""

    def __init__(self, sources: tuple[MixSource, ...], output_root: str, n_files: int):
        self.sources, self.output_root, self.n_files = sources, output_root, n_files
        self.spool_root = spool_root(output_root)
        self.rows_in = Metrics.counter("ReadMixSources", "rows_in")

    def setup(self):
        self._progress = ProgressCounter(self.output_root, "mix", "source files", self.n_files)

    def start_bundle(self):
        self._spool = SpoolFile(self.spool_root)
        self._tiles: set[tuple[str, str, str, str]] = set()

    def process(self, element):
        readers, file_index, path = element  # readers: the indices of the sources reading this file
        group = [self.sources[i] for i in readers]
        src = group[0]  # what normalising depends on (kind, root, folder) the readers of one file share
        file_split = split_of_path(path, src.folder)
        base = src.root.rstrip("/") + "/"
        folder = path[len(base):].rsplit("/", 1)[0] if path.startswith(base) and "/" in path[len(base):] else ""
        file_name = path.rsplit("/", 1)[-1]
        for row_no, raw in enumerate(_readable_rows(path)):
            if isinstance(raw, _Unreadable):  # a damaged Parquet file: its rows from here on are lost, said once
                for reader in group:
                    yield beam.pvalue.TaggedOutput(REJECTS, reject(f"{reader.name}:{file_name}", "", "read",
                                                                   raw.reason, raw.detail))
                break
            self.rows_in.inc(len(group))
            self._progress.add(0, len(group))
            try:
                if raw is _BAD_LINE:
                    raise RowProblem("invalid_jsonl_line", "not JSON")
                n = normalise_row(raw, src.name, src.kind, file_split, src.root, folder)
            except RowProblem as err:
                for reader in group:
                    yield beam.pvalue.TaggedOutput(REJECTS, reject(f"{reader.name}:{file_name}:{row_no + 1}", "",
                                                                   "normalise", err.reason, err.detail))
                continue
            md = n.record["metadata"]
            # a build's tile by its stem (its manifest has its footprint), a mix's by the sources that carried
            # it there and its stem (its footprint list names it so): tile_key
            tile = tile_key(raw["metadata"]) if src.kind == "satsft" else ""
            bad: tuple | None = None
            places: list[tuple] | None = None  # each image's (key, src, offset, length): spooled for the first taker
            shared: tuple | None = None  # a build's row: spooled once, for the first taker
            for source_index, reader in zip(readers, group, strict=True):
                for column in n.dropped_columns:
                    yield beam.pvalue.TaggedOutput(EVENTS, {f"dropped_columns|{reader.name}|{column}": 1})
                own = md if src.kind == "satsft" else {**md, "task": reader.name}  # a foreign row's task: its source
                if not matches(own, reader.where):
                    continue
                if bad is None:
                    bad = next(((img, media_problem(img.data)) for img in n.images
                                if img.data is not None and media_problem(img.data)), ())
                if bad:
                    yield beam.pvalue.TaggedOutput(REJECTS, reject(f"{reader.name}:{file_name}:{row_no + 1}", "",
                                                                   "media", f"image_{bad[1]}", bad[0].key))
                    continue
                if places is None:
                    places = [(img.key, img.src, *(self._spool.write(img.data)[1:] if img.data is not None
                                                   else (0, 0))) for img in n.images]
                if own is md:
                    shared = shared or self._spool.write(orjson.dumps(n.record))
                    name, offset, length = shared
                else:
                    name, offset, length = self._spool.write(orjson.dumps({**n.record, "metadata": own}))
                if tile:
                    self._tiles.add((reader.dataset, reader.media_owner, tile, md["split"]))
                yield (source_index, reader.dataset, md["sample_id"], md["split"], (file_index, row_no),
                       name, offset, length, tuple((reader.media_owner, *place) for place in places), tile)

        self._progress.add(len(group))

    def finish_bundle(self):
        self._spool.close()
        self._progress.flush()
        for tile in sorted(self._tiles):  # each selected tile of a build once per bundle, not once per row
            yield beam.pvalue.TaggedOutput(TILES, GlobalWindows.windowed_value(tile))


@dataclass
class ReadMixSources(beam.PTransform):
    """(the indices of the sources reading it, its index in their file lists, path) of every source file -> row
    pointers, with ``rejects`` and ``events`` (dropped columns, rows in per source)."""

    sources: tuple[MixSource, ...]
    output_root: str
    n_files: int = 0  # for progress: the source files there are

    def expand(self, files):
        read = (files
                | "Spread" >> beam.Reshuffle()
                | "ReadNormaliseSpool" >> beam.ParDo(_ReadSpoolFn(self.sources, self.output_root, self.n_files)
                                                     ).with_outputs(REJECTS, EVENTS, TILES, main="rows"))
        names = {s.index: s.name for s in self.sources}
        # Counted per bundle where they arise: an event per row would cross the flatten one by one.
        rows_in = read.rows | "InEvents" >> SumEvents(lambda p: [(f"source|{names[p[0]]}|in|{p[3]}", 1)])
        dropped = read[EVENTS] | "DroppedEvents" >> SumEvents()
        events = ((rows_in, dropped)
                  | "ReadEvents" >> beam.Flatten()
                  | "AsEvents" >> beam.MapTuple(lambda key, n: {key: n}))
        return {"rows": read.rows, REJECTS: read[REJECTS], EVENTS: events, TILES: read[TILES]}


def _footprints_of(element) -> Iterator[tuple[tuple[str, str], list[float] | None]]:
    """(dataset, one manifest file of a build or one file of a mix's footprint list) -> ((dataset, what the
    tile is listed under: tile_key of its rows there), footprint) per record. A file or line that cannot be read gives
    nothing: its tiles are counted as not checked, and the mix goes on."""
    dataset, path = element
    try:
        data = fileio.read_bytes(path)
    except OSError:
        return
    for line in data.splitlines():
        try:
            record = orjson.loads(line)
            source = record.get("source")
            key = f"{source}/{record['stem']}" if isinstance(source, str) and source else record["stem"]
            yield (dataset, key), record.get("footprint")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue


def _mix_records(element) -> list[dict[str, Any]]:
    """A selected tile with the splits its rows have -> a manifest-like record per split, named
    <first source reading the build or mix>/<tile_key>, as the mix's rows name it (tile_key of the row it
    writes); no footprint (a build made before manifests held them, a mix before it listed them) is not
    checked."""
    _, parts = element
    boxes = [b for b in parts["box"] if b]  # normally one: a manifest or list names a tile once
    return [{"stem": f"{owner}/{key}", "split": split, "footprint": min(boxes) if boxes else None}
            for owner, key, split in sorted(set(parts["tile"]))]


@dataclass
class ReadMixTileRecords(beam.PTransform):
    """(dataset, owner, tile_key, split) of the builds' and mixes' tiles the recipe selects -> a manifest-like
    record per tile ({"stem": <first source reading the output>/<tile_key>, "split", "footprint"}), as
    FindSharedGround and FindGroundConflicts take them. Footprints come from each build's manifest and each
    mix's footprint list (metadata/footprints/), read a file at a time; only a name, a split and four numbers
    per tile cross the shuffles. Foreign sources say nothing of where their images lie. A tile of an inner mix
    keeps the sources that carried it in its name (tile_key): the same stem from two builds of that mix stays
    two tiles, each with its own footprint."""

    manifests: tuple[tuple[str, str], ...]  # (dataset, file) of every build's manifest and mix's footprint list

    def expand(self, tiles):
        boxes = (tiles.pipeline
                 | "ManifestFiles" >> beam.Create(self.manifests)
                 | "Spread" >> beam.Reshuffle()
                 | "Footprints" >> beam.FlatMap(_footprints_of))
        selected = (tiles
                    | "EachTile" >> beam.Distinct()
                    | "KeyByTile" >> beam.Map(lambda t: ((t[0], t[2]), (t[1], t[2], t[3]))))
        return ({"tile": selected, "box": boxes}
                | "JoinFootprints" >> beam.CoGroupByKey()
                | "Records" >> beam.FlatMap(_mix_records))


class _KeepRowApartFn(beam.DoFn):
    """A kept row -> itself, or a reject when --shared-ground drop takes its tile (``drops``: (<first source
    reading the build>/<tile_key>, split) -> (witness, its split))."""

    def __init__(self, sources: tuple[MixSource, ...]):
        self.sources = sources
        self.dropped = Metrics.counter("KeepMixGroundApart", "rows_dropped_split_shared_ground")

    def process(self, p, drops):
        src = self.sources[p[0]]
        name = f"{src.media_owner}/{p[9]}"
        hit = drops.get((name, p[3])) if p[9] else None
        if hit is None:
            yield p
            return
        self.dropped.inc()
        yield beam.pvalue.TaggedOutput(REJECTS, reject(
            f"{src.name}:{p[2]}", p[9], "split", DROP_REASON,
            f"{p[3]} tile {name} sharing ground with {hit[1]} tile {hit[0]} (--shared-ground drop)"))


@dataclass
class KeepMixGroundApart(beam.PTransform):
    """--shared-ground drop in a mix: {"kept": the rows ChooseRows kept, "records": ReadMixTileRecords' records
    of the builds' tiles the recipe selects} -> {"kept": the rows of tiles that share no ground with a tile of
    another split, REJECTS: the others (``split_shared_ground``), "events" and "held_out": FindSharedGround's
    outputs over the tiles left}. As in a build, of two tiles on one ground the one of the earlier split goes
    (train before validation before test), whichever builds they come from: the held-out splits keep their
    rows. The tiles dropped travel as a side input, one small entry per tile, so the rows cross no shuffle."""

    sources: tuple[MixSource, ...]

    def expand(self, parts):
        records = parts["records"]
        drops = (records
                 | "Cells" >> beam.FlatMap(record_cells)
                 | "FindGroundConflicts" >> FindGroundConflicts(by_split=True))
        gone = beam.pvalue.AsDict(drops)
        kept = parts["kept"] | "KeepOrReject" >> beam.ParDo(_KeepRowApartFn(self.sources), gone).with_outputs(
            REJECTS, main="kept")
        left = records | "TilesLeft" >> beam.Filter(lambda r, d: (r["stem"], r["split"]) not in d, gone)
        found = left | "FindSharedGround" >> FindSharedGround()
        dropped = (drops
                   | "CountDropped" >> beam.combiners.Count.Globally()
                   | "DroppedEvents" >> beam.Map(lambda n: {"shared_ground|dropped_tiles": n}))
        events = (found["events"], dropped) | "Events" >> beam.Flatten()
        return {"kept": kept.kept, REJECTS: kept[REJECTS], "events": events, "held_out": found["held_out"]}


def held_out_by_source(found: tuple[tuple[str, str], int], readers: dict[str, tuple[str, ...]]
                       ) -> list[tuple[tuple[str, str], int]]:
    """((<first source reading a build>/<tile_key>, split), other-split tiles) -> the same under the name of every
    source reading that build: a mix row names the source it came from, and a held-out row is kept from the
    first source in recipe order that selects it, which need not be the first reading the build."""
    (name, split), n = found
    owner, stem = name.split("/", 1)
    return [((f"{source}/{stem}", split), n) for source in readers.get(owner, (owner,))]


def choose_rows(element, sources: tuple[MixSource, ...]):
    """One (dataset, sample id): validation and test rows once, from the first source in recipe order; train
    rows once per source (a source repeating a row is a duplicate, rejected); other selections are counted."""
    (_, sample_id), pointers = element
    ordered = sorted(pointers, key=lambda p: (p[0], p[4]))
    seen: set[int] = set()
    for i, p in enumerate(ordered):
        source, split = p[0], p[3]
        name = sources[source].name
        if split != "train" and i > 0:
            yield beam.pvalue.TaggedOutput(EVENTS, {f"deduplicated|{name}|{split}": 1})
        elif source in seen:
            yield beam.pvalue.TaggedOutput(REJECTS, reject(f"{name}:{sample_id}", "", "dedup", "duplicate_row",
                                                           f"another row of {name} has the same content"))
        else:
            seen.add(source)
            yield p


@dataclass
class ChooseRows(beam.PTransform):
    """Row pointers -> the rows kept after deduplication per (dataset, sample id), with ``rejects`` and
    ``events``."""

    sources: tuple[MixSource, ...]

    def expand(self, rows):
        chosen = (rows
                  | "KeyByRow" >> beam.Map(lambda p: ((p[1], p[2]), p))
                  | "GroupRows" >> beam.GroupByKey()
                  | "Choose" >> beam.FlatMap(choose_rows, self.sources).with_outputs(REJECTS, EVENTS, main="kept"))
        return {"kept": chosen.kept, REJECTS: chosen[REJECTS], EVENTS: chosen[EVENTS]}


class FolderMarks:
    """same_bytes_marks of the folders a worker meets, each listed once: an object's mark by its path."""

    def __init__(self):
        self._folders: dict[str, dict[str, str]] = {}

    def mark(self, path: str) -> str:
        folder, _, name = path.rpartition("/")
        if folder not in self._folders:
            self._folders[folder] = fileio.same_bytes_marks(folder, recursive=False)
        return self._folders[folder].get(name, "")


class _CheckImageFn(beam.DoFn):
    """An image -> its problem ("" for none). ``in_place``: the mix a --update into a bucket replaces; an image
    in a bucket whose bytes (size and MD5, listed) that mix holds passed this check when it was made, and the
    check reads only the bytes, so it is not read again (a scheduled update read every image of its sources)."""

    def __init__(self, in_place: str = "", roots: tuple[tuple[str, str], ...] = ()):
        self.in_place, self.roots = in_place, dict(roots)

    def setup(self):
        self._marks = FolderMarks()
        self._passed: set[str] | None = None  # the marks of the images of the mix in place

    def _checked_before(self, src: str) -> bool:
        if not self.in_place or not src.startswith("gs://"):
            return False
        if self._passed is None:  # every image of the mix in place, listed once per worker
            self._passed = set(fileio.same_bytes_marks(join_path(self.in_place, MEDIA_DIR)).values()) - {""}
        mark = self._marks.mark(src)
        return bool(mark) and mark in self._passed

    def _links_out(self, owner: str, src: str) -> bool:
        """A source's image that is a link out of its image root (a source from elsewhere keeps links: it could
        name any file of this machine, which the mix would copy into its output)."""
        root = self.roots.get(owner, "").rstrip("/")
        return bool(root) and src.startswith(root + "/") and fileio.links_out(root, src[len(root) + 1:])

    def process(self, element):
        (owner, key), (src, _, _) = element
        if src and self._links_out(owner, src):
            yield (owner, key), "link_out"
            return
        yield (owner, key), ("" if not src or self._checked_before(src) else media_file_problem(src))


@dataclass
class CheckMedia(beam.PTransform):
    """Kept rows -> every image once, checked: ``locations`` ((owner, key) -> where its bytes are), ``bad``
    (a dict of the broken ones and why) and ``index`` (where each good one goes in the output). ``in_place``:
    the mix an --update into a bucket replaces (_CheckImageFn)."""

    max_files_per_dir: int
    in_place: str = ""
    roots: tuple[tuple[str, str], ...] = ()  # (media owner, its image root): no image links out of its root

    def expand(self, kept):
        images = (kept
                  | "Images" >> beam.FlatMap(lambda p: [((i[0], i[1]), (i[2], (p[5], i[3]), i[4])) for i in p[8]])
                  | "OnePerImage" >> beam.CombinePerKey(min))
        checked = images | "CheckImages" >> beam.ParDo(_CheckImageFn(self.in_place, self.roots))
        bad = checked | "Bad" >> beam.Filter(lambda kv: kv[1] != "") | "BadDict" >> beam.combiners.ToDict()
        index = (checked
                 | "Good" >> beam.Filter(lambda kv: kv[1] == "")
                 | "Keys" >> beam.Map(lambda kv: kv[0])
                 | "CollectKeys" >> beam.combiners.ToList()
                 | "Index" >> beam.Map(media_index, self.max_files_per_dir))
        return {"locations": images, "bad": bad, "index": index}


def fraction_thresholds(grouped, repeats: dict[str, float], sources: tuple[MixSource, ...]):
    source, hashes = grouped
    name = sources[source].name
    whole = int(repeats[name])
    if repeats[name] > whole:
        yield source, fraction_threshold(hashes, repeats[name] - whole)


def expand_copies(p: RowPointer, seed: int, sources: tuple[MixSource, ...], repeats: dict[str, float],
                  thresholds: dict[int, int], bad_images: dict[tuple[str, str], str]):
    """A kept row -> its copies, or a reject when one of its images is missing or broken."""
    source, _, sample_id, split, _, spool, offset, length, images, _ = p
    name = sources[source].name
    broken = next(((img, bad_images[(img[0], img[1])]) for img in images if (img[0], img[1]) in bad_images), None)
    if broken is not None:
        yield beam.pvalue.TaggedOutput(REJECTS, reject(f"{name}:{sample_id}", "", "media", f"image_{broken[1]}",
                                                       broken[0][2] or broken[0][1]))
        return
    selection = selection_hash(seed, name, sample_id)
    made = copies(split, repeats.get(name, 1.0), selection, thresholds.get(source, 0))
    base = mix_id(sample_id, name, 0)
    for k in made:
        yield (split, order_key(seed, base, k, len(made)), mix_id(sample_id, name, k), source, k, spool, offset,
               length)
    if made and p[9]:  # a tile with rows in the mix, for its footprint list (once per row, not per copy)
        yield beam.pvalue.TaggedOutput(TILES, (source, p[9], split))


@dataclass
class PlanCopies(beam.PTransform):
    """Kept rows (and the ``bad`` images of CheckMedia) -> copy pointers: each source's repeat planned from its
    train rows (fixed or as a share), fractions chosen by a seeded hash; with ``rejects`` and ``events``."""

    sources: tuple[MixSource, ...]
    seed: int
    repeats: dict[str, float | None]
    shares: dict[str, float | None]

    def expand(self, parts):
        kept, bad = parts["kept"], parts["bad"]
        sources, seed = self.sources, self.seed
        names = {s.index: s.name for s in sources}
        train = (kept
                 | "TrainOnly" >> beam.Filter(lambda p: p[3] == "train")
                 | "TrainPerSource" >> beam.Map(lambda p: (names[p[0]], 1))
                 | "CountTrain" >> beam.CombinePerKey(sum)
                 | "TrainCounts" >> beam.combiners.ToDict())
        repeats = train | "PlanRepeats" >> beam.Map(plan_repeats, self.repeats, self.shares)
        thresholds = (kept
                      | "TrainHashes" >> beam.FlatMap(lambda p: [(p[0], selection_hash(seed, names[p[0]], p[2]))]
                                                      if p[3] == "train" else [])
                      | "HashesPerSource" >> beam.GroupByKey()
                      | "Thresholds" >> beam.FlatMap(fraction_thresholds, beam.pvalue.AsSingleton(repeats), sources)
                      | "ThresholdDict" >> beam.combiners.ToDict())
        copied = kept | "Copies" >> beam.FlatMap(
            expand_copies, seed, sources, beam.pvalue.AsSingleton(repeats), beam.pvalue.AsSingleton(thresholds),
            beam.pvalue.AsSingleton(bad)).with_outputs(REJECTS, TILES, main="copies")
        events = repeats | "RepeatEvents" >> beam.Map(
            lambda r: {f"repeat_milli|{name}": round(v * 1000) for name, v in r.items()})
        return {"copies": copied.copies, REJECTS: copied[REJECTS], EVENTS: events, TILES: copied[TILES]}


@dataclass
class ListTilesWithRows(beam.PTransform):
    """PlanCopies' TILES, (source index, tile_key, split) per row given a copy -> (<first source reading the
    output>/<tile_key>, (source, tile_key, split)) of every tile of a build or mix with rows in this mix, once
    per source it came through: what the mix's footprint list names (a tile whose rows were all dropped,
    rejected or given no copy is not there)."""

    sources: tuple[MixSource, ...]

    def expand(self, tiles):
        sources = self.sources
        return (tiles
                | "EachTileOnce" >> beam.Distinct()
                | "ByName" >> beam.MapTuple(lambda i, stem, split: (
                    f"{sources[i].media_owner}/{stem}", (sources[i].name, stem, split))))


def read_copies(root: str, pointers: list[CopyPointer]) -> list[tuple[CopyPointer, dict[str, Any]]]:
    """A shard's rows from the spools, each spooled row read once however many copies the shard holds, in the
    mix's order."""
    data = read_spooled(root, ((p[5], p[6], p[7]) for p in pointers))
    parsed = {k: orjson.loads(v) for k, v in data.items()}
    return [(p, parsed[(p[5], p[6])]) for p in sorted(pointers, key=lambda p: (p[1], p[2]))]


def shard_of(p: CopyPointer, counts: dict[str, int], rows_per_shard: int):
    """Shard i of n holds the i-th range of the global order (no sub-folders: a mix has few split files)."""
    n = shard_count(counts.get(p[0], 0), rows_per_shard)
    return (p[0], (p[1] * n) >> 64, n, ""), p


def all_mix_shards(counts: dict[str, int], rows_per_shard: int):
    return [((s, i, shard_count(counts[s], rows_per_shard), ""), None) for s in VALID_SPLITS if counts.get(s, 0)
            for i in range(shard_count(counts[s], rows_per_shard))]


class _WriteMixShardFn(beam.DoFn):
    def __init__(self, root: str, formats: tuple[str, ...], embed_images: bool, sources: tuple[MixSource, ...]):
        self.root, self.formats, self.embed_images, self.sources = root, formats, embed_images, sources
        self.files = Metrics.counter("WriteMixShards", "files_written")

    def setup(self):
        use_system_memory_pool()  # as the build's shard writer (transforms.output.formats)

    def process(self, element, index, image_locs):
        key, grouped = element
        split = key[0]
        rows = read_copies(spool_root(self.root), list(grouped["rows"]))
        records, images = [], []
        # each image read once per shard: a chip is in about 15 rows of its tile, and every read of a bucket
        # object is a request (the shard holds the bytes anyway, so the cache costs no memory)
        read: dict[tuple[str, str], bytes] = {}
        for p, record in rows:
            src = self.sources[p[3]]
            paths = {k: index[(src.media_owner, k)] for k in record["metadata"]["image_paths"]}
            out = mixed_record(record, paths, src.name, p[4])
            records.append(out)
            if self.embed_images:
                for k in record["metadata"]["image_paths"]:
                    if (src.media_owner, k) not in read:
                        read[(src.media_owner, k)] = self._bytes(image_locs[(src.media_owner, k)])
                images.append([(paths[k], read[(src.media_owner, k)]) for k in record["metadata"]["image_paths"]])
            md = out["metadata"]
            yield {f"rows|{md['task']}|{split}": 1, f"source|{src.name}|out|{split}": 1}
        for event in write_shard(self.root, key, records, images if self.embed_images else None, self.formats,
                                 MIX_METADATA_FIELDS):
            self.files.inc()
            yield event

    def _bytes(self, loc: tuple[str, tuple[str, int], int]) -> bytes:
        src, (spool, offset), length = loc
        return fileio.read_bytes(src) if src else read_one(spool_root(self.root), spool, offset, length)


@dataclass
class WriteMixShards(beam.PTransform):
    """Copy pointers (with the media ``index`` and image ``locations``) -> the mix's split files, through the
    build's split-file writer; emits one event per row and per file."""

    output_root: str
    formats: tuple[str, ...]
    embed_images: bool
    rows_per_shard: int
    sources: tuple[MixSource, ...]

    def expand(self, parts):
        copies_, index, locations = parts["copies"], parts["index"], parts["locations"]
        counts = (copies_
                  | "SplitOf" >> beam.Map(lambda p: (p[0], 1))
                  | "CountPerSplit" >> beam.CombinePerKey(sum)
                  | "Counts" >> beam.combiners.ToDict())
        keys = counts | "ShardKeys" >> beam.FlatMap(all_mix_shards, self.rows_per_shard)
        keyed = copies_ | "KeyByShard" >> beam.Map(shard_of, beam.pvalue.AsSingleton(counts), self.rows_per_shard)
        locs = locations | "Locations" >> beam.combiners.ToDict()
        return ({"rows": keyed, "keys": keys}
                | "GroupShards" >> beam.CoGroupByKey()
                | "Write" >> beam.ParDo(_WriteMixShardFn(self.output_root, self.formats, self.embed_images,
                                                         self.sources),
                                        beam.pvalue.AsSingleton(index), beam.pvalue.AsSingleton(locs)))


class _WriteMediaFn(beam.DoFn):
    def __init__(self, root: str, link: bool = True, in_place: str = ""):
        self.root, self.link, self.in_place = root, link, in_place

    def setup(self):
        self._marks = FolderMarks()

    def start_bundle(self):
        self._kept: list[str] = []

    def _already_in_place(self, rel: str, src: str, data: bytes | None) -> bool:
        """The mix in place holds this image's bytes at the path the new mix gives it (an update of a mix whose
        sources kept the image): size and MD5 from the listings of the two folders, or of the bytes at hand (an
        image embedded in its source's rows, a local file)."""
        there = self._marks.mark(join_path(self.in_place, rel))
        if not there:
            return False
        return there == (fileio.bytes_mark(data) if data is not None else self._marks.mark(src))

    def process(self, element, index):
        (owner, key), (src, (spool, at), length) = element
        if (owner, key) not in index:
            return
        rel = index[(owner, key)]
        data = None if src else read_one(spool_root(self.root), spool, at, length)
        if self.in_place and src and fileio.is_local(src):
            data = fileio.read_bytes(src)  # into a bucket it is sent as bytes anyway: compared first
        if self.in_place and self._already_in_place(rel, src, data):
            self._kept.append(rel)
            yield {"media_written": 1}  # in the new mix as a copy staged and moved would be
            return
        dst = join_path(self.root, rel)
        if data is None:
            how = fileio.link_or_copy(src, dst, self.link)
        else:
            fileio.write_bytes(dst, data)
            how = "copy"
        yield {"media_linked" if how == "link" else "media_written": 1}

    def finish_bundle(self):
        if self._kept:  # for the commit, which must not delete them (transforms.rebuild.commit.kept_in_place)
            names = "".join(f"{rel}\n" for rel in sorted(self._kept)).encode()
            name = f"{hashlib.sha256(names).hexdigest()[:32]}.txt"  # a retried bundle writes the same file
            fileio.write_bytes(join_path(self.in_place, UPDATE_KEPT_DIR, name), names)


@dataclass
class WriteMedia(beam.PTransform):
    """Image locations -> the good images under media/ (linked when local, else copied); one event each.
    ``in_place``: the mix a --update into a bucket replaces; an image it already holds with the same bytes at
    the same path is left there, not copied to the stage and back (a scheduled update of unchanged sources
    copied every image twice)."""

    output_root: str
    link: bool = True  # False with --copy-images
    in_place: str = ""

    def expand(self, parts):
        return parts["locations"] | "Write" >> beam.ParDo(_WriteMediaFn(self.output_root, self.link, self.in_place),
                                                          beam.pvalue.AsSingleton(parts["index"]))
