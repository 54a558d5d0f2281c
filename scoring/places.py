"""What one draw of a bootstrap takes whole (scoring.intervals): a place. A place is a base POI: its tiles
(views, dates) show one ground and go to one split together, and the rows of one tile share its chip and labels.
Bases whose tiles show the same ground are one place too: two views of one chip filed under two stems (the
real fixture's ``_orig`` and ``_flip``, whose stems carry no ``poi_`` prefix), or two dates of it under two POI
ids. Drawn apart, they are counted as independent when they are not, and the interval claims more certainty
than the data holds. The same ground is footprints.SAME_GROUND_SHARE of the smaller footprint: a view or a date
of one chip covers all of it, while neighbours of a scene cut with overlapping windows (every half chip, as
`satsft sample --real` cuts by default) share a half sideways and a quarter across, and joining those would
chain a whole scene into one place with no interval. Such neighbours stay apart, so intervals on trees cut that
way are still somewhat narrower than they should be: neighbouring_places counts them, and eval says so. A
build's footprints come from its manifest; a mix keeps none, and writes the bases it finds on the same ground to
metadata/places.jsonl instead (a mix from before that file: base POIs).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from transforms.mix.rows import tile_key
from transforms.output.tree import MANIFEST_DIR, PLACES_FILE, OutputTree
from transforms.paths import base_poi_id
from transforms.rebuild.manifest import is_tiles_file
from transforms.splits.footprints import (
    MIN_SHARE,
    as_box,
    cell_boxes,
    ground_groups,
    ground_links_in_cell,
    read_places,
    same_ground_links,
)

# base POI (in a mix <source>/<base POI>) -> the place it is part of, for bases on the same ground only
Joined = dict[str, str]


def place_of(row: dict[str, Any], joined: Joined | None = None) -> str:
    """What a row is resampled with: the base POI of its tile, or the place it shares ground with; rows of
    foreign sources, without a tile, each on their own."""
    stem = row.get("tile_stem")
    if not stem:
        return row["sample_id"]
    base = base_poi_id(stem)
    if not joined:
        return base
    # a mix's row: its places are named by the sources that carried it there (tile_key), then the base
    carried = tile_key({**(row.get("metadata") or {}), "tile_stem": stem}).rpartition("/")[0]
    return joined.get(f"{carried}/{base}" if carried else base, base)


def rows_by_place(rows: list[dict[str, Any]], joined: Joined | None = None) -> list[list[dict[str, Any]]]:
    """The rows grouped by place_of, the groups in sorted order of their places."""
    by_place: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_place[place_of(r, joined)].append(r)
    return [by_place[key] for key in sorted(by_place)]


def _by_cell(footprints: dict[str, Any], name_of: Any) -> dict[tuple[int, int], list[tuple[str, Any]]]:
    """cell -> (name_of(base POI), the footprint's part in the cell) of every tile with a usable footprint."""
    by_cell: dict[tuple[int, int], list[tuple[str, Any]]] = defaultdict(list)
    for stem, given in footprints.items():
        box = as_box(given)
        for cell, here in cell_boxes(box) if box is not None else ():
            by_cell[cell].append((name_of(base_poi_id(stem)), here))
    return by_cell


def neighbouring_places(footprints: dict[str, Any], joined: Joined) -> int:
    """How many places share ground with another place (a tenth of the smaller footprint, as the build's split
    check counts it) without being one with it: neighbours of a scene cut with overlapping windows. Their rows
    are not independent draws either, so where there are such places the intervals over places are narrower
    than they should be (on the real fixture, drawing blocks of neighbours instead widened the map interval by
    10-30%); eval says so under its table. A pure function of its arguments."""
    by_cell = _by_cell(footprints, lambda base: joined.get(base, base))
    return len(ground_groups(link for cell in sorted(by_cell)
                             for link in ground_links_in_cell(cell, by_cell[cell], MIN_SHARE)))


def ground_joined(footprints: dict[str, Any]) -> Joined:
    """tile stem -> footprint (as a manifest records it; None or damaged: the tile stays with its base) ->
    base -> place for every base whose tiles show the same ground as another base's (an overlap of at least
    SAME_GROUND_SHARE of the smaller footprint), the place named by the first base of its group in sorted order. A
    pure function of the mapping."""
    by_cell = _by_cell(footprints, lambda base: base)
    return ground_groups(link for cell in sorted(by_cell) for link in same_ground_links(cell, by_cell[cell]))


def tile_footprints(tree: OutputTree, stems: set[str]) -> dict[str, Any]:
    """tile stem -> footprint as the build's manifest records it, for the tiles of ``stems``; empty for a mix
    (it keeps no manifest) or a build from before manifests. A manifest line that does not parse is passed
    over (its tile stays with its base; `satsft validate` names the damage)."""
    found: dict[str, Any] = {}
    for rel in tree.under(MANIFEST_DIR):
        if not is_tiles_file(rel):
            continue
        for line in tree.read(rel).splitlines():
            try:
                record = orjson.loads(line)
                stem = record["stem"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if stem in stems:
                found[stem] = record.get("footprint")
    return found


def places_and_neighbours(tree: OutputTree, stems: set[str]) -> tuple[Joined, int]:
    """ground_joined over the footprints of ``stems`` in the build at ``tree``, and neighbouring_places of the
    same footprints (read once)."""
    footprints = tile_footprints(tree, stems)
    joined = ground_joined(footprints)
    return joined, neighbouring_places(footprints, joined)


NEIGHBOURS_NOTE = ("{n} of the {total} places share ground with a neighbouring place (chips cut with overlapping "
                   "windows): their rows are not independent draws either, so these intervals are narrower than "
                   "they should be")


def mix_places(tree: OutputTree, written: bool) -> Joined:
    """A mix's metadata/places.jsonl (<source>/<base> -> place), read where its report says it was written (a
    file left by another run is not read); {} where none was."""
    return read_places(tree.read(PLACES_FILE)) if written and tree.isfile(PLACES_FILE) else {}
