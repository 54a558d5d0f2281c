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
# Class names that are plural nouns in prose ("crops are"); the rest read as mass nouns ("water is").
PLURAL_CLASSES: frozenset[str] = frozenset({"trees", "crops"})


def class_fields(key: str, name: str) -> dict[str, str]:
    """Template fields for a class named in prose under ``key``: the name, capitalised, and the verb forms
    that agree with it, so a template writes "{label_cap} cover{label_s}" and "there {label_is} no {label}"."""
    prose = display_name(name)
    plural = prose in PLURAL_CLASSES
    return {key: prose, f"{key}_cap": prose[:1].upper() + prose[1:], f"{key}_is": "are" if plural else "is",
            f"{key}_does": "do" if plural else "does", f"{key}_has": "have" if plural else "has",
            f"{key}_s": "" if plural else "s"}
