"""Reject records (FORMATS.md 2.3) and the stages that count as a tile being rejected."""

from __future__ import annotations

from typing import Any

# Stages whose rejects stand for a whole tile sidecar, for the accounting identity
# tiles in = tiles with rows + tiles rejected.
TILE_STAGES = frozenset({"sidecar", "join", "split", "rows"})


def reject(source: str, tile_stem: str, stage: str, reason: str, detail: str = "") -> dict[str, Any]:
    return {"source": source, "tile_stem": tile_stem, "stage": stage, "reason": reason, "detail": detail}
