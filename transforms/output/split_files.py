"""Split files in every format (and row sidecars as Parquet), in bounded memory.

Rows are long (prompts, TiM JSON), and a shuffle on the DirectRunner holds its whole input in memory, so rows
never cross one. The stage that makes them appends each row to a spool file of its bundle and passes on only a
pointer (split, sample id, spool file, offset, length), in tuples of up to a thousand: one element per row
would cost an encode, a decode and a grouping step per row, done by the runner process itself when several
workers run. Pointers are counted per split, batched by shard and grouped; each shard's writer reads its rows
back from the spools, sorts them by sample id and writes every format, so the bytes are exactly those of
writing the rows themselves. The spool folder is removed once every shard is written. A bundle that fails and
is retried leaves an unreferenced spool behind, which goes with the folder (the way Beam's own file sinks
treat their temporary files).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from transforms import fileio
from transforms.analysis.render import ChipError, render_analysis_png
from transforms.input.sidecars import VALID_SPLITS
from transforms.output.formats import (
    FORMATS,
    HUB_ROW_GROUP_ROWS,
    METADATA_FIELDS,
    Images,
    TakenSource,
    jsonl_bytes,
    parquet_beside,
    parquet_bytes,
    read_parquet_table,
    row_shard,
    sidecar_parquet_bytes,
    sidecar_shard_path,
    split_file_parts,
    table_with_taken_rows,
    use_system_memory_pool,
)
from transforms.output.spool import (
    POINTERS_PER_BATCH,
    PREVIOUS_MARK,
    RemoveSpool,
    SpoolFile,
    previous_file,
    previous_spool,
    read_spooled,
    spool_root,
)
from transforms.output.tree import ANALYSIS_SPOOL_DIR
from transforms.paths import join_path, shard_dir
from transforms.rebuild.manifest import EARLIER_BUILD_UNUSABLE, encode_row_index, row_index_file
from transforms.rebuild.take import TakenFile, taken_block
from transforms.records import reject
from transforms.rows import Row

REJECTS = "rejects"


def shard_count(n_rows: int, rows_per_shard: int) -> int:
    """Shards for a split with rows. A split without rows gets no file at all: `datasets` fails on an empty
    Parquet file, and the card simply leaves the split out."""
    return max(1, -(-n_rows // rows_per_shard))


def split_shard_count(counts: dict[str, int], split: str, rows_per_shard: int, kept: dict[str, int] | None = None
                      ) -> int:
    """Shards for a split of ``counts[split]`` rows. In a rebuild (``kept``: the earlier build's shard count per
    split), the split keeps its earlier count while its shards hold on average more than half of
    ``rows_per_shard`` and at most a quarter more: a tree that grows by a few percent keeps its split files'
    names (a Hub copy replaces them rather than deleting some and adding others), and each shard is written
    from the one earlier file of its number, whose rows the hash puts there again."""
    n_rows = counts.get(split, 0)
    fresh = shard_count(n_rows, rows_per_shard)
    before = (kept or {}).get(split, 0)
    if before and fresh != before and (before - 1) * rows_per_shard // 2 < n_rows <= before * rows_per_shard * 5 // 4:
        return before
    return fresh


def earlier_shard_counts(files: Iterable[str]) -> dict[str, int]:
    """split -> shards, from an earlier build's split files (relative paths, JSONL or Parquet:
    <split>[-i-of-N].<ext>)."""
    out: dict[str, int] = {}
    for path in files:
        stem = path.rsplit("/", 1)[-1].split(".", 1)[0]
        split, _, rest = stem.partition("-")
        out[split] = max(out.get(split, 0), int(rest.partition("-of-")[2]) if rest else 1)
    return out


class RowPointer(NamedTuple):
    """Where a spooled row lies: the only per-row record that crosses the shuffle (about 100 bytes). It
    travels as a plain tuple, which Beam's default coder writes field by field in C; as a NamedTuple it was
    pickled instead, 10 times per row over the build."""

    split: str
    sample_id: str
    spool: str
    offset: int
    length: int
    group: str = ""  # what picks the shard: the sample id, or (--layout hub) the tile, so a tile's rows stay together
    stem: str = ""  # a row taken from the earlier build: its tile (the row index names it; the line is not parsed)
    line: int = -1  # and its line number in that build's split file (its place in the file's row index)


class ShardEntry(NamedTuple):
    """A row read back from its spool by the shard writer."""

    sample_id: str
    record: dict[str, Any]
    image_sources: tuple[tuple[str, str], ...] = ()
    render_spec: dict[str, Any] | None = None
    sidecar_path: str = ""
    sidecar: dict[str, Any] | None = None
    line: bytes = b""  # a taken row written as the earlier build wrote it, not parsed (``record`` is None)
    stem: str = ""
    source: TakenSource | tuple[()] = ()  # a taken line's place in the earlier build (its Parquet rows follow it)


def spool_bytes(row: Row, embed_images: bool, sidecars_in_shards: bool) -> bytes:
    """What the shard writer will need of a row, and nothing more: images only when they are embedded, the
    sidecar only when it is written into the shard's Parquet."""
    entry: dict[str, Any] = {"record": row.record, "sidecar_path": row.sidecar_path}
    if embed_images:
        entry["image_sources"] = [list(p) for p in row.image_sources]
        entry["render_spec"] = row.render_spec
    if sidecars_in_shards:
        entry["sidecar"] = row.sidecar
    return orjson.dumps(entry)


