"""Which sources read which file: sources reading one dataset the same way share each of its files (read and
normalised once); a source resolving images against another root reads its own."""

from __future__ import annotations

from pipeline.mix.graph import source_files
from pipeline.mix.recipe import Recipe, Source

BUILD = ("b/parquet/train-0.parquet", "b/parquet/test-0.parquet")
CHAT = ("f/train.jsonl",)


def _build(name: str, root: str = "b", **where) -> Source:
    return Source(name, "b", "satsft", BUILD, root, where={k: tuple(v) for k, v in where.items()},
                  dataset="satsft:b", folder="b")


def _chat(name: str, root: str = "f") -> Source:
    return Source(name, "f", "files", CHAT, root, dataset="files:f", folder="f")


def test_sources_reading_one_dataset_share_its_files():
    recipe = Recipe(0, (
        _build("main"),
        _chat("chat"),
        _build("fire", profile=["wildfire"]),
        _chat("chat2"),
        _build("moved", root="elsewhere/media"),  # its images live elsewhere: its rows normalise otherwise
        _chat("chat3", root="g"),
    ))
    assert source_files(recipe) == [
        ((0, 2), 0, BUILD[0]), ((0, 2), 1, BUILD[1]),
        ((1, 3), 0, CHAT[0]),
        ((4,), 0, BUILD[0]), ((4,), 1, BUILD[1]),
        ((5,), 0, CHAT[0]),
    ]
