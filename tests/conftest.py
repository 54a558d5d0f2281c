"""Shared fixtures: bundled templates, a prepared-tile factory and generated trees."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from pipeline.sample.tree import TILES_PER_WORKER, write_sample_tree
from transforms.analysis.tim import PROFILES
from transforms.input.sidecars import parse_sidecar
from transforms.paths import base_poi_id
from transforms.prompts import load_templates
from transforms.rows import PreparedTile, TaskContext
from transforms.tasks import TASK_NAMES

# Property tests explore the same examples on every run and machine: a red CI is reproducible, never luck.
settings.register_profile("satsft", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("satsft")

REPO = Path(__file__).resolve().parents[1]
_RUN_TEMP: list[str] = []


def pytest_configure(config):
    """Every temporary file of the run (Beam's, the CLI's, the browser's) goes to one folder, removed at the end.
    Beam leaves an empty folder in the system's temporary folder for each graph it stages for Dataflow and each
    Pipeline that never runs, and builds the fault tests kill leave theirs: some 150 a run otherwise. pytest's
    own tmp_path folders stay where they were (kept for a failed test's post-mortem). Under xdist each worker
    makes its folder inside the controller's."""
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    run_temp = tempfile.mkdtemp(prefix="satsft-tests-")
    _RUN_TEMP.append(run_temp)
    os.environ["TMPDIR"] = tempfile.tempdir = run_temp


def pytest_unconfigure(config):
    for run_temp in _RUN_TEMP:
        shutil.rmtree(run_temp, ignore_errors=True)


@pytest.fixture(scope="session")
def templates():
    return load_templates(None, list(TASK_NAMES))


@pytest.fixture(scope="session")
def ctx(templates):
    return TaskContext(templates, tuple(PROFILES), "varied", False, 9000)


def make_sidecar(**overrides) -> dict:
    base = {
        "tile_stem": "poi_000007_g001_t0002",
        "poi_id": "poi_000007_g001",
        "split": "train",
        "output_size": 224,
        "caption": "Farmland with a lake in the north.",
        "class_fractions": {"0": 0.30, "4": 0.50, "1": 0.12},
        "regions": [
            {"bbox": [10, 5, 99, 60], "label": "water", "class_id": 0, "area_px": 4000},
            {"bbox": [0, 100, 223, 223], "label": "crops", "class_id": 4, "area_px": 20000},
        ],
        "latitude": 45.5,
        "longitude": 7.25,
        "stac_item_id": "S2A_MSIL2A_20230101",
        "stac_datetime": "2023-01-01T10:00:00Z",
        "eo_cloud_cover": 5.0,
    }
    base.update(overrides)
    return base


@pytest.fixture
def prepared(ctx):
    def factory(index: int = 0, still: bool = True, **overrides) -> PreparedTile:
        import orjson

        parsed = parse_sidecar(orjson.dumps(make_sidecar(**overrides)), "metadata/s00000/x.json")
        assert parsed.tile is not None, parsed.problem
        tile = parsed.tile.with_fields(chip_src="/in/images/s00000/x.png", chip_px=224, split="train")
        if still:
            tile = tile.with_fields(still_src="/in/mapbox_stills/poi_000007_g001.png", still_stem="poi_000007_g001",
                                    still_index=3)
        return PreparedTile(tile, index, ctx)

    return factory


# `satsft build` and `satsft mix` run in the test's own process where nothing asks for a process of their own:
# Python and Beam start once per worker, not once per command, which takes some 2 of a small build's 5 seconds
# (200 of the suite's) away. So do the reading commands: called with arguments, main returns where a process
# would end with os._exit past Arrow's reader threads (test_cli checks that path on its own). SATSFT_TEST_SUBPROCESS=1
# runs every command as a process, as a user runs it. `sample` does so where it would start a pool of processes
# (forked from a process that runs Beam's threads): given --workers, or more tiles than one process writes.
IN_PROCESS = ("build", "mix", "eval", "preview", "validate")


def _in_process(args: tuple[str, ...]) -> bool:
    if not args or os.environ.get("SATSFT_TEST_SUBPROCESS"):
        return False
    if args[0] == "sample":
        return ("--workers" not in args and "--tiles" in args
                and int(args[args.index("--tiles") + 1]) <= TILES_PER_WORKER)
    return args[0] in IN_PROCESS


def _run_in_process(args: tuple[str, ...], check: bool) -> subprocess.CompletedProcess:
    """main(args) with its output captured, as a CompletedProcess: an exception a process would die of is exit
    1 with its traceback on stderr, as the interpreter prints it."""
    import contextlib
    import io
    import traceback
    import warnings

    from pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as PYTHONWARNINGS=ignore silences a command run as a process
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code if isinstance(stop.code, int) else 1
        except Exception:  # noqa: BLE001 - what the process would print before it exits 1
            traceback.print_exc()
            code = 1
    proc = subprocess.CompletedProcess(["satsft", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"satsft {' '.join(args)} failed ({code}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_cli(*args: str, check: bool = True, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    if env is None and cwd is None and _in_process(args):
        return _run_in_process(args, check)
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    if cwd is not None:  # the package is found from the repository, wherever the command runs
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"satsft {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def held_out_tile_over_a_train_tile(tree: Path) -> tuple[dict[Path, dict], Path, Path]:
    """A 24-tile sample tree in which a place declared test has a tile cut half over a tile of a place wholly
    in train (no reassignment moves such a place): (sidecars by path, the train tile, the test tile)."""
    write_sample_tree(str(tree), 24, seed=3, workers=1)
    sidecars = {p: json.loads(p.read_text()) for p in sorted((tree / "metadata").rglob("*.json"))}
    splits_of: dict[str, set[str]] = {}
    for p, s in sidecars.items():
        splits_of.setdefault(base_poi_id(p.stem), set()).add(s["split"])
    whole = sorted(b for b, splits in splits_of.items() if splits == {"train"})
    train = next(p for p in sidecars if base_poi_id(p.stem) == whole[0])
    for p, s in sidecars.items():
        if base_poi_id(p.stem) == whole[1]:
            s["split"] = "test"
            p.write_text(json.dumps(s))
    test = next(p for p in sidecars if base_poi_id(p.stem) == whole[1])
    x0, y0, x1, y1 = sidecars[train]["bbox_wgs84"]
    sidecars[test]["bbox_wgs84"] = [x0 + (x1 - x0) / 2, y0, x1 + (x1 - x0) / 2, y1]
    test.write_text(json.dumps(sidecars[test]))
    return sidecars, train, test


def preview_cards(output: Path, *flags: str) -> list[dict]:
    """`satsft preview OUTPUT *flags`, then the cards its page shows (from preview/sample.js)."""
    run_cli("preview", str(output), *flags)
    data = (output / "preview" / "sample.js").read_text()
    return json.loads(data[data.index("=") + 1:].strip().rstrip(";"))["cards"]


@pytest.fixture(scope="session")
def sample_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "tree"
    run_cli("sample", "--tiles", "150", "--output", str(root), "--seed", "3")
    return root


# Every output the build can write: all formats, embedded images, overlays.
ALL_OUTPUTS = ("--formats", "jsonl,parquet,llava,sharegpt", "--embed-images", "--overlays")


@pytest.fixture(scope="session")
def damaged_tree(tmp_path_factory) -> Path:
    """A small tree with one broken sidecar and one truncated chip, so rejects are compared too."""
    tree = tmp_path_factory.mktemp("damaged") / "tree"
    run_cli("sample", "--tiles", "24", "--output", str(tree), "--seed", "11")
    sidecars = sorted((tree / "metadata").rglob("*.json"))
    sidecars[0].write_text('{"tile_stem": "broken", ')
    chip = sorted((tree / "images").rglob("*.png"))[-1]
    chip.write_bytes(chip.read_bytes()[:200])
    return tree


@pytest.fixture(scope="session")
def direct_build(damaged_tree, tmp_path_factory) -> Path:
    """The damaged tree built on DirectRunner from a local folder: what every other runner and store must match."""
    out = tmp_path_factory.mktemp("direct") / "out"
    run_cli("build", "--input", str(damaged_tree), "--output", str(out), *ALL_OUTPUTS)
    return out


def _comparable_report(data: bytes) -> bytes:
    """Where input and output live, and whether images were hard-linked or copied, may differ; nothing else."""
    report = json.loads(data)
    report["config"].pop("input")
    report["config"].pop("output")
    outputs = report["outputs"]
    outputs["source_images_placed"] = outputs.pop("source_images_linked", 0) + outputs.pop("source_images_copied", 0)
    return json.dumps(report, sort_keys=True).encode()


def output_hashes(root: Path, replace: dict[str, str]) -> dict[str, str]:
    """File hashes under root, with the input and output names in the card and report made comparable."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == "build_timings.json":
            continue
        data = p.read_bytes()
        if p.name == "build_report.json":
            data = _comparable_report(data)
        elif p.name == "README.md":
            for old, new in replace.items():
                data = data.replace(old.encode(), new.encode())
        out[str(p.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


def assert_same_outputs(expected: Path, actual: Path, replace: dict[str, str]) -> None:
    """Two builds wrote the same files with the same bytes; on a difference, show the first one as a diff."""
    want, got = output_hashes(expected, {}), output_hashes(actual, replace)
    assert any(p.startswith("analysis_images/") for p in want) and any(p.startswith("rejects/") for p in want)
    assert sorted(got) == sorted(want)
    differ = [p for p in want if want[p] != got[p]]
    detail = "".join(difflib.unified_diff((expected / differ[0]).read_text(errors="replace").splitlines(True),
                                          (actual / differ[0]).read_text(errors="replace").splitlines(True),
                                          "expected", "actual")) if differ else ""
    assert differ == [], f"files differ: {differ[:10]}\n{detail[:3000]}"
