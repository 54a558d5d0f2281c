"""`satsft preview` works for every combination of --n, --tasks and --splits (each Parquet file may hold none
of the rows picked), and a filter that matches nothing is a clear usage error."""

from __future__ import annotations

import itertools
import json

import pytest

from pipeline.cli import main

TASKS = ("", "production_analysis", "caption,absence", "grounding_all")
SPLITS = ("", "train", "validation,test")


@pytest.mark.parametrize(("n", "tasks", "splits"), list(itertools.product((1, 6), TASKS, SPLITS)))
def test_every_filter_combination_previews(small_build, n, tasks, splits, capsys):
    argv = ["preview", str(small_build), "--n", str(n)]
    argv += ["--tasks", tasks] if tasks else []
    argv += ["--splits", splits] if splits else []
    assert main(argv) == 0, capsys.readouterr().err
    data = (small_build / "preview" / "sample.js").read_text()
    shown = json.loads(data[data.index("=") + 1:data.rindex(";")])
    cards = shown["cards"]
    assert cards and all(not tasks or c["task"] in tasks.split(",") for c in cards)
    assert all(not splits or c["split"] in splits.split(",") for c in cards)
    assert max(shown["sample_per_task"].values()) <= n


@pytest.mark.parametrize(("flag", "value"), [("--tasks", "counting"), ("--splits", "dev")])
def test_a_filter_matching_nothing_says_what_there_is(small_build, flag, value, capsys):
    assert main(["preview", str(small_build), flag, value]) == 2
    err = capsys.readouterr().err
    assert f"no rows match {flag} {value}" in err and "caption" in err and "train" in err
