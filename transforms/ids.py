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
