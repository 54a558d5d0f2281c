"""absence: one negative question per tile about a class that is at most a trace and has no region."""

from __future__ import annotations

from transforms.classes import CLASS_NAMES, class_fields, display_name
from transforms.ids import stable_choice_index
from transforms.prompts import pick
from transforms.rows import PreparedTile, Row, format_trace, make_row

TASK = "absence"
TRACE_MAX = 0.03


def absent_classes(pt: PreparedTile) -> list[int]:
    """Classes safe to call absent: share <= 3% and no region. Needs shares, else absence is unknowable."""
    if not pt.fractions:
        return []
    with_regions = {r.class_id for r in pt.tile.regions}
    return [c for c in range(len(CLASS_NAMES))
            if pt.fractions.get(c, 0.0) <= TRACE_MAX and c not in with_regions]


def rows(pt: PreparedTile) -> list[Row]:
    candidates = absent_classes(pt)
    if not candidates:
        return []
    cid = candidates[stable_choice_index(len(candidates), pt.stem, TASK)]
    label = CLASS_NAMES[cid]
    sid = f"{pt.stem}__absence_{label}"
    name = display_name(label)
    t = pt.ctx.templates
    share = pt.fractions.get(cid, 0.0)
    fields = {**class_fields("label", name), "percent": format_trace(share)}
    # "there is no X" only where the labels hold none: a few pixels of a class are common in real label maps,
    # and the row's own sidecar would contradict its answer
    answer = pick(t, TASK, "answer_trace" if share > 0 else "answer_none", sid, **fields)
    return [make_row(pt, TASK, sid, [pt.chip_path], pick(t, TASK, "prompt", sid, **fields), answer,
                     sidecar_extra={"absent_class": label})]
