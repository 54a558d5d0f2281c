"""The build manifest: what a later rebuild must know of each tile and still of this one, and nothing else.

A rebuild (--previous, --update) keeps every tile's split and slot, and reuses a tile's analysis images and
overlay when its fingerprint is unchanged; it learns all of that here instead of from the rows, which hold
neither slots nor fingerprints. One JSON line per tile, in files of TILES_PER_FILE slots, sorted by slot, so a
rebuild of unchanged input writes the same bytes; the stills (one per place, far fewer) share one file.

No Beam here: the records are built and read by pure functions, tested on their own.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from transforms import fileio
from transforms.output.tree import MANIFEST_DIR, UPDATE_JOURNAL, OutputTree
from transforms.paths import inside
from transforms.splits.footprints import as_written

TILES_PER_FILE = 50_000  # about 10 MB of JSONL per file with a few dozen output files per tile
STILLS_FILE = f"{MANIFEST_DIR}/stills.jsonl"
ROWS_DIR = f"{MANIFEST_DIR}/rows"  # per JSONL split file: where each of its rows lies, by tile
# How a rebuild's stop over an earlier build it cannot go by begins (a manifest that does not parse, a split file
# changed since its row index was written): the CLI prints it without a traceback.
EARLIER_BUILD_UNUSABLE = "the earlier build cannot be reused: "


class PreviousTile(NamedTuple):
    """A tile of the earlier build: its split, slot (-1 when that build had no manifest), fingerprint and the
    per-tile files it wrote (chip, overlay, analysis images, row sidecars), which go when the tile changes or
    leaves the tree. Crosses shuffles as a plain tuple."""

    stem: str
    split: str
    slot: int = -1
    fingerprint: str = ""
    files: tuple[str, ...] = ()
    rows: int = -1  # rows it had (-1: not recorded, an older manifest)
    gated: int = 0  # rows the gate turned away: their rejects are not in the split files
    still: str = ""  # the output path of its still when a row showed it
    counts: tuple[tuple[str, int], ...] = ()  # what its rows added to the report's counts
    chip_sha256: str = ""  # of its chip's bytes, which an unchanged tile's rows name without its chip being read
    gone: int = 0  # of its files, how many the earlier build's folder no longer holds (mark_gone; 0: not looked)


def tiles_file(slot: int) -> str:
    return f"{MANIFEST_DIR}/tiles-b{slot // TILES_PER_FILE:05d}.jsonl"


def is_manifest_file(rel: str) -> bool:
    return posixpath.dirname(rel) == MANIFEST_DIR and rel.endswith(".jsonl")


def is_tiles_file(rel: str) -> bool:
    """A manifest file of tile records (``tiles_file``), relative to the output: not the stills, not the rows."""
    return is_manifest_file(rel) and posixpath.basename(rel).startswith("tiles-")


def files_as_read(output: str, folder: str) -> list[tuple[str, str]]:
    """(path relative to the output, full path) of the files under ``folder`` of a finished build or mix. One
    whose --update stopped in its commit is read as the commit leaves it, as every reader reads it (OutputTree
    lists the whole output, so only then)."""
    if fileio.exists(f"{output}/{UPDATE_JOURNAL}"):
        tree = OutputTree(output)
        return [(rel, f"{output}/{tree.staged.get(rel, rel)}") for rel in tree.under(folder)]
    return [(f"{folder}/{r}", f"{output}/{folder}/{r}") for r in fileio.list_files(f"{output}/{folder}")]


def manifest_tiles_files(output: str) -> list[str]:
    """The tile files of a finished build's manifest, as full paths ([] for a mix, or a build from before
    manifests)."""
    return [path for rel, path in files_as_read(output, MANIFEST_DIR) if is_tiles_file(rel)]


def tile_record(stem: str, split: str, slot: int, fingerprint: str, chip_sha256: str,
                files: Iterable[str], rows: int, gated: int, still: str,
                counts: Iterable[tuple[str, int]], footprint: Sequence[float] | None = None) -> dict[str, Any]:
    """``rows``, ``gated``, ``still`` and ``counts`` let a rebuild take the tile's rows from the earlier split
    files instead of making them again, with the counts they added to the report. ``footprint`` (the ground it
    shows, transforms.splits.footprints; None when its sidecar does not say) lets the build and a mix of builds
    find tiles of two splits on the same ground without the sidecars."""
    return {"stem": stem, "split": split, "slot": slot, "fingerprint": fingerprint, "chip_sha256": chip_sha256,
            "files": sorted(set(files)), "rows": rows, "gated": gated, "still": still,
            "counts": dict(sorted(counts)), "footprint": as_written(footprint) if footprint is not None else None}


def encode_tiles(records: Iterable[dict[str, Any]]) -> bytes:
    """One manifest file: a line per tile in slot order, keys sorted: the same records give the same bytes."""
    return b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n"
                    for r in sorted(records, key=lambda r: r["slot"]))


def encode_stills(stills: dict[str, tuple[int, str]]) -> bytes:
    """stem -> (slot, the path its copy has in the output): a line per still in slot order."""
    return b"".join(orjson.dumps({"path": path, "slot": slot, "stem": stem}, option=orjson.OPT_SORT_KEYS) + b"\n"
                    for stem, (slot, path) in sorted(stills.items(), key=lambda kv: kv[1][0]))


def parse_tiles(data: bytes) -> list[PreviousTile]:
    out = []
    for line in data.splitlines():
        if line.strip():
            r = orjson.loads(line)
            outside = next((f for f in [*r["files"], r.get("still") or "."] if not inside(f)), None)
            if outside is not None:  # a rebuild deletes and copies what a record names
                raise ValueError(f"tile {str(r['stem'])[:80]!r} names {str(outside)[:80]!r}, which is not a path "
                                 "inside the build")
            out.append(PreviousTile(r["stem"], r["split"], int(r["slot"]), r["fingerprint"], tuple(r["files"]),
                                    int(r.get("rows", -1)), int(r.get("gated", 0)), r.get("still", ""),
                                    tuple(sorted(r.get("counts", {}).items())), r.get("chip_sha256", "")))
    return out


def drawn_folders(tiles: Iterable[PreviousTile]) -> list[str]:
    """The folders the tiles' files lie directly in: a rebuild lists each once (fileio.names_in) to see which
    files are still there, a request per thousand files in a bucket instead of one per file."""
    return sorted({posixpath.dirname(f) for t in tiles for f in t.files})


def mark_gone(tiles: Iterable[PreviousTile], present: Mapping[str, set[str]]) -> list[PreviousTile]:
    """Each tile with ``gone`` set to how many of its files ``present`` (folder -> names of the files in it, as
    listed) lacks: an analysis image, overlay, row sidecar or chip deleted from the earlier build by hand or by
    a bucket's lifecycle rule. Such a tile is drawn again rather than taken with a hole in it."""
    return [t._replace(gone=sum(posixpath.basename(f) not in present.get(posixpath.dirname(f), ()) for f in t.files))
            for t in tiles]


