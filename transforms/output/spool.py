"""The spool: rows written once, by the stage that makes them, to one file per bundle under the output's
spool folder, so that only pointers (spool, offset, length) cross shuffles and memory grows with the number
of rows, not with their text. Build and mix share it; the folder goes once every shard is written.

A bundle that fails and is retried leaves an unreferenced spool behind, which goes with the folder (the way
Beam's own file sinks treat their temporary files).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import apache_beam as beam

from transforms import fileio
from transforms.output.tree import SPOOL_DIR
from transforms.paths import join_path

POINTERS_PER_BATCH = 1000  # pointers travel in tuples of up to this many: one element per row costs a coder pass
PREVIOUS_MARK = "previous:"  # a pointer's "spool" that is a JSONL split file of the earlier build (--previous)


def previous_spool(split_file: str) -> str:
    """The spool name of a row that lies, as its JSONL line, in the earlier build's split file (relative path):
    rows of unchanged tiles are read from there instead of being made and spooled again."""
    return PREVIOUS_MARK + split_file


def previous_file(spool: str) -> str | None:
    return spool[len(PREVIOUS_MARK):] if spool.startswith(PREVIOUS_MARK) else None


def spool_root(output_root: str) -> str:
    return join_path(output_root, SPOOL_DIR)


class SpoolFile:
    """One bundle's spool file: opened with a fresh name on the first write, closed when the bundle ends.
    Beam discards what a failed bundle emitted, so its spool is never referenced (and goes with the folder)."""

    def __init__(self, root: str):
        self.root = root
        self.name, self._file, self._offset = "", None, 0

    def write(self, data: bytes) -> tuple[str, int, int]:
        """Append; returns (spool name, offset, length)."""
        if self._file is None:
            self.name, self._offset = uuid.uuid4().hex, 0
            self._file = fileio.open_for_write(join_path(self.root, self.name))
        offset = self._offset
        self._file.write(data)
        self._offset += len(data)
        return self.name, offset, len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_spooled(spool_root: str, ranges: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int], bytes]:
    """(spool, offset, length) ranges -> their bytes, keyed by (spool, offset); each spool file is opened once
    and read in offset order, and a range asked for twice is read once."""
    by_spool: dict[str, set[tuple[int, int]]] = {}
    for spool, offset, length in ranges:
        by_spool.setdefault(spool, set()).add((offset, length))
    out = {}
    for spool, spans in sorted(by_spool.items()):
        with fileio.open_for_read(join_path(spool_root, spool)) as f:
            for offset, length in sorted(spans):
                f.seek(offset)
                out[(spool, offset)] = f.read(length)
    return out


def read_one(root: str, spool: str, offset: int, length: int) -> bytes:
    return read_spooled(root, [(spool, offset, length)])[(spool, offset)]


@dataclass
class RemoveSpool(beam.PTransform):
    """Events of every writer -> nothing, once all of them are in: then the spool folder goes. The report
    waits for it through the flattened events, so a finished output never holds a spool."""

    output_root: str

    def expand(self, events):
        root = spool_root(self.output_root)
        return (events
                | "AllWritten" >> beam.combiners.Count.Globally()
                | "RemoveSpool" >> beam.FlatMap(lambda _: fileio.remove_tree(root) or []))
