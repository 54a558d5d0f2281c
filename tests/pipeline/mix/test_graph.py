"""Which sources read which file: sources reading one build the same way share each of its files (read and
normalised once), foreign files are read per source."""

from __future__ import annotations

from pipeline.mix.graph import source_files
from pipeline.mix.recipe import Recipe, Source

BUILD = ("b/parquet/train-0.parquet", "b/parquet/test-0.parquet")


def _build(name: str, root: str = "b", **where) -> Source:
    return Source(name, "b", "satsft", BUILD, root, where={k: tuple(v) for k, v in where.items()},
                  dataset="satsft:b", folder="b")


def test_sources_reading_one_build_share_its_files():
    foreign = ("f/train.jsonl",)
    recipe = Recipe(0, (
        _build("main"),
        Source("chat", "f", "files", foreign, "f", dataset="files:f", folder="f"),
        _build("fire", profile=["wildfire"]),
        Source("chat2", "f", "files", foreign, "f", dataset="files:f", folder="f"),
        _build("moved", root="elsewhere/media"),  # its images live elsewhere: its rows normalise otherwise
    ))
    assert source_files(recipe) == [
        ((0, 2), 0, BUILD[0]), ((0, 2), 1, BUILD[1]),
        ((1,), 0, foreign[0]),  # a foreign row takes its source's name as its task
        ((3,), 0, foreign[0]),
        ((4,), 0, BUILD[0]), ((4,), 1, BUILD[1]),
    ]
