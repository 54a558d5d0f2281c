"""The join on tile stem: sidecars with their chip reference, chip file and still, and in a rebuild with the
earlier build's record of the tile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import fileio
from transforms.gather import gathered
from transforms.input.images import ImageFile, missing_detail
from transforms.input.refs import ImageRef
from transforms.input.sidecars import Tile
from transforms.paths import CASE_MATCHED, join_path, still_lookup_keys
from transforms.rebuild.manifest import PreviousTile, damaged_manifest, parse_stills, still_slots
from transforms.rebuild.place import (
    CHANGED,
    EVENTS,
    KNOWN,
    PLACED,
    STALE_BEFORE,
    before_files,
    compare_tile,
    known_record,
)
from transforms.rebuild.take import EXCLUDED, excluded_runs
from transforms.records import reject

REJECTS = "rejects"
MIN_CHIP_PX = 16


def file_named(files: list[ImageFile], path: str) -> tuple[ImageFile | None, list[ImageFile]]:
    """The file of one stem a reference names, and the files its name matches only when case is ignored.

    A tree made on a Mac or on Windows, whose file systems ignore case, works there when a reference says
    ``x.png`` of a file saved as ``x.PNG`` (or ``images/S00000/`` of ``images/s00000/``), and lost those chips
    on Linux and in a bucket. The stem is the same (files are grouped by it), so when exactly one file matches
    ignoring case it is the one meant; two such files (``x.png`` and ``x.PNG`` beside a reference ``x.Png``)
    match nothing and are named in the reject."""
    exact = next((f for f in files if f.path == path), None)
    if exact is not None:
        return exact, []
    folded = path.casefold()
    alike = sorted((f for f in files if f.path.casefold() == folded), key=lambda f: f.path)
    return (alike[0] if len(alike) == 1 else None), alike


def not_found_detail(input_root: str, path: str, alike: list[ImageFile]) -> str:
    if len(alike) > 1:
        return (f"{path}: {len(alike)} files differ from it in case only ({', '.join(f.path for f in alike[:4])}); "
                "reference the one meant by its exact name")
    return missing_detail(input_root, path) if input_root else path


def join_tile(stem: str, sidecars: list[Tile], refs: list[ImageRef], files: list[ImageFile], input_root: str
              ) -> tuple[Tile | None, list[dict[str, Any]]]:
    """One stem's sidecars, chip reference and chip files -> the tile to keep (if any) and the rejects."""
    rejects: list[dict[str, Any]] = []
    if not sidecars:
        for ref in refs:
            rejects.append(reject(ref.path, stem, "refs", "sidecar_missing", "chip referenced but no tile sidecar"))
        return None, rejects
    ordered = sorted(sidecars, key=lambda t: t.source)
    tile, duplicates = ordered[0], ordered[1:]
    for dup in duplicates:
        rejects.append(reject(dup.source, stem, "sidecar", "duplicate_tile_stem", f"first seen in {tile.source}"))
    if not refs:
        rejects.append(reject(tile.source, stem, "join", "stem_not_in_jsonl",
                              f"no user message in data/*.jsonl has an image part naming images/**/{stem}.png"))
        return None, rejects
    ref = min(refs)
    found, alike = file_named(files, ref.path)
    if found is None:
        rejects.append(reject(tile.source, stem, "join", "chip_missing", not_found_detail(input_root, ref.path, alike)))
        return None, rejects
    if found.problem:
        rejects.append(reject(tile.source, stem, "join", f"chip_{found.problem}", f"{found.path}: {found.detail}"))
        return None, rejects
    # Boxes live in the output_size frame, so any square chip of the same footprint serves (448 or 512 px
    # exports at native resolution included); only a chip of another shape, or too small to see, does not.
    if found.width != found.height:
        rejects.append(reject(tile.source, stem, "join", "chip_not_square",
                              f"{found.path} is {found.width}x{found.height}"))
        return None, rejects
    if found.width < MIN_CHIP_PX:
        rejects.append(reject(tile.source, stem, "join", "chip_too_small",
                              f"{found.path} is {found.width}x{found.height}, under {MIN_CHIP_PX} px"))
        return None, rejects
    return tile.with_fields(chip_src=join_path(input_root, found.path), chip_px=found.width), rejects


