"""The dataset card README.md: a Hugging Face YAML header whose configs name the files written, then tables.

Everything on the card comes from build_report.json, so the card and the report can never disagree.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import yaml

from pipeline.publish.charts import report_charts
from transforms.classes import CLASS_NAMES
from transforms.input.sidecars import VALID_SPLITS
from transforms.output.tree import CHARTS_DIR, HUB_MAX_FILES

SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"))
# Which written format a card config points at, best first: loaders read Parquet fastest.
CONFIG_FORMATS = ("parquet", "jsonl")
OPTION_FLAGS = (("tasks", "--tasks"), ("profiles", "--profiles"), ("leakage", "--leakage"),
                ("tim_shift", "--tim-shift"), ("max_files_per_dir", "--max-files-per-dir"),
                ("max_prompt_chars", "--max-prompt-chars"), ("formats", "--formats"),
                ("rows_per_shard", "--rows-per-shard"), ("row_sidecars", "--row-sidecars"),
                ("layout", "--layout"), ("max_boxes", "--max-boxes"), ("min_box_px", "--min-box-px"))


def held_out_sharing(shared: dict) -> dict[str, int]:
    """Validation and test tiles on ground another split shows, by split (``splits.shared_ground``; none: {})."""
    return {s: n for s, n in shared.get("tiles", {}).items() if s != "train" and n}


def _shared_ground(shared: dict | None, mix: bool = False) -> list[str]:
    """What a reader of the held-out splits must know: whether their ground is also in another split (of a
    build, or of a mix of builds and mixes)."""
    if not shared:
        return []  # a report from before the check
    held = held_out_sharing(shared)
    unchecked = shared["tiles_without_footprint"]
    why = " (their builds or mixes were made before satsft kept footprints, or their sidecars say nothing)"
    note = (f" {unchecked:,} tile(s) say nothing of where they lie and were not checked{why if mix else ''}."
            if unchecked else "")
    if not held:
        return [f"No two tiles of different splits share ground (footprints overlapping by a tenth or more).{note}",
                ""]
    counts = " and ".join(f"{n:,} {s}" for s, n in held.items())
    cause = "the same place in two builds, " if mix else ""
    where = "`mix_report.json` (`shared_ground`)" if mix else "`build_report.json` (`splits.shared_ground`)"
    return [f"**Held-out tiles on ground another split shows.** {counts} tile(s) overlap a tile of another split by "
            f"a tenth of their footprint or more ({cause}chips cut with overlapping windows, or one place under two "
            f"POI ids): scores on them overstate how a model does on ground it has not seen.{note} The first pairs are "
            f"in {where}; `metadata/shared_ground.jsonl` lists the held-out tiles, and `satsft eval` scores the "
            "rows on ground no other split shows apart.", ""]


def hub_warning(report: dict[str, Any]) -> str:
    """What to do when an output has more files than the Hub takes; "" when it fits."""
    n = report.get("file_count", 0)
    if n <= HUB_MAX_FILES or report.get("config", {}).get("layout") == "hub":
        return ""
    if report.get("kind") == "mix":
        return (f"{n:,} files: the Hugging Face Hub takes fewer than {HUB_MAX_FILES:,} per repository; mix with "
                "--embed-images (images inside the Parquet rows, no media/ files) to publish there")
    return (f"{n:,} files: the Hugging Face Hub takes fewer than {HUB_MAX_FILES:,} per repository; build with "
            "--layout hub (Parquet rows with their images inside, under 1.5 files per tile) to publish there")


def files_note(report: dict[str, Any]) -> list[str]:
    """How many files the output has and, past the Hub's limit, what to do about it."""
    lines = [f"{report['file_count']:,} files in all.", ""] if report.get("file_count") else []
    warning = hub_warning(report)
    return lines + ([f"> **Warning:** {warning}.", ""] if warning else [])


