"""class_focus: how much of one class there is (from the normalised shares) and where its patches are; a count of
patches only where the regions hold every pixel of the class."""

from __future__ import annotations

from transforms.classes import CLASS_IDS, class_fields, display_name
from transforms.prompts import has_slot, pick
from transforms.rows import PreparedTile, Row, file_safe, make_row, where_in_image
from transforms.tasks.eval_common import has_specks

TASK = "class_focus"


def rows(pt: PreparedTile) -> list[Row]:
    out = []
    t = pt.ctx.templates
    for label, regions in pt.labels_by_area:
        sid = f"{pt.stem}__focus_{file_safe(label)}"
        name = display_name(label)
        largest = max(regions, key=lambda r: (r.area_px, r.bbox))
        fields = {**class_fields("label", name), "count": len(regions),
                  "where": where_in_image(largest, pt.tile.size)}
        many = len(regions) > 1
        share = pt.fractions.get(CLASS_IDS[label])
        if share:
            head = pick(t, TASK, "share", sid, percent=pt.percent(CLASS_IDS[label]), **fields)
            slot = "patches_many" if many else "patches_one"
            specks = "specks_many" if many else "specks_one"
            if has_specks(pt, CLASS_IDS[label], regions) and has_slot(t, TASK, specks):
                slot = specks  # the regions do not hold all of the class: "a single patch" would be a wrong count
            tail = pick(t, TASK, slot, sid, **fields)
            answer = f"{head} {tail}"
        else:
            answer = pick(t, TASK, "no_share_many" if many else "no_share_one", sid, **fields)
        prompt = pick(t, TASK, "prompt", sid, **fields)
        out.append(make_row(pt, TASK, sid, [pt.chip_path], prompt, answer, sidecar_extra={"class": label}))
    return out
