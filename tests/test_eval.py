"""Benchmark tasks (multiple_choice, referring, counting, comparison) and `satsft eval`: the dataset's own answers
score 1.0; known perturbations give exactly the scores worked out by hand; baselines print."""

from __future__ import annotations

import base64
import json
import random
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scoring import metrics, parse
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def eval_build(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("eval")
    run_cli("sample", "--tiles", "60", "--output", str(base / "tree"), "--seed", "4")
    run_cli("build", "--input", str(base / "tree"), "--output", str(base / "out"), "--tasks", "all+eval",
            "--profiles", "brief_only,flood_pulse")
    return base / "out"


def _rows(out: Path, split: str | None = None) -> list[dict]:
    rows = [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.read_text().splitlines()]
    return [r for r in rows if split is None or r["metadata"]["split"] == split]


def _answer(row: dict) -> str:
    return row["messages"][-1]["content"][-1]["text"]


def _write_predictions(path: Path, predictions: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"sample_id": k, "prediction": v}) + "\n" for k, v in predictions.items()))
    return path


def test_multiple_choice_rows(eval_build):
    rows = [r for r in _rows(eval_build) if r["metadata"]["task"] == "multiple_choice"]
    by_question = defaultdict(list)
    for r in rows:
        by_question[r["metadata"]["question_id"]].append(r)
    none_right = 0
    for qid, rotations in by_question.items():
        assert len(rotations) == 4 and len({r["metadata"]["split"] for r in rotations}) == 1, qid
        options = [parse.options_of(r["messages"][-2]["content"][-1]["text"]) for r in rotations]
        right = {o[r["metadata"]["answer"]] for o, r in zip(options, rotations, strict=True)}
        assert len(right) == 1, "every rotation has the same right option"
        assert [list(o.values()) for o in options] == [list(options[0].values())[k:] + list(options[0].values())[:k]
                                                      for k in range(4)], "circular rotations"
        assert {r["metadata"]["answer"] for r in rotations} == set("ABCD"), "the right letter moves"
        none_right += right == {"None of the above"}
    assert 0.08 <= none_right / len(by_question) <= 0.28, "about one question in six has no right class"
    table = pq.read_table(next((eval_build / "parquet").glob("train-*.parquet")))
    assert {"question_id", "answer"} <= set(table.schema.field("metadata").type.names)


def test_counting_and_comparison_only_when_exact(eval_build):
    from transforms.classes import CLASS_IDS

    tree = eval_build.parent / "tree"
    sidecars = {p.stem: json.loads(p.read_text()) for p in (tree / "metadata").rglob("*.json")}
    rows = _rows(eval_build)
    counted = [r for r in rows if r["metadata"]["task"] == "counting"]
    assert counted
    for r in counted:
        side = sidecars[r["metadata"]["tile_stem"]]
        label = r["metadata"]["sample_id"].split("__count_")[1]
        total = sum(side["class_fractions"].values())
        share = side["class_fractions"][str(CLASS_IDS[label])] / total
        regions = [g for g in side["regions"] if g["label"] == label]
        assert abs(sum(g["area_px"] for g in regions) - share * 224 * 224) <= 12
        assert parse.count(_answer(r)) == len(regions)
    compared = [r for r in rows if r["metadata"]["task"] == "comparison"]
    assert compared
    for r in compared:
        side = sidecars[r["metadata"]["tile_stem"]]
        total = sum(side["class_fractions"].values())
        x, y = parse.classes_mentioned(r["messages"][-2]["content"][-1]["text"])
        fx, fy = (side["class_fractions"].get(str(CLASS_IDS[c]), 0) / total for c in (x, y))
        assert abs(fx - fy) >= 0.05
        assert parse.classes_mentioned(_answer(r))[0] == (x if fx > fy else y), "the larger class is named first"



def test_box_questions_point_at_a_part_of_the_chip(eval_build):
    """referring and the multiple-choice box question ask about a box of at most a quarter of the chip that one
    region fills at least half of; on fragmented label maps the largest region's box is the whole chip, which
    would only ask for the majority class again."""
    import re

    tree = eval_build.parent / "tree"
    sidecars = {p.stem: json.loads(p.read_text()) for p in (tree / "metadata").rglob("*.json")}
    asked = 0
    for r in _rows(eval_build):
        sid = r["metadata"]["sample_id"]
        if r["metadata"]["task"] != "referring" and "__mc_box_" not in sid:
            continue
        prompt = r["messages"][-2]["content"][-1]["text"]
        box = [float(v) for v in re.search(r"\[([0-9., ]+)\]", prompt).group(1).split(",")]
        assert (box[2] - box[0]) * (box[3] - box[1]) <= 0.25, (sid, box)
        regions = [g for g in sidecars[r["metadata"]["tile_stem"]]["regions"]
                   if max(abs(v / 224 - b) for v, b in zip((g["bbox"][0], g["bbox"][1], g["bbox"][2] + 1,
                                                            g["bbox"][3] + 1), box, strict=True)) < 0.001]
        filled = [g for g in regions if g["area_px"] * 2 >= (g["bbox"][2] - g["bbox"][0] + 1)
                  * (g["bbox"][3] - g["bbox"][1] + 1)]
        assert filled, (sid, box)
        if r["metadata"]["task"] == "referring":
            assert parse.one_class(_answer(r)) == filled[0]["label"]
        asked += 1
    assert asked >= 60, "nearly every tile has a box to ask about"

