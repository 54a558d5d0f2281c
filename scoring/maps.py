"""How well analysis maps follow the tile's true layout: per-class IoU against label maps (``satsft sample
--labels``). Scores are per tile, then averaged over tiles, so a tile with one big class counts as much as a
mixed one; "non-majority" leaves out each tile's largest true class, whose IoU is high even for a map that
paints it everywhere."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from scoring.intervals import MIN_PLACES, RESAMPLES, PlaceSums, intervals_of
from scoring.places import NEIGHBOURS_NOTE, Joined, place_of, places_and_neighbours
from transforms import fileio
from transforms.classes import CLASS_NAMES, NUM_CLASSES
from transforms.input.images import MAX_IMAGE_PIXELS
from transforms.input.sidecars import Region, parse_sidecar
from transforms.output.tree import (
    ANALYSIS_DIR,
    MIX_REPORT_NAME,
    REPORT_NAME,
    DamagedReport,
    OutputTree,
    parse_report,
    record_files,
)

BRIEF_SUFFIX = "__analysis_brief_only.png"


@dataclass(frozen=True)
class MapScore:
    mean_iou: float  # over the classes present in the true map
    mean_iou_non_majority: float | None  # None when the tile has a single class
    pixel_agreement: float
    majority_agreement: float  # what painting the true majority class everywhere would score
    class_iou: tuple[tuple[int, float], ...] = ()  # (class id, IoU) per class present


def score_map(pred: np.ndarray, truth: np.ndarray) -> MapScore:
    """One predicted class map against the true one (same shape, class ids)."""
    if pred.shape != truth.shape:
        raise ValueError(f"map is {pred.shape}, labels are {truth.shape}")
    joint = np.bincount(truth.ravel().astype(np.int64) * NUM_CLASSES + pred.ravel(),
                        minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)
    true_n, pred_n, hit = joint.sum(1), joint.sum(0), np.diag(joint)
    present = np.flatnonzero(true_n)
    ious = hit[present] / (true_n[present] + pred_n[present] - hit[present])
    majority = int(np.argmax(true_n))
    rest = ious[present != majority]
    return MapScore(float(ious.mean()), float(rest.mean()) if rest.size else None,
                    float(hit.sum() / truth.size), float(true_n[majority] / truth.size),
                    tuple((int(c), float(v)) for c, v in zip(present, ious, strict=True)))


def _open_bounded(data: bytes) -> Image.Image:
    """An image of at most a chip's label map's pixels, opened from its header only (ValueError past that:
    Pillow's own limit is a DecompressionBombError no caller expects, and under it the whole would be decoded)."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ValueError(f"more pixels than a chip's map holds ({MAX_IMAGE_PIXELS:,} at most)") from err
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{img.width}x{img.height} pixels: more than a chip's map holds "
                         f"({MAX_IMAGE_PIXELS:,} at most)")
    return img


def read_class_map(data: bytes) -> np.ndarray:
    """Class ids of a palette PNG (analysis maps and label maps are both drawn in the Dynamic World palette)."""
    img = _open_bounded(data)
    if img.mode != "P":
        raise ValueError(f"expected a palette PNG, got mode {img.mode}")
    return np.asarray(img)


def summarise(scores: Iterable[MapScore]) -> dict[str, float | int]:
    scores = list(scores)
    rest = [s.mean_iou_non_majority for s in scores if s.mean_iou_non_majority is not None]
    return {"tiles": len(scores),
            "mean_iou": float(np.mean([s.mean_iou for s in scores])) if scores else 0.0,
            "mean_iou_non_majority": float(np.mean(rest)) if rest else 0.0,
            "pixel_agreement": float(np.mean([s.pixel_agreement for s in scores])) if scores else 0.0,
            "majority_agreement": float(np.mean([s.majority_agreement for s in scores])) if scores else 0.0}


