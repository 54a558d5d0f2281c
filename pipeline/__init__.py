"""The "where and how" of satsft: CLI, options, graph assembly and the run report."""

__version__ = "0.1.0"