class _JoinFn(beam.DoFn):
    """One stem's groups -> its tile, with its still; in a rebuild also compared with the earlier build's record
    of it, here rather than after a shuffle of its own, so an unchanged tile goes on to its rows placed and
    with its split, and crosses no other shuffle as a whole tile (transforms.rebuild.place.compare_tile)."""

    def __init__(self, input_root: str, options: str, reuse: bool, stale_before: bool = False):
        self.input_root, self.options, self.reuse, self.stale_before = input_root, options, reuse, stale_before
        self.joined = Metrics.counter("JoinOnTileStem", "tiles_joined")
        self.dropped = Metrics.counter("JoinOnTileStem", "tiles_dropped")
        self.unchanged = Metrics.counter("JoinOnTileStem", "tiles_unchanged")
        self.changed = Metrics.counter("JoinOnTileStem", "tiles_changed")

    def process(self, element, stills):
        stem, groups = element
        runs = gathered(groups.get("rows", ()))  # rebuild.take.ReadPreviousRows
        taken = yield from self._join(stem, groups, runs, stills)
        if runs and not taken:  # its rows in the earlier split files stay there (rebuild.take)
            for excluded in excluded_runs(stem, runs):
                yield beam.pvalue.TaggedOutput(EXCLUDED, excluded)
        if self.stale_before:
            before = groups.get("previous", ())
            if not (taken and len(before) == 1):  # a taken tile names exactly its one earlier record's files
                for record in before:
                    yield beam.pvalue.TaggedOutput(STALE_BEFORE, before_files(record))

    def _join(self, stem, groups, runs, stills):
        """Yields the stem's outputs; returns whether its rows are taken from the earlier build."""
        tile, rejects = join_tile(stem, list(groups["sidecars"]), list(groups["refs"]), list(groups["files"]),
                                  self.input_root)
        for r in rejects:
            if r["stage"] != "refs":
                self.dropped.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, r)
        if tile is None:
            return False
        self.joined.inc()
        if tile.chip_src != join_path(self.input_root, min(groups["refs"]).path):
            yield beam.pvalue.TaggedOutput(EVENTS, {CASE_MATCHED: 1})
        tile = lookup_still(tile, stills, self.input_root)
        before = [PreviousTile(*p) for p in groups.get("previous", ())]
        if not before:
            yield tile
            return False
        where, tile, events = compare_tile(tile, before, runs, self.options, self.reuse)
        if where == PLACED:
            self.unchanged.inc()
        elif events:
            self.changed.inc()
        yield beam.pvalue.TaggedOutput(KNOWN, known_record(tile))
        if events:
            yield beam.pvalue.TaggedOutput(EVENTS, events)
        yield beam.pvalue.TaggedOutput(where, tile)
        return bool(tile.earlier_rows)


@dataclass
class JoinOnTileStem(beam.PTransform):
    """CoGroupByKey of sidecars, first chip references and chip files on tile_stem; each tile gets its still
    from ``stills`` (IndexStills). With ``previous`` and ``rows`` among the inputs (a rebuild: the earlier
    build's PreviousTile records and row index, by stem), a tile that build had is compared with it there:

    - ``tiles``: new tiles, which need a split (AssignSplits) and a slot (PlaceTiles);
    - ``placed``: unchanged tiles, with the earlier build's split and slot, and what of it they reuse;
    - ``changed``: tiles that build had but that changed (or had no slot), with their split: they need a slot;
    - ``known``: (base, (stem, declared split, split)) for both, all the split plan needs of them;
    - ``events``: unchanged and changed tiles counted for the report, and chips found ignoring case (file_named);
    - ``excluded``: (row index file, (stem, its rows there)) of each earlier tile in the row index whose rows are
      not taken (changed, removed, rejected, or not wholly in the index): the rows of all others are
      (rebuild.take);
    - ``stale_before`` (with ``stale_before``): the earlier records of every stem but those of tiles whose rows
      are taken, as FindStaleFiles' earlier side."""

    input_root: str
    stills: beam.PCollection
    options: str = ""  # rebuild.manifest.options_digest: part of every tile's fingerprint
    reuse: bool = True
    stale_before: bool = False

    def expand(self, inputs):
        out = (inputs
               | "CoGroup" >> beam.CoGroupByKey()
               | "Join" >> beam.ParDo(_JoinFn(self.input_root, self.options, self.reuse, self.stale_before),
                                      beam.pvalue.AsSingleton(self.stills)).with_outputs(
                   REJECTS, PLACED, CHANGED, KNOWN, EVENTS, EXCLUDED, STALE_BEFORE, main="tiles"))
        return {"tiles": out.tiles, REJECTS: out[REJECTS], PLACED: out[PLACED], CHANGED: out[CHANGED],
                KNOWN: out[KNOWN], EVENTS: out[EVENTS], EXCLUDED: out[EXCLUDED], STALE_BEFORE: out[STALE_BEFORE]}


