"""What the tasks share about regions: which boxes a class clearly fills, and whether a class's regions hold
all of its pixels (a patch count is exact) or leave specks out."""

from __future__ import annotations

from transforms.classes import CLASS_IDS
from transforms.ids import stable_choice_index
from transforms.input.sidecars import Region
from transforms.rows import PreparedTile, normalise_box

FILL_MIN = 0.5  # a region "fills" its box when it covers at least half of it
# A box asked about must pick out a part of the chip: on real label maps the largest region of the main class
# spans the whole chip (22 of 36 referring boxes on the real fixture, 59 of 60 on a sample tree were about the
# whole image), and "what fills [0, 0, 1, 1]" only asks for the majority class again.
BOX_SHARE_MAX = 0.25
# A patch plainly in view (10 x 10 px, 100 m across at 10 m): absence asks about a present class only with a
# region this large, and a box question points at a smaller region only where a tile has no larger one.
PATCH_IN_VIEW_PX = 100
# A class's regions list every patch of it when their pixels add up to its share of the frame: connected-
# component tools skip patches under a few cells (16 px here), so a gap under that many pixels means none was.
EXACT_TOLERANCE_PX = 12


def _box_px(r: Region) -> int:
    x1, y1, x2, y2 = r.bbox
    return (x2 - x1 + 1) * (y2 - y1 + 1)


def filling_regions(pt: PreparedTile) -> list[Region]:
    """Regions that cover at least half of their box, and whose box is at most a quarter of the frame, largest
    first: the boxes a question can point at."""
    frame = pt.tile.size * pt.tile.size
    return sorted((r for r in pt.tile.regions
                   if r.area_px >= FILL_MIN * _box_px(r) and _box_px(r) <= BOX_SHARE_MAX * frame),
                  key=lambda r: (-r.area_px, r.bbox))


def box_question_region(pt: PreparedTile, purpose: str) -> Region | None:
    """The region a box question points at: a class drawn evenly (fixed per tile and ``purpose``) among the
    classes with a filling region, then its largest. The largest filling region alone is mostly of one class
    (trees in 22 of 36 tiles of the real fixture, where answering "trees" every time scored 0.61; by class the
    most common answer holds 8 of 36)."""
    candidates = filling_regions(pt)
    sizable = [r for r in candidates if r.area_px >= PATCH_IN_VIEW_PX] or candidates
    if not sizable:
        return None
    labels = sorted({r.label for r in sizable})
    label = labels[stable_choice_index(len(labels), pt.stem, purpose, "box class")]
    return next(r for r in sizable if r.label == label)


def box_text(region: Region, size: int) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in normalise_box(region.bbox, size)) + "]"


def pixels_outside(pt: PreparedTile, class_id: int, regions: list[Region]) -> float | None:
    """How many of the class's pixels (by its share of the frame) its regions leave out; None without a share."""
    share = pt.fractions.get(class_id, 0.0)
    return share * pt.tile.size * pt.tile.size - sum(r.area_px for r in regions) if share else None


def has_specks(pt: PreparedTile, class_id: int, regions: list[Region]) -> bool:
    """Whether the class's share holds clearly more pixels than its regions do: specks under the producer's
    region minimum, common in real label maps. The margin also covers shares rounded to 4 decimals (13 px of
    a 512 px frame)."""
    outside = pixels_outside(pt, class_id, regions)
    return outside is not None and outside > max(EXACT_TOLERANCE_PX, pt.tile.size * pt.tile.size * 1e-4)


def exact_patch_counts(pt: PreparedTile) -> dict[str, int]:
    """label -> number of patches, for the classes whose regions account for all of their pixels."""
    by_label: dict[str, list[Region]] = {}
    for r in pt.tile.regions:
        by_label.setdefault(r.label, []).append(r)
    out = {}
    for label, regions in by_label.items():
        outside = pixels_outside(pt, CLASS_IDS[label], regions)
        if outside is not None and abs(outside) <= EXACT_TOLERANCE_PX:
            out[label] = len(regions)
    return out
