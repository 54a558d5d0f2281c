"""Gathering a bundle's values by key before a shuffle.

A rebuild's per-tile records (row-index runs by stem, earlier splits and known tiles by base) meet others in a
CoGroupByKey; on Beam's portable runners each element that crosses one costs some 10-25 us, however small it
is. Records of one key mostly lie together in the files they come from (a base's tiles share a stem prefix), so
gathering them per bundle first leaves one element per key and bundle to cross.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows


class GatherByKeyFn(beam.DoFn):
    """(key, value) pairs -> (key, (value, ...)), once per key per bundle (or more often past ``MAX_KEYS`` keys
    or ``MAX_VALUES`` values held, when what is held is passed on and gathering starts again): a consumer
    flattens the parts a CoGroupByKey gives it. Subclasses that read their pairs from somewhere pass them to
    ``gather``; those with large values hold fewer."""

    MAX_KEYS = 50_000  # some 10 MB of small records
    MAX_VALUES = 200_000

    def start_bundle(self):
        self._held: dict[Any, list[Any]] = {}
        self._values = 0

    def process(self, element):
        yield from self.gather((element,))

    def gather(self, pairs: Iterable[tuple[Any, Any]]):
        held, n = self._held, 0
        for key, value in pairs:
            n += 1
            found = held.get(key)
            if found is None:
                held[key] = [value]
            else:
                found.append(value)
        self._values += n
        if len(held) >= self.MAX_KEYS or self._values >= self.MAX_VALUES:
            yield from self._flush()

    def finish_bundle(self):
        for pair in self._flush():
            yield GlobalWindows.windowed_value(pair)

    def _flush(self) -> list[tuple[Any, tuple[Any, ...]]]:
        held, self._held, self._values = self._held, {}, 0
        return [(key, tuple(values)) for key, values in sorted(held.items())]


def gathered(parts: Iterable[tuple[Any, ...]]) -> list[Any]:
    """The values of a key's gathered parts, as one list."""
    return [value for part in parts for value in part]
