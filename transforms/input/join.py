"""Joins on tile stem: sidecars with their chip reference and chip file, and tiles with their stills."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import fileio
from transforms.input.images import ImageFile
from transforms.input.refs import ImageRef
from transforms.input.sidecars import Tile
from transforms.paths import join_path, still_lookup_keys
from transforms.rebuild.manifest import parse_stills, still_slots
from transforms.records import reject

REJECTS = "rejects"
MIN_CHIP_PX = 16


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
        rejects.append(reject(tile.source, stem, "join", "stem_not_in_jsonl"))
        return None, rejects
    ref = min(refs)
    found = next((f for f in files if f.path == ref.path), None)
    if found is None:
        rejects.append(reject(tile.source, stem, "join", "chip_missing", ref.path))
        return None, rejects
    if found.problem:
        rejects.append(reject(tile.source, stem, "join", f"chip_{found.problem}", f"{ref.path}: {found.detail}"))
        return None, rejects
    # Boxes live in the output_size frame, so any square chip of the same footprint serves (448 or 512 px
    # exports at native resolution included); only a chip of another shape, or too small to see, does not.
    if found.width != found.height:
        rejects.append(reject(tile.source, stem, "join", "chip_not_square",
                              f"{ref.path} is {found.width}x{found.height}"))
        return None, rejects
    if found.width < MIN_CHIP_PX:
        rejects.append(reject(tile.source, stem, "join", "chip_too_small",
                              f"{ref.path} is {found.width}x{found.height}, under {MIN_CHIP_PX} px"))
        return None, rejects
    return tile.with_fields(chip_src=join_path(input_root, ref.path), chip_px=found.width), rejects


class _JoinFn(beam.DoFn):
    def __init__(self, input_root: str):
        self.input_root = input_root
        self.joined = Metrics.counter("JoinOnTileStem", "tiles_joined")
        self.dropped = Metrics.counter("JoinOnTileStem", "tiles_dropped")

    def process(self, element):
        stem, groups = element
        tile, rejects = join_tile(stem, list(groups["sidecars"]), list(groups["refs"]), list(groups["files"]),
                                  self.input_root)
        for r in rejects:
            if r["stage"] != "refs":
                self.dropped.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, r)
        if tile is not None:
            self.joined.inc()
            yield tile


@dataclass
class JoinOnTileStem(beam.PTransform):
    """CoGroupByKey of sidecars, first chip references and chip files on tile_stem."""

    input_root: str

    def expand(self, inputs):
        out = (inputs
               | "CoGroup" >> beam.CoGroupByKey()
               | "Join" >> beam.ParDo(_JoinFn(self.input_root)).with_outputs(REJECTS, main="tiles"))
        return {"tiles": out.tiles, REJECTS: out[REJECTS]}


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
    return parse_stills(data) if data is not None else {}


def _resolve_still(element):
    stem, groups = element
    refs, files = list(groups["refs"]), list(groups["files"])
    if not refs:
        return
    ref = min(refs)
    found = next((f for f in files if f.path == ref.path), None)
    if found is None:
        yield beam.pvalue.TaggedOutput(REJECTS, reject(ref.path, "", "refs", "still_missing", ref.path))
    elif found.problem:  # the tiles go on without this still
        yield beam.pvalue.TaggedOutput(REJECTS, reject(ref.path, "", "refs", f"still_{found.problem}", found.detail))
    else:
        yield stem, ref.path


def lookup_still(tile: Tile, stills: dict[str, tuple[str, int]], input_root: str) -> Tile:
    """First the stem without its _tNNNN suffix, then the base POI id; else the tile has no still."""
    for key in still_lookup_keys(tile.tile_stem):
        if key in stills:
            path, index = stills[key]
            return tile.with_fields(still_src=join_path(input_root, path), still_stem=key, still_index=index)
    return tile


@dataclass
class JoinStills(beam.PTransform):
    """Give each tile its overhead still, looked up in the index of stills that exist: one entry per still
    (at most one per place, so some 100 bytes per base), the one index a build hands to every worker.
    ``index`` carries it on, for the manifest's stills file."""

    input_root: str
    previous_stills: str = ""  # the earlier build's manifest of stills (--previous), whose slots are kept

    def expand(self, inputs):
        tiles, still_refs, still_files = inputs
        found = ({"refs": still_refs, "files": still_files}
                 | "CoGroupStills" >> beam.CoGroupByKey()
                 | "Resolve" >> beam.FlatMap(_resolve_still).with_outputs(REJECTS, main="found"))
        previous = self.previous_stills
        index = (found.found
                 | "Collect" >> beam.combiners.ToList()
                 | "Index" >> beam.Map(lambda f: index_stills(f, _previous_still_slots(previous))))
        root = self.input_root
        joined = tiles | "Lookup" >> beam.Map(lambda t, s: lookup_still(t, s, root), beam.pvalue.AsSingleton(index))
        return {"tiles": joined, REJECTS: found[REJECTS], "index": index}
