"""grounding_per_class: boxes of one class per row, for the (at most 6) labels with the most area."""

from __future__ import annotations

from transforms.classes import display_name
from transforms.prompts import pick
from transforms.rows import PreparedTile, Row, file_safe, grounding_json, make_row

TASK = "grounding_per_class"


def rows(pt: PreparedTile) -> list[Row]:
    out = []
    t = pt.ctx.templates
    for label, regions in pt.labels_by_area:
        sid = f"{pt.stem}__ground_{file_safe(label)}"
        ordered = sorted(regions, key=lambda r: (-r.area_px, r.bbox))
        answer = pick(t, TASK, "answer", sid, boxes_json=grounding_json(ordered, pt.tile.size))
        prompt = pick(t, TASK, "prompt", sid, label=display_name(label))
        out.append(make_row(pt, TASK, sid, [pt.chip_path], prompt, answer, sidecar_extra={"class": label}))
    return out
