"""What satsft reads as YAML (a mix recipe, a dataset card's header) may come from anyone: a cloned dataset
repository brings its own card. YAML's aliases name a value again without writing it again, so twenty lines of
aliases of aliases hold billions of values (and an alias inside what it names holds itself): any walk over such
a document, even printing it in a message, runs for minutes and fills the memory. Both readers check the size
first and show values by their start."""

from __future__ import annotations

import reprlib
from typing import Any

MAX_YAML_VALUES = 100_000  # a recipe of a thousand sources, or a card of a thousand configs, holds some ten thousand

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxstring, _SHOWN.maxother = 2, 4, 4, 60, 60


def shown(value: Any) -> str:
    """A value for a message: its start, however large it is (repr(value)[:80] would build it whole first)."""
    return _SHOWN.repr(value)


def values_past(data: Any, limit: int = MAX_YAML_VALUES) -> bool:
    """Whether a loaded document's values, counted as often as aliases name them, exceed limit: the walk stops
    at the limit, so a document that names itself or expands to billions is told apart in milliseconds."""
    stack, count = [data], 0
    while stack:
        value = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False