def size_category(n: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if n < bound:
            return name
    return "n>10M"


def config_hash(config: dict[str, Any]) -> str:
    """Hash of the options that shape the output (not where it is read from or written to)."""
    shaping = {k: v for k, v in config.items() if k not in ("input", "output")}
    return hashlib.sha256(orjson.dumps(shaping, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def build_command(config: dict[str, Any]) -> str:
    """An equivalent command line for this build, rebuilt from the config rather than from argv."""
    parts = ["satsft build", f"--input {config['input']}", f"--output {config['output']}"]
    for key, flag in OPTION_FLAGS:
        value = config.get(key)
        parts.append(f"{flag} {','.join(value) if isinstance(value, list) else value}")
    for key in ("redact_location", "embed_images", "overlays"):
        if config.get(key):
            parts.append("--" + key.replace("_", "-"))
    for key in ("split_unit", "shared_ground"):
        if config.get(key):
            parts.append(f"--{key.replace('_', '-')} {config[key]}")
    if config.get("tile_share"):
        parts.append(f"--tile-share {config['tile_share']:g}")
    if config.get("prompts_dir"):
        parts.append(f"--prompts-dir {config['prompts_dir']}")
    return " ".join(parts)


def card_configs(files: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """`configs` for the YAML header: the default config reads Parquet (or JSONL when Parquet was not written),
    listing exactly the files of each split."""
    configs = []
    for fmt in CONFIG_FORMATS:
        if fmt not in files:
            continue
        by_split = {s: sorted(p for p in files[fmt] if p.rsplit("/", 1)[-1].startswith((f"{s}.", f"{s}-")))
                    for s in VALID_SPLITS}
        data_files = [{"split": s, "path": paths} for s, paths in by_split.items() if paths]
        configs.append({"config_name": "default" if not configs else fmt, "data_files": data_files})
    return configs




def charts_section(report: dict[str, Any]) -> list[str]:
    """The report's charts as images (written beside the card under charts/, as the preview shows them)."""
    names = sorted(report_charts(report))
    if not names:
        return []
    images = [f"![{n.removesuffix('.svg').replace('_', ' ')}]({CHARTS_DIR}/{n})" for n in names]
    return ["## Charts", "", *images, ""]


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines


def front_matter(title: str, tags: list[str], report: dict[str, Any]) -> list[str]:
    """The YAML header the Hub reads (configs name exactly the files written), then the title."""
    header = {
        "pretty_name": title,
        "license": "other",
        "task_categories": ["image-text-to-text", "visual-question-answering", "image-to-text"],
        "tags": ["remote-sensing", "earth-observation", *tags, "satsft"],
        "size_categories": [size_category(report["rows"]["total"])],
        "configs": card_configs(report.get("files", {})),
    }
    return ["---", yaml.safe_dump(header, sort_keys=False, width=1000).rstrip(), "---", "", f"# {title}", ""]


def render_card(report: dict[str, Any]) -> str:
    cfg, rows, tiles = report["config"], report["rows"], report["tiles"]
    total = rows["total"]
    out = front_matter("satsft Earth-observation SFT dataset", ["sentinel-2", "land-cover", "dynamic-world",
                                                                 "grounding"], report)
    out += [
           f"{total:,} supervised conversations built by satsft {report['satsft_version']} from "
           f"{tiles['with_rows']:,} Sentinel-2 tiles with Dynamic World land-cover labels. Each row is a "
           "`messages` list (system, user with images then text, assistant) plus `metadata`; image paths are "
           "relative to this folder.", "",
           "Licence: `other`. The chips inherit the licence of their source imagery (Copernicus Sentinel data) and "
           "labels (Dynamic World, CC-BY 4.0); overhead stills keep their provider's terms. Check them before "
           "redistributing.", "", "## Files", ""]
    file_rows = [[fmt, f"`{path}`", n] for fmt, paths in sorted(report.get("files", {}).items())
                 for path, n in sorted(paths.items())]
    out += _table(["format", "file", "rows"], file_rows) + [""]
    out += files_note(report)
    out += ["## Rows by task and split", ""]
    by_task = rows["by_task_split"]
    task_rows = [[t] + [by_task[t].get(s, 0) for s in VALID_SPLITS] + [sum(by_task[t].values())]
                 for t in sorted(by_task)]
    task_rows.append(["**total**"] + [sum(by_task[t].get(s, 0) for t in by_task) for s in VALID_SPLITS] + [total])
    out += _table(["task", *VALID_SPLITS, "total"], task_rows) + [""]
    out += ["## Tiles", ""]
    if cfg.get("tile_share"):
        out += [f"> **Note:** a try-out of part of the tree (`--tile-share {cfg['tile_share']:g}`): the tiles of "
                f"about that share of its base POIs, {tiles['in']:,} of "
                f"{tiles['in'] + report.get('outputs', {}).get('tiles_outside_share', 0):,} tile sidecars.", ""]
    out += _table(["tiles in", "with rows", "rejected", *[f"{s} tiles" for s in VALID_SPLITS]],
                  [[tiles["in"], tiles["with_rows"], tiles["rejected"],
                    *[tiles["by_split"].get(s, 0) for s in VALID_SPLITS]]]) + [""]
    splits = report.get("splits")
    if splits:
        grouped = ""
        if cfg.get("split_unit") == "ground":
            outputs = report.get("outputs", {})
            grouped = (" With `--split-unit ground` a base counted as one with every base whose tiles share ground "
                       f"with its tiles: {outputs.get('bases_joined_by_ground', 0):,} base POIs were joined into "
                       f"{outputs.get('ground_groups', 0):,} group(s).")
        if cfg.get("shared_ground") == "drop":
            dropped = report.get("rejects_by_reason", {}).get("split_shared_ground", 0)
            grouped += (f" With `--shared-ground drop` {dropped:,} new tile(s) that would have shown ground a tile "
                        "of another split shows were rejected (`split_shared_ground`): train ones first, then "
                        "validation ones.")
        out += ["## Splits", "", "Tiles per split as the input declared them and as written. A base POI whose tiles "
                "spanned splits went whole to one split, chosen to keep these shares (`--leakage "
                f"{cfg['leakage']}`).{grouped}", ""]
        n_in, n_out = sum(splits["declared"].values()) or 1, sum(splits["written"].values()) or 1
        out += _table(["split", "tiles declared", "tiles written", "share declared", "share written", "drift (pp)"],
                      [[s, splits["declared"][s], splits["written"][s], f"{100 * splits['declared'][s] / n_in:.2f}%",
                        f"{100 * splits['written'][s] / n_out:.2f}%", f"{splits['drift_pp'][s]:+.2f}"]
                       for s in VALID_SPLITS]) + [""]
        out += _shared_ground(splits.get("shared_ground"))
    out += ["## Drops by reason", ""]
    drops = report["rejects_by_reason"]
    out += (_table(["reason", "count"], [[f"`{r}`", n] for r, n in drops.items()]) if drops
            else ["Nothing was dropped."]) + [""]
    out += charts_section(report)
    out += ["## Classes", "", "Tiles where the class has the largest share, and region boxes of the class.", ""]
    classes = report.get("classes", {})
    out += _table(["class", "dominant in tiles", "region boxes"],
                  [[c, classes.get(c, {}).get("dominant_tiles", 0), classes.get(c, {}).get("regions", 0)]
                   for c in CLASS_NAMES]) + [""]
    out += ["## Boxes per grounding row", ""]
    boxes = report.get("boxes_per_row", {})
    out += (_table(["boxes", "rows"], [[k, n] for k, n in boxes.items()]) if boxes
            else ["No grounding rows."]) + [""]
    left_out = report.get("boxes_left_out", {})
    if boxes and "max_boxes" in cfg:
        out += [f"A grounding answer lists at most {cfg['max_boxes']} regions, the largest first, none under "
                f"{cfg['min_box_px']} px (`--max-boxes`, `--min-box-px`); each row sidecar keeps every region. "
                "Regions left out of answers: " + (", ".join(f"{t} {n:,}" for t, n in sorted(left_out.items()))
                                                   or "none") + ".", ""]
    out += ["## How it was built", "", "```", build_command(cfg), "```", "",
            f"- satsft version: {report['satsft_version']}",
            f"- config hash: `{config_hash(cfg)}` (same hash and input, same bytes)",
            f"- leakage policy: {cfg['leakage']}; tiles moved to keep a base in one split: "
            f"{report.get('outputs', {}).get('split_reassigned', 0)}",
            "- full counts and the config: `build_report.json`; dropped inputs with reasons: `rejects/`", ""]
    return "\n".join(out)


def _filter_text(where: dict[str, list[str]]) -> str:
    return ", ".join(f"{k}={'|'.join(v)}" for k, v in where.items()) or "all rows"


def render_mix_card(report: dict[str, Any]) -> str:
    """The card of a `satsft mix` output: the loader header, then what each source gave."""
    rows = report["rows"]
    total = rows["total"]
    out = front_matter("satsft training mix", ["mix"], report)
    out += [
           f"{total:,} rows mixed by satsft {report['satsft_version']} from {len(report['sources'])} sources, "
           f"in one seeded global order (seed {report['seed']}). Repeats and shares apply to train only; "
           "validation and test hold each selected row once. Every row keeps its task and names its `source` and "
           "`repeat_index` in `metadata`; ids are `<sample_id>#<source>.r<copy>`.", "",
           "Licence: `other`: each source keeps its own terms.", "", "## Sources", ""]
    src_rows = []
    for s in report["sources"]:
        src_rows.append([f"`{s['name']}`", f"`{s['path']}`", _filter_text(s["where"]),
                         " / ".join(str(s["rows_in"][sp]) for sp in VALID_SPLITS),
                         f"{s['repeat']:g}" + (f" (share {s['share']:g})" if s.get("share") else ""),
                         " / ".join(str(s["rows_out"][sp]) for sp in VALID_SPLITS),
                         f"{100 * s['share_of_train']:.2f}%"])
    out += _table(["source", "path", "filter", "rows in (train / validation / test)", "repeat",
                   "rows out (train / validation / test)", "share of train"], src_rows) + [""]
    out += _shared_ground(report.get("shared_ground"), mix=True)  # present where builds among the sources said
    if report.get("config", {}).get("shared_ground") == "drop":
        dropped = report.get("shared_ground", {}).get("dropped_tiles", 0)
        rows_left_out = report.get("rejects_by_reason", {}).get("split_shared_ground", 0)
        out += [f"With `--shared-ground drop` the rows of {dropped:,} tile(s) on ground a tile of another split "
                f"shows were left out ({rows_left_out:,} rows, `split_shared_ground`): train ones first, then "
                "validation ones, so the held-out splits keep theirs.", ""]
    out += ["## Rows by task and split", ""]
    by_task = rows["by_task_split"]
    task_rows = [[t] + [by_task[t].get(s, 0) for s in VALID_SPLITS] + [sum(by_task[t].values())]
                 for t in sorted(by_task)]
    out += _table(["task", *VALID_SPLITS, "total"], task_rows) + [""]
    out += charts_section(report)
    out += ["## Files", ""]
    out += _table(["format", "file", "rows"], [[fmt, f"`{path}`", n] for fmt, paths in
                                              sorted(report.get("files", {}).items()) for path, n in
                                              sorted(paths.items())]) + [""]
    out += files_note(report)
    out += ["## Drops by reason", ""]
    drops = report["rejects_by_reason"]
    out += (_table(["reason", "count"], [[f"`{r}`", n] for r, n in drops.items()]) if drops
            else ["Nothing was dropped."]) + [""]
    return "\n".join(out)