def read_entry(sample_id: str, data: bytes) -> ShardEntry:
    e = orjson.loads(data)
    return ShardEntry(sample_id, e["record"], tuple(tuple(p) for p in e.get("image_sources", ())),
                      e.get("render_spec"), e.get("sidecar_path", ""), e.get("sidecar"))


class _SpoolFn(beam.DoFn):
    """Append rows to one spool file per bundle; pass on tuples of pointers. The file is closed when the bundle
    ends, before any consumer of the pointers (all behind a shuffle) can run."""

    def __init__(self, spool_root: str, embed_images: bool, sidecars_in_shards: bool, shard_by_tile: bool = False):
        self.spool_root, self.embed_images, self.sidecars_in_shards = spool_root, embed_images, sidecars_in_shards
        self.shard_by_tile = shard_by_tile
        self.spooled = Metrics.counter("WriteSplitFiles", "rows_spooled")

    def start_bundle(self):
        self._spool = SpoolFile(self.spool_root)
        self._batch: list[tuple] = []

    def process(self, row: Row):
        name, offset, length = self._spool.write(spool_bytes(row, self.embed_images, self.sidecars_in_shards))
        self.spooled.inc()
        md = row.record["metadata"]
        self._batch.append((md["split"], row.sample_id, name, offset, length, md["tile_stem"])
                           if self.shard_by_tile else (md["split"], row.sample_id, name, offset, length))
        if len(self._batch) >= POINTERS_PER_BATCH:
            yield tuple(self._batch)
            self._batch = []

    def finish_bundle(self):
        self._spool.close()
        if self._batch:
            yield GlobalWindows.windowed_value(tuple(self._batch))
            self._batch = []


ShardKey = tuple[str, int, int, str]  # (split, shard, shards in the split, sub-folder)


def write_shard(root: str, key: ShardKey, records: list[dict[str, Any]], images: list[Images] | None,
                formats: tuple[str, ...], metadata_fields: tuple[str, ...], tile_groups: int = 0,
                written: dict[str, bytes] | None = None, lines: list[bytes] | None = None,
                taken: tuple[str, list[ShardEntry]] | None = None) -> list[dict[str, int]]:
    """One shard's rows, already in their order, written in every format (the one writer of split files, for
    build and mix alike); one event per file (files|format|path -> rows) for the report and the card.
    ``tile_groups``: Parquet row groups of whole tiles (--layout hub). ``written``: the formats it names get
    their bytes put there (the row index is made from the JSONL file's). ``lines``: per row, its JSONL line
    when it has one already (a row taken from the earlier build, whose record is then None), else b"";
    only for shards written as JSONL and Parquet alone. ``taken``: (the earlier build, the shard's entries) when
    some of those lines were taken from it: their Parquet rows are taken from its Parquet files too."""
    split, shard, n, sub = key
    events = []
    jsonl = None  # made once: the JSONL file and the Parquet file's table both come from it
    if lines is not None:  # every row's line, taken or made now
        lines = [line or orjson.dumps(r) + b"\n" for r, line in zip(records, lines, strict=True)]
        jsonl = b"".join(lines)
    for name in formats:
        fmt = FORMATS[name]
        path = fmt.path(split, shard, n, sub)
        if jsonl is None and (name == "jsonl" or (name == "parquet" and images is None)):
            jsonl = jsonl_bytes(records)
        if name == "parquet":
            table = None
            if taken is not None and lines is not None and images is None:
                table = taken_table(taken[0], taken[1], records, lines, metadata_fields)
            data = parquet_bytes(records, images, metadata_fields, tile_groups, jsonl, table)
        else:
            data = jsonl if name == "jsonl" else fmt.encode(records, None)
        fileio.write_bytes(join_path(root, path), data)
        if written is not None and name in written:
            written[name] = data
        events.append({f"files|{name}|{path}": len(records)})
    return events


