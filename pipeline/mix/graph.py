"""build_mix_pipeline: the graph of `satsft mix` (sources -> normalise -> dedup -> copies -> global order ->
split files and media), its report mix_report.json and its dataset card."""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import orjson

from pipeline import __version__
from pipeline.mix.config import MixConfig
from pipeline.mix.recipe import Recipe
from pipeline.publish.card import render_mix_card
from pipeline.publish.report import write_charts
from transforms import fileio
from transforms.fileio import public_location
from transforms.input.sidecars import VALID_SPLITS
from transforms.mix.stages import EVENTS, REJECTS, MixRows, MixSource
from transforms.output.files import WriteRejects
from transforms.output.tree import CARD_NAME, MIX_REPORT_NAME
from transforms.paths import join_path


def mix_sources(recipe: Recipe) -> tuple[MixSource, ...]:
    owners: dict[str, str] = {}
    out = []
    for i, s in enumerate(recipe.sources):
        owner = owners.setdefault(s.dataset, s.name)
        out.append(MixSource(i, s.name, s.kind, s.root, dict(s.where), s.dataset, owner, s.folder))
    return tuple(out)


def summarise_mix(counts: dict[str, int], recipe: Recipe) -> dict[str, Any]:
    """Flat counter keys -> the nested counts of mix_report.json."""
    rows: dict[str, dict[str, int]] = {}
    per_source: dict[str, dict[str, dict[str, int]]] = {s.name: {"in": {}, "out": {}, "deduplicated": {}}
                                                        for s in recipe.sources}
    rejects: dict[str, int] = {}
    files: dict[str, dict[str, int]] = {}
    dropped: dict[str, dict[str, int]] = {}
    repeats: dict[str, float] = {}
    other: dict[str, int] = {}
    for key, n in sorted(counts.items()):
        kind, _, rest = key.partition("|")
        if kind == "rows":
            task, split = rest.split("|")
            rows.setdefault(task, {})[split] = n
        elif kind == "source":
            name, side, split = rest.split("|")
            per_source[name][side][split] = n
        elif kind == "deduplicated":
            name, split = rest.split("|")
            per_source[name]["deduplicated"][split] = n
        elif kind == "rejects":
            reason = rest.split("|", 1)[1]
            rejects[reason] = rejects.get(reason, 0) + n
        elif kind == "files":
            fmt, path = rest.split("|", 1)
            files.setdefault(fmt, {})[path] = n
        elif kind == "dropped_columns":
            name, column = rest.split("|", 1)
            dropped.setdefault(name, {})[column] = n
        elif kind == "repeat_milli":
            repeats[rest] = n / 1000
        else:
            other[key] = n
    train_total = sum(v["out"].get("train", 0) for v in per_source.values())
    sources = []
    for s in recipe.sources:
        c = per_source[s.name]
        sources.append({
            "name": s.name, "path": public_location(s.path), "kind": s.kind,
            "where": {k: list(v) for k, v in s.where.items()}, "repeat": repeats.get(s.name, s.repeat or 0.0),
            "share": s.share, "rows_in": {sp: c["in"].get(sp, 0) for sp in VALID_SPLITS},
            "rows_out": {sp: c["out"].get(sp, 0) for sp in VALID_SPLITS},
            "deduplicated": {sp: n for sp, n in c["deduplicated"].items() if n},
            "share_of_train": round(c["out"].get("train", 0) / train_total, 6) if train_total else 0.0,
            "dropped_columns": dropped.get(s.name, {}),
        })
    return {"sources": sources,
            "rows": {"total": sum(sum(v.values()) for v in rows.values()), "by_task_split": rows},
            "rejects_by_reason": dict(sorted(rejects.items(), key=lambda kv: (-kv[1], kv[0]))),
            "files": files, "outputs": other}


def write_mix_report(output: str, recipe: Recipe, config: dict[str, Any], counts: dict[str, int]) -> None:
    report = {"satsft_version": __version__, "kind": "mix", "seed": recipe.seed, "config": config,
              **summarise_mix(counts, recipe)}
    fileio.write_bytes(join_path(output, MIX_REPORT_NAME), orjson.dumps(report, option=orjson.OPT_INDENT_2))
    write_charts(output, report)
    fileio.write_bytes(join_path(output, CARD_NAME), render_mix_card(report).encode())


def _event_items(event: dict[str, int]) -> list[tuple[str, int]]:
    return list(event.items())


def build_mix_pipeline(recipe: Recipe, config: MixConfig, pipeline: beam.Pipeline) -> beam.Pipeline:
    sources = mix_sources(recipe)
    files = [(s_index, f_index, path) for s_index, s in enumerate(recipe.sources)
             for f_index, path in enumerate(s.files)]
    mixed = (pipeline
             | "SourceFiles" >> beam.Create(files)
             | "Mix" >> MixRows(sources, recipe.seed, config.output, config.formats, config.embed_images,
                                config.rows_per_shard, config.max_files_per_dir,
                                {s.name: s.repeat for s in recipe.sources}, {s.name: s.share for s in recipe.sources}))
    written = mixed[REJECTS] | "WriteRejects" >> WriteRejects(config.output)
    keyed = [mixed[EVENTS] | "EventKeys" >> beam.FlatMap(_event_items),
             mixed[REJECTS] | "RejectKeys" >> beam.Map(lambda r: (f"rejects|{r['stage']}|{r['reason']}", 1)),
             written | "RejectFileKeys" >> beam.FlatMap(_event_items)]
    cfg, out = config.as_dict(), config.output
    _ = (keyed
         | "AllCounts" >> beam.Flatten()
         | "Sum" >> beam.CombinePerKey(sum)
         | "Collect" >> beam.combiners.ToDict()
         | "WriteReport" >> beam.Map(lambda c: write_mix_report(out, recipe, cfg, c)))
    return pipeline
