"""How well analysis maps follow the tile's true layout: per-class IoU against label maps (``satsft sample
--labels``). Scores are per tile, then averaged over tiles, so a tile with one big class counts as much as a
mixed one; "non-majority" leaves out each tile's largest true class, whose IoU is high even for a map that
paints it everywhere."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from transforms.classes import NUM_CLASSES
from transforms.output.tree import ANALYSIS_DIR

BRIEF_SUFFIX = "__analysis_brief_only.png"


@dataclass(frozen=True)
class MapScore:
    mean_iou: float  # over the classes present in the true map
    mean_iou_non_majority: float | None  # None when the tile has a single class
    pixel_agreement: float
    majority_agreement: float  # what painting the true majority class everywhere would score


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
                    float(hit.sum() / truth.size), float(true_n[majority] / truth.size))


def read_class_map(data: bytes) -> np.ndarray:
    """Class ids of a palette PNG (analysis maps and label maps are both drawn in the Dynamic World palette)."""
    img = Image.open(io.BytesIO(data))
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


def brief_maps(output_dir: str) -> dict[str, str]:
    """tile stem -> path of its brief_only analysis map in a finished local build."""
    out = {}
    for folder, _, files in os.walk(os.path.join(output_dir, ANALYSIS_DIR)):
        for name in files:
            if name.endswith(BRIEF_SUFFIX):
                out[name[:-len(BRIEF_SUFFIX)]] = os.path.join(folder, name)
    return out


def score_build(output_dir: str, labels_dir: str) -> dict[str, float | int]:
    """Every brief_only map of a build against its tile's label map (labels/sNNNNN/<tile_stem>.png); a label
    map at another size than the analysis map is resampled by nearest neighbour."""
    labels = {}
    for folder, _, files in os.walk(labels_dir):
        for name in files:
            if name.endswith(".png"):
                labels[name[:-4]] = os.path.join(folder, name)
    scores = []
    for stem, path in sorted(brief_maps(output_dir).items()):
        if stem not in labels:
            continue
        with open(path, "rb") as f:
            pred = read_class_map(f.read())
        with open(labels[stem], "rb") as f:
            truth_img = Image.open(io.BytesIO(f.read()))
            if truth_img.size != pred.shape[::-1]:
                truth_img = truth_img.resize(pred.shape[::-1], Image.NEAREST)
            truth = np.asarray(truth_img)
        scores.append(score_map(pred, truth))
    return summarise(scores)
