"""`satsft validate` on a small finished build: clean, then damaged one way at a time."""

from __future__ import annotations

import json
import shutil

from pipeline.review.validate import Findings, validate
from transforms.output.tree import OutputTree, split_of_file


def test_names_and_findings():
    assert split_of_file("parquet/train-00000-of-00001.parquet") == "train"
    assert split_of_file("data/validation.jsonl") == "validation"
    f = Findings()
    for i in range(25):
        f.add("images", f"missing {i}")
    lines = f.lines()
    assert f.count == 25 and lines[0] == "images: 25 problem(s)" and lines[-1] == "  ... and 5 more"


def test_a_clean_build_validates_and_the_tree_counts_entries(small_build):
    findings, checked = validate(str(small_build))
    assert findings.count == 0, findings.lines()
    assert checked["rows"] > 0 and checked["images"] > 0
    tree = OutputTree(str(small_build))
    assert tree.report_name() == "build_report.json"
    per_folder = tree.entries_per_folder()
    assert per_folder["data"] == len([p for p in tree.files if p.startswith("data/")])


def _damaged(small_build, tmp_path, damage) -> list[str]:
    out = tmp_path / "out"
    shutil.copytree(small_build, out)
    damage(out)
    findings, _ = validate(str(out))
    return sorted(findings.by_check)


def test_each_damage_is_found(small_build, tmp_path):
    def drop_chip(out):
        next(iter(sorted((out / "images").rglob("*.png")))).unlink()

    def bad_box(out):
        path = next(p for p in sorted((out / "data").glob("*.jsonl")) if "grounding_all" in p.read_text())
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        grounding = next(r for r in rows if r["metadata"]["task"] == "grounding_all")
        grounding["messages"][-1]["content"][0]["text"] = '[{"label": "water", "bbox": [0.9, 0.1, 0.2, 0.5]}]'
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def no_report(out):
        (out / "build_report.json").unlink()

    assert "images" in _damaged(small_build, tmp_path / "a", drop_chip)
    assert "grounding" in " ".join(_damaged(small_build, tmp_path / "b", bad_box))
    assert "report" in _damaged(small_build, tmp_path / "c", no_report)
