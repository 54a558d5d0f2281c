"""Pipeline options whose views are made once per option class.

Beam asks the pipeline's options for a view (``view_as``) at every transform it applies and at every type check,
and each view parses the flags anew with argparse: some 1,700 views and about a second of CPU for a build's
graph, on every run. That is fixed cost, the same for a clean build and for a rebuild that reuses nearly every
tile, where it is a large part of what the rebuild costs.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

_VIEWS = "_satsft_views"


class CachedViewOptions(PipelineOptions):
    """Views share the options' one store of values, so a value set through any view is seen by all, as with
    Beam's own views; only the parsing is done once per class."""

    def view_as(self, cls):
        views = self.__dict__.setdefault(_VIEWS, {})
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]

    def __getstate__(self):  # copies and pickles make their own views
        state = dict(super().__getstate__())
        state.pop(_VIEWS, None)
        return state


def cached_views(options: PipelineOptions) -> CachedViewOptions:
    """The same options (the same flags and the same store of values), with views made once per class."""
    cached = object.__new__(CachedViewOptions)
    cached.__dict__.update({k: v for k, v in options.__dict__.items() if k != _VIEWS})
    return cached
