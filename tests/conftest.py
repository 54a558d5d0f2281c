"""Shared fixtures: bundled templates, a prepared-tile factory and generated trees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from transforms.prompts import load_templates
from transforms.rows import PreparedTile, TaskContext
from transforms.sidecars import parse_sidecar
from transforms.tasks import TASK_NAMES
from transforms.tim import PROFILES

# Property tests explore the same examples on every run and machine: a red CI is reproducible, never luck.
settings.register_profile("satsft", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("satsft")

REPO = Path(__file__).resolve().parents[1]


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
        tile = parsed.tile.with_fields(chip_src="/in/images/s00000/x.png", split="train")
        if still:
            tile = tile.with_fields(still_src="/in/mapbox_stills/poi_000007_g001.png", still_stem="poi_000007_g001",
                                    still_index=3)
        return PreparedTile(tile, index, ctx)

    return factory


def run_cli(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"satsft {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def sample_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "tree"
    run_cli("sample", "--tiles", "150", "--output", str(root), "--seed", "3")
    return root
