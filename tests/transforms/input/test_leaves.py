"""The input fingerprint from batched leaves: the same digest however the leaves were batched."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.input.fingerprint import fingerprint
from transforms.input.read import BatchLeaves, FingerprintFn


@pytest.mark.parametrize("max_leaves", [10_000, 3])
def test_batched_leaves_give_the_fingerprint_of_every_leaf(monkeypatch, max_leaves):
    monkeypatch.setattr(BatchLeaves, "MAX_LEAVES", max_leaves)
    sidecars = [f"sidecar-{i}".encode() for i in range(8)]
    images = [(f"s{i}", f"img-{i}") for i in range(5)]
    with TestPipeline() as p:
        leaves = ([p | "S" >> beam.Create(sidecars) | "SL" >> beam.ParDo(BatchLeaves()),
                   p | "I" >> beam.Create(images) | "IL" >> beam.ParDo(BatchLeaves(lambda e: e[1].encode()))]
                  | beam.Flatten())
        digest = leaves | beam.CombineGlobally(FingerprintFn())
        assert_that(digest, equal_to([fingerprint(sidecars + [f"img-{i}".encode() for i in range(5)])]))
