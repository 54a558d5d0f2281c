"""absence: is a class in the chip? One question per tile about a class that is at most a trace and has no
region (the answer is no), and, asked the same way, one about a class with a patch plainly in view (yes).

Only negatives would teach a model that "Is there any X in this image?" is answered "no" whatever the image
holds (and a model that always says no would score 1.0), so every negative has a positive of the same tile
beside it, as POPE balances its yes/no probes."""

from __future__ import annotations

from transforms.classes import CLASS_NAMES, class_fields, display_name
from transforms.ids import stable_choice_index
from transforms.prompts import has_slot, pick
from transforms.rows import PreparedTile, Row, format_trace, make_row
from transforms.tasks.eval_common import PATCH_IN_VIEW_PX

TASK = "absence"
TRACE_MAX = 0.03


def absent_classes(pt: PreparedTile) -> list[int]:
    """Classes safe to call absent: share <= 3% and no region. Needs shares, else absence is unknowable."""
    if not pt.fractions:
        return []
    with_regions = {r.class_id for r in pt.tile.regions}
    return [c for c in range(len(CLASS_NAMES))
            if pt.fractions.get(c, 0.0) <= TRACE_MAX and c not in with_regions]


def present_classes(pt: PreparedTile) -> list[int]:
    """Classes plainly present: a region of at least PATCH_IN_VIEW_PX pixels and a share for the answer to give."""
    return sorted({r.class_id for r in pt.tile.regions
                   if r.area_px >= PATCH_IN_VIEW_PX and pt.fractions.get(r.class_id, 0.0) > 0})


def _row(pt: PreparedTile, cid: int, slot: str, percent: str, side: str) -> Row:
    label = CLASS_NAMES[cid]
    sid = f"{pt.stem}__absence_{label}"
    fields = {**class_fields("label", display_name(label)), "percent": percent}
    t = pt.ctx.templates
    return make_row(pt, TASK, sid, [pt.chip_path], pick(t, TASK, "prompt", sid, **fields),
                    pick(t, TASK, slot, sid, **fields), sidecar_extra={side: label})


def rows(pt: PreparedTile) -> list[Row]:
    candidates = absent_classes(pt)
    if not candidates:
        return []
    cid = candidates[stable_choice_index(len(candidates), pt.stem, TASK)]
    share = pt.fractions.get(cid, 0.0)
    # "there is no X" only where the labels hold none: a few pixels of a class are common in real label maps,
    # and the row's own sidecar would contradict its answer
    out = [_row(pt, cid, "answer_trace" if share > 0 else "answer_none", format_trace(share), "absent_class")]
    present = present_classes(pt)
    if present and has_slot(pt.ctx.templates, TASK, "answer_present"):  # a --prompts-dir may predate the slot
        cid = present[stable_choice_index(len(present), pt.stem, TASK, "present")]
        out.append(_row(pt, cid, "answer_present", format_trace(pt.fractions[cid]), "present_class"))
    return out
