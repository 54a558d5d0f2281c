"""Each task on a prepared tile: sample ids, images in order, answers that follow from the sidecar."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from scoring import parse
from transforms.classes import CLASS_IDS, CLASS_NAMES, class_fields
from transforms.prompts import load_templates
from transforms.rows import grounding_problem
from transforms.tasks import (
    TASK_NAMES,
    TASKS,
    absence,
    caption,
    class_focus,
    cross_view,
    grounding_all,
    grounding_per_class,
    production_analysis,
)


def _answer(row):
    return row.record["messages"][-1]["content"][0]["text"]


def _user(row):
    return row.record["messages"][-2]["content"]


def test_caption(prepared):
    (row,) = caption.rows(prepared())
    assert row.sample_id == "poi_000007_g001_t0002__caption"
    assert _answer(row) == "Farmland with a lake in the north."
    assert [p["type"] for p in _user(row)] == ["image", "text"]
    assert _user(row)[0]["image"] == "images/s00000/poi_000007_g001_t0002.png"
    assert caption.rows(prepared(caption="  ")) == []


def test_grounding_all_matches_source_boxes(prepared):
    (row,) = grounding_all.rows(prepared())
    boxes = orjson.loads(_answer(row))
    assert grounding_problem(_answer(row)) is None
    assert boxes == [{"label": "crops", "bbox": [0.0, round(100 / 224, 4), 1.0, 1.0]},
                     {"label": "water", "bbox": [round(10 / 224, 4), round(5 / 224, 4), round(100 / 224, 4),
                                                 round(61 / 224, 4)]}]
    assert grounding_all.rows(prepared(regions=[])) == []


def test_grounding_per_class_and_focus_rank_by_area(prepared):
    regions = [{"bbox": [0, 0, 9, 9], "label": "trees", "class_id": 1, "area_px": 100},
               {"bbox": [50, 50, 59, 59], "label": "trees", "class_id": 1, "area_px": 100},
               {"bbox": [100, 100, 139, 139], "label": "built", "class_id": 6, "area_px": 1600}]
    pt = prepared(regions=regions)
    rows = grounding_per_class.rows(pt)
    assert [r.sample_id.rsplit("_", 1)[-1] for r in rows] == ["built", "trees"]
    assert [r.sidecar["class"] for r in rows] == ["built", "trees"]
    assert len(orjson.loads(_answer(rows[1]))) == 2
    focus = class_focus.rows(pt)
    assert [r.sample_id for r in focus] == ["poi_000007_g001_t0002__focus_built", "poi_000007_g001_t0002__focus_trees"]
    trees_share = pt.percent(CLASS_IDS["trees"])
    assert trees_share == "13.0%" and trees_share in _answer(focus[1]) and "2 patches" in _answer(focus[1])
    assert "upper left" in _answer(focus[1]) or "centre" in _answer(focus[1])


def test_at_most_six_labels(prepared):
    regions = [{"bbox": [i * 20, 0, i * 20 + 9, 9], "label": name, "class_id": cid, "area_px": 200 - i}
               for i, (name, cid) in enumerate(CLASS_IDS.items())]
    assert len(grounding_per_class.rows(prepared(regions=regions))) == 6


def test_absence_picks_a_true_absentee_and_a_class_in_plain_view(prepared):
    """Each "no" has a "yes" of the same tile beside it, asked the same way, about a class with a region of
    100 px or more: trees' 60 px region does not qualify, crops' and water's do."""
    regions = [{"bbox": [0, 100, 223, 223], "label": "crops", "class_id": 4, "area_px": 20000},
               {"bbox": [10, 5, 99, 60], "label": "water", "class_id": 0, "area_px": 3000},
               {"bbox": [150, 5, 159, 10], "label": "trees", "class_id": 1, "area_px": 60}]
    pt = prepared(class_fractions={"0": 0.3, "4": 0.68, "1": 0.02}, regions=regions)
    row, yes = absence.rows(pt)
    absent = row.sidecar["absent_class"]
    assert absent not in {"water", "crops", "trees"}
    assert row.sample_id == f"poi_000007_g001_t0002__absence_{absent}"
    assert parse.yes_no(_answer(row)) == "no"
    present = yes.sidecar["present_class"]
    assert present in {"water", "crops"} and "absent_class" not in yes.sidecar
    assert yes.sample_id == f"poi_000007_g001_t0002__absence_{present}"
    assert parse.yes_no(_answer(yes)) == "yes" and pt.percent(CLASS_IDS[present]) in _answer(yes)
    prompts = pt.ctx.templates["absence"]["prompt"]
    assert _user(yes)[-1]["text"] in {p.format(**class_fields("label", present)) for p in prompts}
    assert absence.rows(prepared(class_fractions={})) == []
    without = {k: v for k, v in pt.ctx.templates["absence"].items() if k != "answer_present"}
    old = dataclasses.replace(pt, ctx=dataclasses.replace(pt.ctx, templates={**pt.ctx.templates,
                                                                             "absence": without}))
    assert [r.sample_id for r in absence.rows(old)] == [row.sample_id], "a --prompts-dir without the slot"


@pytest.mark.parametrize("share, says", [(0.0, ""), (0.0003, "0.03%"), (0.0004, "0.04%"), (0.004, "0.4%")])
def test_absence_denies_a_class_only_where_the_labels_hold_none(prepared, share, says):
    """Real label maps hold a few pixels of many classes; "there is no snow" over 15 px of it would contradict
    the row's own sidecar, so any share above 0 gets the trace answer, with a percent that is not 0.0%."""
    regions = [{"bbox": [c * 20, 0, c * 20 + 9, 9], "label": name, "class_id": c, "area_px": 100}
               for c, name in enumerate(CLASS_NAMES[:8])]  # every class but snow has a region: snow is asked
    pt = prepared(class_fractions={"4": 1.0 - share, "8": share}, regions=regions)
    row, _ = absence.rows(pt)
    assert row.sidecar["absent_class"] == "snow_and_ice"
    text = _answer(row)
    if share:
        assert says in text and not text.startswith("No. There"), text
    else:
        assert text.startswith("No") and "%" not in text, text


