"""build_report.json and mix_report.json, the cards made from them and the summaries printed at the end of a
run (no Beam here: `satsft validate` reads reports without starting it).

Both commands count in the same flat keys (``kind|...`` -> n, summed in the graph); one summariser nests the
kinds they share (rows, rejects, files) and each report adds its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from pipeline import __version__
from pipeline.publish.card import held_out_sharing, hub_warning, render_card, render_mix_card
from pipeline.publish.charts import report_charts
from transforms import fileio
from transforms.fileio import public_location
from transforms.input.refs import IGNORED_REFS, REBASED_REFS
from transforms.input.share import SHARE_LEFT_OUT
from transforms.input.sidecars import PAST_FRAME, SPLIT_WORDS, VALID_SPLITS, XYWH
from transforms.output.tree import (
    CARD_NAME,
    CHARTS_DIR,
    MIX_REPORT_NAME,
    MIX_TIMINGS_NAME,
    REPORT_NAME,
    TIMINGS_NAME,
)
from transforms.paths import CASE_MATCHED, HIDDEN_SKIPPED, NESTED_NOT_READ, WRITTEN_WHOLE, join_path
from transforms.records import TILE_STAGES
from transforms.splits.plan import UNKNOWN_SPLIT, split_drift_pp


class Counts:
    """Flat counter keys nested once: rows by task and split, rejects by (stage, reason), files by format and
    path; every other kind is left in ``rest`` as (kind, the rest of the key, key, n), in key order."""

    def __init__(self, counts: dict[str, int]):
        self.rows: dict[str, dict[str, int]] = {}
        self.rejects: dict[tuple[str, str], int] = {}
        self.files: dict[str, dict[str, int]] = {}
        self.rest: list[tuple[str, str, str, int]] = []
        for key, n in sorted(counts.items()):
            kind, _, rest = key.partition("|")
            if kind == "rows":
                task, split = rest.split("|")
                self.rows.setdefault(task, {})[split] = n
            elif kind == "rejects":
                stage, reason = rest.split("|", 1)
                self.rejects[(stage, reason)] = n
            elif kind == "files":
                fmt, path = rest.split("|", 1)
                self.files.setdefault(fmt, {})[path] = n
            else:
                self.rest.append((kind, rest, key, n))

    def rows_section(self) -> dict[str, Any]:
        return {"total": sum(sum(v.values()) for v in self.rows.values()), "by_task_split": self.rows}

    def rejects_by_reason(self) -> dict[str, int]:
        by_reason: dict[str, int] = {}
        for (_, reason), n in self.rejects.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
        return dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])))


def summarise(counts: dict[str, int]) -> dict[str, Any]:
    """Flat counter keys -> the nested counts of build_report.json, with the accounting identity checked."""
    c = Counts(counts)
    tiles_rejected = sum(n for (stage, _), n in c.rejects.items() if stage in TILE_STAGES)
    tiles_by_split: dict[str, int] = {}
    declared: dict[str, int] = {}
    classes: dict[str, dict[str, int]] = {}
    boxes: dict[int, int] = {}
    left_out: dict[str, int] = {}
    rebuild: dict[str, int] = {}
    shared = shared_ground_section()
    other: dict[str, int] = {}
    for kind, rest, key, n in c.rest:
        if kind == "rebuild":
            rebuild[rest] = n
        elif kind == "shared_ground":
            _add_shared_ground(shared, rest, n)
        elif kind == "boxes_left_out":
            left_out[rest] = n
        elif kind == "tiles":
            tiles_by_split[rest] = n
        elif kind == "declared":
            declared[rest] = n
        elif kind in ("dominant", "regions"):
            classes.setdefault(rest, {"dominant_tiles": 0, "regions": 0})[
                "dominant_tiles" if kind == "dominant" else "regions"] = n
        elif kind == "boxes":
            boxes[int(rest)] = n
        else:
            other[key] = n
    tiles_in = other.pop("tiles_in", 0)
    with_rows = sum(tiles_by_split.values())
    return {
        "tiles": {"in": tiles_in, "with_rows": with_rows, "rejected": tiles_rejected,
                  "by_split": tiles_by_split, "accounted": tiles_in == with_rows + tiles_rejected},
        "splits": {"declared": {s: declared.get(s, 0) for s in VALID_SPLITS},
                   "written": {s: tiles_by_split.get(s, 0) for s in VALID_SPLITS},
                   "drift_pp": split_drift_pp(declared, tiles_by_split),
                   "shared_ground": shared},
        "rows": c.rows_section(),
        "rejects_by_reason": c.rejects_by_reason(),
        "classes": dict(sorted(classes.items())),
        "boxes_per_row": {str(k): boxes[k] for k in sorted(boxes)},
        "boxes_left_out": left_out,
        **({"rebuild": dict(sorted(rebuild.items()))} if rebuild else {}),
        "files": c.files,
        "outputs": other,
    }


def shared_ground_section() -> dict[str, Any]:
    """``splits.shared_ground``: tiles of different splits whose footprints overlap (transforms/splits/footprints)."""
    return {"pairs": {f"{a}|{b}": 0 for n, a in enumerate(VALID_SPLITS) for b in VALID_SPLITS[n + 1:]},
            "tiles": {s: 0 for s in VALID_SPLITS}, "tiles_without_footprint": 0, "examples": []}


def _add_shared_ground(section: dict[str, Any], rest: str, n: int) -> None:
    what, _, detail = rest.partition("|")
    if what == "pairs":
        section["pairs"][detail] = section["pairs"].get(detail, 0) + n
    elif what == "tiles":
        section["tiles"][detail] = section["tiles"].get(detail, 0) + n
    elif what == "tiles_without_footprint":
        section["tiles_without_footprint"] += n
    elif what == "builds":  # a mix: the builds whose manifests were read
        section["builds"] = section.get("builds", 0) + n
    elif what == "dropped_tiles":  # a mix with --shared-ground drop: tiles whose rows it left out
        section["dropped_tiles"] = section.get("dropped_tiles", 0) + n
    elif what == "example":
        a, split_a, b, split_b, share = detail.split("\t")
        section["examples"].append({"tile": a, "split": split_a, "other_tile": b, "other_split": split_b,
                                    "share": float(share)})


def summarise_mix(counts: dict[str, int], sources: Sequence[MixSourceInfo]) -> dict[str, Any]:
    """Flat counter keys -> the nested counts of mix_report.json; ``sources`` in recipe order."""
    c = Counts(counts)
    per_source: dict[str, dict[str, dict[str, int]]] = {s.name: {"in": {}, "out": {}, "deduplicated": {}}
                                                        for s in sources}
    dropped: dict[str, dict[str, int]] = {}
    shared = shared_ground_section()
    repeats: dict[str, float] = {}
    other: dict[str, int] = {}
    for kind, rest, key, n in c.rest:
        if kind == "source":
            name, side, split = rest.split("|")
            per_source[name][side][split] = n
        elif kind == "deduplicated":
            name, split = rest.split("|")
            per_source[name]["deduplicated"][split] = n
        elif kind == "dropped_columns":
            name, column = rest.split("|", 1)
            dropped.setdefault(name, {})[column] = n
        elif kind == "repeat_milli":
            repeats[rest] = n / 1000
        elif kind == "shared_ground":
            _add_shared_ground(shared, rest, n)
        else:
            other[key] = n
    train_total = sum(v["out"].get("train", 0) for v in per_source.values())
    out = []
    for s in sources:
        sc = per_source[s.name]
        out.append({
            "name": s.name, "path": public_location(s.path), "kind": s.kind, "image_root": public_location(s.root),
            "where": {k: list(v) for k, v in s.where.items()}, "repeat": repeats.get(s.name, s.repeat or 0.0),
            "share": s.share, "rows_in": {sp: sc["in"].get(sp, 0) for sp in VALID_SPLITS},
            "rows_out": {sp: sc["out"].get(sp, 0) for sp in VALID_SPLITS},
            "deduplicated": {sp: n for sp, n in sc["deduplicated"].items() if n},
            "share_of_train": round(sc["out"].get("train", 0) / train_total, 6) if train_total else 0.0,
            "dropped_columns": dropped.get(s.name, {}),
        })
    return {"sources": out, "rows": c.rows_section(), "rejects_by_reason": c.rejects_by_reason(),
            **({"shared_ground": shared} if shared.get("builds") else {}), "files": c.files, "outputs": other}


class MixSourceInfo(Protocol):
    """What the mix report says of a recipe source (pipeline.mix.recipe.Source)."""

    name: str
    path: str
    kind: str
    where: dict[str, tuple[str, ...]]
    repeat: float | None
    share: float | None
    root: str


# Events that stand for one file written each (a dropped row's sidecar counts -1).
FILE_EVENTS = ("analysis_images_written", "overlays_written", "reject_files_written", "row_sidecars_written",
               "source_images_linked", "source_images_copied", "media_written", "media_linked", "files_reused",
               "manifest_files_written", "shared_ground_files_written", "places_files_written",
               "footprint_files_written")


def file_count(report: dict[str, Any], timings_name: str) -> int:
    """Every file the run writes: split files, images, sidecars and rejects from the counts, then the charts,
    the card, the report and the timings (the launcher writes those when it waits for the job)."""
    outputs = report.get("outputs", {})
    counted = sum(len(paths) for paths in report.get("files", {}).values()) + sum(outputs.get(k, 0)
                                                                              for k in FILE_EVENTS)
    return counted + len(report_charts(report)) + len((CARD_NAME, REPORT_NAME, timings_name))


def write_report(output: str, config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """build_report.json, then the card made from it (so the two never disagree)."""
    report = {"satsft_version": __version__, "config": config, **summary}
    report["file_count"] = file_count(report, TIMINGS_NAME)
    fileio.write_bytes(join_path(output, REPORT_NAME), orjson.dumps(report, option=orjson.OPT_INDENT_2))
    write_charts(output, report)
    fileio.write_bytes(join_path(output, CARD_NAME), render_card(report).encode())
    return report


def write_mix_report(output: str, seed: int, sources: Sequence[MixSourceInfo], config: dict[str, Any],
                     counts: dict[str, int]) -> dict[str, Any]:
    """mix_report.json, then its card."""
    report = {"satsft_version": __version__, "kind": "mix", "seed": seed, "config": config,
              **summarise_mix(counts, sources)}
    report["file_count"] = file_count(report, MIX_TIMINGS_NAME)
    fileio.write_bytes(join_path(output, MIX_REPORT_NAME), orjson.dumps(report, option=orjson.OPT_INDENT_2))
    write_charts(output, report)
    fileio.write_bytes(join_path(output, CARD_NAME), render_mix_card(report).encode())
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
    left_out = report.get("outputs", {}).get(SHARE_LEFT_OUT, 0)
    if "tile_share" in report.get("config", {}):
        lines.append(f"note: a try-out of --tile-share {report['config']['tile_share']:g}: {t['in']} of "
                     f"{t['in'] + left_out} tile sidecars are in it (whole base POIs, the same on every run); the "
                     "other tiles were not read")
    splits = report.get("splits", {})
    if splits:
        lines.append("tiles by split (declared -> written, drift): " + ", ".join(
            f"{s} {splits['declared'][s]} -> {splits['written'][s]} ({splits['drift_pp'][s]:+.2f} pp)"
            for s in VALID_SPLITS))
    lines += _input_warnings(report)
    lines += _closing_lines(report)
    r = report.get("rebuild")
    if r:
        earlier = ("the build it updated (--update)" if report["config"].get("update")
                   else f"--previous {report['config'].get('previous', '')}")
        redrawn = f"; drawn again, their files gone: {r['tiles_redrawn']}" if r.get("tiles_redrawn") else ""
        lines.append(f"against {earlier}: tiles kept {r['tiles_kept']}, new {r['tiles_new']}, removed "
                     f"{r['tiles_removed']}; moved split {r['tiles_moved_split']}{redrawn}")
    timings = report.get("timings")
    if timings:
        lines.append("time: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    return "\n".join(lines)


# What a task needs of a tile, for the warning when a task the build was asked for made no rows (a --min-box-px
# above every region, stills the JSONL names that cannot be used, no captions or shares).
TASK_NEEDS = {
    "caption": "caption needs a sidecar caption",
    "grounding_all": "grounding needs regions of at least --min-box-px ({min_box_px}) px",
    "grounding_per_class": "grounding needs regions of at least --min-box-px ({min_box_px}) px",
    "class_focus": "class_focus needs class_fractions and regions",
    "absence": "absence needs class_fractions, a class at most a trace without regions and one plainly in view",
    "cross_view": "cross_view needs a still under mapbox_stills/ that the JSONL names",
}


def _input_warnings(report: dict[str, Any]) -> list[str]:
    """What in the input the user most likely did not mean: tiles placed by hash although they declare a
    split, chips the JSONL names outside images/, a build that made no rows."""
    outputs, lines = report.get("outputs", {}), []
    unknown = outputs.get(UNKNOWN_SPLIT, 0)
    if unknown:
        words = "; ".join("/".join(w) for w in SPLIT_WORDS.values())
        lines.append(f"WARNING: {unknown} tile(s) declare a `split` that names no split ({words}): they were "
                     "placed by the hash of their POI id, as if they declared none")
    cfg = report.get("config", {})
    remedies = [flag for flag, on in (("--shared-ground drop", cfg.get("shared_ground") == "drop"),
                                      ("--split-unit ground", cfg.get("split_unit") == "ground")) if on]
    lines += shared_ground_warning(report.get("splits", {}).get("shared_ground", {}),
                                   kept_by=" or ".join(remedies) if report.get("rebuild") else "")
    splits = report.get("splits", {})
    emptied = [s for s in VALID_SPLITS if splits.get("declared", {}).get(s) and not splits.get("written", {}).get(s)]
    if cfg.get("split_unit") == "ground" and emptied and outputs.get("ground_groups"):
        fate = ("that spans splits is rejected (--leakage drop)" if cfg.get("leakage") == "drop"
                else "goes whole to one split")
        lines.append(f"WARNING: no {' or '.join(emptied)} tiles are left: with --split-unit ground every group of "
                     f"base POIs joined by shared ground {fate}, and the largest of the "
                     f"{outputs['ground_groups']:,} group(s) joins {outputs.get('ground_largest_group_bases', 0):,} "
                     f"of the {outputs['bases_joined_by_ground']:,} base POIs joined. Chips cut from one scene with "
                     "overlapping windows are one piece of ground; hold out whole scenes, cut chips at least their "
                     "size apart, or use --shared-ground drop, which keeps held-out tiles and rejects the train tiles "
                     "on their ground")
    ignored, orphans = outputs.get(IGNORED_REFS, 0), report["rejects_by_reason"].get("stem_not_in_jsonl", 0)
    if ignored and orphans:
        lines.append(f"WARNING: {orphans} tile(s) have no chip reference, and {ignored} image reference(s) in "
                     "data/*.jsonl lie outside images/ and mapbox_stills/ or are inline data: URLs, which are not "
                     "read: chips must be "
                     "referenced as images/**/<tile_stem>.png, relative to the tree's root")
    rejected = report["rejects_by_reason"]
    counted = (
        (outputs.get(HIDDEN_SKIPPED, 0), "note: {n} file(s) under names starting with '.' (a Mac's ._ files, "
                                         ".DS_Store, .ipynb_checkpoints/) are no part of the tree and were not read"),
        (outputs.get(REBASED_REFS, 0), "note: {n} image reference(s) in data/*.jsonl are absolute paths or URLs, or "
                                       "relative to data/; each was read below the input root from its images/ or "
                                       "mapbox_stills/ folder on (/old/tree/images/a.png and ../images/a.png as "
                                       "images/a.png), never at the path itself"),
        (rejected.get(XYWH, 0), f"WARNING: {{n}} region(s) were rejected ({XYWH}): their tiles' boxes read as [x, y, "
                                "width, height], COCO's order, where the sat-bbox contract writes [x1, y1, x2, y2] "
                                "pixels with the max corner inclusive; convert them (x2 = x + width - 1, y2 = y + "
                                "height - 1) and build again"),
        (rejected.get(PAST_FRAME, 0), f"WARNING: {{n}} region(s) were rejected ({PAST_FRAME}): their sidecars have "
                                      "no output_size, so their boxes are read in the default 224 px frame, and they "
                                      "run past it: write each sidecar's output_size, the pixel frame of its boxes "
                                      "(its chip's width when the boxes are the chip's pixels), and build again"),
        (outputs.get(WRITTEN_WHOLE, 0), "note: {n} data/*.jsonl file(s) hold JSON written whole (one array of rows, "
                                        "or rows pretty-printed over several lines each), not a row per line; each "
                                        "was read a row at a time as the JSON it holds"),
        (outputs.get(CASE_MATCHED, 0), "note: {n} image reference(s) in data/*.jsonl name their file in another case "
                                       "(x.png of x.PNG, as a Mac or Windows, whose file systems ignore case, reads "
                                       "it); each was read as the one file its name matches ignoring case"),
    )
    lines += [said.format(n=n) for n, said in counted if n]
    deeper = outputs.get(NESTED_NOT_READ, 0)
    if deeper:
        orphans_said = (f", and {orphans} tile(s) have no chip reference (stem_not_in_jsonl)" if orphans else "")
        lines.append(f"WARNING: {deeper} chat file(s) in sub-folders of data/ were not read (only data/*.jsonl and "
                     f"data/*.json are){orphans_said}: move the files whose rows name this tree's chips into data/ "
                     "itself")
    asked = report.get("config", {}).get("tasks", [])
    stills_lost = any(r.startswith("still_") for r in report["rejects_by_reason"])
    empty = [t for t in asked if not sum(report["rows"]["by_task_split"].get(t, {}).values())
             and (t != "cross_view" or stills_lost)]  # stills are optional: a tree without any is no surprise
    if report["rows"]["total"] and empty:
        config = {"min_box_px": "?", **report["config"]}
        needs = list(dict.fromkeys(TASK_NEEDS[t].format(**config) for t in empty if t in TASK_NEEDS))
        gated = _gated(report)
        if gated:  # rows made and turned away by the gate: what the tiles lack is then not the likely cause
            needs = [f"the row gate turned away {gated}, see rejects/", *(["else: " + needs[0], *needs[1:]] if needs
                                                                            else [])]
        lines.append(f"WARNING: no rows for {', '.join(empty)}" + (f": {'; '.join(needs)}" if needs else ""))
    lost = report["rejects_by_reason"].get("previous_file_unreadable", 0)
    if lost:  # an unchanged tile's analysis image, overlay or row sidecar, gone from the earlier build by hand
        lines.append(f"WARNING: {lost} file(s) of unchanged tiles were gone from the earlier build, and rows name "
                     "them (rejects/ lists them): build again with --no-reuse, which draws every tile anew")
    if not report["rows"]["total"]:
        outside = report.get("outputs", {}).get("tiles_outside_share", 0)
        if report["tiles"]["in"]:
            gated = _gated(report)
            why = (f": the row gate turned away {gated}, see rejects/" if gated else
                   f": all {report['tiles']['in']} tile(s) were rejected, see rejects/")
        elif outside:
            why = (f": none of the tree's {outside:,} tile(s) lies in the places --tile-share "
                   f"{report['config'].get('tile_share', 1):g} takes; give a larger share")
        else:
            why = ": the input has no tile sidecars under metadata/"
        lines.append("WARNING: no rows were built" + why)
    return lines


GATE_REASONS = ("prompt_too_long", "invalid_grounding_json", "bloat:")  # transforms.gate's reasons (bloat:<what>)


def _gated(report: dict[str, Any]) -> str:
    """The rows the gate turned away, by reason ("162 row(s) (prompt_too_long 162: prompts over
    --max-prompt-chars 100)"), or "" when it turned none away."""
    gated = {r: n for r, n in sorted(report["rejects_by_reason"].items()) if r.startswith(GATE_REASONS)}
    if not gated:
        return ""
    limit = report.get("config", {}).get("max_prompt_chars")
    said = [f"{r} {n:,}" + (f": prompts over --max-prompt-chars {limit}" if r == "prompt_too_long" and limit else "")
            for r, n in gated.items()]
    return f"{sum(gated.values()):,} row(s) ({', '.join(said)})"


