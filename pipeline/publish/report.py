"""build_report.json, the dataset card and the summary printed at the end of a build (no Beam here: `satsft
validate` reads reports without starting it)."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline import __version__
from pipeline.publish.card import render_card
from pipeline.publish.charts import report_charts
from transforms import fileio
from transforms.input.sidecars import VALID_SPLITS
from transforms.output.tree import CARD_NAME, CHARTS_DIR, REPORT_NAME, TIMINGS_NAME
from transforms.paths import join_path


def write_report(output: str, config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """build_report.json, then the card made from it (so the two never disagree)."""
    report = {"satsft_version": __version__, "config": config, **summary}
    fileio.write_bytes(join_path(output, REPORT_NAME), orjson.dumps(report, option=orjson.OPT_INDENT_2))
    write_charts(output, report)
    fileio.write_bytes(join_path(output, CARD_NAME), render_card(report).encode())
    return report


def write_charts(output: str, report: dict[str, Any]) -> None:
    for name, svg in report_charts(report).items():
        fileio.write_bytes(join_path(output, CHARTS_DIR, name), svg.encode())


def read_report(output: str, name: str = REPORT_NAME) -> dict[str, Any]:
    return orjson.loads(fileio.read_bytes(join_path(output, name)))


def add_timings(output: str, timings: dict[str, float], timings_name: str = TIMINGS_NAME,
                report_name: str = REPORT_NAME) -> dict[str, Any]:
    """Timings go to their own file: they differ on every run, and the report must not (reruns of the same
    build are byte-identical, so a scheduled rebuild of unchanged input changes no file)."""
    rounded = {k: round(v, 3) for k, v in timings.items()}
    fileio.write_bytes(join_path(output, timings_name), orjson.dumps(rounded, option=orjson.OPT_INDENT_2))
    return {**read_report(output, report_name), "timings": rounded}


def summary_table(report: dict[str, Any]) -> str:
    """Rows by task and split, tiles, and rejects by reason, as a plain-text table."""
    by_task = report["rows"]["by_task_split"]
    width = max([len(t) for t in by_task] + [len("total")])
    head = f"{'task':<{width}} " + " ".join(f"{s:>10}" for s in VALID_SPLITS) + f" {'total':>10}"
    lines = [head, "-" * len(head)]
    col_totals = dict.fromkeys(VALID_SPLITS, 0)
    for task in sorted(by_task):
        cells = [by_task[task].get(s, 0) for s in VALID_SPLITS]
        for s, n in zip(VALID_SPLITS, cells, strict=True):
            col_totals[s] += n
        lines.append(f"{task:<{width}} " + " ".join(f"{n:>10}" for n in cells) + f" {sum(cells):>10}")
    lines.append(f"{'total':<{width}} " + " ".join(f"{col_totals[s]:>10}" for s in VALID_SPLITS)
                 + f" {report['rows']['total']:>10}")
    t = report["tiles"]
    lines.append("")
    lines.append(f"tiles: {t['in']} in, {t['with_rows']} with rows, {t['rejected']} rejected"
                 + ("" if t["accounted"] else "  (WARNING: tiles in != with rows + rejected)"))
    splits = report.get("splits", {})
    if splits:
        lines.append("tiles by split (declared -> written, drift): " + ", ".join(
            f"{s} {splits['declared'][s]} -> {splits['written'][s]} ({splits['drift_pp'][s]:+.2f} pp)"
            for s in VALID_SPLITS))
    if report["rejects_by_reason"]:
        lines.append("rejects by reason: " + ", ".join(f"{r} {n}" for r, n in report["rejects_by_reason"].items()))
    timings = report.get("timings")
    if timings:
        lines.append("time: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    return "\n".join(lines)


def mix_summary(report: dict[str, Any]) -> str:
    """Rows in and out and the share of train per source, and rejects by reason, as a plain-text table."""
    lines = [f"{'source':<16} {'rows in':>22} {'repeat':>8} {'rows out':>24} {'share of train':>15}"]
    for s in report["sources"]:
        lines.append(f"{s['name']:<16} {'/'.join(str(v) for v in s['rows_in'].values()):>22} {s['repeat']:>8g} "
                     f"{'/'.join(str(v) for v in s['rows_out'].values()):>24} {100 * s['share_of_train']:>14.2f}%")
    lines.append(f"rows: {report['rows']['total']} (train/validation/test per source above)")
    if report["rejects_by_reason"]:
        lines.append("rejects by reason: " + ", ".join(f"{r} {n}" for r, n in report["rejects_by_reason"].items()))
    return "\n".join(lines)