def taken_table(previous_root: str, entries: list[ShardEntry], records: list[dict[str, Any]], lines: list[bytes],
                fields: tuple[str, ...]):
    """The shard's Parquet table with its taken rows read from the earlier build's Parquet files (None: make it
    from every line). ``lines``: every row's JSONL line."""
    if not any(e.source for e in entries):
        return None
    return table_with_taken_rows(lines, records, [e.sample_id for e in entries], [e.source for e in entries], fields,
                                 lambda f: read_parquet_table(join_path(previous_root, parquet_beside(f))))


def split_file_dir(counts: dict[str, int], rows_per_shard: int, max_files_per_dir: int, split: str,
                   shard: int, kept: dict[str, int] | None = None) -> str:
    """The sub-folder of one split file inside its format folder: none while the folder's files fit under the
    limit (every real build), else shard folders over all splits' files in split order."""
    sizes = [split_shard_count(counts, s, rows_per_shard, kept) for s in VALID_SPLITS if counts.get(s, 0)]
    total = sum(sizes)
    if total <= max_files_per_dir:
        return ""
    before = sum(split_shard_count(counts, s, rows_per_shard, kept) for s in VALID_SPLITS[:VALID_SPLITS.index(split)]
                 if counts.get(s, 0))
    return shard_dir(before + shard, max_files_per_dir, total)


def split_counts_of(batch: tuple[tuple, ...]) -> list[tuple[str, int]]:
    """(split, rows) of a batch of pointers (plain tuples, split first)."""
    counts: dict[str, int] = {}
    for p in batch:
        counts[p[0]] = counts.get(p[0], 0) + 1
    return sorted(counts.items())


def shard_batches(batch: tuple[tuple, ...], counts: dict[str, int], rows_per_shard: int,
                  max_files_per_dir: int, kept: dict[str, int] | None = None
                  ) -> list[tuple[ShardKey, tuple[tuple, ...]]]:
    """A batch of pointers -> one (shard key, pointers) pair per shard it touches, in key order. A row's shard
    is a hash of its group (--layout hub: its tile) or else its sample id, so reruns agree."""
    by_key: dict[ShardKey, list[tuple]] = {}
    keys: dict[tuple[str, int], ShardKey] = {}  # (split, shard) -> key: the folder is worked out once per shard
    for p in batch:
        split = p[0]
        n = split_shard_count(counts, split, rows_per_shard, kept)
        shard = row_shard((p[5] if len(p) > 5 else "") or p[1], n)
        key = keys.get((split, shard))
        if key is None:
            key = keys[(split, shard)] = (split, shard, n, split_file_dir(counts, rows_per_shard, max_files_per_dir,
                                                                          split, shard, kept))
        by_key.setdefault(key, []).append(p)
    return [(key, tuple(by_key[key])) for key in sorted(by_key)]


