"""cross_view: the overhead still first, then the chip, when a still was found for the tile."""

from __future__ import annotations

from transforms.prompts import pick
from transforms.rows import PreparedTile, Row, make_row

TASK = "cross_view"


def rows(pt: PreparedTile) -> list[Row]:
    if not pt.still_path:
        return []
    sid = f"{pt.stem}__cross_view"
    t = pt.ctx.templates
    caption = pt.tile.caption
    if pt.fractions:
        answer = pick(t, TASK, "answer", sid, dominant=pt.dominant_text(), caption=caption)
    else:
        answer = pick(t, TASK, "answer_no_fractions", sid, caption=caption)
    return [make_row(pt, TASK, sid, [pt.still_path, pt.chip_path], pick(t, TASK, "prompt", sid), answer.strip())]
