"""End to end on a `satsft sample --regions fragmented` tree: label maps and regions like real ones (tens of
regions per tile, a third under 100 px), every tile accounted for, the box budget kept, the output valid."""

from __future__ import annotations

import json

from pipeline.cli import main
from pipeline.review.lint import lint_rows
from pipeline.review.validate import validate
from scoring.maps import score_build
from tests.conftest import run_cli


def test_fragmented_tree_builds_within_the_budget(tmp_path):
    tree, out = tmp_path / "tree", tmp_path / "out"
    run_cli("sample", "--tiles", "40", "--output", str(tree), "--seed", "5", "--labels", "--regions", "fragmented")
    sidecars = [json.loads(p.read_text()) for p in (tree / "metadata").rglob("*.json")]
    per_tile = sorted(len(s["regions"]) for s in sidecars)
    areas = [r["area_px"] for s in sidecars for r in s["regions"]]
    assert per_tile[len(per_tile) // 2] >= 20 and 0.2 <= sum(a < 100 for a in areas) / len(areas) <= 0.45
    assert all(r["area_px"] >= 21 for s in sidecars for r in s["regions"])
    assert main(["build", "--input", str(tree), "--output", str(out), "--tasks", "all+eval", "--quiet"]) == 0
    report = json.loads((out / "build_report.json").read_text())
    assert report["tiles"]["accounted"] and report["tiles"]["in"] == 40
    assert max(int(k) for k in report["boxes_per_row"]) <= 12 and report["boxes_left_out"]["grounding_all"] > 0
    rows = [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert lint_rows(rows) == {}
    findings, _ = validate(str(out))
    assert findings.count == 0, findings.lines()
    score = score_build(str(out), str(tree / "labels"))
    assert score["tiles"] == 40 and score["pixel_agreement"] > score["majority_agreement"], score