def taken_shard_batches(taken: TakenFile, counts: dict[str, int], rows_per_shard: int, max_files_per_dir: int,
                        kept: dict[str, int] | None = None, previous_root: str = ""
                        ) -> list[tuple[ShardKey, TakenFile | tuple[tuple, ...]]]:
    """The rows one earlier split file gives this build (rebuild.take.TakenFile) -> (shard key, rows) pairs, as
    shard_batches places rows made now: each row goes to the shard its sample id hashes to in this build.
    While its split has as many shards as when the earlier build wrote the file, that is the file's own shard
    (the hash is the same): the TakenFile goes there whole and that shard's writer reads its rows, so they
    never cross a shuffle. Else they are read here and placed one by one."""
    split, shard, n_before, _ = split_file_parts(taken.file)
    n = split_shard_count(counts, taken.split, rows_per_shard, kept)
    key = (taken.split, shard, n, split_file_dir(counts, rows_per_shard, max_files_per_dir, taken.split, shard, kept))
    if n == n_before and split == taken.split and taken.stays:
        return [(key, taken)]
    pointers = taken_pointers(taken, previous_root)
    out: list[tuple[ShardKey, TakenFile | tuple[tuple, ...]]] = []
    for i in range(0, len(pointers), POINTERS_PER_BATCH):
        out += shard_batches(tuple(pointers[i:i + POINTERS_PER_BATCH]), counts, rows_per_shard, max_files_per_dir,
                             kept)
    return out


def taken_pointers(taken: TakenFile, previous_root: str) -> list[tuple]:
    """A TakenFile's rows as RowPointer tuples, read from the earlier build's row index (rebuild.take.taken_block)."""
    block = taken_block(previous_root, taken)
    spool = previous_spool(block.file)
    return [(block.split, sample_id, spool, offset, length, "", stem, line)
            for stem, sample_id, offset, length, line in block.rows]


def shard_pointers(parts: Iterable[TakenFile | tuple[tuple, ...]], previous_root: str) -> list[tuple]:
    """A shard's grouped rows as RowPointer tuples: batches as they are, each TakenFile's rows read (taken_pointers)."""
    pointers: list[tuple] = []
    for part in parts:
        pointers += taken_pointers(part, previous_root) if isinstance(part, TakenFile) else part
    return pointers


def all_shard_keys(counts: dict[str, int], rows_per_shard: int, max_files_per_dir: int,
                   kept: dict[str, int] | None = None) -> list[tuple[ShardKey, None]]:
    out = []
    for split in VALID_SPLITS:
        if counts.get(split, 0):
            n = split_shard_count(counts, split, rows_per_shard, kept)
            out += [((split, i, n, split_file_dir(counts, rows_per_shard, max_files_per_dir, split, i, kept)), None)
                    for i in range(n)]
    return out


def read_back(spool_root: str, pointers: list[tuple], previous_root: str = "", parse: bool = True
              ) -> list[ShardEntry]:
    """A shard's rows (RowPointer tuples), sorted by sample id: from their spools, and (rows an unchanged tile
    keeps) from the earlier build's JSONL split files, where each is the line the row was written as.
    ``parse=False``: taken rows stay the lines they are (a shard written only as JSONL and Parquet needs nothing
    else of them). Pointers stay plain tuples here: a shard holds some 10,000 rows, most of them taken."""
    spooled, earlier = [], []
    for p in pointers:
        (earlier if p[2].startswith(PREVIOUS_MARK) else spooled).append(p)
    data = read_spooled(spool_root, ((p[2], p[3], p[4]) for p in spooled))
    entries = [read_entry(p[1], data[(p[2], p[3])]) for p in spooled]
    if earlier and parse:
        cut = len(PREVIOUS_MARK)
        lines = read_spooled(previous_root, ((p[2][cut:], p[3], p[4]) for p in earlier))
        entries += [taken_entry(RowPointer(*p), lines[(p[2][cut:], p[3])], previous_root) for p in earlier]
    elif earlier:
        entries += taken_lines(earlier, previous_root)
    entries.sort(key=_sample_id)
    return entries


def _sample_id(entry: ShardEntry) -> str:
    return entry[0]


