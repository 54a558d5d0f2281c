"""Git LFS pointer files standing in for the real ones. A tree (or a Hugging Face dataset repository) cloned or
copied without Git LFS holds, in place of each PNG, Parquet or large JSONL file, a three-line text file naming
the real one's hash and size. Every file then failed on its own reason (`chip_not_png` with b'version ', an
`invalid_jsonl_line` per pointer line, Arrow's "magic bytes not found"), and nothing said why or what to do.
"""

from __future__ import annotations

POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
MAX_POINTER_BYTES = 512  # a pointer is three short lines, about 130 bytes
DETAIL = ("a Git LFS pointer, not the file itself: the tree was cloned or copied without Git LFS; run "
          "`git lfs install` and then `git lfs pull` in the clone (or download it with `huggingface-cli download`)")


def is_pointer(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 33 bytes or more) is an LFS pointer."""
    n = min(len(head), len(POINTER_PREFIX))
    return n >= 33 and head[:n] == POINTER_PREFIX[:n]
