"""caption: the sidecar's caption as the answer to a describe-the-chip prompt."""

from __future__ import annotations

from transforms.prompts import pick
from transforms.rows import PreparedTile, Row, make_row

TASK = "caption"


def rows(pt: PreparedTile) -> list[Row]:
    if not pt.tile.caption:
        return []
    sid = f"{pt.stem}__caption"
    t = pt.ctx.templates
    return [make_row(pt, TASK, sid, [pt.chip_path], pick(t, TASK, "prompt", sid),
                     pick(t, TASK, "answer", sid, caption=pt.tile.caption))]
