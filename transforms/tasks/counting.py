"""counting: how many separate patches of a class the chip holds, asked only where the regions make the count
exact (they account for every pixel of the class), so the answer is a fact, not a guess."""

from __future__ import annotations

from transforms.classes import display_name
from transforms.ids import stable_choice_index
from transforms.prompts import pick
from transforms.rows import PreparedTile, Row, file_safe, make_row
from transforms.tasks.eval_common import exact_patch_counts

TASK = "counting"


def rows(pt: PreparedTile) -> list[Row]:
    exact = sorted(exact_patch_counts(pt).items())
    if not exact:
        return []
    label, count = exact[stable_choice_index(len(exact), pt.stem, TASK)]
    sid = f"{pt.stem}__count_{file_safe(label)}"
    name = display_name(label)
    fields = {"label": name, "count": count, "patches": "patch" if count == 1 else "patches",
              "count_is": "is" if count == 1 else "are"}
    t = pt.ctx.templates
    return [make_row(pt, TASK, sid, [pt.chip_path], pick(t, TASK, "prompt", sid, **fields),
                     pick(t, TASK, "answer", sid, **fields), sidecar_extra={"class": label, "count": count})]
