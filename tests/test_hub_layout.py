"""--layout hub: under 1.5 files per tile, at most 1.5x the bytes of the default layout, every row through
`load_dataset(OUT)`, and a file_count that is the files on disk; past 100,000 files the summary and the card
say what to do."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.publish.card import render_card
from pipeline.publish.report import summary_table
from pipeline.review.validate import validate
from pipeline.sample.tree import write_sample_tree


def _files_and_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(os.path.getsize(p) for p in files)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    base = tmp_path_factory.mktemp("hub")
    write_sample_tree(str(base / "tree"), 60, seed=9, workers=1)
    for layout in ("default", "hub"):
        assert main(["build", "--input", str(base / "tree"), "--output", str(base / layout), "--layout", layout,
                     "--quiet"]) == 0
    return base


def test_hub_layout_fits_the_hub_and_costs_no_more_bytes(builds):
    reports = {}
    for layout in ("default", "hub"):
        reports[layout] = json.loads((builds / layout / "build_report.json").read_text())
        n_files, _ = _files_and_bytes(builds / layout)
        assert reports[layout]["file_count"] == n_files  # every file the build wrote, and nothing else
    tiles = reports["hub"]["tiles"]["with_rows"]
    hub_files, hub_bytes = _files_and_bytes(builds / "hub")
    _, default_bytes = _files_and_bytes(builds / "default")
    assert hub_files / tiles <= 1.5 and not (builds / "hub" / "images").exists()
    assert hub_bytes <= 1.5 * default_bytes
    assert reports["hub"]["rows"] == reports["default"]["rows"]
    findings, _ = validate(str(builds / "hub"))
    assert findings.count == 0, findings.lines()


def test_load_dataset_reads_every_row_with_its_images(builds, tmp_path):
    from datasets import load_dataset

    ds = load_dataset(str(builds / "hub"), cache_dir=str(tmp_path / "cache"))  # never a stale cached copy
    report = json.loads((builds / "hub" / "build_report.json").read_text())
    assert sum(len(split) for split in ds.values()) == report["rows"]["total"]
    row = next(r for r in ds["train"] if r["metadata"]["task"] == "production_analysis")
    assert [im.size for im in row["images"]][:1] == [(224, 224)]
    assert len(row["images"]) == len(row["metadata"]["image_paths"])
    assert set(row) == {"messages", "metadata", "images"}


@pytest.mark.parametrize(("extra", "message"), [
    (["--formats", "jsonl,parquet"], "other formats"), (["--overlays"], "--overlays"),
    (["--row-sidecars", "files"], "--row-sidecars parquet"), (["--layout", "zip"], "unknown --layout")])
def test_hub_layout_refuses_what_would_write_files(builds, tmp_path, extra, message, capsys):
    argv = ["build", "--input", str(builds / "tree"), "--output", str(tmp_path / "o"), "--layout", "hub", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_past_the_hub_limit_the_summary_and_card_name_the_layout(builds):
    report = json.loads((builds / "default" / "build_report.json").read_text())
    assert "WARNING" not in summary_table(report) and "--layout hub" not in render_card(report)
    big = {**report, "file_count": 420_000}
    assert "--layout hub" in summary_table(big).split("WARNING: ")[1]
    assert "> **Warning:** 420,000 files" in render_card(big)
    assert "WARNING" not in summary_table({**big, "config": {**big["config"], "layout": "hub"}})


def test_an_update_that_switches_layout_leaves_no_stale_files_or_empty_folders(builds, tmp_path):
    """An --update from the default layout to the hub one (and back): the hub layout writes no image files, so
    the still copies the earlier build made go as well (they stayed, named by no row), and so do the folders the
    update empties (images/, data/, llava/, a removed tile's shard folder, the JSONL row index)."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(builds / "default", out)
    assert list(out.glob("mapbox_stills/*/*.png")), "the default layout copies stills"
    tree = str(builds / "tree")
    assert main(["build", "--input", tree, "--output", str(out), "--layout", "hub", "--update", "--quiet"]) == 0
    assert _files_and_bytes(out)[0] == _files_and_bytes(builds / "hub")[0], "the files of a fresh hub build"
    assert not [p for p in out.rglob("*") if p.is_dir() and not any(p.iterdir())], "no empty folders"
    assert not validate(str(out))[0].count
    assert main(["build", "--input", tree, "--output", str(out), "--update", "--quiet"]) == 0
    assert _files_and_bytes(out)[0] == _files_and_bytes(builds / "default")[0]
    assert not validate(str(out))[0].count