def taken_lines(pointers: list[tuple], previous_root: str) -> list[ShardEntry]:
    """Taken rows as their lines, each with its place in the earlier build (file, line number, lines in the
    file), which names its row in that build's Parquet file too: the line number comes with the pointer (its
    place in the file's row index), or is counted. Each earlier file is read whole, once: a shard takes most
    of the file of its number, and one read costs less than a seek per row. A line must hold the row's sample
    id as its key (a quote inside any text is escaped, so only the key matches) and be one whole line, or the
    build stops rather than write a wrong row (taken_entry)."""
    cut = len(PREVIOUS_MARK)
    by_file: dict[str, list[tuple]] = {}
    for p in pointers:
        by_file.setdefault(p[2][cut:], []).append(p)
    out = []
    key, dumps, append, new = b'"sample_id":', orjson.dumps, out.append, tuple.__new__
    for file, ps in sorted(by_file.items()):
        data = fileio.read_bytes(join_path(previous_root, file))
        n_lines, line_no, at = data.count(b"\n"), 0, 0
        ps.sort(key=_offset)
        for p in ps:
            offset = p[3]
            line = data[offset:offset + p[4]]
            if len(p) > 7:
                line_no = p[7]
            else:
                line_no += data.count(b"\n", at, offset)
                at = offset
            # One whole line (its first newline is its last byte: find stops there, where count reads on) that
            # names the row (the metadata, sample id first, closes the line: found from the end).
            if not line or line.find(b"\n") != len(line) - 1 or line.rfind(key + dumps(p[1])) < 0:
                taken_entry(RowPointer(*p[:7]), line, previous_root, parse=False)  # raises, saying why
            append(new(ShardEntry, (p[1], None, (), None, "", None, line, p[6], (file, line_no, n_lines))))
    return out


def _offset(pointer: tuple) -> int:
    return pointer[3]


def taken_entry(pointer: RowPointer, line: bytes, previous_root: str, parse: bool = True,
                source: TakenSource | tuple[()] = ()) -> ShardEntry:
    """The row a line of the earlier build holds; a line that is not that row (the split file was changed
    since that build wrote its index) stops the build rather than write a wrong row. Unparsed, the line must
    hold the row's sample id as its key (a quote inside any text is escaped, so only the key matches) and be
    one whole line."""
    if not parse:
        if line.endswith(b"\n") and line.count(b"\n") == 1 and (
                b'"sample_id":' + orjson.dumps(pointer.sample_id)) in line:
            return ShardEntry(pointer.sample_id, None, (), None, "", None, line, pointer.stem, source)
        ok = False
    else:
        try:
            record = orjson.loads(line)
            ok = record["metadata"]["sample_id"] == pointer.sample_id
        except (orjson.JSONDecodeError, KeyError, TypeError):
            ok = False
    if not ok:
        raise RuntimeError(f"{EARLIER_BUILD_UNUSABLE}{join_path(previous_root, previous_file(pointer.spool) or '')}"
                           f" at byte {pointer.offset} does not hold row {pointer.sample_id!r}, as that build's row "
                           "index says: the earlier build was changed since it was written; run again with --no-reuse")
    return ShardEntry(pointer.sample_id, record)


def write_row_index(root: str, key: ShardKey, rows: list[tuple[str, str]], jsonl: bytes) -> dict[str, int]:
    """Where each row (tile stem, sample id) of the shard's JSONL file (``jsonl``, its bytes) lies, by tile: what
    lets the next rebuild take an unchanged tile's rows from this file instead of making them again
    (transforms/rebuild)."""
    split, shard, n, sub = key
    path = FORMATS["jsonl"].path(split, shard, n, sub)
    lines = jsonl.split(b"\n")[:-1]  # a line per record (orjson escapes newlines inside strings)
    if len(lines) != len(rows):
        raise ValueError(f"{path}: {len(lines)} lines for {len(rows)} rows")
    entries, offset = [], 0
    for (stem, sample_id), line in zip(rows, lines, strict=True):
        entries.append((stem, sample_id, offset, len(line) + 1))
        offset += len(line) + 1
    fileio.write_bytes(join_path(root, row_index_file(path)), encode_row_index(path, entries))
    return {"manifest_files_written": 1}


