"""Which tiles of different splits show the same ground, which bases it joins (--split-unit ground) and which
new tile of a pair goes (--shared-ground drop) (pure; the Beam stages are in splits.shared_ground).

Splits are kept apart by place: every tile of a base POI goes to one split. Chips cut from a scene with
overlapping windows (a stride under the chip size, as producers cut more chips from few scenes), or one place
filed under two POI ids, put the same pixels of ground under two places, and hashing places into splits then
puts half of some held-out chips into training. Nothing in a tile's POI id tells; its footprint does.

A footprint is the sidecar's ``bbox_wgs84`` (min lon, min lat, max lon, max lat) or, without one, a square
around ``latitude`` / ``longitude`` of ``output_size`` x ``grid.resolution_m`` metres. Two footprints share
ground when their overlap covers at least ``MIN_SHARE`` of the smaller one: the axis-aligned WGS84 box of a
UTM chip is a few percent larger than the chip (grid convergence, up to about 3 degrees), so chips that only
touch overlap by that much in their boxes and must not count. Tiles are compared within cells of
``CELL_DEG`` degrees; a pair is counted in the one cell holding the south-west corner of its overlap.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import orjson

from transforms.output.tree import FOOTPRINTS_DIR
from transforms.paths import base_poi_id

CELL_DEG = 0.1  # about 11 km: a 224 px chip at 10 m (2.2 km) touches at most 4 cells
MAX_CELLS = 64  # a footprint over 8 x 8 cells (some 90 km) is no chip: such a tile is not compared
MIN_SHARE = 0.1
# Two tiles show the same ground (one place, for `satsft eval`'s draws: scoring.places) at this share of the
# smaller footprint: a view or a date of one chip covers all of it, neighbours cut every half chip a half.
SAME_GROUND_SHARE = 0.75
FOOTPRINTS_PER_FILE = 50_000  # a mix's footprint list: about 6 MB of JSONL per file
METRES_PER_DEGREE = 111_320.0
SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}
WRAP_REACH_DEG = MAX_CELLS * CELL_DEG  # the farthest a footprint across the antimeridian reaches past 180

Box = tuple[float, float, float, float]  # min lon, min lat, max lon, max lat
Member = tuple[str, str, Box]  # tile stem, split, footprint
Pair = tuple[str, str, str, str, float]  # stem and split of one tile, of the other (in split order), share
GroupPair = tuple[tuple[str, ...], str, tuple[str, ...], str, float]  # the same with every tile of each side


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _edges(given: Any) -> Box | None:
    """Four finite numbers, as a tuple; None for anything else."""
    if isinstance(given, (list, tuple)) and len(given) == 4:
        edges = tuple(_number(v) for v in given)
        if None not in edges:
            return edges  # type: ignore[return-value]
    return None


def as_box(given: Any) -> Box | None:
    """A (min lon, min lat, max lon, max lat) box that names an area, as a tuple; None for anything else. A box
    across the antimeridian, which GeoJSON writes west > east, comes back unwrapped: its east edge past 180
    (east + 360), so it is one box with an area, and every test of overlap holds for it as written."""
    edges = _edges(given)
    if edges is None or not (-90 <= edges[1] < edges[3] <= 90 and -180 <= min(edges[0], edges[2])
                             and max(edges[0], edges[2]) <= 180):
        return None
    if edges[0] < edges[2]:
        return edges
    if edges[2] < edges[0] and edges[2] + 360 - edges[0] < 180:  # wider: edges swapped, not a box across
        # west at 180 itself: the box lies east of -180, as one box of this side
        return (edges[0], edges[1], edges[2] + 360, edges[3]) if edges[0] < 180 else (-180, *edges[1:])
    return None


def as_written(box: Box) -> list[float]:
    """A footprint as a manifest or a mix's footprint list records it: GeoJSON's box (west > east across the
    antimeridian), which as_box reads back."""
    return [box[0], box[1], box[2] - 360 if box[2] > 180 else box[2], box[3]]


def footprint(extra: dict[str, Any], latitude: float | None, longitude: float | None, size: int) -> Box | None:
    """The ground a tile shows, in degrees; None when its sidecar does not say (or says nonsense). A chip across
    the antimeridian (UTM zones 1 and 60: Fiji, Chukotka, the Aleutians) is one box whose east edge lies past
    180 (as_box); cell_boxes compares it with the tiles on both sides of the line."""
    box = as_box(extra.get("bbox_wgs84"))
    if box is not None:
        return box
    grid = extra.get("grid")
    metres = _number(grid.get("resolution_m")) if isinstance(grid, dict) else None
    lat, lon = _number(latitude), _number(longitude)
    if (metres is None or metres <= 0 or lat is None or lon is None or abs(lat) >= 89.9 or abs(lon) > 180
            or size <= 0):
        return None
    half = size * metres / 2
    dlat = half / METRES_PER_DEGREE
    dlon = half / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
    if dlon >= 180 or not -90 <= lat - dlat < lat + dlat <= 90:
        return None
    west = lon - dlon if lon - dlon >= -180 else lon - dlon + 360  # past -180: the same box, unwrapped
    if west >= 180:
        west -= 360
    return west, lat - dlat, west + 2 * dlon, lat + dlat


def tile_footprint(tile: Any) -> Box | None:
    """footprint of a parsed sidecar (transforms.input.sidecars.Tile)."""
    return footprint(tile.extra, tile.latitude, tile.longitude, tile.size)


def cells_of(box: Box) -> list[tuple[int, int]]:
    """The cells a footprint touches; [] for one too large to be a chip."""
    i0, i1 = math.floor(box[0] / CELL_DEG), math.floor(box[2] / CELL_DEG)
    j0, j1 = math.floor(box[1] / CELL_DEG), math.floor(box[3] / CELL_DEG)
    if (i1 - i0 + 1) * (j1 - j0 + 1) > MAX_CELLS:
        return []
    return [(i, j) for i in range(i0, i1 + 1) for j in range(j0, j1 + 1)]


def cell_boxes(box: Box) -> list[tuple[tuple[int, int], Box]]:
    """(cell, footprint as compared there) for each cell a footprint touches; [] for one too large to be a
    chip. A chip across the antimeridian reaches past 180 (as_box); a chip near -180 is therefore also
    compared there, moved by 360 degrees (a copy: two copies are never a pair, _overlaps), so the two meet."""
    cells = cells_of(box)
    if not cells:
        return []
    found = [(cell, box) for cell in cells]
    if box[0] < -180 + WRAP_REACH_DEG:
        moved = (box[0] + 360, box[1], box[2] + 360, box[3])
        found += [(cell, moved) for cell in cells_of(moved)]
    return found


def shared_share(a: Box, b: Box) -> tuple[float, float, float]:
    """(share of the smaller footprint both cover, west and south edges of the overlap)."""
    west, south = max(a[0], b[0]), max(a[1], b[1])
    width, height = min(a[2], b[2]) - west, min(a[3], b[3]) - south
    if width <= 0 or height <= 0:
        return 0.0, west, south
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height / smaller, west, south


def _overlaps(boxes: np.ndarray, codes: np.ndarray, cell: tuple[int, int], min_share: float = MIN_SHARE
              ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """For each footprint n of ``boxes`` (sorted by west edge), the later ones of another code that share
    ground with it (at least ``min_share`` of the smaller), counted here only where the overlap's south-west
    corner lies in ``cell``, and their shares. A sweep: each footprint meets only those whose west edge lies
    before its east edge."""
    reach = np.searchsorted(boxes[:, 0], boxes[:, 2], side="left")  # first footprint starting at or past the east edge
    for n in range(len(boxes)):
        later = np.arange(n + 1, reach[n])
        later = later[codes[later] != codes[n]]
        if boxes[n, 0] >= 180:  # two copies moved past 180 (cell_boxes) were compared where they lie
            later = later[boxes[later, 0] < 180]
        if not later.size:
            continue
        other = boxes[later]
        west, south = np.maximum(boxes[n, 0], other[:, 0]), np.maximum(boxes[n, 1], other[:, 1])
        width = np.minimum(boxes[n, 2], other[:, 2]) - west
        height = np.minimum(boxes[n, 3], other[:, 3]) - south
        area = (boxes[n, 2] - boxes[n, 0]) * (boxes[n, 3] - boxes[n, 1])
        smaller = np.minimum(area, (other[:, 2] - other[:, 0]) * (other[:, 3] - other[:, 1]))
        share = np.where((width > 0) & (height > 0), width * np.maximum(height, 0) / smaller, 0.0)
        here = (np.floor(west / CELL_DEG) == cell[0]) & (np.floor(south / CELL_DEG) == cell[1])
        found = np.flatnonzero((share >= min_share) & here)
        if found.size:
            yield n, later[found], share[found]


def _sweep_order(groups: dict) -> tuple[list, np.ndarray, np.ndarray]:
    """Footprint groups keyed (box, split, ...) -> (keys sorted by west edge, as the sweep needs; their boxes;
    their split codes)."""
    keys = sorted(groups)
    return (keys, np.array([k[0] for k in keys], dtype=np.float64).reshape(-1, 4),
            np.array([SPLIT_ORDER.get(k[1], 3) for k in keys]))


def pairs_in_cell(cell: tuple[int, int], members: Iterable[Member]) -> Iterator[GroupPair]:
    """Every pair of footprints of different splits that share ground, counted in this cell only if the
    overlap's south-west corner lies in it, with the tiles on each side. Tiles with one footprint and split
    (views of one place, dates of one place) are one side together: a place with thousands of dates in train
    beside one with thousands in test is one comparison and one answer, not millions of pairs."""
    groups: dict[tuple[Box, str], list[str]] = {}
    for stem, split, box in members:
        groups.setdefault((tuple(box), split), []).append(stem)
    keys, boxes, codes = _sweep_order(groups)
    for n, later, shares in _overlaps(boxes, codes, cell):
        for m, share in zip(later, shares, strict=True):
            a, b = keys[n], keys[int(m)]
            (_, first, split_first), (_, second, split_second) = sorted(
                (SPLIT_ORDER.get(split, 3), tuple(sorted(groups[key])), split)
                for key, split in ((a, a[1]), (b, b[1])))
            yield first, split_first, second, split_second, round(float(share), 3)


def ground_conflicts_in_cell(cell: tuple[int, int], members: Iterable[tuple[str, str, Box, bool]]
                             ) -> Iterator[tuple[str, str, str, str]]:
    """--shared-ground drop: (stem to drop, a tile of another split it shares ground with, that tile's split,
    the split of the tile to drop) for the pairs counted in this cell (as pairs_in_cell counts them).
    ``members`` are (stem, split, footprint, kept): a tile a rebuild keeps is never dropped, so of a pair with
    one it is the new tile that goes; of two new tiles, the one of the split that comes first (train before
    validation before test), so the held-out splits keep their tiles and train loses the ground they show; of
    two kept tiles, neither (the build counts them)."""
    groups: dict[tuple[Box, str, bool], list[str]] = {}
    for stem, split, box, kept in members:
        groups.setdefault((tuple(box), split, bool(kept)), []).append(stem)
    keys, boxes, codes = _sweep_order(groups)
    for n, later, _ in _overlaps(boxes, codes, cell):
        for m in later:
            a, b = keys[n], keys[int(m)]
            if a[2] and b[2]:
                continue
            if a[2] or b[2]:
                drop, other = (b, a) if a[2] else (a, b)
            else:
                drop, other = sorted((a, b), key=lambda k: SPLIT_ORDER.get(k[1], 3))
            witness = min(groups[other])
            for stem in groups[drop]:
                yield stem, witness, other[1], drop[1]


def ground_links_in_cell(cell: tuple[int, int], members: Iterable[tuple[str, Box]],
                         min_share: float = MIN_SHARE) -> Iterator[tuple[str, str]]:
    """(base, base) links that join every base POI of this cell to the others whose tiles share ground with
    it (at least ``min_share`` of the smaller footprint; overlaps counted in this cell, as pairs_in_cell counts
    them): a base and the first of its connected bases here, so a cell yields fewer links than it has bases,
    however densely its chips overlap."""
    keys = sorted({(tuple(box), base) for base, box in members})
    if len(keys) < 2:
        return
    names = sorted({base for _, base in keys})
    code_of = {base: i for i, base in enumerate(names)}
    boxes = np.array([k[0] for k in keys], dtype=np.float64)
    codes = np.array([code_of[k[1]] for k in keys])
    parent = list(range(len(names)))
    for n, later, _ in _overlaps(boxes, codes, cell, min_share):
        for m in later:
            _union(parent, int(codes[n]), int(codes[int(m)]))
    for i in range(len(names)):
        root = _find(parent, i)
        if root != i:
            yield names[i], names[root]


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _union(parent: list[int], a: int, b: int) -> None:
    """Join two sets under the smaller index (the first name in sorted order)."""
    ra, rb = _find(parent, a), _find(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)


def ground_groups(links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """base -> its group (the first base in sorted order of the bases joined to it, directly or through
    others, by shared ground), for every base in a group of two or more. A pure function of the set of links."""
    links = list(links)
    names = sorted({name for link in links for name in link})
    index = {name: i for i, name in enumerate(names)}
    parent = list(range(len(names)))
    for a, b in links:
        _union(parent, index[a], index[b])
    return {name: names[_find(parent, i)] for i, name in enumerate(names)}


def first_pairs(group: GroupPair, n: int) -> list[Pair]:
    """The first ``n`` tile pairs of a group pair, in sorted order (each side is sorted)."""
    side_a, split_a, side_b, split_b, share = group
    return [(a, split_a, b, split_b, share) for a, b in itertools.islice(itertools.product(side_a, side_b), n)]


def encode_held_out(found: list[tuple[tuple[str, str], int]]) -> bytes:
    """metadata/shared_ground.jsonl: a line per held-out tile on ground another split shows, by stem."""
    return b"".join(orjson.dumps({"stem": stem, "split": split, "other_split_tiles": n}, option=orjson.OPT_SORT_KEYS)
                    + b"\n" for (stem, split), n in sorted(found))


def read_held_out(data: bytes) -> dict[str, str]:
    """The file back: stem -> split."""
    return {r["stem"]: r["split"] for r in (orjson.loads(line) for line in data.splitlines() if line.strip())}


def place_cells(record: dict[str, Any]) -> list[tuple[tuple[int, int], tuple[str, Box]]]:
    """A mix's manifest-like record ({"stem": <source>/<tile_key>, "footprint"}) -> (cell, (<source>/<base POI>,
    footprint)) per cell its footprint touches, as ground_links_in_cell takes them; none without a footprint.
    A tile of an inner mix keeps the sources that carried it: <source>/<inner source>/.../<base POI>."""
    box = as_box(record.get("footprint"))
    if box is None:
        return []
    carried, _, stem = record["stem"].rpartition("/")
    return [(cell, (f"{carried}/{base_poi_id(stem)}" if carried else base_poi_id(stem), here))
            for cell, here in cell_boxes(box)]


def same_ground_links(cell: tuple[int, int], members: Iterable[tuple[str, Box]]) -> Iterator[tuple[str, str]]:
    """ground_links_in_cell at SAME_GROUND_SHARE: the bases that are one place."""
    return ground_links_in_cell(cell, members, SAME_GROUND_SHARE)


def encode_places(groups: dict[str, str], readers: dict[str, tuple[str, ...]]) -> bytes:
    """metadata/places.jsonl of a mix: a line per base on the same ground as another ({"base": <source>/<base>,
    "place"}), under the name of every source reading its build (a mix row names the source it came from)."""
    lines = []
    for name, place in groups.items():
        owner, _, base = name.partition("/")  # as place_cells named it: a source name holds no "/"
        lines += [{"base": f"{source}/{base}", "place": place} for source in readers.get(owner, (owner,))]
    return b"".join(orjson.dumps(line, option=orjson.OPT_SORT_KEYS) + b"\n"
                    for line in sorted(lines, key=lambda x: x["base"]))


def read_places(data: bytes) -> dict[str, str]:
    """The file back: <source>/<base> -> place."""
    return {r["base"]: r["place"] for r in (orjson.loads(line) for line in data.splitlines() if line.strip())}


def footprints_file(index: int, count: int) -> str:
    """File ``index`` of the ``count`` that hold a mix's footprint list (metadata/footprints/)."""
    return f"{FOOTPRINTS_DIR}/footprints-{index:05d}-of-{count:05d}.jsonl"