def brief_maps(output_dir: str) -> dict[str, Callable[[], bytes]]:
    """tile stem -> a reader of its brief_only analysis map in a finished build (a folder or bucket URL): the
    files under analysis_images/, or, in a build that keeps its images inside Parquet rows (``--layout hub``,
    ``--embed-images``), the map stored in the tile's brief_only row."""
    tree = OutputTree(output_dir)
    maps: dict[str, Callable[[], bytes]] = {
        rel.rsplit("/", 1)[-1][:-len(BRIEF_SUFFIX)]: functools.partial(tree.read, rel)
        for rel in tree.under(ANALYSIS_DIR) if rel.endswith(BRIEF_SUFFIX)}
    if maps or not tree.isfile(REPORT_NAME):
        return maps
    for row in _parquet_rows(tree, ["metadata", "images"]):
        wanted = row["metadata"].get("analysis_image_path") or ""
        data = next((i["bytes"] for i in row["images"] or () if i["path"] == wanted and i["bytes"]), None)
        if wanted.endswith(BRIEF_SUFFIX) and data is not None:
            maps[row["metadata"]["tile_stem"]] = functools.partial(bytes, data)
    return maps


def _parquet_rows(tree: OutputTree, columns: list[str]) -> Iterator[dict[str, Any]]:
    """The rows of a build's Parquet split files (none when it wrote only JSONL), a few columns at a time."""
    fmt, paths = record_files(parse_report(tree.read(REPORT_NAME), REPORT_NAME))
    for path in paths if fmt == "parquet" else ():
        with tree.open(path) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=256, columns=columns):
                yield from batch.to_pylist()


# Label maps as satsft sample writes them (PNG), or as Earth Engine exports Dynamic World's `label` band
# (a one-band GeoTIFF, whose georeferencing is not needed: the tile stem names the chip it labels).
LABEL_SUFFIXES = (".png", ".tif", ".tiff")


