"""Random option sets against the rebuild contract: for each seed, a sample tree is built, grown and edited (tiles
added, captions edited, sidecars removed, a chip changed, a still gone; at random copied from a Mac, or laid out
as a Hugging Face cache snapshot or a DataLad dataset, whose files are links), and then

- `build --update` of a copy of the first build and `build --previous FIRST --no-reuse` into a new folder give
  the same bytes (reuse changes no byte), with no link among what they wrote;
- the updated build validates.

A trial takes some 20-40 s; the suite cannot afford many, so this runs by hand (`make fuzz`, or
`python bench/fuzz_rebuild.py FIRST_SEED LAST_SEED`). A failing seed leaves its folders under FUZZ_DIR
(default bench/out/fuzz) for a look; a passing one removes them. Exit 1 when any seed failed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.sample.fetched import as_links  # noqa: E402

SKIP = {"build_report.json", "README.md", "build_timings.json"}  # they name folders and say how much was reused
TASKS = ["production_analysis", "caption", "grounding_all", "grounding_per_class", "class_focus", "absence",
         "cross_view"]
PROFILES = ["brief_only", "land_use_change", "wildfire", "flood_pulse", "oceanscout_ship_detection"]
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)


class TrialFailed(Exception):
    pass


def _satsft(*argv: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise TrialFailed(f"satsft {' '.join(argv)}\n{proc.stderr[-3000:]}")
    return proc


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in SKIP}


def _edit(r: random.Random, tree: Path) -> None:
    sidecars = sorted((tree / "metadata").rglob("*.json"))
    r.shuffle(sidecars)
    for path in sidecars[:r.randrange(0, 3)]:
        side = json.loads(path.read_text())
        side["caption"] += " Edited."
        path.write_text(json.dumps(side))
    for path in sidecars[3:3 + r.randrange(0, 3)]:
        path.unlink()
    if r.random() < 0.5:
        from PIL import Image

        chip = r.choice(sorted((tree / "images").rglob("*.png")))
        image = Image.open(chip).convert("RGB")
        image.putpixel((5, 5), (1, 2, 3))
        image.save(chip)
    stills = sorted((tree / "mapbox_stills").rglob("*.png"))
    if stills and r.random() < 0.3:
        r.choice(stills).unlink()
    if r.random() < 0.5:  # copied from a Mac; a Jupyter checkpoint of a sidecar
        for path in [p for p in tree.rglob("*") if p.is_file()]:
            (path.parent / f"._{path.name}").write_bytes(APPLE_DOUBLE)
        side = sorted((tree / "metadata").rglob("*.json"))[-1]
        (side.parent / ".ipynb_checkpoints").mkdir(exist_ok=True)
        (side.parent / ".ipynb_checkpoints" / f"{side.stem}-checkpoint.json").write_text(side.read_text())


def _fetched(base: Path, name: str, style: str) -> None:
    """Lay the tree ``base/name`` out as fetched (``style``), leaving ``base/name`` a link to it."""
    if style == "hub":
        tree = base / f"cache-{name}" / "snapshots" / "0"
        tree.parent.mkdir(parents=True)
        shutil.move(str(base / name), str(tree))
        as_links(tree, base / f"cache-{name}" / "blobs")
    else:
        tree = base / f"repo-{name}" / "tree"
        tree.parent.mkdir()
        shutil.move(str(base / name), str(tree))
        as_links(tree, tree.parent / ".git" / "annex" / "objects", ("images", "mapbox_stills"))
    (base / name).symlink_to(tree)


def _options(r: random.Random) -> list[str]:
    opts = ["--tasks", ",".join(r.sample(TASKS, r.randrange(1, len(TASKS) + 1))),
            "--profiles", ",".join(r.sample(PROFILES, r.randrange(1, len(PROFILES) + 1)))]
    hub = r.random() < 0.25
    if hub:
        opts += ["--layout", "hub"]
    else:
        formats = r.sample(["jsonl", "parquet", "llava", "sharegpt"], r.randrange(1, 5))
        if not {"jsonl", "parquet"} & set(formats):
            formats.append("jsonl")  # --update reads its splits from them
        opts += ["--formats", ",".join(formats)]
        if "parquet" in formats and r.random() < 0.3:
            opts += ["--embed-images"]
        if r.random() < 0.5:
            opts += ["--row-sidecars", r.choice(["files", "parquet", "none"])]
        if r.random() < 0.5:
            opts += ["--overlays"]
        if r.random() < 0.3:
            opts += ["--copy-images"]
    for flag, chance, values in (("--max-boxes", 0.5, range(1, 30)), ("--min-box-px", 0.5, range(0, 200)),
                                 ("--max-files-per-dir", 0.4, range(16, 40)),
                                 ("--rows-per-shard", 0.3, range(5, 60))):
        if r.random() < chance:
            opts += [flag, str(r.choice(values))]
    for flags, chance in ((["--split-unit", "ground"], 0.3), (["--leakage", "drop"], 0.3),
                          (["--redact-location"], 0.2), (["--tim-shift", "fixed"], 0.2)):
        if r.random() < chance:
            opts += flags
    return [*opts, "--quiet"]


def trial(seed: int, base: Path) -> str:
    """One seed; returns what it tried. Raises TrialFailed."""
    r = random.Random(seed)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    n = r.randrange(16, 40)
    sample = ["--seed", str(seed), "--regions", r.choice(["blocky", "fragmented"]), "--workers", "1",
              *(["--labels"] if r.random() < 0.3 else [])]
    _satsft("sample", "--tiles", str(n), "--output", str(base / "small"), *sample)
    _satsft("sample", "--tiles", str(n + r.randrange(0, 12)), "--output", str(base / "big"), *sample)
    _edit(r, base / "big")
    style = r.choice(["plain", "hub", "annex"])
    if style != "plain":
        for name in ("small", "big"):
            _fetched(base, name, style)
    opts = _options(r)
    _satsft("build", "--input", str(base / "small"), "--output", str(base / "first"), *opts)
    shutil.copytree(base / "first", base / "updated")
    _satsft("build", "--input", str(base / "big"), "--output", str(base / "updated"), "--update",
            "--max-removed-share", "1", *opts)
    _satsft("build", "--input", str(base / "big"), "--output", str(base / "full"), "--previous",
            str(base / "first"), "--no-reuse", *opts)
    updated, full = _digests(base / "updated"), _digests(base / "full")
    if updated != full:
        differ = sorted(k for k in set(updated) & set(full) if updated[k] != full[k])[:5]
        raise TrialFailed(f"--update and --no-reuse differ: only updated {sorted(set(updated) - set(full))[:5]}, "
                          f"only full {sorted(set(full) - set(updated))[:5]}, different bytes {differ}")
    links = [str(p) for d in ("updated", "full") for p in (base / d).rglob("*") if p.is_symlink()]
    if links:
        raise TrialFailed(f"links in what satsft wrote: {links[:3]}")
    _satsft("validate", str(base / "updated"))
    return f"{style} tree, {' '.join(opts)}"


def main(argv: list[str]) -> int:
    first, last = (int(a) for a in argv[:2]) if len(argv) >= 2 else (0, 9)
    root = Path(os.environ.get("FUZZ_DIR", REPO / "bench" / "out" / "fuzz")).resolve()
    failed = 0
    for seed in range(first, last + 1):
        try:
            tried = trial(seed, root / str(seed))
        except TrialFailed as err:
            failed += 1
            print(f"seed {seed}: FAILED: {err}", flush=True)
            continue
        shutil.rmtree(root / str(seed))
        print(f"seed {seed}: ok ({tried})", flush=True)
    print(f"{last - first + 1 - failed} of {last - first + 1} seeds passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
