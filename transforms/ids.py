"""Stable, salt-free randomness: every choice in satsft is seeded from domain strings.

Python's ``hash()`` is salted per process, so on Beam workers it would give different answers on every
worker and every retry. Everything here goes through SHA-256 of the joined parts instead.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()


def stable_uint64(*parts: object) -> int:
    return int.from_bytes(stable_digest(*parts)[:8], "big")


def stable_uniform(*parts: object) -> float:
    """A float in [0, 1) fixed by the parts."""
    return (stable_uint64(*parts) >> 11) / float(1 << 53)


def stable_choice_index(n: int, *parts: object) -> int:
    if n <= 0:
        raise ValueError("stable_choice_index needs n >= 1")
    return stable_uint64(*parts) % n


def stable_rng(*parts: object) -> np.random.Generator:
    """A numpy Generator seeded from the parts (for vectorised draws such as noise fields)."""
    return np.random.default_rng(int.from_bytes(stable_digest(*parts)[:16], "big"))


def jump_bucket(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping and Veach, 2014) of a 64-bit key into [0, buckets): when the number of
    buckets grows by one, only the keys that go to the new bucket move, so a rebuild whose split grew a shard
    finds nearly every row in the shard of the same number as before."""
    if buckets <= 0:
        raise ValueError("jump_bucket needs buckets >= 1")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b
