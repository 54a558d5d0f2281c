"""Small SVG bar charts of a build report: rows per task and split, tiles per dominant class, boxes per
grounding row. Plain SVG text, no plotting library, so the card and the preview page show the same pictures
and the bytes are the same on every run."""

from __future__ import annotations

from html import escape
from typing import Any

from transforms.classes import CLASS_NAMES, PALETTE_HEX
from transforms.input.sidecars import VALID_SPLITS

SPLIT_COLOURS = {"train": "#4C78A8", "validation": "#F58518", "test": "#54A24B"}
WIDTH, BAR_H, GAP, LABEL_W = 560, 18, 6, 170


def bar_chart(title: str, rows: list[tuple[str, list[tuple[float, str]]]], legend: list[tuple[str, str]] = ()
              ) -> str:
    """Horizontal stacked bars: one row per label, each a list of (value, colour) segments."""
    total = max((sum(v for v, _ in segs) for _, segs in rows), default=0) or 1
    plot_w = WIDTH - LABEL_W - 60
    top = 34 + (18 if legend else 0)
    height = top + len(rows) * (BAR_H + GAP) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
           f'<text x="8" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    x = 8
    for name, colour in legend:
        out.append(f'<rect x="{x}" y="30" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x + 14}" y="39">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    for i, (label, segs) in enumerate(rows):
        y = top + i * (BAR_H + GAP)
        out.append(f'<text x="{LABEL_W - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>')
        left = LABEL_W
        for value, colour in segs:
            w = plot_w * value / total
            if w > 0:
                out.append(f'<rect x="{left:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{colour}"/>')
            left += w
        out.append(f'<text x="{left + 4:.1f}" y="{y + 13}">{sum(v for v, _ in segs):g}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def report_charts(report: dict[str, Any]) -> dict[str, str]:
    """File name -> SVG for the charts a report supports (a mix has no tile tables)."""
    charts = {}
    by_task = report.get("rows", {}).get("by_task_split", {})
    if by_task:
        charts["rows_per_task.svg"] = bar_chart(
            "Rows per task and split",
            [(task, [(by_task[task].get(s, 0), SPLIT_COLOURS[s]) for s in VALID_SPLITS]) for task in sorted(by_task)],
            [(s, SPLIT_COLOURS[s]) for s in VALID_SPLITS])
    classes = report.get("classes", {})
    if classes:
        charts["tiles_per_dominant_class.svg"] = bar_chart(
            "Tiles per dominant class",
            [(name, [(classes.get(name, {}).get("dominant_tiles", 0), PALETTE_HEX[i])])
             for i, name in enumerate(CLASS_NAMES)])
    boxes = report.get("boxes_per_row", {})
    if boxes:
        charts["boxes_per_row.svg"] = bar_chart(
            "Grounding rows by number of boxes", [(f"{k} boxes", [(n, "#72B7B2")]) for k, n in boxes.items()])
    return charts
