"""One summariser nests the flat counts of build and mix; the end-of-run tables read the reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.publish.report import Counts, mix_summary, summarise, summarise_mix, summary_table

BUILD_COUNTS = {
    "tiles_in": 5, "tiles|train": 3, "tiles|test": 1, "declared|train": 3, "declared|test": 1, "declared|validation": 1,
    "rejects|sidecar|invalid_json": 1, "rejects|write|source_image_unreadable": 2,
    "rows|caption|train": 3, "rows|caption|test": 1, "rows|grounding_all|train": 3,
    "boxes|2": 2, "boxes|11": 1, "dominant|water": 2, "regions|water": 7,
    "files|jsonl|data/train.jsonl": 6, "row_sidecars_written": 7,
}


def test_counts_nest_the_shared_kinds_once():
    c = Counts(BUILD_COUNTS)
    assert c.rows == {"caption": {"test": 1, "train": 3}, "grounding_all": {"train": 3}}
    assert c.rejects_by_reason() == {"source_image_unreadable": 2, "invalid_json": 1}
    assert c.files == {"jsonl": {"data/train.jsonl": 6}}
    assert [k for k, *_ in c.rest][:2] == ["boxes", "boxes"]


def test_build_summary_accounts_for_every_tile():
    s = summarise(BUILD_COUNTS)
    assert s["tiles"] == {"in": 5, "with_rows": 4, "rejected": 1, "by_split": {"test": 1, "train": 3},
                          "accounted": True}  # a row dropped at write time is not a tile rejected
    assert s["rows"]["total"] == 7
    assert s["boxes_per_row"] == {"2": 2, "11": 1}  # numeric order, not text order
    assert s["outputs"] == {"row_sidecars_written": 7}
    assert s["splits"]["declared"] == {"train": 3, "validation": 1, "test": 1}
    table = summary_table({**s, "timings": {"wall_seconds": 1.5}})
    assert "caption" in table and "tiles: 5 in, 4 with rows, 1 rejected" in table and "WARNING" not in table
    assert "WARNING" in summary_table(summarise({**BUILD_COUNTS, "tiles_in": 9}))


def test_rebuild_line_names_what_the_build_was_compared_with():
    rebuild = {"tiles_kept": 3, "tiles_new": 1, "tiles_removed": 0, "tiles_moved_split": 0}
    s = {**summarise(BUILD_COUNTS), "rebuild": rebuild}
    table = summary_table({**s, "config": {"previous": "builds/sat-v1", "update": False}})
    assert "against --previous builds/sat-v1: tiles kept 3, new 1, removed 0; moved split 0" in table
    table = summary_table({**s, "config": {"previous": "", "update": True}})
    assert "against the build it updated (--update): tiles kept 3" in table


@dataclass
class _Source:
    name: str
    path: str = "/data/builds/sat"
    kind: str = "satsft"
    where: dict = field(default_factory=dict)
    repeat: float | None = 1.0
    share: float | None = None
    root: str = "/data/builds/sat"


def test_mix_summary_per_source():
    counts = {"source|a|in|train": 10, "source|a|out|train": 20, "source|b|in|train": 5, "source|b|out|train": 5,
              "source|b|in|test": 2, "deduplicated|b|test": 2, "repeat_milli|a": 2000, "rows|caption|train": 25,
              "dropped_columns|b|extra": 5, "rejects|dedup|duplicate_row": 1, "media_written": 3}
    s = summarise_mix(counts, [_Source("a", repeat=None, share=0.8), _Source("b")])
    a, b = s["sources"]
    assert a["repeat"] == 2.0 and a["share_of_train"] == 0.8 and a["path"] == "sat"
    assert b["deduplicated"] == {"test": 2} and b["dropped_columns"] == {"extra": 5}
    assert s["rejects_by_reason"] == {"duplicate_row": 1} and s["outputs"] == {"media_written": 3}
    assert "80.00%" in mix_summary(s) and "WARNING" not in mix_summary(s)
    assert a["image_root"] == "sat"


def test_mix_summary_names_sources_that_kept_nothing():
    counts = {"source|a|in|train": 10, "source|a|out|train": 10, "source|lost|in|train": 7,
              "source|dup|in|test": 3, "deduplicated|dup|test": 3, "rejects|media|image_missing": 7}
    text = mix_summary(summarise_mix(counts, [_Source("a"), _Source("lost", root="/x/parquet"), _Source("dup")]))
    assert "WARNING: source lost kept none of its 7 rows; rejects/ says why" in text
    assert "do not start at parquet: set the source's image_root" in text
    assert "WARNING: source dup kept none of its 3 rows: 3 duplicate an earlier source's\n" in text + "\n"
    assert "source a " not in text.split("rows:")[1]


def test_a_task_asked_for_that_made_no_rows_is_named_with_what_it_needs():
    from pipeline.publish.report import _input_warnings

    report = {"outputs": {}, "rejects_by_reason": {}, "tiles": {"in": 6},
              "config": {"tasks": ["caption", "grounding_all", "grounding_per_class", "cross_view"], "min_box_px": 900},
              "rows": {"total": 6, "by_task_split": {"caption": {"train": 6}, "grounding_all": {"train": 0}}}}
    assert _input_warnings(report) == [
        "WARNING: no rows for grounding_all, grounding_per_class: grounding needs regions of at least "
        "--min-box-px (900) px"], "stills are optional: a tree without any makes no cross_view rows, quietly"
    report["rejects_by_reason"] = {"still_missing": 6}
    assert _input_warnings(report)[0].endswith("px; cross_view needs a still under mapbox_stills/ that the JSONL "
                                               "names")
    report["config"]["tasks"] = ["caption"]
    assert _input_warnings(report) == []


def test_rows_the_gate_turned_away_and_a_share_that_takes_no_place_are_named_as_the_cause():
    """--max-prompt-chars below a task's prompts, or --tile-share below one place in the tree: the warning names
    the gate or the share, not what tiles would lack (which read as if the tree were wrong)."""
    from pipeline.publish.report import _input_warnings

    report = {"outputs": {}, "rejects_by_reason": {"prompt_too_long": 162, "still_missing": 1}, "tiles": {"in": 12},
              "config": {"tasks": ["caption", "absence"], "min_box_px": 100, "max_prompt_chars": 100},
              "rows": {"total": 21, "by_task_split": {"absence": {"train": 21}}}}
    assert _input_warnings(report) == [
        "WARNING: no rows for caption: the row gate turned away 162 row(s) (prompt_too_long 162: prompts over "
        "--max-prompt-chars 100), see rejects/; else: caption needs a sidecar caption"]
    report["rows"] = {"total": 0, "by_task_split": {}}
    report["config"]["tasks"] = ["caption"]
    assert _input_warnings(report) == [
        "WARNING: no rows were built: the row gate turned away 162 row(s) (prompt_too_long 162: prompts over "
        "--max-prompt-chars 100), see rejects/"]
    report.update(rejects_by_reason={}, tiles={"in": 0}, outputs={"tiles_outside_share": 12})
    report["config"]["tile_share"] = 0.0001
    assert _input_warnings(report) == ["WARNING: no rows were built: none of the tree's 12 tile(s) lies in the "
                                       "places --tile-share 0.0001 takes; give a larger share"]
    report["outputs"] = {}
    assert _input_warnings(report) == ["WARNING: no rows were built: the input has no tile sidecars under metadata/"]
    report.update(rejects_by_reason={"previous_file_unreadable": 2}, tiles={"in": 12},
                  rows={"total": 30, "by_task_split": {"caption": {"train": 30}}})
    assert _input_warnings(report) == [
        "WARNING: 2 file(s) of unchanged tiles were gone from the earlier build, and rows name them (rejects/ lists "
        "them): build again with --no-reuse, which draws every tile anew"]


def test_split_unit_ground_that_empties_a_split_says_why():
    """--split-unit ground over one scene cut with overlapping windows: one group, every tile in train (or, with
    --leakage drop, none): the warning names the emptied splits, the largest group and what to do."""
    from pipeline.publish.report import _input_warnings

    report = {"outputs": {"ground_groups": 1, "bases_joined_by_ground": 120, "ground_largest_group_bases": 120},
              "rejects_by_reason": {}, "tiles": {"in": 120},
              "splits": {"declared": {"train": 106, "validation": 6, "test": 8},
                         "written": {"train": 120, "validation": 0, "test": 0}},
              "config": {"tasks": ["caption"], "split_unit": "ground", "leakage": "reassign"},
              "rows": {"total": 120, "by_task_split": {"caption": {"train": 120}}}}
    (said,) = _input_warnings(report)
    assert said.startswith("WARNING: no validation or test tiles are left: with --split-unit ground every group of "
                           "base POIs joined by shared ground goes whole to one split, and the largest of the 1 "
                           "group(s) joins 120 of the 120 base POIs joined.")
    assert said.endswith("hold out whole scenes, cut chips at least their size apart, or use --shared-ground drop, "
                         "which keeps held-out tiles and rejects the train tiles on their ground")
    report["config"]["leakage"] = "drop"
    assert "that spans splits is rejected (--leakage drop)" in _input_warnings(report)[0]
    report["config"]["split_unit"] = "base"
    assert _input_warnings(report) == [], "a split emptied otherwise is the summary table's to show"
