"""Folder names a user may well have (`runs [2024]`, `a?b`) through build, validate and mix: Beam and fsspec
read `*`, `?` and `[` in a pattern as wildcards, folder names included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import run_cli


def test_wildcard_characters_in_folder_names_are_literal(tmp_path: Path):
    tree, decoy = tmp_path / "a?b [1]", tmp_path / "axb 1"  # as patterns, the first name matches the second
    run_cli("sample", "--tiles", "4", "--output", str(tree), "--seed", "5")
    run_cli("sample", "--tiles", "3", "--output", str(decoy), "--seed", "6")
    out = tmp_path / "out [1]"
    proc = run_cli("build", "--input", str(tree), "--output", str(out), "--tasks", "caption,grounding_all")
    assert "tiles: 4 in, 4 with rows, 0 rejected" in proc.stdout, proc.stdout  # was 0 in (or 3 rejected)
    run_cli("validate", str(out))
    rows = json.loads((out / "build_report.json").read_text())["rows"]["total"]

    # A folder of a build's files: its images are found from the output it lies in, wherever the files are.
    mixed = tmp_path / "mix"
    proc = run_cli("mix", "--source", f"name=a,path={out}/parquet", "--output", str(mixed))
    report = json.loads((mixed / "mix_report.json").read_text())
    assert report["rows"]["total"] == rows and not report["rejects_by_reason"], proc.stdout
    assert report["sources"][0]["image_root"] == out.name

    # Files moved away from their images lose every row, and the summary says what to set.
    loose = tmp_path / "loose"
    loose.mkdir()
    for f in (out / "parquet").glob("*.parquet"):
        shutil.copy(f, loose / f.name)
    proc = run_cli("mix", "--source", f"name=a,path={loose}", "--output", str(mixed), "--overwrite")
    assert f"WARNING: source a kept none of its {rows} rows; rejects/ says why" in proc.stdout, proc.stdout
    assert "do not start at loose: set the source's image_root" in proc.stdout, proc.stdout


def test_tree_folders_may_be_symlinks(tmp_path: Path):
    """A tree assembled from folders elsewhere (chips on another disk): its four folders are symlinks."""
    real, tree = tmp_path / "disk" / "tree", tmp_path / "assembled"
    run_cli("sample", "--tiles", "3", "--output", str(real), "--seed", "5")
    tree.mkdir()
    for folder in ("metadata", "images", "mapbox_stills", "data"):
        (tree / folder).symlink_to(real / folder, target_is_directory=True)
    proc = run_cli("build", "--input", str(tree), "--output", str(tmp_path / "out"), "--tasks", "caption,cross_view")
    assert "tiles: 3 in, 3 with rows, 0 rejected" in proc.stdout and "rejects by reason" not in proc.stdout, proc.stdout
