"""``--tile-share``: a try-out build of part of a large tree before the whole of it.

A share is taken by base POI, so every tile of a place goes together (its splits and leakage stay as a full
build would see them), and by a stable hash of the base, not by position: the same bases on every run, on
every runner, and as the tree grows. Only the chosen tiles' sidecars, chips and the stills they look up are
read at all, which is what makes a try-out over a bucket of a million tiles cheap.
"""

from __future__ import annotations

from transforms.ids import stable_uniform
from transforms.paths import base_poi_id, file_stem
from transforms.records import written_name

SHARE_LEFT_OUT = "tiles_outside_share"  # event: sidecar files of tiles outside --tile-share, never read


def in_share(stem: str, share: float) -> bool:
    """Whether a tile stem's base POI falls in the first ``share`` of the hash range."""
    return share >= 1 or stable_uniform("tile-share", base_poi_id(stem)) < share


def path_in_share(path: str, share: float) -> bool:
    """The same, for a sidecar or chip file named by its tile stem (one not UTF-8 by its name as written)."""
    return share >= 1 or in_share(file_stem(written_name(path)), share)