def shard_images(entries: list[ShardEntry], analysis_root: str, read=fileio.read_bytes) -> list[Images | str]:
    """Each row's images in image_paths order, or why they cannot be had: copied sources read once per shard;
    analysis images read back from the output (the stage before this shuffle wrote them; a few KB against a
    chip decode and fit to draw one again), or drawn again from their spec and chip if the file is not there.
    A source that vanished or became unreadable since it was listed costs its rows, not the shard."""
    cache: dict[str, bytes | str] = {}
    out: list[Images | str] = []
    for e in entries:
        sources = dict(e.image_sources)
        imgs: Images | str = []
        for path in e.record["metadata"]["image_paths"]:
            if path not in cache:
                if path == e.record["metadata"]["analysis_image_path"] and e.render_spec is not None:
                    try:
                        cache[path] = read(join_path(analysis_root, path))
                    except OSError:
                        cache[path] = _render_embedded(e.render_spec, cache.get(e.render_spec["chip"]["path"]))
                else:
                    try:
                        cache[path] = read(sources[path])
                    except OSError as err:
                        cache[path] = f"{sources[path]}: {err.__class__.__name__}: {str(err)[:200]}"
            found = cache[path]
            if isinstance(found, str):
                imgs = found
                break
            imgs.append((path, found))  # type: ignore[union-attr]
        out.append(imgs)
    return out


def _render_embedded(spec: dict, chip: bytes | str | None) -> bytes | str:
    """An analysis image rendered from the chip bytes already read for the same row (the chip comes first in
    its image_paths), or why it cannot be: a chip that changed since its spec was made is not the chip the
    map was fitted to."""
    if not isinstance(chip, bytes):
        return chip or f"{spec['chip']['path']}: chip not read"
    try:
        return render_analysis_png(spec, chip)
    except ChipError as err:
        return f"{spec['chip']['path']}: {str(err)[:200]}"


class _WriteShardFn(beam.DoFn):
    def __init__(self, root: str, formats: tuple[str, ...], embed_images: bool, row_sidecars: str,
                 metadata_fields: tuple[str, ...], hub: bool = False, files_root: str = "", previous: str = "",
                 row_index: bool = False):
        self.root, self.formats, self.embed_images, self.row_sidecars = root, formats, embed_images, row_sidecars
        self.previous, self.row_index = previous, row_index and "jsonl" in formats
        self.files_root = files_root or root
        self.metadata_fields, self.hub = metadata_fields, hub
        self.analysis_root = join_path(root, ANALYSIS_SPOOL_DIR) if hub else root
        # Shards written only as JSONL and Parquet take the earlier build's lines as bytes, never parsed
        # (--layout hub always embeds images).
        self.lines_only = set(formats) <= {"jsonl", "parquet"} and not embed_images and row_sidecars != "parquet"
        self.files = Metrics.counter("WriteSplitFiles", "files_written")
        self.rows = Metrics.counter("WriteSplitFiles", "rows_written")
        self.dropped = Metrics.counter("WriteSplitFiles", "dropped_source_image_unreadable")

    def setup(self):
        use_system_memory_pool()

    def process(self, element):
        (split, shard, n, sub), grouped = element
        entries = read_back(spool_root(self.root), shard_pointers(grouped["rows"], self.previous), self.previous,
                            parse=not self.lines_only)
        images = None
        if self.embed_images:
            found = shard_images(entries, self.analysis_root)
            kept = [i for i, imgs in enumerate(found) if not isinstance(imgs, str)]
            for i, imgs in enumerate(found):
                if isinstance(imgs, str):
                    yield from self._drop(entries[i], imgs)
            entries, images = [entries[i] for i in kept], [found[i] for i in kept]
        records = [e.record for e in entries]
        written = {"jsonl": b""}
        for event in write_shard(self.files_root, (split, shard, n, sub), records, images, self.formats,
                                 self.metadata_fields, HUB_ROW_GROUP_ROWS if self.hub else 0, written,
                                 [e.line for e in entries] if self.lines_only else None,
                                 (self.previous, entries) if self.lines_only and "parquet" in self.formats else None):
            self.files.inc()
            yield event
        if self.row_index:
            yield write_row_index(self.files_root, (split, shard, n, sub),
                                  [(e.stem or e.record["metadata"]["tile_stem"], e.sample_id) for e in entries],
                                  written.pop("jsonl"))
        if self.row_sidecars == "parquet":
            path = sidecar_shard_path(split, shard, n, sub)
            fileio.write_bytes(join_path(self.files_root, path), sidecar_parquet_bytes(
                [(e.sample_id, e.record["metadata"], e.sidecar) for e in entries]))
            yield {f"files|row_sidecars|{path}": len(entries)}
        self.rows.inc(len(records))

    def _drop(self, entry: ShardEntry, detail: str):
        """A row whose image cannot be read leaves every format of its shard, its row sidecar and the counts
        (a sidecar file is written in the stage before this shuffle, so it is there to remove), and becomes
        a reject."""
        md = entry.record["metadata"]
        self.dropped.inc()
        event = {f"rows|{md['task']}|{md['split']}": -1}
        if self.row_sidecars == "files" and entry.sidecar_path:
            fileio.remove(join_path(self.root, entry.sidecar_path))
            event["row_sidecars_written"] = -1
        yield event
        yield beam.pvalue.TaggedOutput(REJECTS, reject(entry.sample_id, md["tile_stem"], "write",
                                                       "source_image_unreadable", detail))