def test_perfect_predictions_score_one_and_baselines_print(eval_build, tmp_path):
    test_rows = _rows(eval_build, "test")
    perfect = _write_predictions(tmp_path / "perfect.jsonl", {r["metadata"]["sample_id"]: _answer(r)
                                                              for r in test_rows})
    perfect.write_bytes(b"\xef\xbb\xbf" + perfect.read_bytes())  # as a Windows tool saves it: read all the same
    report_path = tmp_path / "report.json"
    proc = run_cli("eval", "--dataset", str(eval_build), "--predictions", str(perfect), "--output", str(report_path))
    report = json.loads(report_path.read_text())
    assert report["split"] == "test" and "| multiple_choice |" in proc.stdout and "WARNING" not in proc.stdout
    assert report["predictions"] == {"given": len(test_rows), "unmatched": 0, "repeated": 0}
    tasks = report["tasks"]
    assert set(tasks) >= {"multiple_choice", "referring", "counting", "comparison", "grounding_all", "absence",
                          "caption", "production_analysis"}
    for task, t in tasks.items():
        assert t["missing"] == t["malformed"] == 0, task
        for name, value in t["metrics"].items():
            assert value == (0.0 if name in ("mae", "unknown_class_rate") else 1.0), (task, name, value)
    # each score is printed beside what always giving the task's commonest answer scores on the same rows
    assert "| majority baseline |" in proc.stdout
    assert set(tasks["absence"]["majority_baseline"]) == {"accuracy"}
    assert tasks["absence"]["majority_baseline"]["accuracy"] == 0.5, "half the absence answers are yes"
    assert tasks["multiple_choice"]["majority_baseline"]["circular_accuracy"] == 0.0
    # the same answers as OpenAI Batch API output (what `vllm run-batch` writes too), custom_id = sample id
    answers = {r["metadata"]["sample_id"]: _answer(r) for r in test_rows}
    batch = tmp_path / "batch_output.jsonl"
    batch.write_text("".join(json.dumps({"id": f"batch_req_{i}", "custom_id": sid, "error": None, "response": {
        "status_code": 200, "body": {"choices": [{"index": 0, "message": {"role": "assistant", "content": (
            text if i % 2 else [{"type": "text", "text": text}])}}]}}}) + "\n" for i, (sid, text) in
        enumerate(sorted(answers.items()))))
    run_cli("eval", "--dataset", str(eval_build), "--predictions", str(batch), "--output", str(report_path))
    assert json.loads(report_path.read_text())["tasks"] == tasks
    failed = sorted(answers)[0]
    with batch.open("a") as f:  # a request that failed later in the file: no answer, so missing
        f.write(json.dumps({"custom_id": failed, "response": None, "error": {"code": "server_error"}}) + "\n")
    from scoring.evaluate import read_predictions

    assert read_predictions(str(batch)).keys() == set(answers)  # the failed request does not replace the answer
    only_failed = tmp_path / "failed.jsonl"
    only_failed.write_text(json.dumps({"custom_id": failed, "response": {"status_code": 500, "body": {}}}) + "\n")
    assert read_predictions(str(only_failed)) == {}, "a failed request is no prediction: the row counts as missing"
    import gzip

    packed = tmp_path / "batch_output.jsonl.gz"  # batch outputs are often kept compressed
    packed.write_bytes(gzip.compress(batch.read_bytes()))
    assert read_predictions(str(packed)) == read_predictions(str(batch))
    llava = tmp_path / "llava_answers.jsonl"  # LLaVA's model_vqa output, asked with the llava rows' ids
    llava.write_text("".join(json.dumps({"question_id": sid, "prompt": "...", "text": text, "answer_id": "x",
                                         "model_id": "llava-v1.5-7b", "metadata": {}}) + "\n"
                             for sid, text in sorted(answers.items())))
    run_cli("eval", "--dataset", str(eval_build), "--predictions", str(llava), "--output", str(report_path))
    assert json.loads(report_path.read_text())["tasks"] == tasks
    packed.write_bytes(packed.read_bytes()[:-30])
    cut = run_cli("eval", "--dataset", str(eval_build), "--predictions", str(packed), check=False)
    assert cut.returncode == 2 and "cannot be read (EOFError" in cut.stderr, cut.stderr
    # answers to the train split scored against test: every test row missing, and the table says why
    train = _write_predictions(tmp_path / "train.jsonl", {r["metadata"]["sample_id"]: _answer(r)
                                                          for r in _rows(eval_build, "train")[:5]})
    proc = run_cli("eval", "--dataset", str(eval_build), "--predictions", str(train))
    assert "WARNING: 5 of 5 predictions name no test row of this dataset (another split: pass --split" in proc.stdout
    # two runs in one file: the last answer counts, and the table says so
    twice = tmp_path / "twice.jsonl"
    twice.write_bytes(perfect.read_bytes() + train.read_bytes() + perfect.read_bytes()[3:])
    proc = run_cli("eval", "--dataset", str(eval_build), "--predictions", str(twice))
    assert f"WARNING: {len(test_rows)} sample ids are answered more than once in the predictions" in proc.stdout
    for baseline, where in (("majority", ["--dataset", str(eval_build)]), ("random", [str(eval_build)])):
        proc = run_cli("eval", *where, "--baseline", baseline)  # the dataset as validate and preview take it too
        assert "| multiple_choice |" in proc.stdout and "accuracy" in proc.stdout


def test_known_perturbations_give_hand_computed_scores(eval_build, tmp_path):
    """Through the CLI: one rotation of one question answered wrong, one count off by one, one grounding
    answer that is not JSON, one prediction missing, a free answer opening with the article "A"."""
    rows = _rows(eval_build, "test")
    preds = {r["metadata"]["sample_id"]: _answer(r) for r in rows}
    by_task = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["metadata"]["sample_id"]):
        by_task[r["metadata"]["task"]].append(r)
    mc = by_task["multiple_choice"]
    wrong = mc[0]
    letter = wrong["metadata"]["answer"]
    preds[wrong["metadata"]["sample_id"]] = "B" if letter != "B" else "C"
    article = mc[4]  # another question: right option given by its text after a leading article
    options = parse.options_of(article["messages"][-2]["content"][-1]["text"])
    preds[article["metadata"]["sample_id"]] = f"A careful look shows {options[article['metadata']['answer']]}."
    counting = by_task["counting"][0]
    preds[counting["metadata"]["sample_id"]] = str(parse.count(_answer(counting)) + 1)
    grounding = by_task["grounding_all"][0]
    preds[grounding["metadata"]["sample_id"]] = '[{"label": "water", "bbox": [0.1, 0.2'
    del preds[by_task["referring"][0]["metadata"]["sample_id"]]
    report_path = tmp_path / "r.json"
    run_cli("eval", "--dataset", str(eval_build), "--predictions",
            str(_write_predictions(tmp_path / "p.jsonl", preds)), "--output", str(report_path))
    t = json.loads(report_path.read_text())["tasks"]
    n_mc, n_q = len(mc), len(mc) // 4
    assert t["multiple_choice"]["metrics"] == {"accuracy": round((n_mc - 1) / n_mc, 6),
                                               "circular_accuracy": round((n_q - 1) / n_q, 6)}
    n_count = len(by_task["counting"])
    assert t["counting"]["metrics"] == {"exact": round((n_count - 1) / n_count, 6), "mae": round(1 / n_count, 6)}
    g = t["grounding_all"]
    boxes = [len(parse.boxes(_answer(r))) for r in by_task["grounding_all"]]
    assert g["malformed"] == 1 and g["metrics"]["precision@0.5"] == 1.0
    assert g["metrics"]["recall@0.5"] == round((sum(boxes) - boxes[0]) / sum(boxes), 6)
    n_ref = len(by_task["referring"])
    assert t["referring"]["missing"] == 1 and t["referring"]["metrics"]["accuracy"] == round((n_ref - 1) / n_ref, 6)


