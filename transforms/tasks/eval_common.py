"""What the evaluation tasks share: which boxes a class clearly fills, and when a class's patch count is exact."""

from __future__ import annotations

from transforms.classes import CLASS_IDS
from transforms.input.sidecars import Region
from transforms.rows import PreparedTile, normalise_box

FILL_MIN = 0.5  # a region "fills" its box when it covers at least half of it
# A class's regions list every patch of it when their pixels add up to its share of the frame: connected-
# component tools skip patches under a few cells (16 px here), so a gap under that many pixels means none was.
EXACT_TOLERANCE_PX = 12


def filling_regions(pt: PreparedTile) -> list[Region]:
    """Regions that cover at least half of their box, largest first."""
    def fill(r: Region) -> float:
        x1, y1, x2, y2 = r.bbox
        return r.area_px / ((x2 - x1 + 1) * (y2 - y1 + 1))

    return sorted((r for r in pt.tile.regions if fill(r) >= FILL_MIN), key=lambda r: (-r.area_px, r.bbox))


def box_text(region: Region, size: int) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in normalise_box(region.bbox, size)) + "]"


def exact_patch_counts(pt: PreparedTile) -> dict[str, int]:
    """label -> number of patches, for the classes whose regions account for all of their pixels."""
    frame = pt.tile.size * pt.tile.size
    by_label: dict[str, list[Region]] = {}
    for r in pt.tile.regions:
        by_label.setdefault(r.label, []).append(r)
    out = {}
    for label, regions in by_label.items():
        share = pt.fractions.get(CLASS_IDS[label], 0.0)
        if share and abs(sum(r.area_px for r in regions) - share * frame) <= EXACT_TOLERANCE_PX:
            out[label] = len(regions)
    return out
