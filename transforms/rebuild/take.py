"""Taking an unchanged tile's rows from the earlier build's split files, a file at a time.

The earlier build's row index says where each row lies, per JSONL split file. Only how many rows a tile has in
each file crosses the join on tile stem (a few bytes per tile), which is enough to tell whether the index
covers the tile. What the join finds it cannot take (a changed, removed or rejected tile, or one the index does
not fully cover) it names per index file; each index file is then read once more and the rows of every other
tile in it are kept, as one block per file. So the rows of unchanged tiles never travel tile by tile: in a
rebuild of a grown tree, where nearly every tile is unchanged, they used to cost more than all else the rebuild
does for those tiles.

Both reads of an index file must see the same thing, or a tile could be taken and made again: a file that is
missing or does not parse counts as empty in both (its tiles are then made again); any other read error fails
the bundle, which Beam retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import fileio
from transforms.gather import GatherByKeyFn
from transforms.output.formats import split_file_parts
from transforms.paths import join_path
from transforms.rebuild.manifest import ROWS_DIR, parse_row_index, row_index_file

EXCLUDED = "excluded"  # JoinOnTileStem's (row index file, stem) for each earlier tile whose rows are not taken

# One tile's rows in one earlier split file, as the join sees them: (split file, rows).
RunSize = tuple[str, int]


class TakenBlock(NamedTuple):
    """The rows one earlier JSONL split file gives this build: (stem, sample id, offset, length, line number)
    each, in file order. Every one is a line of that file, taken as it is (transforms.output.split_files)."""

    file: str
    split: str
    rows: tuple[tuple[str, str, int, int, int], ...]


def read_index(root: str, rel: str, count: bool = False
               ) -> list[tuple[str, tuple[str, tuple[tuple[str, int, int], ...]]]]:
    """An index file's runs; [] when it is missing or damaged (the same for every read of it). Damaged includes
    an index that names a split file other than its own, or one no build writes: the join would then name its
    tiles under another index file, and their rows here would be taken even when they are made again.
    ``count``: count a damaged file (the first read does; the second finds the same)."""
    data = fileio.read_if_there(join_path(root, rel))
    if data is None:
        return []
    try:
        runs = parse_row_index(data)
        own = rel[len(ROWS_DIR) + 1:]
        split_file_parts(own)  # a name no build writes raises ValueError
        if not rel.startswith(ROWS_DIR + "/") or any(file != own for _, (file, _) in runs):
            raise ValueError(f"{rel} names another split file")
        return runs
    except (ValueError, KeyError, TypeError):  # orjson.JSONDecodeError is a ValueError
        if count:
            Metrics.counter("ReadPreviousRows", "index_files_unreadable").inc()
        return []


def run_sizes(root: str, rel: str) -> list[tuple[str, RunSize]]:
    """(stem, (split file, rows in it)) per run of the index file: all the join needs to know of a tile's rows."""
    return [(stem, (file, len(rows))) for stem, (file, rows) in read_index(root, rel, count=True)]


def kept_rows(runs: list[tuple[str, tuple[str, tuple[tuple[str, int, int], ...]]]], excluded: set[str]
              ) -> list[TakenBlock]:
    """The rows of the tiles not ``excluded``, one block per split file (an index names one file), each with
    its line number: the index lists every line of its file, in order."""
    by_file: dict[str, list[tuple[str, str, int, int, int]]] = {}
    lines: dict[str, int] = {}
    for stem, (file, rows) in runs:
        first = lines.get(file, 0)
        lines[file] = first + len(rows)
        if stem not in excluded:
            by_file.setdefault(file, []).extend((stem, sid, offset, length, first + i)
                                                for i, (sid, offset, length) in enumerate(rows))
    return [TakenBlock(file, split_file_parts(file)[0], tuple(rows)) for file, rows in sorted(by_file.items())
            if rows]


def excluded_runs(stem: str, runs: list[RunSize]) -> list[tuple[str, str]]:
    """(row index file, stem) for each file a tile whose rows are not taken has rows in."""
    return [(row_index_file(file), stem) for file in sorted({file for file, _ in runs})]


class _RunsByStemFn(GatherByKeyFn):
    """The runs of the index files of a bundle, gathered by stem: a tile has rows in about as many split files
    as it has rows (each row's shard is a hash of its sample id), and each run crossing the join on its own
    cost more than the join itself (145,000 of them in a 20,000-tile rebuild)."""

    def __init__(self, root: str):
        self.root = root

    def pairs(self, rel: str) -> list[tuple[str, RunSize]]:
        return run_sizes(self.root, rel)


@dataclass
class ReadPreviousRows(beam.PTransform):
    """An earlier build's row index -> (stem, ((split file, rows), ...)): the runs of a tile's rows, one per
    JSONL split file it has rows in (all of them, or a part when a bundle gathered very many stems): what lets
    the join tell whether the index covers an unchanged tile."""

    root: str
    index_files: tuple[str, ...]

    def expand(self, pbegin):
        return (pbegin
                | "Files" >> beam.Create(list(self.index_files))
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_RunsByStemFn(self.root)))


def _keep(element, root: str) -> list[TakenBlock]:
    rel, groups = element
    blocks = kept_rows(read_index(root, rel), set(groups[EXCLUDED]))
    Metrics.counter("TakeEarlierRows", "rows_taken").inc(sum(len(b.rows) for b in blocks))
    return blocks


@dataclass
class TakeEarlierRows(beam.PTransform):
    """(row index file, stem) of every earlier tile whose rows are not taken -> a TakenBlock per earlier JSONL
    split file with the rows of all the others: the rows of unchanged tiles, for WriteSplitFiles to place."""

    root: str
    index_files: tuple[str, ...]

    def expand(self, excluded):
        root = self.root
        files = (excluded.pipeline
                 | "Files" >> beam.Create([(rel, rel) for rel in self.index_files if rel.startswith(ROWS_DIR + "/")]))
        return ({"file": files, EXCLUDED: excluded}
                | "ByFile" >> beam.CoGroupByKey()
                | "Keep" >> beam.FlatMap(lambda e: _keep(e, root) if list(e[1]["file"]) else []))