def test_degenerate_answers_are_read_in_bounded_work(monkeypatch):
    """Small models loop: a run of thousands of digits stopped eval (Python refuses 4,300-digit ints; 309 digits
    overflowed the mean absolute error), and bracket runs cost the cube of their length (15 s for 4,000)."""
    s = metrics.score_counting([("3 patches.", "There are " + "1" * 5000 + " patches."), ("2 patches.", "1" * 400)])
    assert s.malformed == 2 and s.metrics == {"exact": 0.0, "mae": 2.5}
    assert parse.count("123456789 patches") == 123456789 and parse.count("1234567890 patches") is None
    assert parse.quoted_shares("Water: " + "1" * 5000 + " and 12.5%; 1.2.3% crops") == [("water", 0.125),
                                                                                          ("crops", 0.023)]
    loads = []
    real_loads = parse.orjson.loads
    monkeypatch.setattr(parse.orjson, "loads", lambda text: loads.append(text) or real_loads(text))
    assert parse.boxes("[" * 2000 + "]" * 2000) == []  # the innermost "[]": an empty list, as before
    assert len(loads) <= 2000  # one read per opening bracket at most (it tried each closing one: ~2 million)
    box = '{"label": "water", "bbox": [1, 2, 3, 4]}'
    assert parse.boxes("[[" + box + "], [1, 2] ] then {" + box[1:] + " ]") == [("water", (1.0, 2.0, 3.0, 4.0))]
    assert parse.boxes("[" + box + ", " + box[:-8]) == [("water", (1.0, 2.0, 3.0, 4.0))]  # cut off: its object
    assert parse.boxes('[{"label": "water", "bbox": [NaN, 2, 3, 4]}]') is None


def test_grounding_scores_by_hand():
    ref = '[{"label": "water", "bbox": [0.0, 0.0, 0.5, 0.5]}, {"label": "crops", "bbox": [0.5, 0.5, 1.0, 1.0]}]'
    shifted = ('Here: [{"label": "water", "bbox": [0.1, 0.0, 0.6, 0.5]}, '
               '{"label": "crops", "bbox": [0.75, 0.5, 1.25, 1.0]}] done')
    s = metrics.score_grounding([(ref, shifted)])
    # water: IoU 0.2 / 0.3 = 2/3, a match; crops shifted by half its width: 0.125 / 0.375 = 1/3, no match
    assert s.metrics["precision@0.5"] == 0.5 and s.metrics["recall@0.5"] == 0.5 and s.metrics["f1@0.5"] == 0.5
    assert abs(s.metrics["mean_iou"] - (2 / 3 + 1 / 3) / 2) < 1e-9
    assert s.extra["per_class"]["water"]["f1@0.5"] == 1.0 and s.extra["per_class"]["crops"]["recall@0.5"] == 0.0
    s = metrics.score_grounding([(ref, "no boxes today"), (ref, None)])
    assert (s.malformed, s.missing, s.metrics["recall@0.5"]) == (1, 1, 0.0)


def test_boxes_on_another_scale_are_named_in_a_warning():
    """A model answering in pixels or on a 0-1000 scale (as several VLMs ground) matches nothing: the table says
    why instead of showing only zeros."""
    from scoring.evaluate import markdown_table

    ref = '[{"label": "water", "bbox": [0.0, 0.0, 0.5, 0.5]}]'
    s = metrics.score_grounding([(ref, '[{"label": "water", "bbox": [0, 0, 500, 500]}]'), (ref, ref), (ref, None)])
    assert s.extra["boxes_outside_unit"] == 1 and s.metrics["recall@0.5"] == 1 / 3
    table = markdown_table({"split": "test", "tasks": {"grounding_all": s.as_dict()}})
    assert "WARNING: grounding_all: 1 of 2 answers give box coordinates outside 0-1 (pixels" in table, table
    s = metrics.score_grounding([(ref, ref)])
    assert "WARNING" not in markdown_table({"split": "test", "tasks": {"grounding_all": s.as_dict()}})


def test_multiple_choice_reading_by_hand():
    options = {"A": "Water", "B": "Grass", "C": "Crops", "D": "None of the above"}
    assert parse.letter("B", options) == "B"
    assert parse.letter("(C)", options) == "C"
    assert parse.letter("The answer is D.", options) == "D"
    assert parse.letter("A grass field covers most of it.", options) == "B", "a leading article is not option A"
    assert parse.letter("A", options) == "A"
    assert parse.letter("A. Water or B. Grass", options) is None, "two options named: wrong"
    assert parse.letter("I cannot tell.", options) is None, "no option named: wrong"
    items = [("q1", "A", options, "A"), ("q1", "B", options, "B"), ("q1", "C", options, "A"),
             ("q1", "D", options, "D"), ("q2", "B", options, "B"), ("q2", "C", options, "C"),
             ("q2", "D", options, "None of the above"), ("q2", "A", options, None)]
    s = metrics.score_multiple_choice(items)
    assert s.metrics == {"accuracy": 6 / 8, "circular_accuracy": 0.0} and s.missing == 1
    s = metrics.score_multiple_choice(items[:4] + [(q, a, o, a) for q, a, o, _ in items[4:]])
    assert s.metrics["circular_accuracy"] == 0.5


def test_yes_no_reading_by_hand():
    assert parse.yes_no("No. There is no water in this image.") == "no"
    assert parse.yes_no("Yes, a little.") == "yes"
    assert parse.yes_no("Not as a visible patch. Water accounts for only about 0.1% of the pixels.") == "no"
    assert parse.yes_no("None that I can see.") == "no" and parse.yes_no("Nothing of the kind.") == "no"
    assert parse.yes_no("Not sure.") is None and parse.yes_no("Notably green fields.") is None
    assert parse.yes_no("I cannot tell.") is None


