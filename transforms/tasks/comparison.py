"""comparison: which of two classes covers more of the chip, asked only when they differ by 5 pp or more."""

from __future__ import annotations

from itertools import combinations

from transforms.classes import CLASS_NAMES, class_fields, display_name
from transforms.ids import stable_uniform
from transforms.prompts import pick
from transforms.rows import PreparedTile, Row, make_row

TASK = "comparison"
MIN_MARGIN = 0.05


def rows(pt: PreparedTile) -> list[Row]:
    pairs = [(a, b) for a, b in combinations(sorted(pt.fractions), 2)
             if abs(pt.fractions[a] - pt.fractions[b]) >= MIN_MARGIN]
    if not pairs:
        return []
    # The closest race of two classes other than the scene's commonest, where there is one. Drawn from every
    # pair, the commonest class won most questions, and an answer from class priors alone (of the two, the class
    # that usually wins) was right 85% of the time on the real fixture; asked this way, 72%.
    top = max(pt.fractions, key=lambda c: (pt.fractions[c], -c))
    drawn = [(a, b) for a, b in pairs if top not in (a, b)] or pairs
    a, b = min(drawn, key=lambda p: (abs(pt.fractions[p[0]] - pt.fractions[p[1]]), p))
    if stable_uniform(pt.stem, TASK, "order") < 0.5:  # the larger class is named first only half the time
        a, b = b, a
    more, less = (a, b) if pt.fractions[a] > pt.fractions[b] else (b, a)
    sid = f"{pt.stem}__compare_{CLASS_NAMES[a]}_{CLASS_NAMES[b]}"
    name = {c: display_name(CLASS_NAMES[c]) for c in (a, b)}
    fields = {"x": name[a], "y": name[b], **class_fields("more", name[more]), **class_fields("less", name[less]),
              "more_percent": pt.percent(more), "less_percent": pt.percent(less)}
    t = pt.ctx.templates
    return [make_row(pt, TASK, sid, [pt.chip_path], pick(t, TASK, "prompt", sid, **fields),
                     pick(t, TASK, "answer", sid, **fields), sidecar_extra={"classes": [CLASS_NAMES[a],
                                                                                        CLASS_NAMES[b]],
                                                                            "answer": CLASS_NAMES[more]})]
