"""Google Dynamic World v1 land-cover classes and their official visualisation palette."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "water",
    "trees",
    "grass",
    "flooded_vegetation",
    "crops",
    "shrub_and_scrub",
    "built",
    "bare_ground",
    "snow_and_ice",
)
NUM_CLASSES = len(CLASS_NAMES)
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

PALETTE_HEX: tuple[str, ...] = (
    "#419BDF",
    "#397D49",
    "#88B053",
    "#7A87C6",
    "#E49635",
    "#DFC35A",
    "#C4281B",
    "#A59B8F",
    "#B39FE1",
)
PALETTE_RGB: tuple[tuple[int, int, int], ...] = tuple(
    (int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)) for h in PALETTE_HEX
)


def display_name(name: str) -> str:
    """Class names read better in prose without underscores ("shrub and scrub")."""
    return name.replace("_", " ")
