"""Tiles whose ground another split shows too, in a build or a mix of builds (splits.footprints has the rules);
the groups of bases joined by shared ground that --split-unit ground keeps in one split; and the tiles
--shared-ground drop rejects so that no two splits show one ground (FindGroundConflicts: a build's new tiles,
or the tiles of a mix's builds, whose rows the mix then leaves out).

The count runs on the manifest records of the tiles as written, each with its final split and footprint: a
rebuild's unchanged tiles keep theirs, so the check covers what a reader of the output gets, not what this run
placed, and a mix reads the same records from its sources' manifests. Only a stem, a split and four numbers
per tile cross the grouping on the cell. Gathered in one place: the few examples the report quotes, and for
metadata/shared_ground.jsonl one small record per validation or test tile on shared ground.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import fileio
from transforms.ids import stable_uint64
from transforms.output.tree import PLACES_FILE, SHARED_GROUND_FILE
from transforms.paths import base_poi_id, join_path
from transforms.records import reject
from transforms.splits.footprints import (
    as_box,
    as_written,
    cell_boxes,
    encode_footprints,
    encode_held_out,
    encode_places,
    first_pairs,
    footprint_files_for,
    footprints_file,
    ground_conflicts_in_cell,
    ground_groups,
    ground_links_in_cell,
    pairs_in_cell,
    place_cells,
    same_ground_links,
    tile_footprint,
)

EXAMPLES = 10  # pairs quoted in build_report.json, the first in sorted order
KIND = "shared_ground"


class _CellsFn(beam.DoFn):
    """A manifest record -> (cell, (stem, split, footprint)) for each cell its footprint touches; a tile with
    rows but no usable footprint is counted, since it was not checked."""

    def __init__(self):
        self.unchecked = Metrics.counter("FindSharedGround", "tiles_without_footprint")

    def process(self, record) -> Iterator[Any]:  # cells, and count events tagged "unchecked"
        box = as_box(record.get("footprint"))
        cells = cell_boxes(box) if box else []
        if not cells:
            self.unchecked.inc()
            yield beam.pvalue.TaggedOutput("unchecked", {f"{KIND}|tiles_without_footprint": 1})
            return
        for cell, here in cells:
            yield cell, (record["stem"], record["split"], here)


def _tiles_of(group) -> list[tuple[str, str]]:
    """(stem, split) of every tile on either side of a pair of footprints."""
    return [*((stem, group[1]) for stem in group[0]), *((stem, group[3]) for stem in group[2])]


def _held_out_sides(group) -> list[tuple[tuple[str, str], int]]:
    """((stem, split), tiles of the other side) for every held-out tile of a pair of footprints."""
    side_a, split_a, side_b, split_b, _ = group
    return [((stem, split), len(other)) for side, split, other in ((side_a, split_a, side_b), (side_b, split_b, side_a))
            if split != "train" for stem in side]


def _write_held_out(found: list, root: str) -> list[dict[str, int]]:
    if not found:
        return []  # nothing shares ground: no file (a reader tells the two apart by the report)
    fileio.write_bytes(join_path(root, SHARED_GROUND_FILE), encode_held_out(found))
    return [{"shared_ground_files_written": 1}]


def _pair_events(group) -> dict[str, int]:
    return {f"{KIND}|pairs|{group[1]}|{group[3]}": len(group[0]) * len(group[2])}


def _example_events(pairs) -> list[dict[str, int]]:
    return [{f"{KIND}|example|" + "\t".join([*map(str, p[:4]), f"{p[4]:.3f}"]): 1} for p in pairs]


@dataclass
class FindSharedGround(beam.PTransform):
    """Manifest records of the tiles with rows ({"stem", "split", "footprint"}: the build's, made and taken, or a
    mix's with the stem named by its source), one PCollection or several -> {"events": count events: pairs of
    tiles in different splits that share ground (``shared_ground|pairs|<split>|<split>``), the tiles of each
    split in such a pair (``shared_ground|tiles|<split>``), tiles not checked, the first pairs as examples;
    "held_out": ((stem, split), tiles of other splits it shares ground with) per validation and test tile}."""

    def expand(self, records):
        if isinstance(records, tuple):
            records = records | "AllRecords" >> beam.Flatten()
        placed = records | "Cells" >> beam.ParDo(_CellsFn()).with_outputs("unchecked", main="members")
        pairs = (placed.members  # pairs of footprints, with the tiles on each side
                 | "GroupByCell" >> beam.GroupByKey()
                 | "PairsInCell" >> beam.FlatMapTuple(pairs_in_cell))
        tiles_in_pairs = (pairs
                          | "PairTiles" >> beam.FlatMap(_tiles_of)
                          | "EachTileOnce" >> beam.Distinct()
                          | "TileEvents" >> beam.Map(lambda t: {f"{KIND}|tiles|{t[1]}": 1}))
        examples = (pairs
                    | "PairsOfTiles" >> beam.FlatMap(first_pairs, EXAMPLES)
                    | "FirstPairs" >> beam.combiners.Top.Smallest(EXAMPLES)
                    | "ExampleEvents" >> beam.FlatMap(_example_events))
        held_out = (pairs
                    | "HeldOutSides" >> beam.FlatMap(_held_out_sides)
                    | "OtherTilesPerTile" >> beam.CombinePerKey(sum))
        events = ((pairs | "PairEvents" >> beam.Map(_pair_events), tiles_in_pairs, examples, placed.unchecked)
                  | "SharedGroundEvents" >> beam.Flatten())
        return {"events": events, "held_out": held_out}


@dataclass
class WriteSharedGround(beam.PTransform):
    """((stem, split), other-split tiles) of the held-out tiles on shared ground -> metadata/shared_ground.jsonl,
    for `satsft eval` to score the rows on ground no other split shows apart. Gathered in one place: at most
    one small record per validation or test tile."""

    root: str

    def expand(self, held_out):
        return (held_out
                | "Gather" >> beam.combiners.ToList()
                | "Write" >> beam.FlatMap(_write_held_out, self.root))


def _write_places(links: list[tuple[str, str]], root: str, readers: dict[str, tuple[str, ...]]
                  ) -> list[dict[str, int]]:
    groups = ground_groups(links)
    if not groups:
        return []  # no two bases on the same ground: no file (the report says whether one was written)
    fileio.write_bytes(join_path(root, PLACES_FILE), encode_places(groups, readers))
    return [{"places_files_written": 1}]


@dataclass
class WriteMixPlaces(beam.PTransform):
    """A mix's manifest-like records ({"stem": <first source reading the build>/<stem>, "footprint"}) ->
    metadata/places.jsonl: the bases whose tiles show the same ground (footprints.SAME_GROUND_SHARE), under the
    name of every source reading their build, so that `satsft eval` draws a chip's views and dates as one place
    in a mix as it does in a build (whose manifest it reads; a mix keeps none). Gathered in one place: the
    links, at most one per base on the same ground as another."""

    root: str
    readers: dict[str, tuple[str, ...]]

    def expand(self, records):
        return (records
                | "PlaceCells" >> beam.FlatMap(place_cells)
                | "GroupByCell" >> beam.GroupByKey()
                | "SameGroundLinks" >> beam.FlatMapTuple(same_ground_links)
                | "AllLinks" >> beam.combiners.ToList()
                | "Write" >> beam.FlatMap(_write_places, self.root, self.readers))


def _listed(element) -> list[dict[str, Any]]:
    """A tile's name with the sources its rows came through and its records -> a footprint line per source;
    none for a tile whose footprint is unknown (a mix of this mix counts it as not checked, as this one did)."""
    _, parts = element
    boxes = sorted(b for b in (as_box(r.get("footprint")) for r in parts["record"]) if b is not None)
    if not boxes:
        return []
    return [{"source": source, "stem": stem, "split": split, "footprint": as_written(boxes[0])}
            for source, stem, split in sorted(set(parts["tile"]))]


def _to_file(record: dict[str, Any], listed: int) -> tuple[tuple[int, int], dict[str, Any]]:
    n = footprint_files_for(listed)
    return (stable_uint64("footprints", record["source"], record["stem"]) % n, n), record


def _write_footprints(grouped, root: str) -> dict[str, int]:
    file, records = grouped
    fileio.write_bytes(join_path(root, footprints_file(*file)), encode_footprints(records))
    return {"footprint_files_written": 1}


@dataclass
class WriteMixFootprints(beam.PTransform):
    """{"tiles": ListTilesWithRows' (name, (source, stem, split)), "records": ReadMixTileRecords' records} ->
    metadata/footprints/footprints-*.jsonl, a line per tile with rows in this mix and a known footprint, under
    the source each row names: so that a mix of this mix checks its ground as this one checked its builds'
    (a mix keeps no manifest). Files of up to FOOTPRINTS_PER_FILE lines, each tile's by a stable hash of its
    name: nothing is gathered in one place, and the same tiles give the same files."""

    root: str

    def expand(self, parts):
        keyed = parts["records"] | "KeyByName" >> beam.Map(lambda r: (r["stem"], r))
        listed = ({"tile": parts["tiles"], "record": keyed}
                  | "JoinRecords" >> beam.CoGroupByKey()
                  | "Lines" >> beam.FlatMap(_listed))
        count = listed | "CountLines" >> beam.combiners.Count.Globally()
        return (listed
                | "ToFile" >> beam.Map(_to_file, beam.pvalue.AsSingleton(count))
                | "GroupByFile" >> beam.GroupByKey()
                | "Write" >> beam.Map(_write_footprints, self.root))


def base_cells(keyed) -> list[tuple[tuple[int, int], tuple[str, tuple]]]:
    """(stem, tile) as ReadSidecars keys it -> (cell, (base, footprint)) per cell its footprint touches; none
    for a tile without one (it stays with its base alone)."""
    stem, tile = keyed
    box = tile_footprint(tile)
    return [(cell, (base_poi_id(stem), here)) for cell, here in cell_boxes(box)] if box is not None else []


def _group_events(groups: dict[str, str]) -> dict[str, int]:
    if not groups:
        return {}
    sizes: dict[str, int] = {}
    for group in groups.values():
        sizes[group] = sizes.get(group, 0) + 1
    return {"ground_groups": len(sizes), "bases_joined_by_ground": len(groups),
            "ground_largest_group_bases": max(sizes.values())}


@dataclass
class JoinBasesOnSharedGround(beam.PTransform):
    """(tiles as read, keyed by stem) -> {"groups": (base, group) for every base POI whose tiles share ground
    with another base's (``--split-unit ground``: AssignSplits then keeps each group in one split, as it keeps
    a base), "events": how many groups and bases}. Each cell sends on only the links that join its bases, so
    the links gathered in one place number at most the bases per cell summed over cells, whatever the overlap."""

    def expand(self, tiles):
        groups = (tiles
                  | "BaseCells" >> beam.FlatMap(base_cells)
                  | "GroupByCell" >> beam.GroupByKey()
                  | "LinksInCell" >> beam.FlatMapTuple(ground_links_in_cell)
                  | "AllLinks" >> beam.combiners.ToList()
                  | "Groups" >> beam.Map(ground_groups))
        return {"groups": groups | "EachBase" >> beam.FlatMap(lambda g: sorted(g.items())),
                "events": groups | "GroupEvents" >> beam.Map(_group_events)}


DROP_REASON = "split_shared_ground"


def record_cells(record: dict[str, Any]) -> list[tuple[tuple[int, int], tuple[str, str, tuple, bool]]]:
    """A manifest-like record ({"stem", "split", "footprint"}) -> (cell, (stem, split, footprint, kept=False))
    per cell its footprint touches, as FindGroundConflicts takes them; none without a usable footprint."""
    box = as_box(record.get("footprint"))
    return [(cell, (record["stem"], record["split"], here, False)) for cell, here in cell_boxes(box)] if box else []


@dataclass
class FindGroundConflicts(beam.PTransform):
    """(cell, (stem, split, footprint, kept)) of every tile -> (stem, (a tile of another split it shares ground
    with, that tile's split)) for each tile --shared-ground drop rejects (footprints.ground_conflicts_in_cell
    says which of a pair goes), the first such tile in sorted order as the witness its reason names.
    ``by_split``: keyed (stem, split) instead, for a mix, whose rows name a tile <source>/<stem>: a mix of a
    mix can hold two tiles of one stem from two builds, in two splits, and only one of them may have to go."""

    by_split: bool = False

    def expand(self, cells):
        by_split = self.by_split
        return (cells
                | "GroupByCell" >> beam.GroupByKey()
                | "ConflictsInCell" >> beam.FlatMapTuple(ground_conflicts_in_cell)
                | "ByStem" >> beam.Map(lambda c: ((c[0], c[3]) if by_split else c[0], (c[1], c[2])))
                | "FirstWitness" >> beam.CombinePerKey(min))


def _conflict_cells(tile, kept: bool) -> list[tuple[tuple[int, int], tuple[str, str, tuple, bool]]]:
    box = tile_footprint(tile)
    return ([(cell, (tile.tile_stem, tile.split, here, kept)) for cell, here in cell_boxes(box)] if box is not None
            else [])


class _KeepOrRejectFn(beam.DoFn):
    def __init__(self):
        self.dropped = Metrics.counter("KeepGroundApart", "dropped_split_shared_ground")

    def process(self, element):
        stem, parts = element
        witnesses = sorted(parts["drop"])
        for tile in parts["tile"]:
            if not witnesses:
                yield tile
                continue
            other, split = witnesses[0]
            self.dropped.inc()
            yield beam.pvalue.TaggedOutput("rejects", reject(
                tile.source, stem, "split", DROP_REASON,
                f"{tile.split} tile sharing ground with {split} tile {other} (--shared-ground drop)"))


@dataclass
class KeepGroundApart(beam.PTransform):
    """--shared-ground drop: the new tiles, their splits assigned -> {"tiles": those that share no ground with
    a tile of another split, "rejects": the others (``split_shared_ground``)}. Of two new tiles on one ground the
    one of the earlier split goes (train before validation before test: the held-out splits keep their tiles);
    a tile a rebuild keeps (``kept``: unchanged and changed tiles, with their splits) never goes, so against one
    the new tile goes. Tiles without a footprint are kept (the build counts them as not checked)."""

    kept: beam.PCollection | None = None

    def expand(self, tiles):
        cells = [tiles | "NewCells" >> beam.FlatMap(_conflict_cells, False)]
        if self.kept is not None:
            cells.append(self.kept | "KeptCells" >> beam.FlatMap(_conflict_cells, True))
        drops = cells | "AllCells" >> beam.Flatten() | "FindGroundConflicts" >> FindGroundConflicts()
        out = ({"tile": tiles | "KeyByStem" >> beam.Map(lambda t: (t.tile_stem, t)), "drop": drops}
               | "JoinOnStem" >> beam.CoGroupByKey()
               | "KeepOrReject" >> beam.ParDo(_KeepOrRejectFn()).with_outputs("rejects", main="tiles"))
        return {"tiles": out.tiles, "rejects": out.rejects}
