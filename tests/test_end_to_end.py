"""The CLI on generated trees: everything the core-build issue promises, checked on the output files."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.conftest import run_cli
from transforms.render import class_shares
from transforms.rows import grounding_problem, normalise_box
from transforms.tasks import TASK_NAMES


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.read_text().splitlines()]


def _files(root: Path, sub: str) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / sub).rglob("*")) if p.is_file()}


def _max_leaf(root: Path) -> int:
    return max(len(files) for _, dirs, files in os.walk(root) if not dirs and files)


@pytest.fixture(scope="module")
def build(sample_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "out"
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(out))
    return out, proc


def test_build_outputs_everything(build, sample_tree):
    out, proc = build
    assert "production_analysis" in proc.stdout and "tiles:" in proc.stdout and str(out) in proc.stdout
    rows = _rows(out)
    assert set(r["metadata"]["task"] for r in rows) == set(TASK_NAMES)
    for r in rows:
        md = r["metadata"]
        for p in md["image_paths"]:
            assert (out / p).is_file(), p
        user = r["messages"][-2]["content"]
        assert [p["image"] for p in user if p["type"] == "image"] == md["image_paths"]
        assert [p["type"] for p in user][-1] == "text" and sum(p["type"] == "text" for p in user) == 1
    report = json.loads((out / "build_report.json").read_text())
    assert report["tiles"]["accounted"] and report["tiles"]["in"] == 150
    assert report["rows"]["total"] == len(rows)
    assert len(list((out / "metadata/sft_metadata_rows").rglob("*.json"))) == len(rows)
    assert json.loads((out / "build_timings.json").read_text())["wall_seconds"] > 0


def test_grounding_answers_match_source_boxes(build, sample_tree):
    out, _ = build
    sidecars = {p.stem: json.loads(p.read_text()) for p in (sample_tree / "metadata").rglob("*.json")}
    checked = 0
    for r in _rows(out):
        md = r["metadata"]
        if md["task"] not in ("grounding_all", "grounding_per_class"):
            continue
        answer = r["messages"][-1]["content"][0]["text"]
        assert grounding_problem(answer) is None
        src = sidecars[md["tile_stem"]]
        expected = Counter((g["label"], tuple(normalise_box(tuple(g["bbox"]), src["output_size"])))
                           for g in src["regions"])
        got = Counter((b["label"], tuple(b["bbox"])) for b in orjson.loads(answer))
        assert not got - expected
        if md["task"] == "grounding_all":
            assert got == expected
        checked += 1
    assert checked > 100


def test_analysis_images_match_their_json(build):
    out, _ = build
    n = 0
    for r in _rows(out):
        md = r["metadata"]
        if md["task"] != "production_analysis":
            continue
        text = r["messages"][-2]["content"][-1]["text"]
        payload = json.loads(text[text.index("{"): text.rindex("}") + 1])
        fractions = payload["tim_modality_outputs"]["LULC"]["class_fractions"]
        from transforms.classes import CLASS_IDS

        shares = class_shares((out / md["analysis_image_path"]).read_bytes())
        for name, v in fractions.items():
            assert abs(shares.get(CLASS_IDS[name], 0.0) - v) <= 0.005
        n += 1
    assert n == 150 * 5


def test_rebuild_is_byte_identical_and_folders_are_capped(build, sample_tree, tmp_path):
    out, _ = build
    first = _files(out, ".")
    run_cli("build", "--input", str(sample_tree), "--output", str(out), "--overwrite")
    second = _files(out, ".")
    first.pop("build_timings.json")
    second.pop("build_timings.json")
    assert any(p.startswith("parquet/") for p in first) and "README.md" in first
    assert first.keys() == second.keys()
    assert [p for p in first if first[p] != second[p]] == [], "every file, JSONL and Parquet included, is identical"
    small = tmp_path / "small"
    run_cli("build", "--input", str(sample_tree), "--output", str(small), "--max-files-per-dir", "50")
    assert _max_leaf(small) <= 50 and _max_leaf(out) > 50
    for r in _rows(small):
        for p in r["metadata"]["image_paths"]:
            assert (small / p).is_file()


def test_usage_errors_fail_fast(sample_tree, tmp_path):
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(tmp_path / "o"), "--tasks", "captions",
                   check=False)
    assert proc.returncode == 2 and "unknown task 'captions'" in proc.stderr and "grounding_all" in proc.stderr
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(tmp_path / "o"), "--profiles", "fire",
                   check=False)
    assert proc.returncode == 2 and "wildfire" in proc.stderr
    proc = run_cli("build", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "no metadata/ folder" in proc.stderr
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(tmp_path / "o"), "--bogus", check=False)
    assert proc.returncode == 2 and "--bogus" in proc.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    proc = run_cli("build", "--input", str(sample_tree), "--output", str(tmp_path / "full"), check=False)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr


def test_selected_tasks_profiles_and_drop_policy(sample_tree, tmp_path):
    out = tmp_path / "sel"
    run_cli("build", "--input", str(sample_tree), "--output", str(out), "--tasks", "production_analysis,caption",
            "--profiles", "vessel_monitoring", "--leakage", "drop", "--tim-shift", "fixed", "--redact-location")
    rows = _rows(out)
    assert {r["metadata"]["task"] for r in rows} == {"production_analysis", "caption"}
    assert {r["metadata"]["analysis_profile"] for r in rows} == {"", "oceanscout_ship_detection"}
    assert all('"Coordinates"' not in r["messages"][-2]["content"][-1]["text"] for r in rows)
    report = json.loads((out / "build_report.json").read_text())
    assert report["tiles"]["accounted"]
    assert report["rejects_by_reason"].get("split_leakage", 0) > 0