def index_stills(found: list[tuple[str, str]], previous: dict[str, int] | None = None) -> dict[str, tuple[str, int]]:
    """still stem -> (path below the input root, slot); slots place the copies in shard folders, and a still an
    earlier build had keeps its slot there (``previous``: its manifest's still slots)."""
    paths = dict(sorted(found))
    slots = still_slots(paths, previous or {})
    return {stem: (paths[stem], slots[stem]) for stem in sorted(paths)}


def _previous_still_slots(manifest: str) -> dict[str, int]:
    if not manifest:
        return {}
    data = fileio.read_if_there(manifest)  # none in a build made before manifests: its stills get new slots
    try:
        return parse_stills(data) if data is not None else {}
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # orjson.JSONDecodeError is a ValueError
        raise damaged_manifest(manifest, err) from err


def _resolve_still(element, input_root: str = ""):
    stem, groups = element
    refs, files = list(groups["refs"]), list(groups["files"])
    if not refs:
        return
    ref = min(refs)
    found, alike = file_named(files, ref.path)
    if found is None:
        detail = not_found_detail(input_root, ref.path, alike)
        yield beam.pvalue.TaggedOutput(REJECTS, reject(ref.path, "", "refs", "still_missing", detail))
    elif found.problem:  # the tiles go on without this still
        yield beam.pvalue.TaggedOutput(REJECTS, reject(ref.path, "", "refs", f"still_{found.problem}", found.detail))
    else:
        if found.path != ref.path:
            yield beam.pvalue.TaggedOutput(EVENTS, {CASE_MATCHED: 1})
        yield stem, found.path


def lookup_still(tile: Tile, stills: dict[str, tuple[str, int]], input_root: str) -> Tile:
    """First the stem without its _tNNNN suffix, then the base POI id; else the tile has no still."""
    for key in still_lookup_keys(tile.tile_stem):
        if key in stills:
            path, index = stills[key]
            return tile.with_fields(still_src=join_path(input_root, path), still_stem=key, still_index=index)
    return tile


@dataclass
class IndexStills(beam.PTransform):
    """The index of stills that exist: one entry per still (at most one per place, so some 100 bytes per base),
    the one index a build hands to every worker (JoinOnTileStem looks each tile's still up in it). Emits
    ``index``, the ``rejects`` of stills that are missing or damaged, and ``events``: stills found ignoring
    case (file_named)."""

    previous_stills: str = ""  # the earlier build's manifest of stills (--previous), whose slots are kept
    input_root: str = ""  # where missing stills are looked at once more, to say why (a git-annex link)

    def expand(self, inputs):
        still_refs, still_files = inputs
        found = ({"refs": still_refs, "files": still_files}
                 | "CoGroupStills" >> beam.CoGroupByKey()
                 | "Resolve" >> beam.FlatMap(_resolve_still, self.input_root).with_outputs(REJECTS, EVENTS,
                                                                                          main="found"))
        previous = self.previous_stills
        index = (found.found
                 | "Collect" >> beam.combiners.ToList()
                 | "Index" >> beam.Map(lambda f: index_stills(f, _previous_still_slots(previous))))
        return {REJECTS: found[REJECTS], "index": index, EVENTS: found[EVENTS]}