@dataclass
class WriteSplitFiles(beam.PTransform):
    """Rows -> every selected format, per split, in shards of at most rows_per_shard rows (and, with
    ``row_sidecars="parquet"``, the row sidecars of each shard).

    Shard membership is a hash of the sample id and each shard is sorted by sample id, so the bytes of every
    file are the same on every run and every runner. Emits one event per file written (files|format|path) as
    ``events``, and ``rejects`` for rows whose embedded images could not be read.
    """

    output_root: str
    formats: tuple[str, ...]
    rows_per_shard: int
    embed_images: bool = False
    max_files_per_dir: int = 9000
    row_sidecars: str = "files"
    extra_metadata: tuple[str, ...] = ()
    layout: str = "default"
    files_root: str = ""  # where the split files go, if not output_root (--update stages them)
    taken: beam.PCollection | None = None  # rebuild.take.TakenFile: rows in the earlier build's JSONL files
    previous: str = ""  # that build
    row_index: bool = False  # write each JSONL file's row index (metadata/manifest/rows/), for the next rebuild
    kept_shards: tuple[tuple[str, int], ...] = ()  # (split, shards) of the earlier build (split_shard_count)

    def expand(self, rows):
        hub = self.layout == "hub"
        pointers = rows | "Spool" >> beam.ParDo(_SpoolFn(spool_root(self.output_root), self.embed_images,
                                                         self.row_sidecars == "parquet", hub))
        split_rows = pointers | "SplitOf" >> beam.FlatMap(split_counts_of)
        if self.taken is not None:
            split_rows = ((split_rows, self.taken | "TakenSplitOf" >> beam.Map(lambda t: (t.split, t.rows)))
                          | "WithTaken" >> beam.Flatten())
        counts = (split_rows
                  | "CountPerSplit" >> beam.CombinePerKey(sum)
                  | "Counts" >> beam.combiners.ToDict())
        kept = dict(self.kept_shards)
        keys = counts | "ShardKeys" >> beam.FlatMap(all_shard_keys, self.rows_per_shard, self.max_files_per_dir,
                                                    kept)
        keyed = pointers | "KeyByShard" >> beam.FlatMap(shard_batches, beam.pvalue.AsSingleton(counts),
                                                        self.rows_per_shard, self.max_files_per_dir, kept)
        if self.taken is not None:
            taken = self.taken | "KeyTakenByShard" >> beam.FlatMap(
                taken_shard_batches, beam.pvalue.AsSingleton(counts), self.rows_per_shard, self.max_files_per_dir,
                kept, self.previous)
            keyed = (keyed, taken) | "WithTakenRows" >> beam.Flatten()
        out = ({"rows": keyed, "keys": keys}
               | "GroupShards" >> beam.CoGroupByKey()
               | "Write" >> beam.ParDo(_WriteShardFn(self.output_root, self.formats, self.embed_images,
                                                     self.row_sidecars, (*METADATA_FIELDS, *self.extra_metadata),
                                                     hub, self.files_root, self.previous, self.row_index)
                                       ).with_outputs(REJECTS, main="events"))
        # Once every shard is written (the count waits for all of them), the spools go; it emits nothing, but the
        # build report waits for it through the flattened events.
        cleanup = out.events | "ShardsDone" >> RemoveSpool(self.output_root)
        events = (out.events, cleanup) | "WithCleanup" >> beam.Flatten()
        return {"events": events, REJECTS: out[REJECTS]}