def is_footprints_file(rel: str) -> bool:
    head, _, name = rel.rpartition("/")
    return head == FOOTPRINTS_DIR and name.startswith("footprints-") and name.endswith(".jsonl")


def footprint_files_for(tiles: int) -> int:
    return max(1, -(-tiles // FOOTPRINTS_PER_FILE))


def encode_footprints(records: Iterable[dict[str, Any]]) -> bytes:
    """One file of a mix's footprint list: a line per tile with rows ({"source", "stem", "split", "footprint"}),
    sorted, keys sorted: the same tiles give the same bytes."""
    return b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n"
                    for r in sorted(records, key=lambda r: (r["source"], r["stem"], r["split"])))


def read_footprints(data: bytes) -> dict[str, Box]:
    """A file of the list back: <source>/<stem> -> footprint. A line without a source, a stem or a footprint
    that names an area raises (KeyError, TypeError), as `satsft validate` reports it."""
    out: dict[str, Box] = {}
    for line in data.splitlines():
        if not line.strip():
            continue
        record = orjson.loads(line)
        box = as_box(record["footprint"])
        if box is None or not isinstance(record["source"], str) or not isinstance(record["stem"], str):
            raise TypeError(f"not a footprint record: {line[:80]!r}")
        out[f"{record['source']}/{record['stem']}"] = box
    return out
