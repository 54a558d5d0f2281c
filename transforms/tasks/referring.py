"""referring: a box in the prompt, the class that fills it as the answer (the inverse of grounding)."""

from __future__ import annotations

from transforms.classes import class_fields, display_name
from transforms.prompts import pick
from transforms.rows import PreparedTile, Row, make_row
from transforms.tasks.eval_common import box_question_region, box_text

TASK = "referring"


def rows(pt: PreparedTile) -> list[Row]:
    region = box_question_region(pt, TASK)
    if region is None:
        return []
    sid = f"{pt.stem}__referring"
    name = display_name(region.label)
    fields = {"box": box_text(region, pt.tile.size), **class_fields("label", name)}
    t = pt.ctx.templates
    return [make_row(pt, TASK, sid, [pt.chip_path], pick(t, TASK, "prompt", sid, **fields),
                     pick(t, TASK, "answer", sid, **fields), sidecar_extra={"class": region.label,
                                                                            "bbox": list(region.bbox)})]
