"""GatherByKeyFn: one element per key and bundle, whose parts together hold every value once."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.gather import GatherByKeyFn, gathered


@pytest.mark.parametrize(("max_keys", "max_values"), [(50_000, 200_000), (2, 200_000), (50_000, 2)])
def test_values_of_a_key_are_gathered(monkeypatch, max_keys, max_values):
    """Past either bound what is held goes on, and a key may come in parts that together hold each value once."""
    monkeypatch.setattr(GatherByKeyFn, "MAX_KEYS", max_keys)
    monkeypatch.setattr(GatherByKeyFn, "MAX_VALUES", max_values)
    pairs = [("b1", ("t1", "train")), ("b1", ("t2", "train")), ("b2", ("t3", "test")), ("b3", ("t4", "train")),
             ("b1", ("t5", "train"))]
    with TestPipeline() as p:
        parts = p | beam.Create(pairs) | beam.ParDo(GatherByKeyFn())
        values = (parts
                  | beam.GroupByKey()
                  | beam.MapTuple(lambda key, found: (key, sorted(gathered(found)))))
        assert_that(values, equal_to([("b1", [("t1", "train"), ("t2", "train"), ("t5", "train")]),
                                      ("b2", [("t3", "test")]), ("b3", [("t4", "train")])]), label="values")
        if max_keys > 3 and max_values > 5:  # Create gives one bundle here
            assert_that(parts | beam.Keys(), equal_to(["b1", "b2", "b3"]), label="one each")