def mix_summary(report: dict[str, Any]) -> str:
    """Rows in and out and the share of train per source, and rejects by reason, as a plain-text table."""
    lines = [f"{'source':<16} {'rows in':>22} {'repeat':>8} {'rows out':>24} {'share of train':>15}"]
    for s in report["sources"]:
        lines.append(f"{s['name']:<16} {'/'.join(str(v) for v in s['rows_in'].values()):>22} {s['repeat']:>8g} "
                     f"{'/'.join(str(v) for v in s['rows_out'].values()):>24} {100 * s['share_of_train']:>14.2f}%")
    lines.append(f"rows: {report['rows']['total']} (train/validation/test per source above)")
    return "\n".join(lines + shared_ground_warning(report.get("shared_ground", {}), mix=True) + _closing_lines(report)
                     + _lost_sources(report))


def shared_ground_warning(shared: dict[str, Any], mix: bool = False, kept_by: str = "") -> list[str]:
    """The summary's warning when held-out tiles show ground another split shows (a build's
    ``splits.shared_ground``, or a mix's ``shared_ground`` over its builds' tiles). ``kept_by``: the remedy a
    rebuild ran with, which leaves the tiles an earlier build placed in their splits, so the remedy to name is a
    fresh build, not the option already given. A note follows, warning or not, when some tiles were not checked:
    a mix of an older mix said nothing of the 120 tiles it could not check, and printed no warning."""
    unchecked = shared.get("tiles_without_footprint", 0)
    note = [f"NOTE: {unchecked:,} tile(s) say nothing of where they lie, so they were not checked for ground another "
            "split shows (" + ("their source is a mix or build made before satsft kept footprints (a build's "
                               "manifest, a mix's metadata/footprints/): make it again, or mix the builds themselves, "
                               "to check them" if mix else
                               "their sidecars give neither a usable bbox_wgs84 nor latitude, longitude and "
                               "grid.resolution_m") + ")"
            ] if unchecked else []
    held = held_out_sharing(shared)
    if not held:
        return note
    where = ", ".join(f"{s} {n}" for s, n in held.items())
    cause, remedy = (("the same ground in two builds, or in one", "Select each place's rows from one build, or "
                      "build the trees as one with --shared-ground drop or --split-unit ground") if mix else
                     ("chips cut with overlapping windows, or one place under two POI ids", "Cut chips at least "
                      "their size apart, give overlapping chips one POI id, or build with --shared-ground drop (the "
                      "train tiles on held-out ground rejected) or --split-unit ground (joined places in one split)"))
    if kept_by:
        remedy = (f"This rebuild keeps every tile an earlier build placed in its split, and {kept_by} changes only "
                  "where new tiles go, so ground two kept tiles of different splits share stays shared; build "
                  "afresh (without --previous or --update) with it to split them apart")
    report_name = "mix_report.json (shared_ground)" if mix else "build_report.json (splits.shared_ground)"
    return [f"WARNING: {sum(held.values())} held-out tile(s) ({where}) show ground that a tile of another split "
            f"shows too (footprints overlapping by a tenth or more: {cause}), so a model is evaluated on ground it "
            f"may have trained on. {remedy}; the first pairs are in {report_name}", *note]


