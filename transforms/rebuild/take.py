"""Taking an unchanged tile's rows from the earlier build's split files, a file at a time.

The earlier build's row index says where each row lies, per JSONL split file. Only how many rows a tile has in
each file crosses the join on tile stem (a few bytes per tile), which is enough to tell whether the index
covers the tile. What the join finds it cannot take (a changed, removed or rejected tile, or one the index does
not fully cover) it names per index file, with how many rows it has there; with what the first read of each
index file found (its rows, and whether they hash to its own shard) that tells how many rows each earlier file
gives this build, all a split's shard count needs. The rows themselves are read from the index once more by the
writer of the shard they go to (transforms.output.split_files), so they never cross a shuffle: in a rebuild of
a grown tree, where nearly every tile is unchanged, they used to cost more than all else the rebuild does for
those tiles, and then still a second of pickling.

Both reads of an index file must see the same thing, or a tile could be taken and made again: a file that is
missing or does not parse, or whose split file is gone, counts as empty in both (its tiles are then made
again); any other read error fails the bundle, which Beam retries; and a second read that finds another number
of rows to take stops the build (taken_block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import fileio
from transforms.gather import GatherByKeyFn
from transforms.output.formats import split_file_parts, stays_in_its_shard
from transforms.paths import join_path
from transforms.rebuild.manifest import EARLIER_BUILD_UNUSABLE, ROWS_DIR, parse_row_index, row_index_file

EXCLUDED = "excluded"  # JoinOnTileStem's (row index file, (stem, rows)) for each earlier tile whose rows are not taken
FILES = "files"  # ReadPreviousRows' (row index file, IndexFacts) for each index file it could read

# One tile's rows in one earlier split file, as the join sees them: (split file, rows).
RunSize = tuple[str, int]


class TakenBlock(NamedTuple):
    """The rows one earlier JSONL split file gives this build: (stem, sample id, offset, length, line number)
    each, in file order. Every one is a line of that file, taken as it is (transforms.output.split_files)."""

    file: str
    split: str
    rows: tuple[tuple[str, str, int, int, int], ...]


class IndexFacts(NamedTuple):
    """What the first read of a row index file found: how many rows it lists (every line of its split file),
    and whether they hash to the shard their file is (stays_in_its_shard)."""

    rows: int
    stays: bool


class TakenFile(NamedTuple):
    """The rows one earlier JSONL split file gives this build, before they are read: every row its index lists
    but those of the ``excluded`` tiles, ``rows`` of them. The writer of the shard they go to reads them
    (taken_block)."""

    file: str
    split: str
    rows: int
    excluded: tuple[str, ...]
    stays: bool


def read_index(root: str, rel: str, count: bool = False
               ) -> list[tuple[str, tuple[str, tuple[tuple[str, int, int], ...]]]]:
    """An index file's runs; [] when it is missing or damaged (the same for every read of it). Damaged includes
    an index that names a split file other than its own, or one no build writes: the join would then name its
    tiles under another index file, and their rows here would be taken even when they are made again; and one
    whose split file is gone (deleted by hand: its rows cannot be read). ``count``: count a damaged file (the
    first read does; the second finds the same)."""
    data = fileio.read_if_there(join_path(root, rel))
    if data is None:
        return []
    try:
        runs = parse_row_index(data)
        own = rel[len(ROWS_DIR) + 1:]
        split_file_parts(own)  # a name no build writes raises ValueError
        if not rel.startswith(ROWS_DIR + "/") or any(file != own for _, (file, _) in runs):
            raise ValueError(f"{rel} names another split file")
        if runs and not fileio.exists(join_path(root, own)):  # the split file deleted by hand: rows made again
            raise ValueError(f"{own} is gone")
        return runs
    except (ValueError, KeyError, TypeError):  # orjson.JSONDecodeError is a ValueError
        if count:
            Metrics.counter("ReadPreviousRows", "index_files_unreadable").inc()
        return []


def run_sizes(runs: list[tuple[str, tuple[str, tuple[tuple[str, int, int], ...]]]]) -> list[tuple[str, RunSize]]:
    """(stem, (split file, rows in it)) per run of an index file: all the join needs to know of a tile's rows."""
    return [(stem, (file, len(rows))) for stem, (file, rows) in runs]


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


