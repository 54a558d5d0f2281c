"""grounding_all: the tile's largest regions (the box budget) as normalised JSON boxes, largest first."""

from __future__ import annotations

from transforms.prompts import pick
from transforms.rows import (
    PreparedTile,
    Row,
    box_budget,
    budget_text,
    grounding_json,
    make_row,
    regions_record,
)

TASK = "grounding_all"


def rows(pt: PreparedTile) -> list[Row]:
    regions, left_out = box_budget(list(pt.tile.regions), pt.ctx.max_boxes, pt.ctx.min_box_px)
    if not regions:
        return []
    sid = f"{pt.stem}__ground_all"
    t = pt.ctx.templates
    answer = pick(t, TASK, "answer", sid, boxes_json=grounding_json(regions, pt.tile.size))
    prompt = pick(t, TASK, "prompt", sid, size=pt.tile.size, budget=budget_text(pt.ctx.max_boxes, pt.ctx.min_box_px))
    return [make_row(pt, TASK, sid, [pt.chip_path], prompt, answer,
                     sidecar_extra={"regions": regions_record(list(pt.tile.regions)), "boxes_left_out": left_out})]
