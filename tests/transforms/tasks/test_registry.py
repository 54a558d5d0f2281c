"""The task registry is the only list of tasks: a new task is one module and one TaskSpec entry (plus its
wording under templates/prompts/), and a build with --tasks naming it writes its rows."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pytest

from pipeline.cli import main
from pipeline.sample.tree import write_sample_tree
from transforms import tasks
from transforms.prompts import default_prompts_dir
from transforms.tasks import TASKS, TaskSpec, default_tasks, eval_tasks, is_grounding, rows_per_tile_bound

THROWAWAY = '''
"""tile_echo: a throwaway task that names the tile's first region; lives only in this test."""

from transforms.prompts import pick
from transforms.rows import make_row

TASK = "tile_echo"


def rows(pt):
    if not pt.tile.regions:
        return []
    sid = f"{pt.stem}__tile_echo"
    t = pt.ctx.templates
    return [make_row(pt, TASK, sid, [pt.chip_path], pick(t, TASK, "prompt", sid),
                     pick(t, TASK, "answer", sid, label=pt.tile.regions[0].label))]
'''


def test_registry_holds_what_the_rest_of_the_code_asks():
    assert set(default_tasks()) | set(eval_tasks()) == set(TASKS)
    assert not set(default_tasks()) & set(eval_tasks())
    assert {t for t in TASKS if is_grounding(t)} == {"grounding_all", "grounding_per_class"}
    assert not is_grounding("a_foreign_task")  # mix rows may name tasks satsft does not know
    assert rows_per_tile_bound(("caption", "production_analysis"), 5) == 6
    with pytest.raises(ValueError, match="scored_as"):
        TaskSpec(lambda pt: [], 1, scored_as="bleu")


def test_a_new_task_is_a_module_and_an_entry(tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "tile_echo_task.py").write_text(textwrap.dedent(THROWAWAY))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    import tile_echo_task

    monkeypatch.setitem(TASKS, "tile_echo", TaskSpec(tile_echo_task.rows, 1))
    prompts = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), prompts)
    (prompts / "tile_echo.json").write_text(json.dumps({"prompt": ["Name one land-cover class you see."],
                                                        "answer": ["{label}."]}))
    tree, out = tmp_path / "tree", tmp_path / "out"
    write_sample_tree(str(tree), 12, seed=5, workers=1)
    assert main(["build", "--input", str(tree), "--output", str(out), "--tasks", "caption,tile_echo",
                 "--prompts-dir", str(prompts)]) == 0
    report = json.loads((out / "build_report.json").read_text())
    echo = report["rows"]["by_task_split"]["tile_echo"]
    assert sum(echo.values()) == report["tiles"]["with_rows"] == 12
    rows = [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.read_text().splitlines()]
    echoed = [r for r in rows if r["metadata"]["task"] == "tile_echo"]
    assert len(echoed) == 12 and all(r["messages"][-1]["content"][0]["text"].endswith(".") for r in echoed)
    sidecars = list((out / "metadata" / "sft_metadata_rows").rglob("*__tile_echo.json"))
    assert len(sidecars) == 12
    del sys.modules["tile_echo_task"]


def test_an_unknown_task_is_a_usage_error(tmp_path, capsys):
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--tasks", "tile_echo"]) == 2
    assert "tile_echo" in capsys.readouterr().err
    assert "tile_echo" not in tasks.TASKS


def test_a_row_rules_version_counts_only_for_the_tasks_built(monkeypatch, tmp_path):
    """A tile's fingerprint holds the row rules of the tasks built: a change to a benchmark task's rules redoes
    the tiles of builds that make it, and costs a build of the training tasks nothing."""
    from pipeline.build.config import BuildConfig

    write_sample_tree(str(tmp_path / "tree"), 4, seed=1, workers=1)

    def rows_of(tasks: str) -> str:
        config = BuildConfig.create(input=str(tmp_path / "tree"), output=str(tmp_path / "out"), tasks=tasks)
        return config.shaping_options("0")["rows"]

    training, with_eval = rows_of("all"), rows_of("all+eval")
    assert training.startswith("satsft-rows/") and f"absence.{tasks.ROW_RULES['absence']}," in training
    assert "referring" not in training
    monkeypatch.setitem(tasks.ROW_RULES, "referring", tasks.ROW_RULES["referring"] + 1)
    assert rows_of("all") == training
    assert rows_of("all+eval") != with_eval