def add_counts(into: dict[str, int], keys: Iterable[tuple[str, int]]) -> dict[str, int]:
    for key, n in keys:
        into[key] = into.get(key, 0) + n
    return into


def row_index_file(jsonl_path: str) -> str:
    """The row index of one JSONL split file (relative paths): beside the manifest, named after the file."""
    return f"{ROWS_DIR}/{jsonl_path}"


def encode_row_index(jsonl_path: str, rows: Iterable[tuple[str, str, int, int]]) -> bytes:
    """(tile stem, sample id, offset, length) of a split file's rows in file order -> a line per run of one
    tile's rows (a shard is sorted by sample id, which starts with the stem, so a tile's rows come together)."""
    lines: list[bytes] = []
    stem, run = None, []
    for tile_stem, sample_id, offset, length in [*rows, (None, "", 0, 0)]:
        if tile_stem != stem:
            if run:
                lines.append(orjson.dumps({"file": jsonl_path, "rows": run, "stem": stem}) + b"\n")
            stem, run = tile_stem, []
        run.append([sample_id, offset, length])
    return b"".join(lines)


def parse_row_index(data: bytes) -> list[tuple[str, tuple[str, tuple[tuple[str, int, int], ...]]]]:
    """A row index file -> (stem, (split file, ((sample id, offset, length), ...))) per line."""
    out = []
    for line in data.splitlines():
        if line.strip():
            r = orjson.loads(line)
            out.append((r["stem"], (r["file"], tuple((sid, int(o), int(n)) for sid, o, n in r["rows"]))))
    return out


def parse_stills(data: bytes) -> dict[str, int]:
    """stem -> slot."""
    return {r["stem"]: int(r["slot"]) for r in map(orjson.loads, filter(bytes.strip, data.splitlines()))}