def test_counting_and_shares_by_hand():
    s = metrics.score_counting([("3 patches of crops.", "4"), ("2 patches.", "two"), ("5 patches.", "many")])
    assert s.metrics == {"exact": 1 / 3, "mae": (1 + 0 + 5) / 3} and s.malformed == 1
    shares = {"water": 0.30, "crops": 0.70}
    answer = "Water covers 31.5% and crops 75%; some bare ground."
    s = metrics.score_shares([("Water (30.0%) and crops (70.0%).", answer, shares)])
    assert s.metrics == {"percent_within_2pp": 0.5, "class_recall": 1.0, "unknown_class_rate": 1 / 3}
    # captions quote no shares: only the classes they name can be checked (any answer used to score 1.0)
    caption = "A winter scene of crops with trees and grass."
    s = metrics.score_shares([(caption, "Crops and some built-up land.", shares), (caption, "Grass, mostly.", shares),
                              (caption, None, shares)])
    assert s.metrics == {"class_recall": (1 / 3 + 1 / 3 + 0) / 3, "unknown_class_rate": 1 / 3} and s.missing == 1
    s = metrics.score_shares([(caption, "Crops cover 70%.", shares), (caption, "Crops.", shares)])
    assert s.metrics["percent_within_2pp"] == 1.0, "a row counts where the answer quotes"
    # a figure for a class the row did not ask about is no answer to it, right or not (a constant answer about a
    # rare class scored 1.0 on every class_focus row); a wrong figure besides a right one costs a share
    shares = {"water": 0.30, "crops": 0.69, "shrub_and_scrub": 0.01}
    asked_water = "About 30.0% of the scene is water in 2 patches."
    s = metrics.score_shares([(asked_water, "About 1.2% of the scene is shrub and scrub.", shares),
                              (asked_water, "About 29% of the scene is water, and crops 40%.", shares),
                              (asked_water, "About 31% of the scene is water, and crops 69%.", shares),
                              (asked_water, "About 45% of the scene is water.", shares)])
    assert s.metrics["percent_within_2pp"] == (0 + 1 / 2 + 1 + 0) / 4


def test_a_reasoning_models_thought_is_not_scored_as_its_answer(eval_build, tmp_path):
    """Reasoning VLMs write <think>...</think> before the answer, and a server without a reasoning parser returns
    both: the dataset's own answers behind a thought naming options, a box, a share and "no" scored 0.054 on
    multiple_choice and 0 on referring (a 30-tile tree). The text after the thought is scored; a thought never
    closed counts as malformed, and the table says how many of each."""
    test_rows = _rows(eval_build, "test")
    thought = "<think>Options A, B, C or D? Water, maybe 40%; a box [0.1, 0.1, 0.5, 0.5]. Yes or no? No.</think>\n"
    answers = {r["metadata"]["sample_id"]: thought + _answer(r) for r in test_rows}
    cut = sorted(answers)[:3]
    for sid in cut:
        answers[sid] = "<think>Let me look at the image again"
    report_path = tmp_path / "report.json"
    proc = run_cli("eval", str(eval_build), "--predictions", str(_write_predictions(tmp_path / "p.jsonl", answers)),
                   "--output", str(report_path))
    report = json.loads(report_path.read_text())
    n = len(test_rows)
    assert report["predictions"] == {"given": n, "unmatched": 0, "repeated": 0, "reasoning_stripped": n - 3,
                                     "reasoning_unfinished": 3}
    assert f"note: {n - 3} answers begin with a reasoning model's thought" in proc.stdout, proc.stdout
    assert "WARNING: 3 answers are a reasoning model's thought never closed" in proc.stdout
    tasks = report["tasks"]
    assert sum(t["malformed"] for t in tasks.values()) == 3
    assert tasks["multiple_choice"]["metrics"]["accuracy"] > 0.9 and tasks["referring"]["metrics"]["accuracy"] > 0.8


def test_requests_for_a_batch_runner_round_trip_through_predictions(eval_build, tmp_path):
    """`--requests` writes the test prompts as OpenAI Batch API input; a "model" that answers each with the
    row's reference, in the Batch API's output shape, scores 1.0 through `--predictions`."""
    requests = tmp_path / "requests.jsonl"
    proc = run_cli("eval", "--dataset", str(eval_build), "--requests", str(requests), "--model", "my-vlm")
    test_rows = {r["metadata"]["sample_id"]: r for r in _rows(eval_build, "test")}
    lines = [json.loads(line) for line in requests.read_text().splitlines()]
    assert f"wrote {len(test_rows)} requests" in proc.stdout and {r["custom_id"] for r in lines} == set(test_rows)
    for req in lines:
        row = test_rows[req["custom_id"]]
        assert req["url"] == "/v1/chat/completions" and req["body"]["model"] == "my-vlm"
        sent = req["body"]["messages"]
        assert sent[-1]["role"] == "user" and len(sent) == len(row["messages"]) - 1, "everything but the answer"
        urls = [p["image_url"]["url"] for m in sent for p in m["content"] if p["type"] == "image_url"]
        paths = [p["image"] for m in row["messages"] for p in m["content"] if p["type"] == "image"]
        assert [base64.b64decode(u.split(",", 1)[1]) for u in urls] == [(eval_build / p).read_bytes()
                                                                          for p in paths]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"custom_id": req["custom_id"], "response": {"status_code": 200, "body": {
        "choices": [{"message": {"content": _answer(test_rows[req["custom_id"]])}}]}}}) + "\n" for req in lines))
    report_path = tmp_path / "report.json"
    run_cli("eval", "--dataset", str(eval_build), "--predictions", str(answers), "--output", str(report_path))
    for task, t in json.loads(report_path.read_text())["tasks"].items():
        assert t["missing"] == t["malformed"] == 0, task
        assert all(v == (0.0 if k in ("mae", "unknown_class_rate") else 1.0) for k, v in t["metrics"].items()), task
    proc = run_cli("eval", "--dataset", str(eval_build), "--requests", str(requests), check=False)
    assert proc.returncode == 2 and "needs --model NAME" in proc.stderr


