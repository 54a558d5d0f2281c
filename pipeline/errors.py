"""Errors the CLI turns into exit codes; kept apart so that every command can import them cheaply."""


class UsageError(ValueError):
    """A mistake in how satsft was called; the message says how to fix it (exit 2)."""


def cannot_list(where: str, err: Exception) -> UsageError:
    """A bucket that cannot be listed (no credentials, no such bucket, no network) is how satsft was called, not a
    crash: one line that says what to check."""
    return UsageError(f"cannot list {where!r}: {str(err)[:300]}; check the URL and your credentials "
                      "(gcloud auth application-default login)")


def refuse_past_64_bits(*flags: tuple[str, int]) -> None:
    """Reports record integer options as 64-bit integers: a larger one would let the job run to its end and then
    fail writing the report, so it is refused before anything starts."""
    for flag, value in flags:
        if value >= 1 << 63:
            raise UsageError(f"{flag} {value} is too large")
