"""Taking unchanged tiles' rows a file at a time: which rows a block keeps, and where they go in this build."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.output.formats import row_shard, split_file_parts, stays_in_its_shard
from transforms.output.split_files import shard_batches, shard_count, shard_pointers, taken_shard_batches
from transforms.output.spool import previous_spool
from transforms.rebuild.manifest import ROWS_DIR, encode_row_index, row_index_file
from transforms.rebuild.take import (
    FILES,
    ReadPreviousRows,
    TakeEarlierRows,
    TakenBlock,
    TakenFile,
    _RunsByStemFn,
    excluded_runs,
    kept_rows,
    read_index,
    run_sizes,
    taken_block,
)

FILE = "data/train-00001-of-00003.jsonl"


def _index(file: str, stems: list[str], per_tile: int = 3) -> bytes:
    rows, offset = [], 0
    for stem in stems:
        for t in range(per_tile):
            rows.append((stem, f"{stem}__task{t}", offset, 40))
            offset += 40
    return encode_row_index(file, rows)


def _write(root, rel: str, data: bytes) -> None:
    """A file of the earlier build; an index file's split file is made too (empty) where there is none: an index
    whose split file is gone is not read (test_a_missing_or_damaged_index_gives_nothing_on_every_read)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    split_file = root / rel[len(ROWS_DIR) + 1:]
    if rel.startswith(ROWS_DIR + "/") and not split_file.exists():
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_bytes(b"")


def test_the_join_sees_only_how_many_rows_a_tile_has_in_each_file(tmp_path):
    _write(tmp_path, row_index_file(FILE), _index(FILE, ["a", "b"], 2))
    assert run_sizes(read_index(str(tmp_path), row_index_file(FILE))) == [("a", (FILE, 2)), ("b", (FILE, 2))]


@pytest.mark.parametrize("max_stems", [50_000, 2])
def test_a_tiles_runs_reach_the_join_gathered_by_stem(tmp_path, monkeypatch, max_stems):
    """One element per tile (its runs in every index file of the bundle), not one per run; past ``MAX_KEYS``
    stems the gathered ones go on and a tile may come in parts, which together hold every run once."""
    monkeypatch.setattr(_RunsByStemFn, "MAX_KEYS", max_stems)
    other = "data/train-00002-of-00003.jsonl"
    _write(tmp_path, row_index_file(FILE), _index(FILE, ["a", "b", "c"], 2))
    _write(tmp_path, row_index_file(other), _index(other, ["a", "c"], 1))
    files = (row_index_file(FILE), row_index_file(other), row_index_file("data/test.jsonl"))  # the last: lost
    with TestPipeline() as p:
        read = p | ReadPreviousRows(str(tmp_path), files)
        parts = read["runs"]
        assert_that(read[FILES] | beam.MapTuple(lambda rel, facts: (rel, facts.rows)),
                    equal_to([(row_index_file(FILE), 6), (row_index_file(other), 2)]), label="files")
        runs = (parts
                | beam.GroupByKey()
                | beam.MapTuple(lambda stem, found: (stem, sorted(run for part in found for run in part))))
        assert_that(runs, equal_to([("a", [(FILE, 2), (other, 1)]), ("b", [(FILE, 2)]),
                                    ("c", [(FILE, 2), (other, 1)])]), label="runs")
        if max_stems > 3:
            assert_that(parts | "Stems" >> beam.Keys(), equal_to(["a", "b", "c"]), label="one each")


def test_a_missing_or_damaged_index_gives_nothing_on_every_read(tmp_path):
    assert read_index(str(tmp_path), row_index_file(FILE)) == []
    _write(tmp_path, row_index_file(FILE), b'{"stem": "a", "file": ')
    assert read_index(str(tmp_path), row_index_file(FILE)) == []
    assert run_sizes(read_index(str(tmp_path), row_index_file(FILE))) == []
    _write(tmp_path, row_index_file(FILE), _index(FILE, ["a"]))
    assert read_index(str(tmp_path), row_index_file(FILE)) != []
    (tmp_path / FILE).unlink()  # the split file deleted by hand: its rows cannot be read, so none is taken
    assert read_index(str(tmp_path), row_index_file(FILE)) == []


def test_an_index_naming_another_split_file_counts_as_damaged(tmp_path):
    """Else the join would name its tiles under the other file's index, and their rows here would be taken even
    when they are made again."""
    other = "data/train-00002-of-00003.jsonl"
    _write(tmp_path, row_index_file(FILE), _index(other, ["a"], 1))
    _write(tmp_path, f"{ROWS_DIR}/notes.txt", _index("notes.txt", ["a"], 1))
    assert read_index(str(tmp_path), row_index_file(FILE)) == []
    assert read_index(str(tmp_path), f"{ROWS_DIR}/notes.txt") == []
    _write(tmp_path, row_index_file(other), _index(other, ["a"], 1))
    assert read_index(str(tmp_path), row_index_file(other)) == [("a", (other, (("a__task0", 0, 40),)))]