def test_a_model_grounding_in_other_units_is_scored_in_them(eval_build, tmp_path):
    """A model scored before fine-tuning grounds in its own units: Qwen2.5-VL writes `bbox_2d` in pixels, Qwen2-VL
    and InternVL a 0-1000 grid, and labels in their own case. Each such answer matched nothing (malformed, or
    outside 0-1); with --box-scale its boxes are read in its units, `bbox_2d` as `bbox`, "Snow and ice" as
    snow_and_ice."""
    from scoring import parse

    assert parse.boxes('Here: [{"bbox_2d": [10, 20, 30, 40], "label": "Snow and ice"}]') == [
        ("snow_and_ice", (10.0, 20.0, 30.0, 40.0))]
    one = 'The crops are at {"bbox_2d": [1, 2, 3, 4], "label": "crops"}.'  # one box, no list around it
    assert parse.boxes(one) == [("crops", (1.0, 2.0, 3.0, 4.0))] and parse.boxes("No boxes {here}.") is None
    rows = [r for r in _rows(eval_build, "test") if r["metadata"]["task"] == "grounding_all"]
    predictions = {}
    for r in rows:
        boxes = json.loads(_answer(r))
        predictions[r["metadata"]["sample_id"]] = "```json\n" + json.dumps(
            [{"bbox_2d": [round(v * 1000) for v in b["bbox"]], "label": b["label"].replace("_", " ").title()}
             for b in boxes]) + "\n```"
    path = _write_predictions(tmp_path / "grid.jsonl", predictions)
    plain = run_cli("eval", str(eval_build), "--predictions", str(path))
    assert f"grounding_all: {len(rows)} of {len(rows)} answers give box coordinates outside 0-1" in plain.stdout
    assert "--box-scale 1000" in plain.stdout
    report = tmp_path / "r.json"
    run_cli("eval", str(eval_build), "--predictions", str(path), "--box-scale", "1000", "--output", str(report))
    scored = json.loads(report.read_text())
    t = scored["tasks"]["grounding_all"]
    assert scored["box_scale"] == 1000 and t["malformed"] == 0 and t["boxes_outside_unit"] == 0
    assert t["metrics"]["f1@0.5"] == 1.0 and t["metrics"]["mean_iou"] > 0.98
    for argv, said in ((["--box-scale", "0"], "--box-scale 0: give the number"),
                       (["--baseline", "majority", "--box-scale", "1000"], "it goes with --predictions")):
        proc = run_cli("eval", str(eval_build), *argv, check=False)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr


def test_boxes_in_internvl_qwen_vl_and_paligemma_tags_are_read(eval_build, tmp_path):
    """Before fine-tuning, InternVL answers <ref>water</ref><box>[[x1, y1, x2, y2]]</box>, Qwen-VL
    <box>(x1,y1),(x2,y2)</box> and PaliGemma <locY1><locX1><locY2><locX2> water: read as no boxes, every answer
    was malformed and scored 0 whatever it found. Each now reads as (label, [x1, y1, x2, y2]) on its grid."""
    from scoring import parse

    assert parse.boxes("<ref>Water</ref><box>[[12, 30, 480, 500], [600, 600, 900, 950]]</box> and "
                       "<ref>trees</ref><box>(1,2),(3,4)</box>") == [
        ("water", (12.0, 30.0, 480.0, 500.0)), ("water", (600.0, 600.0, 900.0, 950.0)), ("trees", (1.0, 2.0, 3.0, 4.0))]
    assert parse.boxes("<loc0010><loc0020><loc0500><loc0600> water ; <loc0001><loc0002><loc0003><loc0004> crops") == [
        ("water", (20.0, 10.0, 600.0, 500.0)), ("crops", (2.0, 1.0, 4.0, 3.0))]
    assert parse.boxes("<ref>water</ref><box>[[1, 2, 3]]</box>") is None  # three numbers are no box
    rows = [r for r in _rows(eval_build, "test") if r["metadata"]["task"] == "grounding_all"]
    internvl = {r["metadata"]["sample_id"]: " ".join(
        f"<ref>{b['label']}</ref><box>[[{', '.join(str(round(v * 1000)) for v in b['bbox'])}]]</box>"
        for b in json.loads(_answer(r))) for r in rows}
    report = tmp_path / "r.json"
    run_cli("eval", str(eval_build), "--predictions", str(_write_predictions(tmp_path / "internvl.jsonl", internvl)),
            "--box-scale", "1000", "--output", str(report))
    t = json.loads(report.read_text())["tasks"]["grounding_all"]
    assert t["malformed"] == 0 and t["metrics"]["f1@0.5"] == 1.0 and t["metrics"]["mean_iou"] > 0.98