@pytest.mark.parametrize("water_px, count_given", [(2509, True), (100, False), (2400, False)])
def test_class_focus_counts_patches_only_where_the_regions_hold_the_class(prepared, water_px, count_given):
    """Water at 5% of the frame (2,509 px): regions holding all of it give a count of patches; regions holding
    100 or 2,400 px of it leave specks, and the answer says so rather than "in a single patch"."""
    half = water_px // 2
    regions = [{"bbox": [0, 0, 99, 99], "label": "crops", "class_id": 4, "area_px": 10000},
               {"bbox": [150, 150, 199, 199], "label": "water", "class_id": 0, "area_px": half},
               {"bbox": [10, 150, 59, 199], "label": "water", "class_id": 0, "area_px": water_px - half}]
    for kept in (regions, regions[:2]):
        pt = prepared(class_fractions={"0": 0.05, "4": 0.95}, regions=kept)
        (row,) = [r for r in class_focus.rows(pt) if r.sidecar["class"] == "water"]
        text = _answer(row)
        assert text.endswith(" part of the image.") or "part of the image" in text, text
        holds_all = count_given and kept is regions
        assert ("specks" not in text) == holds_all, text
        if holds_all:
            assert "2 patches" in text, text


def test_cross_view_still_first(prepared):
    (row,) = cross_view.rows(prepared())
    assert [p.get("image") for p in _user(row)[:2]] == ["mapbox_stills/s00000/poi_000007_g001.png",
                                                         "images/s00000/poi_000007_g001_t0002.png"]
    assert cross_view.rows(prepared(still=False)) == []


def test_production_analysis_rows_per_profile(prepared):
    pt = prepared(index=2)
    rows = production_analysis.rows(pt)
    assert [r.record["metadata"]["analysis_profile"] for r in rows] == list(pt.ctx.profiles)
    for i, row in enumerate(rows):
        md = row.record["metadata"]
        assert row.record["messages"][0]["role"] == "system"
        assert md["image_paths"][0] == pt.chip_path and md["image_paths"][-1] == md["analysis_image_path"]
        name = f"poi_000007_g001_t0002__analysis_{md['analysis_profile']}.png"
        assert md["analysis_image_path"] == f"analysis_images/s00000/{name}"
        assert row.render_spec["seed"] == f"poi_000007_g001_t0002|{md['analysis_profile']}"
        assert set(row.sidecar) >= {"analysis_profile", "analysis_image_path", "analysis_image_spec",
                                    "sentinel_sidecar"}
        s = row.sidecar["sentinel_sidecar"]
        assert s["dominant_classes"][:2] == ["crops", "water"] and abs(sum(s["class_fractions"].values()) - 1) < 1e-5
        assert i == 0 or '"profile_analytics"' in _user(row)[-1]["text"]
    assert production_analysis.rows(prepared(class_fractions={})) == []


def test_redact_location(prepared, ctx):
    from dataclasses import replace

    pt = prepared()
    assert '"Coordinates"' in _user(production_analysis.rows(pt)[0])[-1]["text"]
    redacted = replace(pt, ctx=replace(ctx, redact_location=True))
    assert all('"Coordinates"' not in _user(r)[-1]["text"] and "45.5" not in r.text()
               for r in production_analysis.rows(redacted))


def test_percentages_single_source(prepared):
    """A class never gets two different shares in two rows of one tile."""
    import re

    pt = prepared()
    rows = [r for t in TASK_NAMES for r in TASKS[t].rows(pt)]
    quoted: dict[str, set[str]] = {}
    for r in rows:
        for name, pct in re.findall(r"([a-z ]+?) \((\d+\.\d)%\)", _answer(r)):
            quoted.setdefault(name.strip().split(" ")[-1], set()).add(pct)
    assert quoted and all(len(v) == 1 for v in quoted.values()), quoted


def test_phrasing_is_deterministic_and_varied(prepared, templates):
    again = load_templates(None, list(TASK_NAMES))
    assert again == templates
    prompts = {caption.rows(prepared(tile_stem=f"poi_{i:06d}_t0000"))[0].record["messages"][-2]["content"][-1]["text"]
               for i in range(40)}
    assert len(prompts) > 1
    a = caption.rows(prepared())[0].record
    assert a == caption.rows(prepared())[0].record


def test_comparison_asks_the_closest_race_without_the_commonest_class(prepared):
    """Crops cover most of the scene and would win any pair they are in: the question is trees against water
    (8 pp apart), not trees against built (12 pp), nor water against built (4 pp, under the 5 pp margin)."""
    from transforms.tasks import comparison

    fractions = {"4": 0.60, "1": 0.20, "0": 0.12, "6": 0.08}
    for t in range(8):  # on every tile, not by the luck of a seeded draw among the five pairs
        (row,) = comparison.rows(prepared(class_fractions=fractions, tile_stem=f"poi_000007_g001_t{t:04d}"))
        assert sorted(row.sidecar["classes"]) == ["trees", "water"] and row.sidecar["answer"] == "trees"
    (row,) = comparison.rows(prepared(class_fractions={"4": 0.60, "1": 0.40}))  # no pair without crops
    assert row.sidecar["answer"] == "crops"
