"""The same per-tile work as `satsft build`, in a plain Python loop without Beam (the baseline for the
pipeline / loop ratio): parse sidecars and references, join, assign splits, generate and gate rows, render
and write analysis images, write row sidecars, JSONL, Parquet and copies."""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

import orjson

from pipeline.build.config import BuildConfig
from transforms import collector, fileio
from transforms.analysis.render import render_tile_pngs
from transforms.generate import tile_rows
from transforms.input.images import ImageFile, inspect_image
from transforms.input.join import index_stills, join_tile, lookup_still
from transforms.input.refs import file_rank, parse_line
from transforms.input.sidecars import parse_sidecar
from transforms.output.formats import jsonl_bytes, parquet_bytes
from transforms.paths import base_poi_id, file_stem
from transforms.rebuild.manifest import allocate_slots
from transforms.rows import PreparedTile
from transforms.splits.plan import initial_split, plan_reassignment, resolve_leakage, split_counts


def run(input_root: str, output_root: str) -> int:
    config = BuildConfig.create(input=input_root, output=output_root, check_paths=False)
    ctx = config.task_context()
    root = Path(input_root)
    chips: dict[str, list] = defaultdict(list)
    stills: dict[str, list] = defaultdict(list)
    for path in sorted((root / "data").glob("*.jsonl")):
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            for ref in parse_line(line, file_rank(str(path)), n)[0]:
                if ref.kind in ("chip", "still"):
                    (chips if ref.kind == "chip" else stills)[ref.stem].append(ref)
    chip_files: dict[str, list[ImageFile]] = defaultdict(list)
    for p in (root / "images").rglob("*"):
        if p.is_file():
            chip_files[p.stem].append(inspect_image(input_root, str(p.relative_to(root)), p.stat().st_size))
    still_found = []
    for stem, refs in stills.items():
        ref = min(refs)
        if (root / ref.path).is_file():
            still = inspect_image(input_root, ref.path, (root / ref.path).stat().st_size, still=True)
            if not still.problem:
                still_found.append((stem, ref.path))
    still_index = index_stills(still_found)
    sidecars: dict[str, list] = defaultdict(list)
    for p in (root / "metadata").rglob("*.json"):
        parsed = parse_sidecar(p.read_bytes(), str(p.relative_to(root)))
        if parsed.tile:
            sidecars[parsed.tile.tile_stem].append(parsed.tile)
    by_base = defaultdict(list)
    for stem, tiles in sidecars.items():
        tile, _ = join_tile(stem, tiles, chips.get(stem, []), chip_files.get(file_stem(stem), []), input_root)
        if tile:
            by_base[base_poi_id(stem)].append(lookup_still(tile, still_index, input_root))
    plan = plan_reassignment((base, split_counts(initial_split(t) for t in tiles)) for base, tiles in by_base.items())
    kept = [t for base, tiles in by_base.items() for t in resolve_leakage(base, tiles, "reassign", plan)[0]]
    index = dict(allocate_slots([t.tile_stem for t in kept], 0))
    records: dict[str, list[dict]] = defaultdict(list)
    copies = {}
    n_rows = 0
    for tile in kept:
        pt = PreparedTile(tile, index[tile.tile_stem], ctx, fileio.read_bytes(tile.chip_src))
        rows, _ = tile_rows(pt, config.tasks, config.max_prompt_chars)
        for pos, row in enumerate(rows):
            n_rows += 1
            records[tile.split].append(row.record)
            fileio.write_bytes(os.path.join(output_root, "metadata", f"{pos}_{row.sample_id}.json"),
                               orjson.dumps(row.sidecar, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        renders = [row for row in rows if row.render_spec]
        for row, png in zip(renders, render_tile_pngs(pt.chip, [r.render_spec for r in renders]), strict=True):
            fileio.write_bytes(os.path.join(output_root, row.record["metadata"]["analysis_image_path"]), png)
        copies[pt.chip_path] = tile.chip_src
        if pt.still_path:
            copies[pt.still_path] = tile.still_src
    for dst, src in copies.items():
        fileio.link_or_copy(src, os.path.join(output_root, dst))
    for split, recs in records.items():  # the default formats, JSONL and Parquet, sorted like the shards
        recs.sort(key=lambda r: r["metadata"]["sample_id"])
        fileio.write_bytes(os.path.join(output_root, "data", f"{split}.jsonl"), jsonl_bytes(recs))
        fileio.write_bytes(os.path.join(output_root, "parquet", f"{split}-00000-of-00001.parquet"), parquet_bytes(recs))
    return n_rows


if __name__ == "__main__":
    with collector.tuned():  # the build's collector settings, so the ratio compares like with like
        print(run(sys.argv[1], sys.argv[2]))