def test_excluded_tiles_leave_the_block_and_the_others_keep_file_order():
    runs = [("a", (FILE, (("a__0", 0, 10), ("a__1", 10, 12)))), ("b", (FILE, (("b__0", 22, 9),))),
            ("c", (FILE, (("c__0", 31, 5),)))]
    assert kept_rows(runs, {"b"}) == [TakenBlock(FILE, "train", (("a", "a__0", 0, 10, 0), ("a", "a__1", 10, 12, 1),
                                                                 ("c", "c__0", 31, 5, 3)))]
    assert kept_rows(runs, {"a", "b", "c"}) == []


def test_a_tile_not_taken_is_named_once_per_index_file():
    other = "data/train-00002-of-00003.jsonl"
    assert excluded_runs("a", [(other, 2), (FILE, 1), (other, 1)]) == [(row_index_file(FILE), ("a", 1)),
                                                                      (row_index_file(other), ("a", 3))]


def test_take_earlier_rows_keeps_every_row_but_those_of_excluded_tiles(tmp_path):
    """Only how many rows each earlier file gives crosses the graph; its shard's writer reads them (taken_block)."""
    other = "data/validation.jsonl"
    _write(tmp_path, row_index_file(FILE), _index(FILE, ["a", "b"], 2))
    _write(tmp_path, row_index_file(other), _index(other, ["c", "d"], 1))
    files = (row_index_file(FILE), row_index_file(other), row_index_file("data/test.jsonl"))  # the last: lost
    with TestPipeline() as p:
        excluded = p | beam.Create([(row_index_file(FILE), ("b", 2)), (row_index_file(other), ("c", 1)),
                                    (row_index_file(other), ("d", 1))])
        taken = excluded | TakeEarlierRows((p | ReadPreviousRows(str(tmp_path), files))[FILES])
        assert_that(taken | beam.Map(lambda t: t[:4]), equal_to([(FILE, "train", 2, ("b",))]))
    stays = stays_in_its_shard(["a__task0", "a__task1", "b__task0", "b__task1"], 1, 3)
    assert taken_block(str(tmp_path), TakenFile(FILE, "train", 2, ("b",), stays)) == TakenBlock(
        FILE, "train", (("a", "a__task0", 0, 40, 0), ("a", "a__task1", 40, 40, 1)))


def test_an_index_that_changed_since_its_first_read_stops_the_build(tmp_path):
    _write(tmp_path, row_index_file(FILE), _index(FILE, ["a", "b", "c"], 2))
    with pytest.raises(RuntimeError, match="changed while this build ran"):
        taken_block(str(tmp_path), TakenFile(FILE, "train", 2, ("b",), True))  # the first read found 2 rows


def _block(root, n_shards: int, shard: int, count: int, belong: bool = True) -> TakenFile:
    """Rows of shard ``shard`` of ``n_shards`` (ones that hash there, as a build writes them, or any rows), with
    their row index under ``root``."""
    rows, i = [], 0
    while len(rows) < count:
        sid = f"t{i:05d}__caption"
        if not belong or row_shard(sid, n_shards) == shard:
            rows.append((f"t{i:05d}", sid, len(rows) * 50, 50))
        i += 1
    file = f"data/train-{shard:05d}-of-{n_shards:05d}.jsonl"
    _write(root, row_index_file(file), encode_row_index(file, rows))
    return TakenFile(file, "train", len(rows), (), stays_in_its_shard([r[1] for r in rows], shard, n_shards))


def _one_by_one(root, taken: TakenFile, counts: dict[str, int], per_shard: int) -> dict:
    block = taken_block(str(root), taken)
    spool = previous_spool(block.file)
    batch = tuple((block.split, sid, spool, off, n, "", stem, line) for stem, sid, off, n, line in block.rows)
    placed: dict = {}
    for key, pointers in shard_batches(batch, counts, per_shard, 9000):
        placed.setdefault(key, []).extend(pointers)
    return placed


def _placed(root, taken: TakenFile, counts: dict[str, int], per_shard: int) -> dict:
    placed: dict = {}
    for key, part in taken_shard_batches(taken, counts, per_shard, 9000, None, str(root)):
        placed.setdefault(key, []).extend(shard_pointers([part], str(root)))
    return placed


def test_taken_rows_go_where_rows_made_now_would_go(tmp_path):
    per_shard = 100
    taken = _block(tmp_path, 3, 1, 260)  # a file of a 3-shard split
    for total in (250, 300, 420, 999):  # as many shards as then, and more
        counts = {"train": total}
        assert shard_count(total, per_shard) >= 3
        assert _placed(tmp_path, taken, counts, per_shard) == _one_by_one(tmp_path, taken, counts, per_shard)
    whole = taken_shard_batches(taken, {"train": 300}, per_shard, 9000, None, str(tmp_path))
    assert whole == [(("train", 1, 3, ""), taken)], "as many shards as then: the file goes whole to its own"
    assert split_file_parts(taken.file)[1:3] == (1, 3)


def test_rows_of_a_file_placed_some_other_way_are_placed_one_by_one(tmp_path):
    taken = _block(tmp_path, 3, 1, 260, belong=False)  # like a build of before jump hashing
    assert not taken.stays
    counts = {"train": 300}
    placed = _placed(tmp_path, taken, counts, 100)
    assert placed == _one_by_one(tmp_path, taken, counts, 100) and len(placed) == 3
