"""A small finished build the review tools are tried on: several tasks and profiles, both record formats, and
shards small enough that most split files hold only some tasks (as large builds do)."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.sample.tree import write_sample_tree


@pytest.fixture(scope="package")
def small_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    write_sample_tree(str(root / "tree"), 60, seed=2, workers=1)
    assert main(["build", "--input", str(root / "tree"), "--output", str(root / "out"), "--tasks",
                 "caption,grounding_all,production_analysis,absence", "--profiles", "brief_only,wildfire",
                 "--rows-per-shard", "7"]) == 0
    return root / "out"
