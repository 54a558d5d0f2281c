"""The input fingerprint from batched leaves: the same digest however the leaves were batched."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.input.fingerprint import fingerprint
from transforms.input.read import Fingerprint


@pytest.mark.parametrize("batch", [10_000, 3])
def test_batched_leaves_give_the_fingerprint_of_every_leaf(monkeypatch, batch):
    monkeypatch.setattr(Fingerprint, "BATCH", batch)
    sidecars = [f"sidecar-{i}".encode() for i in range(8)]
    images = [f"img-{i}".encode() for i in range(5)]
    with TestPipeline() as p:
        digest = {"S": p | "S" >> beam.Create(sidecars), "I": p | "I" >> beam.Create(images)} | Fingerprint()
        assert_that(digest, equal_to([fingerprint(sidecars + images)]))