def test_request_images_carry_their_media_type():
    """A still may be a JPEG or a WebP: its data URL says so (a served model's decoder trusts the type)."""
    import io

    from PIL import Image

    from scoring.requests import image_data_url

    for fmt, media_type in (("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, fmt)
        url = image_data_url(buf.getvalue())
        assert url.startswith(f"data:image/{media_type};base64,")
        assert base64.b64decode(url.split(",", 1)[1]) == buf.getvalue()


def test_eval_usage_errors(eval_build, tmp_path):
    proc = run_cli("eval", "--dataset", str(eval_build), check=False)
    assert proc.returncode == 2 and "--predictions" in proc.stderr
    proc = run_cli("eval", "--baseline", "majority", check=False)
    assert proc.returncode == 2 and "give the dataset to score: `satsft eval DATASET" in proc.stderr
    proc = run_cli("eval", str(tmp_path), "--dataset", str(eval_build), "--baseline", "majority", check=False)
    assert proc.returncode == 2 and "two datasets given" in proc.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    proc = run_cli("eval", "--dataset", str(eval_build), "--predictions", str(bad), check=False)
    assert proc.returncode == 2 and "line 1 is not JSON" in proc.stderr
    proc = run_cli("eval", "--dataset", str(eval_build), "--baseline", "majority", "--split", "dev", check=False)
    assert proc.returncode == 2 and "no 'dev' rows" in proc.stderr
    for report, said in ((tmp_path / "no-such-folder" / "r.json", "is not a folder; write the file into one"),
                         (tmp_path, "cannot write the report to")):  # known before scoring; a folder: no traceback
        proc = run_cli("eval", "--dataset", str(eval_build), "--baseline", "majority", "--output", str(report),
                       check=False)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_validate_accepts_an_eval_build(eval_build):
    proc = run_cli("validate", str(eval_build))
    assert proc.stdout.startswith("OK:"), proc.stdout
    assert Counter(r["metadata"]["task"] for r in _rows(eval_build))["referring"] > 0


def test_majority_baseline_counts_answers_as_the_scorer_reads_them():
    """Phrasings of one answer count together ("Grass." and "The box shows grass."); comparison answers, of
    the two classes asked, the one that was the answer more often (on the real fixture that prior alone scores
    0.85, where the most common answer text was unreadable for 61% of the rows)."""
    from scoring.evaluate import baseline_predictions

    def row(sid, task, reference, prompt=""):
        return {"sample_id": sid, "task": task, "reference": reference, "prompt": prompt, "metadata": {}}

    rows = [row("r1", "referring", "Grass."), row("r2", "referring", "The box shows grass."),
            row("r3", "referring", "Trees."),
            row("a1", "absence", "No. There is no water in this image."),
            row("a2", "absence", "Not as a visible patch. Snow and ice account for only about 0.03% of the pixels."),
            row("a3", "absence", "Yes. Crops cover about 52.5% of this image."),
            row("c1", "comparison", "Crops cover more: about 60.0% against 5.0% of water.", "more crops or water?"),
            row("c2", "comparison", "Trees cover more: about 30.0% against 2.0% of water.", "more water or trees?"),
            row("c3", "comparison", "Trees cover more: about 30.0% against 9.0% of crops.", "more crops or trees?"),
            row("c4", "comparison", "Water covers more: 40.0% against 1.0% of built area.", "more built or water?")]
    got = baseline_predictions(rows, "majority")
    assert {got[s] for s in ("r1", "r2", "r3")} == {"Grass."}
    assert {got[s] for s in ("a1", "a2", "a3")} == {"No."}
    # wins: trees 2, crops 1, water 1: trees over either, then crops before water on the name
    assert [got[s] for s in ("c1", "c2", "c3", "c4")] == ["Crops.", "Trees.", "Trees.", "Water."]
    # counted on other rows (a train split), those counts decide; a task they lack falls back to the rows' own
    from scoring.evaluate import fit_majority

    train = [row("t1", "referring", "Trees."), row("t2", "referring", "Trees."),
             row("t3", "comparison", "Water covers more: 50.0% against 1.0% of trees.", "more trees or water?"),
             row("t4", "comparison", "Water covers more: 50.0% against 1.0% of crops.", "more water or crops?")]
    fitted = fit_majority(train)
    assert fitted.rows == 4 and set(fitted.common) == {"referring", "comparison"}
    got = baseline_predictions(rows, "majority", fitted=fitted)
    assert {got[s] for s in ("r1", "r2", "r3")} == {"Trees."}
    assert {got[s] for s in ("a1", "a2", "a3")} == {"No."}, "absence is not in the train rows: the rows' own"
    assert [got[s] for s in ("c1", "c2", "c3", "c4")] == ["Water.", "Water.", "Crops.", "Water."]


def test_commonest_answer_is_the_one_a_full_count_picks():
    """The train split's answers are counted by digest, their text kept only once repeated: the pick must be the
    one min(-count, answer) over every answer gives, for streams of unique answers, repeats and ties."""
    import random

    from scoring.evaluate import _Commonest

    rng = random.Random(3)
    for trial in range(300):
        vocabulary = [f"answer {rng.randrange(10_000)}" for _ in range(rng.randint(1, 30))]
        stream = [rng.choice(vocabulary) for _ in range(rng.randint(1, 60))]
        c = _Commonest()
        for answer in stream:
            c.add(answer)
        counts = Counter(stream)
        assert c.pick() == min(counts, key=lambda a: (-counts[a], a)), (trial, stream)


def test_majority_baseline_is_counted_on_the_train_split(eval_build, tmp_path):
    """Counted on the rows it answers, the baseline knew their answers (comparison: which of the two classes
    asked wins on those very rows). The test split is answered with the train split's counts, and the report
    and the table say so; a mix with no train rows counts the scored rows' own, and says that instead."""
    from scoring.evaluate import _class_answer, evaluate

    train, test = _rows(eval_build, "train"), _rows(eval_build, "test")
    wins = Counter()
    for r in train:
        if r["metadata"]["task"] == "comparison":
            asked = set(parse.classes_mentioned(r["messages"][-2]["content"][-1]["text"]))
            wins[parse.one_class(_answer(r), asked)] += 1
    right = []
    for r in test:
        if r["metadata"]["task"] == "comparison":
            asked = parse.classes_mentioned(r["messages"][-2]["content"][-1]["text"])
            guess = min(asked, key=lambda c: (-wins[c], _class_answer(c)))
            right.append(guess == parse.one_class(_answer(r), set(asked)))
    assert len(right) >= 5
    report = evaluate(str(eval_build), "test", baseline="majority")
    assert report["baseline"] == "majority"
    assert report["majority_fitted_on"] == {"split": "train", "rows": len(train)}
    assert report["tasks"]["comparison"]["metrics"]["accuracy"] == pytest.approx(sum(right) / len(right), abs=1e-6)
    scored = evaluate(str(eval_build), "test", predictions={})  # beside a model's scores: the same counts
    assert scored["majority_fitted_on"] == report["majority_fitted_on"]
    assert scored["tasks"]["comparison"]["majority_baseline"] == report["tasks"]["comparison"]["metrics"]
    proc = run_cli("eval", str(eval_build), "--baseline", "majority")
    assert f"each task's commonest answer in the train split ({len(train)} rows)" in proc.stdout
    # the test split's few places get no interval, and the table says so; the train split's many do
    places = {t["places"] for t in report["tasks"].values()}
    assert max(places) < 10 and "No interval under 10 places, too few for a bootstrap" in proc.stdout, places
    assert not any("interval_95" in t for t in report["tasks"].values())
    on_train = evaluate(str(eval_build), "train", baseline="majority")
    assert on_train["majority_fitted_on"] == {"split": "train", "rows": len(train)}
    wide = {task: t for task, t in on_train["tasks"].items() if t["places"] >= 10}
    assert {"comparison", "grounding_all", "caption"} <= set(wide)
    for task, t in wide.items():
        assert set(t["interval_95"]) == set(t["metrics"]), task
    low, high = wide["comparison"]["interval_95"]["accuracy"]
    assert low < wide["comparison"]["metrics"]["accuracy"] < high
    drawn = evaluate(str(eval_build), "test", baseline="random")
    assert "majority_fitted_on" not in drawn and drawn["answers_drawn_from"] == {"split": "train", "rows": len(train)}
    # a mix of the held-out rows only: nothing to count but the scored rows, and the note says what that means
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"sources:\n  - {{name: held, path: {eval_build}, where: {{split: [validation, test]}}}}\n")
    run_cli("mix", "--recipe", str(recipe), "--output", str(tmp_path / "mix"))
    own = evaluate(str(tmp_path / "mix"), "test", baseline="majority")
    assert own["majority_fitted_on"] == {"split": "test", "rows": len(test)}
    proc = run_cli("eval", str(tmp_path / "mix"), "--baseline", "majority")
    assert "in the test split itself" in proc.stdout and "knows the answers it is scored on" in proc.stdout
    assert evaluate(str(tmp_path / "mix"), "test", baseline="random")["answers_drawn_from"] == own["majority_fitted_on"]


def test_the_random_baseline_draws_another_rows_answer_from_the_train_split(eval_build):
    """Drawn from the scored rows, one in eight of the real fixture's test production_analysis answers was the
    row's own or another profile's of its tile: the answers are drawn from the train split's, never the row's
    own tile's, from a seeded reservoir of at most POOL per task."""
    from scoring.evaluate import POOL, AnswerPool, baseline_predictions, fill_answer_pool, load_rows, output_report
    from transforms.output.tree import OutputTree

    tree = OutputTree(str(eval_build))
    report = output_report(tree)[1]
    train, test = load_rows(tree, "train", report), load_rows(tree, "test", report)
    pool = fill_answer_pool(train, "train")
    answers = baseline_predictions(test, "random", pool=pool)
    free = [r for r in test if r["task"] in ("caption", "class_focus", "production_analysis")]
    assert len(free) > 20
    for r in free:
        assert answers[r["sample_id"]] in {a for _, _, a in pool.answers[r["task"]]}, r["sample_id"]
    assert baseline_predictions(test, "random", pool=pool) == answers, "seeded"
    on_train = baseline_predictions(train, "random", pool=pool)  # the train split scored: its own rows drawn
    by_tile = defaultdict(set)
    for _, stem, answer in pool.answers["production_analysis"]:
        by_tile[answer].add(stem)
    assert all(by_tile[on_train[r["sample_id"]]] - {r["tile_stem"]}
               for r in train if r["task"] == "production_analysis"), "another tile's answer"
    mine = AnswerPool({"caption": [("a", "t1", "own"), ("b", "t1", "same tile"), ("c", "t2", "other")]})
    row = {"sample_id": "a", "task": "caption", "reference": "own", "prompt": "", "tile_stem": "t1"}
    assert all(baseline_predictions([row], "random", seed, pool=mine) == {"a": "other"} for seed in range(20))
    alone = AnswerPool({"caption": [("a", "t1", "own"), ("b", "t1", "same tile")]})
    assert alone.draw(row, random.Random(0)) is None and baseline_predictions([row], "random", pool=alone) == {"a": ""}
    stream = [{"sample_id": f"s{i}", "task": "caption", "reference": f"answer {i}"} for i in range(3 * POOL)]
    kept = fill_answer_pool(stream, seed=3).answers["caption"]
    assert len(kept) == POOL and kept == fill_answer_pool(stream, seed=3).answers["caption"]
    thirds = Counter(int(sid[1:]) // POOL for sid, _, _ in kept)
    assert all(250 < n < 420 for n in thirds.values()), thirds


def test_intervals_resample_places_as_scoring_the_resampled_rows_would(eval_build):
    """Every metric is a ratio of sums over rows, so a place's rows scored alone add up to the split's score and a
    resample's score is the drawn places' sums added: checked against scoring each resample's rows outright (a
    place drawn twice as two places, its questions and sample ids copied apart), for every task, on a model that
    is right on about two rows in three."""
    import random

    from scoring import intervals, places
    from scoring.evaluate import load_rows, output_report, score_task, tile_shares
    from transforms.output.tree import OutputTree

    tree = OutputTree(str(eval_build))
    rows = load_rows(tree, "train", output_report(tree)[1])
    shares = tile_shares(tree, {r["tile_stem"] for r in rows})
    rng = random.Random(5)
    by_task = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    predictions = {r["sample_id"]: r["reference"] if rng.random() < 0.65 else
                   rng.choice(by_task[r["task"]])["reference"] for r in rows}
    checked = set()
    for task, task_rows in sorted(by_task.items()):
        whole = score_task(task, task_rows, predictions, shares)
        if whole is None:
            continue
        by_place = places.rows_by_place(task_rows)
        parts = [score_task(task, t, predictions, shares) for t in by_place]
        for name, (num, den) in whole.sums.items():  # the tiles' sums add up to the split's
            assert sum(p.sums.get(name, (0, 0))[0] for p in parts) == pytest.approx(num), (task, name)
            assert sum(p.sums.get(name, (0, 0))[1] for p in parts) == pytest.approx(den), (task, name)
        sums = intervals.PlaceSums.of(by_place, whole, lambda some, task=task: score_task(
            task, some, predictions, shares))
        drawn = intervals.weights(len(by_place), 12)
        values = sums.resampled(drawn)
        for k, counts in enumerate(drawn):
            copies, answers = [], {}
            for place_rows, n in zip(by_place, counts, strict=True):
                for c in range(n):
                    for r in place_rows:
                        sid = f"{r['sample_id']}#{c}"
                        qid = r["metadata"].get("question_id") or r["sample_id"].rsplit("_r", 1)[0]
                        copies.append({**r, "sample_id": sid,
                                       "metadata": {**r["metadata"], "question_id": f"{qid}#{c}"}})
                        answers[sid] = predictions[r["sample_id"]]
            outright = score_task(task, copies, answers, shares).metrics
            for name, value in outright.items():
                assert values[name][k] == pytest.approx(value, abs=1e-9), (task, name, k)
                checked.add((task, name))
        got = intervals.intervals_of(sums)
        assert got == intervals.intervals_of(intervals.PlaceSums.of(by_place, whole, lambda some, task=task: score_task(
            task, some, predictions, shares))), "seeded: the same bounds every time"
        assert got["places"] == len(by_place)
        if len(by_place) >= intervals.MIN_PLACES:
            assert set(got["interval_95"]) == set(whole.metrics), task
            for name, (low, high) in got["interval_95"].items():
                assert low <= high and low - 0.05 <= whole.metrics[name] <= high + 0.05, (task, name)
        else:
            assert "interval_95" not in got
    assert {("grounding_all", "f1@0.5"), ("multiple_choice", "circular_accuracy"), ("counting", "mae"),
            ("comparison", "accuracy"), ("caption", "class_recall")} <= checked


def test_a_model_is_compared_with_the_majority_baseline_over_the_same_draws(eval_build):
    """Beside a model's scores, the interval of its score minus the majority baseline's, drawn over the same
    places: a task answered as the baseline answers shows no difference, one answered with nothing shows worse,
    the rest (answered right) better; the note under the table says which is which."""
    from scoring.evaluate import (
        baseline_predictions,
        evaluate,
        fit_majority,
        load_rows,
        markdown_table,
        output_report,
    )
    from transforms.output.tree import OutputTree

    tree = OutputTree(str(eval_build))
    rows = load_rows(tree, "train", output_report(tree)[1])
    trivial = baseline_predictions(rows, "majority", fitted=fit_majority(rows))
    answers = {r["sample_id"]: trivial[r["sample_id"]] if r["task"] == "comparison" else
               "I cannot tell." if r["task"] == "referring" else r["reference"] for r in rows}
    report = evaluate(str(eval_build), "train", predictions=answers)
    tasks = report["tasks"]
    assert tasks["referring"]["majority_baseline"]["accuracy"] > 0.1
    assert tasks["comparison"]["vs_majority_95"] == {"accuracy": [0.0, 0.0]}
    low, high = tasks["referring"]["vs_majority_95"]["accuracy"]
    assert low <= high < 0
    for task in ("caption", "grounding_all", "multiple_choice", "absence"):
        for name, (low, high) in tasks[task]["vs_majority_95"].items():
            assert (high < 0) if name in ("mae", "unknown_class_rate") else (low > 0), (task, name, low, high)
    table = markdown_table(report)
    assert "worse on referring accuracy" in table and "no clear difference on comparison accuracy +0.000" in table
    assert "Better on every other score with an interval." in table
    assert "vs_majority_95" not in evaluate(str(eval_build), "train", baseline="majority")["tasks"]["caption"]


def test_a_row_sidecar_that_is_not_one_leaves_its_tile_to_the_reference_and_says_so(eval_build, tmp_path):
    """A production_analysis row sidecar edited into `{}` stopped eval with a KeyError. Now another profile's
    sidecar of the tile is read in its place; a tile with none readable has its quoted shares checked against
    the reference answer, and the summary and report count such tiles."""
    out = tmp_path / "out"
    shutil.copytree(eval_build, out)
    stems = sorted({r["metadata"]["tile_stem"] for r in _rows(out, "test")
                    if r["metadata"]["task"] == "production_analysis"})
    sidecars = out / "metadata" / "sft_metadata_rows"
    for path in sidecars.rglob(f"{stems[0]}__analysis_*.json"):  # every profile's sidecar of one tile
        path.write_text("{}")
    next(sidecars.rglob(f"{stems[1]}__analysis_brief_only.json")).write_text("[1]")  # one of two of another
    proc = run_cli("eval", str(out), "--baseline", "majority", "--output", str(tmp_path / "report.json"))
    said = json.loads((tmp_path / "report.json").read_text())["row_sidecars_unreadable"]
    assert said["tiles"] == 1 and f"{stems[0]}__analysis_" in said["first"], said
    assert "WARNING: 1 tile(s) have no readable production_analysis row sidecar" in proc.stdout
    proc = run_cli("eval", str(eval_build), "--baseline", "majority", "--output", str(tmp_path / "clean.json"))
    assert "row_sidecars_unreadable" not in json.loads((tmp_path / "clean.json").read_text())


def test_predictions_saved_as_utf16_read_and_other_encodings_are_named(tmp_path):
    """PowerShell's `>` saves UTF-16 with a byte order mark: every such file stopped eval with orjson's "str is not
    valid UTF-8: surrogates not allowed"; it reads as the UTF-8 file does. Latin-1 text, and UTF-16 without the
    mark, stop with a line that says what the file is and to save it as UTF-8."""
    from scoring.evaluate import EvalError, read_predictions

    text = "".join(json.dumps({"sample_id": f"s{i}", "prediction": f"Forêt {i}."}, ensure_ascii=False) + "\n"
                   for i in range(3))
    want = read_predictions(str(_write_bytes(tmp_path / "utf8.jsonl", text.encode())))
    assert want == {f"s{i}": f"Forêt {i}." for i in range(3)}
    for name, data in (("le.jsonl", text.encode("utf-16")), ("be.jsonl", b"\xfe\xff" + text.encode("utf-16-be")),
                       ("crlf.jsonl", text.replace("\n", "\r\n").encode("utf-16"))):
        assert read_predictions(str(_write_bytes(tmp_path / name, data))) == want, name
    for name, data, said in (
            ("latin1.jsonl", text.encode("latin-1"), "line 1 is not UTF-8 text (byte 0xea at column 39): save the "
                                                     "file as UTF-8"),
            ("bare16.jsonl", text.encode("utf-16-le"), "line 1 holds NUL bytes, as UTF-16 text without a byte order "
                                                       "mark does: save the file as UTF-8")):
        with pytest.raises(EvalError) as err:
            read_predictions(str(_write_bytes(tmp_path / name, data)))
        assert str(err.value) == f"{tmp_path / name} {said}"


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_predictions_written_whole_read_as_the_json_they_hold(tmp_path):
    """`json.dump(predictions, f, indent=2)`, or each answer pretty-printed, named .jsonl (or gzipped): eval
    stopped with "line 1 is not JSON". The answers read as a file of one per line does; JSON that breaks off
    is named."""
    import gzip

    from scoring.evaluate import EvalError, read_predictions

    answers = [{"sample_id": f"s{i}", "prediction": f"B. Grass {i}"} for i in range(3)]
    want = {a["sample_id"]: a["prediction"] for a in answers}
    pretty = "".join(json.dumps(a, indent=2) + "\n" for a in answers)
    for name, data in (("array.jsonl", json.dumps(answers, indent=2).encode()), ("pretty.jsonl", pretty.encode()),
                       ("array.jsonl.gz", gzip.compress(json.dumps(answers).encode(), mtime=0))):
        assert read_predictions(str(_write_bytes(tmp_path / name, data))) == want, name
    with pytest.raises(EvalError, match="holds JSON written whole that does not parse"):
        read_predictions(str(_write_bytes(tmp_path / "cut.jsonl", json.dumps(answers, indent=2)[:-30].encode())))


def test_a_requests_file_past_one_openai_batch_says_how_to_cut_it(tmp_path):
    """A split's requests carry their images inline, so a 2,000-tile build's test split is past the 200 MB one
    OpenAI batch takes, which refuses it at upload. The note names the parts and the command that cuts the file
    at line ends; run on a small file, each part holds whole requests and the parts hold them all."""
    import subprocess

    from scoring.requests import too_large_for_openai

    assert too_large_for_openai(40_000, 150 * 10**6, "r.jsonl") == ""
    assert "into 2 or more parts" in too_large_for_openai(60_000, 10**6, "r.jsonl")
    note = too_large_for_openai(3_231, 450 * 10**6, str(tmp_path / "requests.jsonl"))
    assert "3,231 requests, 450 MB" in note and "into 3 or more parts" in note
    command = note.split("`")[3]
    assert command.startswith("split -n l/3 ")
    lines = [json.dumps({"custom_id": f"s{i}", "body": "x" * (i * 37 % 500)}) for i in range(200)]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    subprocess.run(command, shell=True, check=True, cwd=tmp_path)
    parts = sorted(tmp_path.glob("requests-part-*.jsonl"))
    assert len(parts) == 3
    assert [line for p in parts for line in p.read_text().splitlines()] == lines
