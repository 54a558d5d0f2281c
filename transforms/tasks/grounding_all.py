"""grounding_all: every valid region of the tile as normalised JSON boxes, largest first."""

from __future__ import annotations

from transforms.prompts import pick
from transforms.rows import PreparedTile, Row, grounding_json, make_row

TASK = "grounding_all"


def rows(pt: PreparedTile) -> list[Row]:
    regions = sorted(pt.tile.regions, key=lambda r: (-r.area_px, r.label, r.bbox))
    if not regions:
        return []
    sid = f"{pt.stem}__ground_all"
    t = pt.ctx.templates
    answer = pick(t, TASK, "answer", sid, boxes_json=grounding_json(regions, pt.tile.size))
    return [make_row(pt, TASK, sid, [pt.chip_path], pick(t, TASK, "prompt", sid, size=pt.tile.size), answer)]
