"""The pipeline's options make each class's view once and stay the same options in every other way."""

from __future__ import annotations

import copy
import pickle

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TypeOptions

from pipeline.cached_views import cached_views
from pipeline.runner import new_pipeline


def test_views_are_made_once_and_share_the_options_values():
    plain = PipelineOptions(["--runner", "DirectRunner", "--no_pipeline_type_check"])
    cached = cached_views(plain)
    assert cached.view_as(TypeOptions) is cached.view_as(TypeOptions)
    assert not cached.view_as(TypeOptions).pipeline_type_check
    cached.view_as(StandardOptions).streaming = True  # one store of values: seen through every view
    assert cached.view_as(StandardOptions).streaming and plain.view_as(StandardOptions).streaming
    assert cached.get_all_options() == plain.get_all_options()
    for other in (copy.deepcopy(cached), pickle.loads(pickle.dumps(cached))):
        assert other.view_as(StandardOptions).streaming and not other.view_as(TypeOptions).pipeline_type_check
        assert other.view_as(TypeOptions) is other.view_as(TypeOptions)
        assert other.view_as(TypeOptions) is not cached.view_as(TypeOptions)  # copies make their own views


def test_a_new_pipeline_has_them():
    pipeline = new_pipeline(PipelineOptions(["--runner", "DirectRunner"]))
    assert pipeline.options.view_as(TypeOptions) is pipeline.options.view_as(TypeOptions)