def excluded_runs(stem: str, runs: list[RunSize]) -> list[tuple[str, tuple[str, int]]]:
    """(row index file, (stem, rows there)) for each file a tile whose rows are not taken has rows in."""
    rows: dict[str, int] = {}
    for file, n in runs:
        rows[file] = rows.get(file, 0) + n
    return [(row_index_file(file), (stem, n)) for file, n in sorted(rows.items())]


def index_facts(rel: str, runs: list[tuple[str, tuple[str, tuple[tuple[str, int, int], ...]]]]) -> IndexFacts:
    _, shard, n, _ = split_file_parts(rel[len(ROWS_DIR) + 1:])
    sample_ids = [row[0] for _, (_, rows) in runs for row in rows]
    return IndexFacts(len(sample_ids), stays_in_its_shard(sample_ids, shard, n))


class _RunsByStemFn(GatherByKeyFn):
    """The runs of the index files of a bundle, gathered by stem: a tile has rows in about as many split files
    as it has rows (each row's shard is a hash of its sample id), and each run crossing the join on its own
    cost more than the join itself (145,000 of them in a 20,000-tile rebuild). Each readable file's facts go
    out as ``files``."""

    def __init__(self, root: str):
        self.root = root

    def process(self, rel: str):
        runs = read_index(self.root, rel, count=True)
        if runs:
            yield beam.pvalue.TaggedOutput(FILES, (rel, index_facts(rel, runs)))
        yield from self.gather(run_sizes(runs))


@dataclass
class ReadPreviousRows(beam.PTransform):
    """An earlier build's row index -> ``runs``: (stem, ((split file, rows), ...)), the runs of a tile's rows, one
    per JSONL split file it has rows in (all of them, or a part when a bundle gathered very many stems): what
    lets the join tell whether the index covers an unchanged tile; and ``files``: (index file, IndexFacts)."""

    root: str
    index_files: tuple[str, ...]

    def expand(self, pbegin):
        out = (pbegin
               | "Files" >> beam.Create(list(self.index_files))
               | "Spread" >> beam.Reshuffle()
               | "Read" >> beam.ParDo(_RunsByStemFn(self.root)).with_outputs(FILES, main="runs"))
        return {"runs": out.runs, FILES: out[FILES]}


def taken_file(element) -> list[TakenFile]:
    """(index file, its facts and the tiles of it not taken) -> what its split file gives this build, if any."""
    rel, groups = element
    facts = list(groups[FILES])
    if not facts:  # an index the first read could not use: none of its tiles was taken
        return []
    excluded = dict(groups[EXCLUDED])
    rows = facts[0].rows - sum(excluded.values())
    if rows <= 0:
        return []
    Metrics.counter("TakeEarlierRows", "rows_taken").inc(rows)
    file = rel[len(ROWS_DIR) + 1:]
    return [TakenFile(file, split_file_parts(file)[0], rows, tuple(sorted(excluded)), facts[0].stays)]


def taken_block(root: str, taken: TakenFile) -> TakenBlock:
    """The rows a TakenFile names, read from the earlier build's row index (the second read of it)."""
    blocks = kept_rows(read_index(root, row_index_file(taken.file)), set(taken.excluded))
    rows = blocks[0].rows if blocks else ()
    if len(rows) != taken.rows:
        raise RuntimeError(f"{EARLIER_BUILD_UNUSABLE}{join_path(root, row_index_file(taken.file))} changed while "
                           f"this build ran: {len(rows)} rows to take where the first read found {taken.rows}; run the "
                           "build again")
    return TakenBlock(taken.file, taken.split, rows)


@dataclass
class TakeEarlierRows(beam.PTransform):
    """(row index file, (stem, rows)) of every earlier tile whose rows are not taken, with ReadPreviousRows'
    ``files`` -> a TakenFile per earlier JSONL split file that gives this build rows: the rows of unchanged
    tiles, for WriteSplitFiles to place."""

    files: beam.PCollection  # ReadPreviousRows' files

    def expand(self, excluded):
        return ({FILES: self.files, EXCLUDED: excluded}
                | "ByFile" >> beam.CoGroupByKey()
                | "Keep" >> beam.FlatMap(taken_file))
