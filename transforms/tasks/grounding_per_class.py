"""grounding_per_class: boxes of one class per row (the box budget applies), for the (at most 6) labels with
the most area."""

from __future__ import annotations

from transforms.classes import display_name
from transforms.prompts import pick
from transforms.rows import (
    PreparedTile,
    Row,
    box_budget,
    budget_text,
    file_safe,
    grounding_json,
    make_row,
    regions_record,
)

TASK = "grounding_per_class"


def rows(pt: PreparedTile) -> list[Row]:
    out = []
    t = pt.ctx.templates
    budget = budget_text(pt.ctx.max_boxes, pt.ctx.min_box_px)
    for label, regions in pt.labels_by_area:
        kept, left_out = box_budget(regions, pt.ctx.max_boxes, pt.ctx.min_box_px)
        if not kept:
            continue
        sid = f"{pt.stem}__ground_{file_safe(label)}"
        answer = pick(t, TASK, "answer", sid, boxes_json=grounding_json(kept, pt.tile.size))
        prompt = pick(t, TASK, "prompt", sid, label=display_name(label), budget=budget)
        out.append(make_row(pt, TASK, sid, [pt.chip_path], prompt, answer,
                            sidecar_extra={"class": label, "regions": regions_record(regions),
                                           "boxes_left_out": left_out}))
    return out