def _lost_sources(report: dict[str, Any]) -> list[str]:
    """A source that kept none of its rows: most often its image paths start from another folder than the one
    they were looked for in, which rejects every row as image_missing."""
    lines = []
    for s in report["sources"]:
        rows_in, duplicates = sum(s["rows_in"].values()), sum(s.get("deduplicated", {}).values())
        if not rows_in or sum(s["rows_out"].values()):
            continue
        lost = rows_in > duplicates
        lines.append(f"WARNING: source {s['name']} kept none of its {rows_in} rows"
                     + (f": {duplicates} duplicate an earlier source's" if duplicates else "")
                     + ("; rejects/ says why" if lost else ""))
        if lost and report["rejects_by_reason"].get("image_missing"):
            lines.append(f"  image_missing there means its image paths do not start at {s.get('image_root', '?')}: "
                         "set the source's image_root to the folder they start from")
    return lines


def _closing_lines(report: dict[str, Any]) -> list[str]:
    """What both end-of-run summaries say last: rejects by reason, files written and, past the Hub's limit,
    what to do."""
    lines = []
    if report["rejects_by_reason"]:
        lines.append("rejects by reason: " + ", ".join(f"{r} {n}" for r, n in report["rejects_by_reason"].items()))
    pointers = sum(n for r, n in report["rejects_by_reason"].items() if r.endswith("_lfs_pointer"))
    if pointers:  # one cause behind every such reject, and one command that fixes it
        lines.append(f"WARNING: {pointers} input file(s) are Git LFS pointers, not the files: they were cloned or "
                     "copied without Git LFS; run `git lfs install` and then `git lfs pull` in the clone")
    if report.get("file_count"):
        lines.append(f"files written: {report['file_count']:,}")
    if hub_warning(report):
        lines.append("WARNING: " + hub_warning(report))
    return lines
