"""Analysis maps follow the chip's own layout, measured through the CLI against `satsft sample --labels`."""

from __future__ import annotations

import shutil

import pytest

from scoring.maps import score_build
from tests.conftest import run_cli

# Measured on 500 tiles (make bench): clean 0.98 / 0.97, murky 0.91 / 0.87. The floors sit under the
# figures for a 36-tile tree, so a regression to box painting (0.58 / 0.41) or noise fails loudly.
FLOORS = {"clean": (0.85, 0.75), "murky": (0.70, 0.55)}


@pytest.fixture(scope="module", params=sorted(FLOORS))
def labelled_build(request, tmp_path_factory):
    style = request.param
    base = tmp_path_factory.mktemp(f"labels_{style}")
    tree, out = base / "tree", base / "out"
    run_cli("sample", "--tiles", "36", "--seed", "5", "--output", str(tree), "--labels", "--chip-style", style)
    run_cli("build", "--input", str(tree), "--output", str(out), "--tasks", "production_analysis",
            "--profiles", "brief_only,flood_pulse")
    return style, tree, out


def test_brief_maps_match_true_labels(labelled_build):
    style, tree, out = labelled_build
    score = score_build(str(out), str(tree / "labels"))
    assert score["tiles"] == 36
    floor_all, floor_rest = FLOORS[style]
    assert score["mean_iou"] >= floor_all and score["mean_iou_non_majority"] >= floor_rest, score
    assert score["pixel_agreement"] > score["majority_agreement"] + 0.05, score


def test_build_never_reads_labels(labelled_build):
    """Same tree without labels/: every output byte the same (timings aside)."""
    style, tree, out = labelled_build
    if style != "murky":
        pytest.skip("one style is enough")
    shutil.rmtree(tree / "labels")
    again = tree.parent / "second" / "out"  # the same folder name: the card and report name it
    run_cli("build", "--input", str(tree), "--output", str(again), "--tasks", "production_analysis",
            "--profiles", "brief_only,flood_pulse")
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    first.pop(next(k for k in first if k.name == "build_timings.json"))
    second.pop(next(k for k in second if k.name == "build_timings.json"))
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
