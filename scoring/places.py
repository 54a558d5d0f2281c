"""What one draw of a bootstrap takes whole (scoring.intervals): a place. A place is a base POI: its tiles
(views, dates) show one ground and go to one split together, and the rows of one tile share its chip and labels.
Bases whose tiles show the same ground are one place too: two views of one chip filed under two stems (the
real fixture's ``_orig`` and ``_flip``, whose stems carry no ``poi_`` prefix), or two dates of it under two POI
ids. Drawn apart, they are counted as independent when they are not, and the interval claims more certainty
than the data holds. The same ground is SAME_GROUND of the smaller footprint: a view or a date of one chip covers
all of it, while neighbours of a scene cut with overlapping windows (every half chip, as `satsft sample --real`
cuts by default) share a half sideways and a quarter across, and joining those would chain a whole scene into
one place with no interval. Such neighbours stay apart, so intervals on trees cut that way are still somewhat
narrower than they should be. The footprints come from a build's manifest; a mix keeps none, so its places are
base POIs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from transforms.output.tree import MANIFEST_DIR, OutputTree
from transforms.paths import base_poi_id
from transforms.rebuild.manifest import is_tiles_file
from transforms.splits.footprints import as_box, cells_of, ground_groups, ground_links_in_cell

SAME_GROUND = 0.75  # share of the smaller footprint two tiles must both cover to count as one place
Joined = dict[str, str]  # base POI -> the place it is part of (ground_joined), for bases sharing ground only


def place_of(row: dict[str, Any], joined: Joined | None = None) -> str:
    """What a row is resampled with: the base POI of its tile, or the place it shares ground with; rows of
    foreign sources, without a tile, each on their own."""
    stem = row.get("tile_stem")
    if not stem:
        return row["sample_id"]
    base = base_poi_id(stem)
    return joined.get(base, base) if joined else base


def rows_by_place(rows: list[dict[str, Any]], joined: Joined | None = None) -> list[list[dict[str, Any]]]:
    """The rows grouped by place_of, the groups in sorted order of their places."""
    by_place: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_place[place_of(r, joined)].append(r)
    return [by_place[key] for key in sorted(by_place)]


def ground_joined(footprints: dict[str, Any]) -> Joined:
    """tile stem -> footprint (as a manifest records it; None or damaged: the tile stays with its base) ->
    base -> place for every base whose tiles show the same ground as another base's (an overlap of at least
    SAME_GROUND of the smaller footprint), the place named by the first base of its group in sorted order. A
    pure function of the mapping."""
    by_cell: dict[tuple[int, int], list[tuple[str, Any]]] = defaultdict(list)
    for stem, given in footprints.items():
        box = as_box(given)
        for cell in cells_of(box) if box is not None else ():
            by_cell[cell].append((base_poi_id(stem), box))
    return ground_groups(link for cell in sorted(by_cell)
                         for link in ground_links_in_cell(cell, by_cell[cell], SAME_GROUND))


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


def places_of_tiles(tree: OutputTree, stems: set[str]) -> Joined:
    """ground_joined over the footprints of ``stems`` in the build at ``tree``."""
    return ground_joined(tile_footprints(tree, stems))
