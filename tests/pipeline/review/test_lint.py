"""Row text a model should not learn: the lint's rules on their own, then one check over every row of a build
with every task and profile."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.review.lint import lint_rows, text_problems
from pipeline.sample.tree import write_sample_tree


@pytest.mark.parametrize(("text", "rule"), [
    ("rising from 10% to 20% (++9.6 pp)", "doubled_sign"),
    ("Finding: 3 vessel candidate(s).", "plural_placeholder"),
    ("Observed land cover.  Confidence: high.", "doubled_space"),
    ("Produce a brief summary summary.", "doubled_word"),
    ("No. There is no crops in this image.", "singular_verb_before_plural_class"),
    ("Trees covers about 40% of the tile.", "plural_class_singular_verb"),
    ("a landscape with 1 labelled regions", "one_with_plural_noun"),
    ("There are 1 separate patch of water.", "plural_verb_before_one"),
    ("an tree line and a open field", "a_an"),
])
def test_each_rule_catches_its_slip(text, rule):
    assert rule in {r for r, _ in text_problems(text)}


@pytest.mark.parametrize("text", [
    "There are no crops in this image.", "Crops cover about 40% of the tile.", "Water is predicted to rise (+2.0 pp).",
    "an S2 chip, a TiM block, an hour, a unique view, a one-off", "1 labelled region and 2 vessel candidates.",
    "There is 1 separate patch of water.", "Snow and ice holds steady at 3.0%.",
])
def test_good_text_passes(text):
    assert text_problems(text) == []


def test_every_row_of_every_task_and_profile_reads_clean(tmp_path):
    write_sample_tree(str(tmp_path / "tree"), 80, seed=4, workers=1)
    out = tmp_path / "out"
    assert main(["build", "--input", str(tmp_path / "tree"), "--output", str(out), "--tasks", "all+eval",
                 "--profiles", "all", "--formats", "jsonl"]) == 0
    rows = [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.read_text().splitlines()]
    report = json.loads((out / "build_report.json").read_text())
    assert len(rows) == report["rows"]["total"] and set(report["rows"]["by_task_split"]) >= {
        "absence", "class_focus", "comparison", "counting", "production_analysis", "referring"}
    profiles = {r["metadata"]["analysis_profile"] for r in rows} - {""}
    assert len(profiles) == 5
    assert lint_rows(rows) == {}
