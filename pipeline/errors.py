"""Errors the CLI turns into exit codes; kept apart so that every command can import them cheaply."""


class UsageError(ValueError):
    """A mistake in how satsft was called; the message says how to fix it (exit 2)."""
