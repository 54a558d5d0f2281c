"""Stable ids: the jump consistent hash that picks a row's shard."""

from __future__ import annotations

import pytest

from transforms.ids import jump_bucket, stable_uint64


def test_jump_bucket_moves_only_keys_that_go_to_the_new_bucket():
    keys = [stable_uint64("shard", f"row-{i}") for i in range(4000)]
    for n in (1, 2, 5, 9):
        before = [jump_bucket(k, n) for k in keys]
        after = [jump_bucket(k, n + 1) for k in keys]
        assert all(0 <= b < n for b in before) and set(after) == set(range(n + 1))
        moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
        assert all(a == n for _, a in moved)  # a grown split keeps every other row in its shard
        assert abs(len(moved) / len(keys) - 1 / (n + 1)) < 0.04  # and the new shard gets its share
    assert [jump_bucket(k, 7) for k in keys[:50]] == [jump_bucket(k, 7) for k in keys[:50]]


def test_jump_bucket_needs_a_bucket():
    with pytest.raises(ValueError, match="buckets >= 1"):
        jump_bucket(5, 0)
