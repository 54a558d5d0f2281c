"""A tree laid out as the tools teams fetch data with lay it out: the Hugging Face cache (``snapshot_download``:
every file of ``snapshots/<rev>/`` a link into the repository's ``blobs/``), git-annex or DataLad (large files
links into ``<repo>/.git/annex/objects/``) and DVC with links for its cache type. The tests and ``make fuzz``
build such trees to hold satsft to what it promises for them (transforms.fileio.content_stores)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def as_links(root: Path, store: Path, folders: tuple[str, ...] = ()) -> None:
    """Every file below ``root`` (or below its top ``folders``) moved into ``store`` by its digest, a relative
    link left in its place."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if folders and path.relative_to(root).parts[0] not in folders:
            continue
        data = path.read_bytes()
        blob = store / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        path.unlink()
        path.symlink_to(os.path.relpath(blob, path.parent))
