"""Analysis maps follow the chip's own layout, measured through the CLI against `satsft sample --labels`."""

from __future__ import annotations

import shutil

import pytest

from scoring.maps import score_build
from tests.conftest import run_cli

# Measured on 500 tiles (make bench): clean 0.98 / 0.97, murky 0.91 / 0.87. The floors sit under the
# figures for a 36-tile tree, so a regression to box painting (0.58 / 0.41) or noise fails loudly.
FLOORS = {"clean": (0.85, 0.75), "murky": (0.70, 0.55)}
BUILD_ARGS = ("--tasks", "production_analysis", "--profiles", "brief_only,flood_pulse")


@pytest.fixture(scope="module")
def labelled_builds(tmp_path_factory):
    """style -> (tree, build) for a 36-tile tree with labels, built once per style on first use."""
    builds = {}

    def build(style: str):
        if style not in builds:
            base = tmp_path_factory.mktemp(f"labels_{style}")
            tree, out = base / "tree", base / "out"
            run_cli("sample", "--tiles", "36", "--seed", "5", "--output", str(tree), "--labels", "--chip-style", style)
            run_cli("build", "--input", str(tree), "--output", str(out), *BUILD_ARGS)
            builds[style] = tree, out
        return builds[style]

    return build


@pytest.mark.parametrize("style", sorted(FLOORS))
def test_brief_maps_match_true_labels(labelled_builds, style):
    tree, out = labelled_builds(style)
    score = score_build(str(out), str(tree / "labels"))
    assert score["tiles"] == 36
    floor_all, floor_rest = FLOORS[style]
    assert score["mean_iou"] >= floor_all and score["mean_iou_non_majority"] >= floor_rest, score
    assert score["pixel_agreement"] > score["majority_agreement"] + 0.05, score


def test_build_never_reads_labels(labelled_builds):
    """Same tree without labels/: every output byte the same (timings aside)."""
    tree, out = labelled_builds("murky")
    bare = tree.parent / "second" / "tree"  # the same folder names: the card and report name them
    shutil.copytree(tree, bare, ignore=shutil.ignore_patterns("labels"))
    assert (tree / "labels").is_dir() and not (bare / "labels").exists()
    again = bare.parent / "out"
    run_cli("build", "--input", str(bare), "--output", str(again), *BUILD_ARGS)
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    first.pop(next(k for k in first if k.name == "build_timings.json"))
    second.pop(next(k for k in second if k.name == "build_timings.json"))
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
