"""Placing tiles in the output tree: every tile gets a slot, which fixes the path of each of its files.

A tile an earlier build had, unchanged (same fingerprint), keeps that build's slot, so its paths and files stay
as they are; a new or changed tile gets a slot after every one the earlier build used, so no new file ever
lands where a reader of the earlier build may still be reading. Only the stems of tiles without a slot are
gathered (one string each: about 80 MB per million new tiles, and 110 MB more for their numbered slots, in
the one worker that numbers them); the slots
go back to their tiles through a join on the stem, so no worker is ever handed a map of every tile.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from transforms import fileio
from transforms.gather import GatherByKeyFn
from transforms.input.png_digest import png_file_digest
from transforms.output.tree import tile_splits
from transforms.paths import base_poi_id, join_path
from transforms.rebuild.manifest import (
    STILLS_FILE,
    PreviousTile,
    allocate_slots,
    damaged_manifest,
    drawn_folders,
    encode_stills,
    encode_tiles,
    first_free_slot,
    mark_gone,
    parse_tiles,
    stale_files,
    tile_fingerprint,
    tiles_file,
)
from transforms.rows import still_output_path
from transforms.splits.plan import initial_split, previous_split

EVENTS = "events"
PLACED = "placed"  # JoinOnTileStem's outputs of tiles the earlier build had
CHANGED = "changed"
KNOWN = "known"
# (stem, (stem, files)) of each earlier record of a stem, except a tile whose rows and files are taken whole
# (rebuild.take): FindStaleFiles' earlier side. A taken tile names exactly its earlier files, so it would find
# nothing stale; it leaves both sides of that join.
STALE_BEFORE = "stale_before"


def _read_manifest_file(element) -> list[tuple]:
    """A manifest file that does not parse stops the build with the way out: without it the earlier build's
    tiles would lose their slots and splits, which is what --previous is there to keep. With ``look`` (a rebuild
    that reuses files), the folders its tiles' files lie in are listed, and each tile learns how many of them
    are gone (manifest.mark_gone)."""
    root, rel, look = element
    with fileio.open_for_read(join_path(root, rel)) as f:
        data = f.read()
    try:
        tiles = parse_tiles(data)
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # orjson.JSONDecodeError is a ValueError
        raise damaged_manifest(join_path(root, rel), err) from err
    if look:
        tiles = mark_gone(tiles, {d: fileio.names_in(join_path(root, d)) for d in drawn_folders(tiles)})
    return [tuple(t) for t in tiles]


def _read_split_file(element) -> list[tuple]:
    root, rel, fmt = element
    with fileio.open_for_read(join_path(root, rel)) as f:
        return [tuple(PreviousTile(stem, split)) for stem, split in tile_splits(f, fmt)]


@dataclass
class ReadPreviousTiles(beam.PTransform):
    """An earlier build -> one PreviousTile per tile (about 60 bytes plus its file names), from its manifest; a
    build made before manifests existed gives splits only, from its rows' metadata (its tiles then get new
    slots: paths change once)."""

    root: str
    manifest_files: tuple[str, ...]
    split_files: tuple[str, ...] = ()
    fmt: str = ""
    look_for_gone: bool = False  # the rebuild reuses files: which of them are gone (PreviousTile.gone)

    def expand(self, pbegin):
        if self.manifest_files:  # one record per tile: each manifest file holds its own block of slots
            files = [(self.root, rel, self.look_for_gone) for rel in self.manifest_files]
            return (pbegin
                    | "Files" >> beam.Create(files)
                    | "Spread" >> beam.Reshuffle()
                    | "Read" >> beam.FlatMap(_read_manifest_file))
        # Split files name a tile once per row: one record per tile is kept. (Only here: the records of a manifest
        # carry the tile's file names, and this shuffle of every one of them cost some 5% of a rebuild.)
        return (pbegin
                | "Files" >> beam.Create([(self.root, rel, self.fmt) for rel in self.split_files])
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.FlatMap(_read_split_file)
                | "Once" >> beam.Distinct())


def takeable_rows(prev: PreviousTile, runs: list[tuple[str, int]]) -> tuple:
    """The tile's runs, (split file, rows in it), when its rows are all in the earlier split files (the index
    names as many as the manifest says it had) and none was gated (a gated row's reject is in no split file):
    else () and its rows are made again. The rows themselves are taken a file at a time (rebuild.take)."""
    if prev.rows < 0 or prev.gated or sum(n for _, n in runs) != prev.rows:
        return ()
    return tuple(sorted(runs))


def chip_sha256(chip_src: str) -> str:
    return hashlib.sha256(fileio.read_bytes(chip_src)).hexdigest()


def known_record(tile) -> tuple[str, tuple[str, str, str]]:
    """(base, (stem, declared split, split)) of a tile the earlier build had: all AssignSplits needs of it (its
    split is that build's), about 100 bytes where the tile itself would cross that shuffle."""
    return base_poi_id(tile.tile_stem), (tile.tile_stem, initial_split(tile), tile.split)


def compare_tile(tile, before: list[PreviousTile], runs: list[tuple], options: str, reuse: bool
                 ) -> tuple[str, Any, dict[str, int]]:
    """A tile the earlier build had (``before``: its records there) -> (PLACED or CHANGED, the tile with its
    split kept, events). PLACED: unchanged (same fingerprint), so it keeps its slot too, and with ``reuse``
    takes that build's files, and its rows when ``runs`` (its row index runs) hold them all. CHANGED: it needs
    a new slot (its fingerprint moved, its chip cannot be read now, or that build recorded no slot)."""
    tile = tile.with_fields(split=previous_split(p.split for p in before))
    prev = next((p for p in before if p.slot >= 0), None)
    if prev is None:
        return CHANGED, tile, {}
    try:  # its chunk CRCs, not all its bytes: an unchanged chip is neither read whole nor hashed
        images = tile.images_identity()
        fp = tile_fingerprint(options, tile.sidecar_sha256, png_file_digest(tile.chip_src), images)
        sha = prev.chip_sha256
        if fp != prev.fingerprint:
            # Builds before 2026-12-04 knew the chip by its SHA-256: one of them is recognised that way once.
            sha = chip_sha256(tile.chip_src)
            if tile_fingerprint(options, tile.sidecar_sha256, sha, images) != prev.fingerprint:
                return CHANGED, tile.with_fields(fingerprint=fp), {"rebuild|tiles_changed": 1}
        # The same chip: its SHA-256 (which rows made again name) is the one the earlier build recorded.
        tile = tile.with_fields(fingerprint=fp, chip_sha256=sha or chip_sha256(tile.chip_src))
    except OSError:  # GenerateRows rejects it with the reason; it needs no slot of its own
        return CHANGED, tile, {}
    redraw = reuse and prev.gone > 0  # files of it are gone: it is drawn again in its slot, not taken with holes
    reuse = reuse and not redraw
    rows = takeable_rows(prev, runs) if reuse else ()  # GenerateRows counts those it takes
    return PLACED, tile.with_fields(slot=prev.slot, reuse=reuse, earlier=tuple(prev) if rows else (),
                                    earlier_rows=rows), {"rebuild|tiles_unchanged": 1,
                                                         "rebuild|tiles_reused": int(reuse),
                                                         "rebuild|tiles_redrawn": int(redraw)}


def _with_slot(element):
    _, groups = element
    slots = list(groups["slots"])
    for tile in groups["tiles"]:
        yield tile.with_fields(slot=slots[0])


@dataclass
class PlaceTiles(beam.PTransform):
    """Tiles without a slot (every tile of a first build; new and changed ones in a rebuild, whose unchanged
    tiles keep theirs: JoinOnTileStem) -> the same tiles with their slot."""

    previous: beam.PCollection | None = None  # PreviousTile tuples of the earlier build: new slots follow theirs
    max_files_per_dir: int = 9000  # new slots begin a shard folder of their own (first_free_slot)
    widths: tuple[tuple[int, int], ...] = ()  # (files per slot before, now) of the families that may narrow

    def expand(self, tiles):
        p = tiles.pipeline
        if self.previous is None:
            start = p | "FirstSlot" >> beam.Create([0])
        else:
            limit, widths = self.max_files_per_dir, self.widths
            start = (self.previous
                     | "Slots" >> beam.Map(lambda t: t[2])
                     | "Highest" >> beam.CombineGlobally(lambda slots: max(slots, default=-1))
                     | "Next" >> beam.Map(lambda s: first_free_slot(s, limit, widths)))
        slots = (tiles
                 | "Stems" >> beam.Map(lambda t: t.tile_stem)
                 | "Gather" >> beam.combiners.ToList()
                 | "Allocate" >> beam.FlatMap(lambda stems, first: allocate_slots(stems, first),
                                              beam.pvalue.AsSingleton(start)))
        return ({"tiles": tiles | "ByStem" >> beam.Map(lambda t: (t.tile_stem, t)), "slots": slots}
                | "JoinSlots" >> beam.CoGroupByKey()
                | "WithSlot" >> beam.FlatMap(_with_slot).with_output_types(Any))


def _write_tiles_file(root: str, rel: str, parts) -> dict[str, int]:
    """One manifest file from its gathered (slot, line) parts: lines in slot order, as encode_tiles writes them."""
    lines = sorted(line for part in parts for line in part)
    fileio.write_bytes(join_path(root, rel), b"".join(line for _, line in lines))
    return {"manifest_files_written": 1}


class _ManifestLinesFn(GatherByKeyFn):
    """A record -> its line, gathered per manifest file: the records (some 2 KB each) cross no flatten or
    shuffle one by one, only a bundle's lines of a file together, as bytes (at most 10,000 lines held, some
    20 MB)."""

    MAX_VALUES = 10_000

    def process(self, record: dict[str, Any]):
        yield from self.gather(((tiles_file(record["slot"]), (record["slot"], encode_tiles((record,)))),))


@dataclass
class WriteManifest(beam.PTransform):
    """Manifest records (one per tile with rows; one PCollection or several) ->
    metadata/manifest/tiles-bNNNNN.jsonl, a file per block of slots, written whole and sorted: the same build
    writes the same bytes."""

    root: str

    def expand(self, records):
        root = self.root
        parts = records if isinstance(records, (tuple, list)) else (records,)
        lines = [part | f"Lines{i}" >> beam.ParDo(_ManifestLinesFn()) for i, part in enumerate(parts)]
        return (lines
                | "AllLines" >> beam.Flatten()
                | "GroupByFile" >> beam.GroupByKey()
                | "Write" >> beam.MapTuple(lambda rel, found: _write_tiles_file(root, rel, found)))


def before_files(record: tuple) -> tuple[str, tuple[str, tuple[str, ...]]]:
    """An earlier build's PreviousTile record as FindStaleFiles' earlier side takes it: only the stem and the
    file names cross that join."""
    return record[0], (record[0], tuple(PreviousTile(*record).files))


def _stale(element) -> list[str]:
    _, groups = element
    return stale_files([PreviousTile(stem, "", files=files) for stem, files in groups["before"]], list(groups["now"]))


@dataclass
class FindStaleFiles(beam.PTransform):
    """(earlier builds' tiles, this build's manifest records) -> every per-tile file the earlier builds wrote
    that no tile of this one names: a changed tile's old files (it has new ones at a new slot), a removed
    tile's files. Joined per stem, nothing gathered."""

    before: beam.PCollection | None
    before_by_stem: beam.PCollection | None = None  # already (stem, (stem, files)): JoinOnTileStem's STALE_BEFORE

    def expand(self, records):
        # Only the stems and file names cross the join: the records' other fields would only cost memory.
        before = (self.before_by_stem if self.before_by_stem is not None
                  else self.before | "BeforeByStem" >> beam.Map(before_files))
        return ({"before": before,
                 "now": records | "NowByStem" >> beam.Map(lambda r: (r["stem"], tuple(r["files"])))}
                | "JoinByStem" >> beam.CoGroupByKey()
                | "Stale" >> beam.FlatMap(_stale))


def write_stills_file(index: dict[str, tuple[str, int]], root: str, max_files_per_dir: int, used: list[str]
                      ) -> dict[str, int]:
    """metadata/manifest/stills.jsonl: each still's slot, which the next rebuild keeps, and the path of its copy
    when a row used it ("" when none did: then no copy was made)."""
    copied = set(used)
    stills = {}
    for stem, (src, slot) in index.items():
        path = still_output_path(src, stem, slot, max_files_per_dir)
        stills[stem] = (slot, path if path in copied else "")
    fileio.write_bytes(join_path(root, STILLS_FILE), encode_stills(stills))
    return {"manifest_files_written": 1}
