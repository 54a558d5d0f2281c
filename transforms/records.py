"""Reject records (FORMATS.md 2.3) and the stages that count as a tile being rejected."""

from __future__ import annotations

from typing import Any

# Stages whose rejects stand for a whole tile sidecar, for the accounting identity
# tiles in = tiles with rows + tiles rejected.
TILE_STAGES = frozenset({"sidecar", "join", "split", "rows"})


def written_name(text: str) -> str:
    """``text`` as JSON can carry it: a local file name that is not UTF-8 (Python reads its bytes as lone
    surrogates) with each such byte written as ``\\xNN``, so the reject that names it can be written at all."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def reject(source: str, tile_stem: str, stage: str, reason: str, detail: str = "") -> dict[str, Any]:
    """A reject, its texts as JSON can carry them (``written_name``): a name read from a file system or a link
    is not checked anywhere else."""
    return {"source": written_name(source), "tile_stem": written_name(tile_stem), "stage": stage, "reason": reason,
            "detail": written_name(detail)}


NAME_NOT_UTF8 = "path_not_utf8"  # a file whose name is not UTF-8: Beam, JSON and Parquet carry UTF-8 text only
NAME_NOT_UTF8_DETAIL = "the file name is not UTF-8 (written with \\xNN for its other bytes); rename it"


def name_not_utf8(path: str) -> bool:
    return not path.isascii() and written_name(path) != path