def damaged_manifest(path: str, err: Exception) -> RuntimeError:
    """The stop for a file of the earlier build's manifest that does not parse, with the way out: without it the
    earlier build's tiles and stills would lose their slots and splits, which is what a rebuild is there to
    keep."""
    return RuntimeError(f"{EARLIER_BUILD_UNUSABLE}{path} is damaged ({err.__class__.__name__}: {str(err)[:200]}); "
                        "restore it, or build without --previous/--update (in place: --overwrite), where every tile "
                        "gets new paths and splits")


def still_paths(data: bytes) -> set[str]:
    """The output paths of the stills a manifest lists (a still no row used has none on disk), those inside
    the build only: an update deletes the ones it no longer uses."""
    return {p for p in (orjson.loads(line)["path"] for line in data.splitlines() if line.strip()) if p and inside(p)}


def options_digest(options: dict[str, Any]) -> str:
    """Of every option that shapes a tile's rows or files, and the satsft version: a change to any of them
    changes every tile's fingerprint, so nothing made under other options is ever reused."""
    return hashlib.sha256(orjson.dumps(options, option=orjson.OPT_SORT_KEYS)).hexdigest()


def tile_fingerprint(options: str, sidecar_sha256: str, chip_digest: str, images: str = "") -> str:
    """Same sidecar bytes, same chip bytes (``chip_digest``: transforms.input.png_digest), same image paths
    (Tile.images_identity: the chip's file type, and whether there is a still and where its copy goes), same
    options and version: the same rows, analysis images and overlay, so an earlier build's files and rows for
    the tile can stand. (A still's bytes are not in it: rows name the still by path only, and every build
    copies it again.)"""
    return hashlib.sha256(f"{options}\x1f{sidecar_sha256}\x1f{chip_digest}\x1f{images}".encode()).hexdigest()


def allocate_slots(stems: Iterable[str], start: int) -> list[tuple[str, int]]:
    """Slots for tiles that have none yet (new, or changed since the earlier build), in stem order after every
    slot the earlier build used: a slot is never given twice, so no new file lands on a path a reader of the
    earlier build may still be reading. A first build gets 0..n-1 in stem order, as it always has."""
    return [(stem, start + i) for i, stem in enumerate(sorted(set(stems)))]


def first_free_slot(highest: int, max_files_per_dir: int, widths: Iterable[tuple[int, int]] = ()) -> int:
    """Where a rebuild's new slots begin: past the earlier build's highest, at the start of a shard folder. File
    names come from the tile's stem and folders from its slot, so a changed tile, given a new slot there, has
    new paths in every family (a slot's k files sit at k*slot.. and folders hold max_files_per_dir consecutive
    places): its old files stay readable until the commit, and nothing is replaced under a reader. ``widths``:
    (k before, k now) of each family whose k the options set (analysis images: the profiles; row sidecars: the
    rows a tile can give). When --update narrows one (fewer --tasks), the new slots begin further on, past
    every place the earlier build used in it."""
    if highest < 0:
        return 0
    need = highest + 1
    for before, now in widths:
        if before > now > 0:
            need = max(need, -(-(highest + 1) * before // now))
    return -(-need // max_files_per_dir) * max_files_per_dir


def still_slots(found: Iterable[str], previous: dict[str, int]) -> dict[str, int]:
    """Every still found keeps the slot the earlier build gave it; new ones follow its highest, in stem order."""
    found = sorted(set(found))
    kept = {s: previous[s] for s in found if s in previous}
    start = max(previous.values(), default=-1) + 1
    return {**kept, **dict(allocate_slots((s for s in found if s not in kept), start))}


def unnamed_files(found: Iterable[str], tile_files: Iterable[bytes], stills: bytes | None,
                  listed: Iterable[str]) -> list[str]:
    """Of the per-tile files ``found``, those no tile record (of manifest files' bytes), still or dataset file
    the report lists names: what an --update stopped before its commit, or refused, left behind."""
    named = {f for data in tile_files for tile in parse_tiles(data) for f in tile.files}
    named |= still_paths(stills) if stills is not None else set()
    named |= set(listed)
    return sorted(set(found) - named)


def stale_files(before: Iterable[PreviousTile], now: Iterable[tuple[str, ...]]) -> list[str]:
    """Files one tile had in the earlier build(s) that its new record does not name: what --update removes once
    the new split files are in place (all of them when the tile left the tree)."""
    keep = {f for files in now for f in files}
    return sorted({f for t in before for f in t.files} - keep)
