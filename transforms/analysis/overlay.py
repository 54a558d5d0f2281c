"""Region overlays: the sidecar's boxes drawn on the chip, so a person can check labels at a glance."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from transforms.classes import PALETTE_RGB

RegionBox = tuple[str, int, tuple[int, int, int, int]]  # (label, class id, inclusive pixel box)


def draw_regions(chip_png: bytes, size: int, regions: Sequence[RegionBox]) -> bytes:
    """A PNG of the chip with each box outlined in its Dynamic World colour and labelled in its top-left corner.

    Boxes are in the sidecar's `output_size` pixels; a chip stored at another resolution is drawn on with
    the boxes scaled to it. Smaller boxes are drawn last so they stay visible on top of large ones.
    """
    with Image.open(io.BytesIO(chip_png)) as im:
        canvas = im.convert("RGB")
    sx, sy = canvas.width / size, canvas.height / size
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    ordered = sorted(regions, key=lambda r: -((r[2][2] - r[2][0] + 1) * (r[2][3] - r[2][1] + 1)))
    for label, class_id, (x1, y1, x2, y2) in ordered:
        colour = PALETTE_RGB[class_id]
        box = (round(x1 * sx), round(y1 * sy), round((x2 + 1) * sx) - 1, round((y2 + 1) * sy) - 1)
        draw.rectangle(box, outline=colour, width=2)
        left, top, right, bottom = draw.textbbox((box[0] + 3, box[1] + 2), label, font=font)
        draw.rectangle((left - 2, top - 1, right + 1, bottom + 1), fill=colour)
        draw.text((box[0] + 3, box[1] + 2), label, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    canvas.save(out, format="PNG", compress_level=6)
    return out.getvalue()