def read_label_map(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Class ids of a label map: one band (palette or grey) of Dynamic World ids, resampled by nearest neighbour
    to ``size`` (width, height) when drawn at another. Raises ValueError saying what is wrong with it."""
    try:
        img = _open_bounded(data)
        img.load()
    except (OSError, SyntaxError) as err:
        raise ValueError("not a readable image") from err
    if img.mode not in ("P", "L", "I;16", "I"):
        raise ValueError(f"mode {img.mode}: a label map holds one class id per pixel (palette or grey PNG, or a "
                         "one-band GeoTIFF such as Dynamic World's label band)")
    if img.size != size:
        img = img.resize(size, Image.NEAREST)
    truth = np.asarray(img)
    for worst in (int(truth.max()), int(truth.min())):  # a 32-bit GeoTIFF may hold a negative no-data value
        if not 0 <= worst < NUM_CLASSES:
            raise ValueError(f"class id {worst}: Dynamic World ids run 0-{NUM_CLASSES - 1}")
    return truth


def _maps_and_labels(output_dir: str, labels_dir: str, problems: dict[str, str] | None = None
                     ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(tile stem, brief_only map, label map) for every tile of a finished build that has labels. A label
    map that cannot be scored is noted in ``problems`` (stem -> reason) and passed over, or, without it, raises."""
    labels: dict[str, str] = {}
    twice: dict[str, str] = {}
    found = fileio.list_files(labels_dir)
    if {rel.split("/", 1)[0] for rel in found} >= {"images", "labels"}:
        raise ValueError(f"{labels_dir} is a tree's root (its chips would pass for label maps); give "
                         f"{labels_dir.rstrip('/')}/labels")
    for rel in found:
        suffix = next((x for x in LABEL_SUFFIXES if rel.lower().endswith(x)), "")
        if suffix:
            stem, path = rel.rsplit("/", 1)[-1][:-len(suffix)], f"{labels_dir.rstrip('/')}/{rel}"
            if stem in labels:
                twice[stem] = f"two files for one tile: {labels[stem]} and {path}"
            labels[stem] = path
    for stem, read_map in sorted(brief_maps(output_dir).items()):
        if stem not in labels:
            continue
        try:
            pred = read_class_map(read_map())
        except (ValueError, OSError) as err:  # a map cut short or overwritten (PIL's UnidentifiedImageError too)
            why = "not a readable image" if isinstance(err, OSError) else str(err)[:120]  # (no object address)
            if problems is None:
                raise ValueError(f"the analysis map of {stem}: {why}") from err
            problems[stem] = f"its analysis map: {why}"
            continue
        try:
            if stem in twice:
                raise ValueError(twice[stem])
            fileio.refuse_special(labels[stem])  # a named pipe would hold the command until written to
            truth = read_label_map(fileio.read_bytes(labels[stem]), pred.shape[::-1])
        except (ValueError, fileio.NotAFile) as err:
            if problems is None:
                raise ValueError(f"{labels[stem]}: {err}") from err
            problems[stem] = str(err)
            continue
        yield stem, pred, truth


MAP_MEASURES = ("mean_iou", "mean_iou_non_majority", "pixel_agreement", "majority_agreement")


def map_intervals(scores: dict[str, MapScore], joined: Joined | None = None) -> dict[str, Any]:
    """{"places", "interval_95": {measure: [low, high]}} of summarise's means, from resampling places (base POIs,
    joined where their tiles show the same ground: a place's views and dates are not independent maps;
    scoring.places) as `satsft eval` resamples a split's; no interval under MIN_PLACES places."""
    by_place: dict[str, list[MapScore]] = {}
    for stem, score in sorted(scores.items()):
        by_place.setdefault(place_of({"tile_stem": stem}, joined), []).append(score)
    sums = np.zeros((len(by_place), len(MAP_MEASURES), 2))
    for i, place in enumerate(by_place.values()):
        for j, name in enumerate(MAP_MEASURES):
            values = [v for v in (getattr(s, name) for s in place) if v is not None]
            sums[i, j] = (sum(values), len(values))
    return intervals_of(PlaceSums(len(by_place), MAP_MEASURES, MAP_MEASURES, sums))


def score_build(output_dir: str, labels_dir: str) -> dict[str, float | int]:
    """Every brief_only map of a build against its tile's label map (labels/sNNNNN/<tile_stem>.png)."""
    return summarise(score_map(pred, truth) for _, pred, truth in _maps_and_labels(output_dir, labels_dir))


def map_report(output_dir: str, labels_dir: str) -> dict[str, Any]:
    """`satsft eval --labels`: score_build's figures, each class's mean IoU over the tiles it is in, and an
    account of every map: scored, without a label map, or with one that cannot be scored (and why)."""
    maps = brief_maps(output_dir)
    if not maps:
        raise ValueError(_mix_given(output_dir, OutputTree(output_dir)) or (
            f"{output_dir} has no brief_only analysis maps; pass the --output of a build with the "
            "production_analysis task and the brief_only profile (the defaults)"))
    problems: dict[str, str] = {}
    scores = {stem: score_map(pred, truth) for stem, pred, truth in _maps_and_labels(output_dir, labels_dir,
                                                                                      problems)}
    if not scores:
        first = next(iter(problems.items()), None)
        raise ValueError(f"no label map in {labels_dir} could be scored: " + (
            f"{len(problems)} named after tiles cannot be scored, e.g. {first[0]}: {first[1]}" if first
            else f"none is named after a tile of {output_dir} (<tile_stem>.png, as `satsft sample --labels` "
                 "writes them under labels/, or <tile_stem>.tif)"))
    joined, neighbours = places_and_neighbours(OutputTree(output_dir), set(scores))
    per_class: dict[int, list[float]] = {}
    for score in scores.values():
        for c, iou in score.class_iou:
            per_class.setdefault(c, []).append(iou)
    drawn = map_intervals(scores, joined)
    return {"measure": "brief_only analysis maps against label maps: IoU per class present, per tile, then the "
                       "mean over tiles", **summarise(scores.values()), **drawn,
            **({"neighbouring_places": {"places": drawn["places"], "sharing_ground": neighbours}} if neighbours
               else {}),
            "class_iou": {CLASS_NAMES[c]: {"tiles": len(v), "mean_iou": float(np.mean(v))}
                          for c, v in sorted(per_class.items())},
            "maps": len(maps), "maps_without_labels": len(maps) - len(scores) - len(problems),
            "labels_not_scored": dict(sorted(problems.items()))}


def _mix_given(output_dir: str, tree: OutputTree) -> str:
    """What to do instead when --labels is given a mix ("" for anything else): its maps are copies of its
    builds' and its rows may carry one tile stem from two trees, so the builds are scored, where each stem
    names one tile of one tree."""
    if not tree.isfile(MIX_REPORT_NAME):
        return ""
    try:
        sources = parse_report(tree.read(MIX_REPORT_NAME), MIX_REPORT_NAME).get("sources") or []
        paths = sorted({s["path"] for s in sources if s.get("kind") == "satsft" and isinstance(s.get("path"), str)})
    except (DamagedReport, AttributeError, KeyError, TypeError):  # a mix still: its builds are not named
        paths = []
    return (f"{output_dir} is a mix; `satsft eval --labels` scores the maps of a build (a mix's are copies of its "
            "builds', and may carry one tile stem from two trees): score each build it mixes"
            + (f" (`satsft eval BUILD --labels LABELS_DIR`, BUILD: {', '.join(paths)})" if paths else ""))


def map_table(report: dict[str, Any]) -> str:
    """The end-of-run table of `satsft eval --labels`."""
    bounds = report.get("interval_95", {})

    def shown(name: str) -> str:
        return f"{report[name]:.3f}" + (f" [{bounds[name][0]:.3f}, {bounds[name][1]:.3f}]" if name in bounds else "")

    lines = ["| measure | value |", "|---|---|",
             f"| tiles scored | {report['tiles']} of {report['maps']} maps ({report.get('places', 0)} places) |",
             f"| mean IoU, classes present | {shown('mean_iou')} |",
             f"| mean IoU, non-majority classes | {shown('mean_iou_non_majority')} |",
             f"| pixel agreement | {shown('pixel_agreement')} |",
             f"| majority class everywhere | {shown('majority_agreement')} |"]
    lines += [f"| {name} ({v['tiles']} tiles) | {v['mean_iou']:.3f} |" for name, v in report["class_iou"].items()]
    lines.append("\n" + (f"[low, high]: the 95% interval over {RESAMPLES} draws of the places (base POIs, joined "
                          "where their tiles show the same ground) with replacement" if bounds
                          else f"no interval: under {MIN_PLACES} places"))
    near = report.get("neighbouring_places")
    if bounds and near:
        lines.append(NEIGHBOURS_NOTE.format(n=near["sharing_ground"], total=near["places"]))
    if report["maps_without_labels"]:
        lines.append(f"\n{report['maps_without_labels']} maps have no label map of their tile")
    for stem, reason in list(report["labels_not_scored"].items())[:10]:
        lines.append(f"not scored: {stem}: {reason}")
    if len(report["labels_not_scored"]) > 10:
        lines.append(f"... and {len(report['labels_not_scored']) - 10} more (all in the report)")
    return "\n".join(lines)


# Region sizes (pixels) by which region_fidelity reports: the upstream producer's smallest region is 21 px.
SIZE_BANDS = ((0, 100), (100, 400), (400, 3200), (3200, None))


def cell_ceiling(truth: np.ndarray, cell: int) -> np.ndarray:
    """The best map a renderer of ``cell``-pixel cells can draw: each cell the most common class of its pixels
    (the lowest id on a tie), at the label map's size. What a map is measured against when asking how much of
    its shortfall is the grid's."""
    h, w = truth.shape
    if cell <= 1:
        return truth
    blocks = truth[:h - h % cell, :w - w % cell].reshape(h // cell, cell, w // cell, cell).transpose(0, 2, 1, 3)
    votes = (blocks.reshape(h // cell, w // cell, cell * cell, 1) == np.arange(NUM_CLASSES)).sum(2)
    best = votes.argmax(2).astype(truth.dtype).repeat(cell, 0).repeat(cell, 1)
    out = truth.copy()
    out[:best.shape[0], :best.shape[1]] = best
    return out


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def region_agreement(pred: np.ndarray, truth: np.ndarray, ceiling: np.ndarray,
                     regions: Iterable[Region]) -> tuple[list[tuple[int, float, float]], tuple[int, int, int]]:
    """Per sidecar region (a parsed Region: bbox with an inclusive max corner, in label-map pixels): (area,
    IoU of its class inside its box in the map, the same for ``ceiling``). Then, over the pixels of each class
    outside every box of that class (patches too small to be regions): (true pixels, map pixels, both)."""
    per_region = []
    boxed = np.zeros((NUM_CLASSES, *truth.shape), bool)
    for r in regions:
        c, (x1, y1, x2, y2) = r.class_id, r.bbox
        box = np.s_[y1:y2 + 1, x1:x2 + 1]
        boxed[c][box] = True
        t = truth[box] == c
        per_region.append((r.area_px, _box_iou(pred[box] == c, t), _box_iou(ceiling[box] == c, t)))
    outside = ~boxed[truth, np.arange(truth.shape[0])[:, None], np.arange(truth.shape[1])]
    predicted_out = ~boxed[pred, np.arange(pred.shape[0])[:, None], np.arange(pred.shape[1])]
    return per_region, (int(np.count_nonzero(outside)), int(np.count_nonzero(predicted_out)),
                        int(np.count_nonzero(outside & (pred == truth))))


def region_fidelity(output_dir: str, tree_root: str, cell: int) -> dict[str, Any]:
    """Where a build's maps fall short, for work on the renderer: per band of region size, the mean IoU of each
    region's class inside its box, in the maps and in the best map of ``cell``-pixel cells (``cell_ceiling``);
    the pixels outside their class's boxes, which no box locates, and how many the maps got right; and the
    tile-level scores of that best map (score_build's measure). Regions come from the tree's sidecars, parsed
    as a build parses them (a sidecar the build rejects has no map to score)."""
    regions: dict[str, tuple[Region, ...]] = {}
    for folder, _, files in os.walk(os.path.join(tree_root, "metadata")):
        for name in files:
            if name.endswith(".json"):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    tile = parse_sidecar(f.read(), path).tile
                if tile is not None:
                    regions[tile.tile_stem] = tile.regions
    bands: dict[tuple, list[tuple[float, float]]] = {band: [] for band in SIZE_BANDS}
    outside, ceilings = np.zeros(3, np.int64), []
    for stem, pred, truth in _maps_and_labels(output_dir, os.path.join(tree_root, "labels")):
        ceiling = cell_ceiling(truth, cell)
        ceilings.append(score_map(ceiling, truth))
        per_region, out = region_agreement(pred, truth, ceiling, regions.get(stem, ()))
        outside += out
        for area, got, best in per_region:
            band = next(b for b in SIZE_BANDS if area >= b[0] and (b[1] is None or area < b[1]))
            bands[band].append((got, best))
    return {
        "regions": {f"{lo}-{hi or ''}": {"regions": len(v), "map": float(np.mean([g for g, _ in v])) if v else 0.0,
                                          "ceiling": float(np.mean([b for _, b in v])) if v else 0.0}
                    for (lo, hi), v in bands.items()},
        "outside_boxes": {"true_px": int(outside[0]), "map_px": int(outside[1]), "right_px": int(outside[2])},
        "ceiling": summarise(ceilings),
    }
