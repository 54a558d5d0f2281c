"""The "where and how" of satsft: one sub-package per command (build, mix, publish, review, sample), with
the CLI, the runner plumbing and the progress display at the top (docs/ARCHITECTURE.md)."""

__version__ = "0.1.0"
