"""The input fingerprint (FORMATS.md 2): one digest of which files a build saw, so two build reports tell
whether two builds read the same tree, wherever it lived (paths are taken below the input root).

Each file becomes a 32-byte leaf: its kind, relative path, size and, for tile sidecars, the digest of its
bytes (a sidecar edited in place keeps its size more often than an image does). The fingerprint is the
SHA-256 of the sorted leaves, so it does not depend on listing or bundle order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def file_leaf(kind: str, rel_path: str, size: int, content: bytes | None = None) -> bytes:
    digest = hashlib.sha256(content).hexdigest() if content is not None else ""
    return hashlib.sha256(f"{kind}\x1f{rel_path}\x1f{size}\x1f{digest}".encode()).digest()


def fingerprint(leaves: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for leaf in sorted(leaves):
        h.update(leaf)
    return h.hexdigest()
