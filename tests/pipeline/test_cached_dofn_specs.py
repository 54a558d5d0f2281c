"""Beam's look for a DoFn's state and timer parameters, kept per class: the same answers, Beam's errors, one look
per class; a stateful DoFn still keeps its state once it is installed."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from pipeline import cached_dofn_specs
from pipeline.cached_dofn_specs import _specs_per_class

COUNT = ReadModifyWriteStateSpec("count", VarIntCoder())
COUNT_PARAM = beam.DoFn.StateParam(COUNT)  # Beam reads state parameters from the defaults


class _Plain(beam.DoFn):
    def process(self, element):
        yield element


class _Counting(beam.DoFn):
    def process(self, element, count=COUNT_PARAM):
        seen = (count.read() or 0) + 1
        count.write(seen)
        yield element[0], seen


class _Twice(beam.DoFn):
    def process(self, element, a=COUNT_PARAM, b=COUNT_PARAM):
        yield element


def _original():
    return getattr(userstate.get_dofn_specs, "__wrapped__", userstate.get_dofn_specs)


def test_the_answers_are_beams_and_each_class_is_looked_at_once():
    original, looks = _original(), []

    def counted(dofn):
        looks.append(type(dofn).__name__)
        return original(dofn)

    specs = _specs_per_class(counted)
    for _ in range(3):
        for dofn in (_Plain(), _Counting()):
            assert specs(dofn) == original(dofn)
    assert looks == ["_Plain", "_Counting"]
    state, _ = specs(_Counting())
    state.clear()  # a caller's set is its own
    assert specs(_Counting())[0] == {COUNT}
    # an instance holding a bound method of its own (beam.FlatMap(obj.method)) is looked at every time
    wrapped = beam.FlatMap(_Plain().process).fn
    specs(wrapped)
    specs(wrapped)
    assert looks.count(type(wrapped).__name__) == 2
    # Beam's errors stay Beam's, every time
    for _ in range(2):
        with pytest.raises(ValueError, match="duplicate"):
            specs(_Twice())


def test_a_stateful_dofn_keeps_its_state_once_installed():
    cached_dofn_specs.install()
    cached_dofn_specs.install()
    assert not hasattr(userstate.get_dofn_specs.__wrapped__, "__wrapped__"), "installed once, over Beam's own"
    with TestPipeline() as p:
        counted = (p | beam.Create([("a", 1), ("a", 2), ("b", 3)]) | beam.ParDo(_Counting())
                   | beam.CombinePerKey(max))
        assert_that(counted, equal_to([("a", 2), ("b", 1)]))
