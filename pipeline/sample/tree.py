"""`satsft sample`: a realistic generated sat-bbox tree, deterministic per seed.

Each tile gets a spatially coherent Dynamic World label map (the argmax of smooth per-class noise weighted by
a biome), a chip that looks like a Sentinel-2 true-colour preview of it, class fractions and connected-patch
regions measured from the map itself, and a caption written from those numbers. Label maps are made on a
56x56 cell grid and upsampled x4, so region boxes are exact for the 224 px chip.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
from dataclasses import dataclass

import numpy as np
import orjson
from PIL import Image

from transforms.analysis.render import interp_matrix
from transforms.classes import CLASS_NAMES, NUM_CLASSES, PALETTE_RGB, display_name
from transforms.ids import stable_rng
from transforms.splits.plan import hashed_split

SIZE = 224
CELLS = 56
CELL_PX = SIZE // CELLS
MIN_REGION_CELLS = 3  # patches under 48 px are skipped, as connected-component labelling tools do
MAX_REGIONS = 16
FILES_PER_SHARD = 1000

# Sentinel-2 true-colour looks per class (RGB), darker and duller than the Dynamic World palette.
S2_COLOURS = np.array([
    (28, 52, 82), (38, 72, 40), (108, 134, 70), (70, 96, 86), (150, 140, 86), (124, 118, 80), (150, 146, 150),
    (168, 150, 124), (232, 236, 242)], dtype=np.float32)
BIOMES: dict[str, tuple[float, ...]] = {
    # weights per class: water, trees, grass, flooded_veg, crops, shrub, built, bare, snow
    "farmland": (0.05, 0.2, 0.3, 0.02, 1.0, 0.1, 0.12, 0.08, 0.0),
    "forest": (0.06, 1.0, 0.25, 0.03, 0.05, 0.2, 0.03, 0.04, 0.0),
    "urban": (0.05, 0.15, 0.25, 0.0, 0.05, 0.05, 1.0, 0.25, 0.0),
    "coastal": (1.0, 0.15, 0.2, 0.05, 0.1, 0.1, 0.3, 0.15, 0.0),
    "arid": (0.02, 0.02, 0.1, 0.0, 0.08, 0.6, 0.05, 1.0, 0.0),
    "wetland": (0.5, 0.3, 0.3, 0.8, 0.1, 0.1, 0.02, 0.05, 0.0),
    "alpine": (0.1, 0.4, 0.2, 0.0, 0.0, 0.3, 0.02, 0.6, 0.8),
}
BIOME_NAMES = tuple(BIOMES)


@dataclass(frozen=True)
class TileSpec:
    base: str
    variant: str
    stem: str
    biome: str
    lat: float
    lon: float


def label_map(stem: str, seed: int, biome: str) -> np.ndarray:
    """A coherent 56x56 class map: per-class smooth noise fields weighted by the biome, argmax."""
    rng = stable_rng(seed, stem, "labels")
    weights = np.array(BIOMES[biome]) * rng.uniform(0.6, 1.4, NUM_CLASSES)
    m = interp_matrix(CELLS, 5)
    knots = rng.random((NUM_CLASSES, 5, 5))
    fields = np.einsum("ij,cjk,lk->cil", m, knots, m)
    fields = fields * weights[:, None, None] + rng.random((NUM_CLASSES, CELLS, CELLS)) * 0.04
    fields[weights == 0] = -1.0
    return fields.argmax(axis=0).astype(np.uint8)


def components(cells: np.ndarray, connectivity: int = 4) -> list[tuple[int, int, int, int, int, int]]:
    """4- (or 8-) connected patches of one class: (class, cells, x1, y1, x2, y2) in cell units, largest first.

    Every cell starts labelled with its own raster index and takes the smallest label among its same-class
    neighbours, with pointer jumping (a label's label) so long patches converge in a few rounds; a patch ends
    labelled by its first cell in raster order, which keeps ties in the order a flood fill would find them.
    """
    h, w = cells.shape
    labels = np.arange(h * w, dtype=np.int64).reshape(h, w)
    right, down = cells[:, 1:] == cells[:, :-1], cells[1:, :] == cells[:-1, :]
    diag, anti = cells[1:, 1:] == cells[:-1, :-1], cells[1:, :-1] == cells[:-1, 1:]
    while True:
        lab = labels.copy()
        np.minimum(lab[:, 1:], np.where(right, lab[:, :-1], lab[:, 1:]), out=lab[:, 1:])
        np.minimum(lab[:, :-1], np.where(right, lab[:, 1:], lab[:, :-1]), out=lab[:, :-1])
        np.minimum(lab[1:, :], np.where(down, lab[:-1, :], lab[1:, :]), out=lab[1:, :])
        np.minimum(lab[:-1, :], np.where(down, lab[1:, :], lab[:-1, :]), out=lab[:-1, :])
        if connectivity == 8:
            np.minimum(lab[1:, 1:], np.where(diag, lab[:-1, :-1], lab[1:, 1:]), out=lab[1:, 1:])
            np.minimum(lab[:-1, :-1], np.where(diag, lab[1:, 1:], lab[:-1, :-1]), out=lab[:-1, :-1])
            np.minimum(lab[1:, :-1], np.where(anti, lab[:-1, 1:], lab[1:, :-1]), out=lab[1:, :-1])
            np.minimum(lab[:-1, 1:], np.where(anti, lab[1:, :-1], lab[:-1, 1:]), out=lab[:-1, 1:])
        lab = lab.ravel()[lab]
        lab = lab.ravel()[lab]
        if np.array_equal(lab, labels):
            break
        labels = lab
    roots, inverse, counts = np.unique(labels.ravel(), return_inverse=True, return_counts=True)
    ys, xs = np.divmod(np.arange(h * w), w)
    x1, y1 = np.full(len(roots), w), np.full(len(roots), h)
    x2, y2 = np.zeros(len(roots), np.int64), np.zeros(len(roots), np.int64)
    np.minimum.at(x1, inverse, xs)
    np.minimum.at(y1, inverse, ys)
    np.maximum.at(x2, inverse, xs)
    np.maximum.at(y2, inverse, ys)
    out = list(zip(cells.ravel()[roots].tolist(), counts.tolist(), x1.tolist(), y1.tolist(), x2.tolist(),
                   y2.tolist(), strict=True))
    out.sort(key=lambda c: (-c[1], c[0], c[2], c[3]))
    return out


def box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1)^2 window around each pixel (edges padded by reflection)."""
    p = np.pad(a, r, mode="reflect").cumsum(0).cumsum(1)
    p = np.pad(p, ((1, 0), (1, 0)))
    k = 2 * r + 1
    return p[k:, k:] - p[:-k, k:] - p[k:, :-k] + p[:-k, :-k]


def majority(labels: np.ndarray, r: int) -> np.ndarray:
    """Each pixel takes the commonest class of its window (ties: the lower class id)."""
    votes = np.stack([box_sum((labels == c).astype(np.float32), r) for c in range(NUM_CLASSES)])
    return votes.argmax(0).astype(np.uint8)


def fragmented_map(cells: np.ndarray, stem: str, seed: int) -> np.ndarray:
    """The same place at full resolution (224 px) with outlines and speckle like a real label map's: each
    class's area blurred, jittered by smooth noise at two scales (16 and 8 px) and per-pixel noise, then a 5x5
    majority vote. Measured on 40 tiles: a median of 51 regions per tile (p90 79), 32% under 100 px, as real
    Dynamic World maps give."""
    rng = stable_rng(seed, stem, "fragments")
    up = cells.repeat(CELL_PX, 0).repeat(CELL_PX, 1)
    present = np.unique(up)
    m14, m28 = interp_matrix(SIZE, 14), interp_matrix(SIZE, 28)
    fields = np.empty((len(present), SIZE, SIZE), np.float32)
    for i, c in enumerate(present):
        share = box_sum((up == c).astype(np.float32), 3) / 49.0
        noise = (m14 @ rng.normal(0.0, 1.0, (14, 14)) @ m14.T + m28 @ rng.normal(0.0, 1.0, (28, 28)) @ m28.T) * 0.8
        fields[i] = share + noise + rng.normal(0.0, 0.05, (SIZE, SIZE))
    return majority(present[fields.argmax(0)].astype(np.uint8), 2)


def upstream_regions(labels: np.ndarray, min_px: int = 21, per_class: int = 24) -> list[dict]:
    """Regions as upstream producers write them from a full-resolution map: 8-connected components per class,
    at least ``min_px`` px, the ``per_class`` largest of each class, inclusive max corners."""
    out, counts = [], dict.fromkeys(range(NUM_CLASSES), 0)
    for cls, n, x1, y1, x2, y2 in components(labels, connectivity=8):
        if n < min_px or counts[cls] >= per_class:
            continue
        counts[cls] += 1
        out.append({"bbox": [x1, y1, x2, y2], "label": CLASS_NAMES[cls], "class_id": cls, "area_px": n})
    return out


def region_components(cells: np.ndarray) -> list[tuple[int, int, int, int, int, int]]:
    """The patches a sidecar lists as regions: the largest, at least MIN_REGION_CELLS cells each."""
    return [c for c in components(cells) if c[1] >= MIN_REGION_CELLS][:MAX_REGIONS]


def sidecar_regions(comps: list[tuple[int, int, int, int, int, int]]) -> list[dict]:
    """Patches (cell units) as sidecar regions: inclusive pixel boxes and pixel areas at the chip's size."""
    return [{"bbox": [x1 * CELL_PX, y1 * CELL_PX, x2 * CELL_PX + CELL_PX - 1, y2 * CELL_PX + CELL_PX - 1],
             "label": CLASS_NAMES[cls], "class_id": cls, "area_px": n * CELL_PX * CELL_PX}
            for cls, n, x1, y1, x2, y2 in comps]


def _pixels(cells: np.ndarray) -> np.ndarray:
    """A map at the chip's size: cell maps are repeated, full-resolution maps pass as they are."""
    k = SIZE // cells.shape[0]
    return cells if k == 1 else cells.repeat(k, 0).repeat(k, 1)


def chip_png(cells: np.ndarray, stem: str, seed: int) -> bytes:
    """A Sentinel-2-like preview: class colours, a soft brightness field, texture and sensor noise."""
    rng = stable_rng(seed, stem, "chip")
    labels = _pixels(cells)
    rgb = S2_COLOURS[labels]
    m = interp_matrix(SIZE, 4)
    light = (m @ rng.uniform(0.85, 1.15, (4, 4)) @ m.T)[..., None]
    texture = rng.normal(0.0, 9.0, (SIZE // 2, SIZE // 2, 1)).repeat(2, 0).repeat(2, 1)
    noise = rng.normal(0.0, 4.0, (SIZE, SIZE, 3))
    img = np.clip(rgb * light + texture + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def murky_chip_png(cells: np.ndarray, stem: str, seed: int) -> bytes:
    """The same place as a murkier preview, as real Sentinel-2 quicklooks often are: class colours shifted per
    tile, a colour cast, lower contrast, uneven haze and more noise. Renderers must not rely on the clean
    palette of ``chip_png``; this is the chip they are measured on as well."""
    rng = stable_rng(seed, stem, "murky-chip")
    colours = np.clip(S2_COLOURS + rng.normal(0.0, 14.0, S2_COLOURS.shape), 0, 255)
    cast = np.eye(3) + rng.normal(0.0, 0.08, (3, 3))
    rgb = colours[_pixels(cells)] @ cast.T.astype(np.float32)
    rgb = rgb.mean() + (rgb - rgb.mean()) * rng.uniform(0.6, 0.85)
    m = interp_matrix(SIZE, 4)
    haze = (m @ rng.uniform(0.1, 0.45, (4, 4)) @ m.T)[..., None]
    veil = np.array([185.0, 192.0, 205.0]) + rng.normal(0.0, 8.0, 3)
    light = (m @ rng.uniform(0.8, 1.2, (4, 4)) @ m.T)[..., None]
    texture = rng.normal(0.0, 11.0, (SIZE // 2, SIZE // 2, 1)).repeat(2, 0).repeat(2, 1)
    noise = rng.normal(0.0, 7.0, (SIZE, SIZE, 3))
    img = np.clip((rgb * light) * (1 - haze) + veil * haze + texture + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def label_png(cells: np.ndarray, cell_px: int = CELL_PX) -> bytes:
    """The tile's true label map at the chip's size in the Dynamic World palette: the measuring stick for
    analysis maps (a build never reads it)."""
    img = Image.fromarray(cells.repeat(cell_px, 0).repeat(cell_px, 1), mode="P")
    img.putpalette(bytes(v for rgb in PALETTE_RGB for v in rgb))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def still_png(cells: np.ndarray, stem: str, seed: int) -> bytes:
    """An overhead still of the same place: brighter, sharper colours at 2x the chip's detail."""
    rng = stable_rng(seed, stem, "still")
    labels = _pixels(cells)
    rgb = np.clip(S2_COLOURS[labels] * 1.2 + 10, 0, 255)
    img = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def where(x1: int, y1: int, x2: int, y2: int) -> str:
    cx, cy = (x1 + x2 + 1) / 2 / CELLS, (y1 + y2 + 1) / 2 / CELLS
    row = "northern" if cy < 1 / 3 else ("southern" if cy > 2 / 3 else "")
    col = "western" if cx < 1 / 3 else ("eastern" if cx > 2 / 3 else "")
    return " ".join(p for p in (row, col) if p) or "central"


def caption_for(fractions: dict[int, float], comps: list, stem: str, seed: int) -> str:
    top = sorted(fractions.items(), key=lambda kv: -kv[1])
    rng = stable_rng(seed, stem, "caption")
    first = display_name(CLASS_NAMES[top[0][0]])
    lead = ["A Sentinel-2 scene dominated by {c}", "Mostly {c} seen from orbit", "A landscape of {c}"][
        int(rng.integers(3))].format(c=first)
    rest = [display_name(CLASS_NAMES[c]) for c, v in top[1:3] if v >= 0.05]
    text = lead + (f", with {' and '.join(rest)}" if rest else "") + "."
    if comps:
        cls, _, x1, y1, x2, y2 = comps[0]
        text += f" The largest patch is {display_name(CLASS_NAMES[cls])} in the {where(x1, y1, x2, y2)} part."
    return text


def plan_tiles(n_tiles: int, seed: int) -> list[TileSpec]:
    """Bases with one or two jitter variants, each with a few tiles, until n_tiles are planned."""
    rng = stable_rng(seed, "plan")
    specs: list[TileSpec] = []
    base_no = 0
    while len(specs) < n_tiles:
        base_no += int(rng.integers(1, 4))
        base = f"poi_{base_no:06d}"
        lat, lon = float(rng.uniform(-55, 65)), float(rng.uniform(-170, 170))
        biome = BIOME_NAMES[int(rng.integers(len(BIOME_NAMES)))]
        for g in range(1 + int(rng.random() < 0.45)):
            variant = f"{base}_g{g + 1:03d}"
            vlat, vlon = lat + float(rng.normal(0, 0.01)), lon + float(rng.normal(0, 0.01))
            for t in range(int(rng.integers(1, 5))):
                if len(specs) >= n_tiles:
                    break
                specs.append(TileSpec(base, variant, f"{variant}_t{t:04d}", biome, vlat + t * 0.02, vlon))
    return specs


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as err:  # a full disk: say which file (the command removes the partial tree)
        if err.filename is None:
            err.filename = path
        raise


@dataclass(frozen=True)
class TileJob:
    """One tile to write: everything decided up front in tile order, so workers can write tiles in any order."""

    index: int
    spec: TileSpec
    still_rel: str  # the still its chat line references, or ""
    writes_still: str  # the still key this tile writes (its first user), or ""


def plan_jobs(specs: list[TileSpec], seed: int) -> list[TileJob]:
    """Which still each variant uses (most have one, keyed by the variant or the base; some none) and which
    tile writes it: the first tile whose variant uses it."""
    jobs = []
    stills_written: dict[str, str] = {}
    still_for_variant: dict[str, str] = {}
    for i, spec in enumerate(specs):
        writes = ""
        if spec.variant not in still_for_variant:
            roll = stable_rng(seed, spec.variant, "still").random()
            key = "" if roll < 0.15 else (spec.base if roll < 0.25 else spec.variant)
            still_for_variant[spec.variant] = ""
            if key and key not in stills_written:
                stills_written[key] = f"mapbox_stills/s{len(stills_written) // FILES_PER_SHARD:05d}/{key}.png"
                still_for_variant[spec.variant] = stills_written[key]
                writes = key
        jobs.append(TileJob(i, spec, still_for_variant[spec.variant], writes))
    return jobs


CHIP_STYLES = {"clean": chip_png, "murky": murky_chip_png}
REGION_STYLES = ("blocky", "fragmented")


@dataclass(frozen=True)
class SampleOptions:
    labels: bool = False  # also write labels/sNNNNN/<tile_stem>.png, each tile's true label map
    chip_style: str = "clean"  # a key of CHIP_STYLES; labels, sidecars and stills do not depend on it
    regions: str = "blocky"  # a key of REGION_STYLES: "fragmented" draws maps and regions like real ones


def write_tile(root: str, seed: int, job: TileJob, options: SampleOptions = SampleOptions()) -> tuple[str, bytes]:
    """Write one tile's chip, sidecar (and still, and label map); return (split, its chat JSONL line)."""
    i, spec = job.index, job.spec
    shard = f"s{i // FILES_PER_SHARD:05d}"
    base = label_map(spec.stem, seed, spec.biome)
    comps = region_components(base)  # the caption names the largest patch of the place
    cells = fragmented_map(base, spec.stem, seed) if options.regions == "fragmented" else base
    counts = np.bincount(cells.ravel(), minlength=NUM_CLASSES)
    rng = stable_rng(seed, spec.stem, "meta")
    valid = 1.0 if rng.random() < 0.7 else float(rng.uniform(0.9, 0.99))  # some tiles have nodata pixels
    fractions = {c: round(float(counts[c]) / cells.size * valid, 4) for c in range(NUM_CLASSES) if counts[c]}
    regions = upstream_regions(cells) if options.regions == "fragmented" else sidecar_regions(comps)
    split = hashed_split(spec.variant)
    year, month, day = 2019 + int(rng.integers(6)), 1 + int(rng.integers(12)), 1 + int(rng.integers(28))
    sidecar = {
        "tile_stem": spec.stem, "poi_id": spec.variant, "split": split, "output_size": SIZE,
        "caption": caption_for(fractions, comps, spec.stem, seed),
        "class_fractions": {str(c): v for c, v in fractions.items()}, "regions": regions,
        "latitude": round(spec.lat, 6), "longitude": round(spec.lon, 6),
        "bbox_wgs84": [round(spec.lon - 0.01, 6), round(spec.lat - 0.01, 6), round(spec.lon + 0.01, 6),
                       round(spec.lat + 0.01, 6)],
        "stac_item_id": f"S2{'AB'[int(rng.integers(2))]}_MSIL2A_{year}{month:02d}{day:02d}T10{i % 60:02d}21_"
                        f"R{int(rng.integers(1, 143)):03d}",
        "stac_datetime": f"{year}-{month:02d}-{day:02d}T10:{i % 60:02d}:21Z",
        "eo_cloud_cover": round(float(rng.uniform(0, 35)), 2),
        "grid": {"crs": f"EPSG:326{int((spec.lon + 180) // 6) + 1:02d}", "resolution_m": 10},
    }
    chip_rel = f"images/{shard}/{spec.stem}.png"
    _write(os.path.join(root, chip_rel), CHIP_STYLES[options.chip_style](cells, spec.stem, seed))
    if options.labels:
        _write(os.path.join(root, "labels", shard, f"{spec.stem}.png"), label_png(cells, SIZE // cells.shape[0]))
    _write(os.path.join(root, "metadata", shard, f"{spec.stem}.json"),
           orjson.dumps(sidecar, option=orjson.OPT_INDENT_2))
    if job.writes_still:
        _write(os.path.join(root, job.still_rel), still_png(cells, job.writes_still, seed))
    content = [{"type": "image", "image": chip_rel}]
    if job.still_rel:
        content.append({"type": "image", "image": job.still_rel})
    content.append({"type": "text", "text": "Describe this satellite image."})
    line = {"messages": [{"role": "user", "content": content},
                         {"role": "assistant", "content": [{"type": "text", "text": sidecar["caption"]}]}]}
    return split, orjson.dumps(line)


def _leave_ctrl_c_to_the_parent() -> None:
    """Ctrl-C reaches every process of the terminal's group: the parent stops the pool (and says so once);
    workers that took it too would each print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_tile_star(args: tuple[str, int, TileJob, SampleOptions]) -> tuple[str, bytes]:
    return write_tile(*args)


TILES_PER_WORKER = 250  # a pool of processes only for trees larger than one process writes quickly


def write_sample_tree(root: str, n_tiles: int, seed: int = 0, workers: int = 0,
                      options: SampleOptions = SampleOptions()) -> dict[str, int]:
    """Write the tree; ``workers`` processes (0: one per core, fewer for small trees) write tiles in parallel.
    Every choice is fixed per tile before any worker starts, so the bytes do not depend on the worker count."""
    specs = plan_tiles(n_tiles, seed)
    jobs = plan_jobs(specs, seed)
    workers = workers or min(os.cpu_count() or 1, -(-n_tiles // TILES_PER_WORKER))
    if options.chip_style not in CHIP_STYLES:
        raise ValueError(f"unknown chip style {options.chip_style!r}; choose one of {', '.join(CHIP_STYLES)}")
    tasks = [(root, seed, job, options) for job in jobs]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers, _leave_ctrl_c_to_the_parent) as pool:
            lines = pool.map(_write_tile_star, tasks, chunksize=32)
    else:
        lines = [write_tile(*t) for t in tasks]
    jsonl: dict[str, list[bytes]] = {"train": [], "validation": [], "test": []}
    for split, line in lines:
        jsonl[split].append(line)
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    for split, split_lines in jsonl.items():
        with open(os.path.join(root, "data", f"{split}.jsonl"), "wb") as f:
            f.write(b"".join(line + b"\n" for line in split_lines))
    return {"tiles": len(specs), "stills": sum(1 for j in jobs if j.writes_still),
            "variants": len({s.variant for s in specs}), "bases": len({s.base for s in specs})}
