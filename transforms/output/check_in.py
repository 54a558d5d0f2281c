"""A run's check-in on a bucket output (look for another writer, maybe clear an --overwrite, name itself the
writer), held as one step against runs on other machines.

On one machine ``claim.exclusive`` makes the check-in one step with a file lock. Runs on two machines share no
lock: two launches of one scheduled rebuild (Cloud Scheduler delivers a job at least once, and a retried launch
can start a second Flex Template launcher in the same second) could both find no writer and both write, or both
undo each other's --update. On Cloud Storage an object written with ``ifGenerationMatch=0`` is created by one
writer only, whoever comes second is told so (HTTP 412), so the check-in holds ``CHECK_IN`` from its first
read to its marker and deletes it after, by its own generation (never a check-in that took over since).

A check-in found in place refuses the run: that run is about to name itself the writer, or stopped while it
checked in. It is judged like a writer's marker (``holder``): for sure on this machine; from elsewhere taken as
stopped once it is ``take_over_after`` hours old (``--take-over-after 0`` takes it over at once), replaced by
a write conditional on the generation read, so two runs taking over one stale check-in do not both win. Other
object stores (S3, Azure, HDFS through Beam) have no such guard here; local folders have the file lock.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid
from collections.abc import Iterator

from transforms import fileio
from transforms.output import claim
from transforms.output.tree import CHECK_IN
from transforms.paths import join_path
from transforms.rebuild import holder

LOG = logging.getLogger("satsft")
ATTEMPTS = 5  # a check-in released or taken over while it was read is read again, this many times at most


class CheckInBusy(RuntimeError):
    """Another run is checking in on the output: nothing was done (exit 1, as for a running writer)."""


@contextlib.contextmanager
def checking_in(output: str, take_over_after: float) -> Iterator[None]:
    """Hold the check-in on ``output`` (a local folder or a ``gs://`` prefix) for the body of the ``with``."""
    with claim.exclusive(output):
        if not output.startswith("gs://"):
            yield
            return
        path = join_path(output, CHECK_IN)
        try:
            generation = _take(output, path, take_over_after)
        except CheckInBusy:
            raise
        except Exception as err:  # noqa: BLE001 (no such bucket, no credentials, no network: how it was called)
            raise fileio.BadLocation(f"cannot write to {output!r} ({err.__class__.__name__}: {str(err)[:300]}); "
                                     "check the URL and your credentials (gcloud auth application-default login)"
                                     ) from err
        try:
            yield
        finally:
            _release(path, generation)


def _release(path: str, generation: int) -> None:
    """Delete this run's check-in; a store that fails to (after its client's retries) must not turn the run's
    own outcome into a traceback about a file of a few lines, so it is said and left for the next run to judge."""
    try:
        fileio.gcs_delete_if(path, generation)
    except Exception as err:  # noqa: BLE001 (any client error: the run's result stands)
        LOG.warning("could not remove %s (%s: %s); a run from another machine will take it as a run checking in "
                    "until --take-over-after hours have passed: remove it by hand if none is", path,
                    err.__class__.__name__, err)


def check_in_text(run: str) -> bytes:
    began = datetime.datetime.now(datetime.timezone.utc).strftime(holder.BEGAN_FORMAT)
    return (f"a satsft run is checking this output for other writers, or stopped while it did\nrun {run}\n"
            f"{holder.this_process(began).lines()}").encode()


def _take(output: str, path: str, take_over_after: float) -> int:
    """Create the check-in object, or take over a stale one; the generation this run holds."""
    run = uuid.uuid4().hex
    mine = check_in_text(run)
    for _ in range(ATTEMPTS):
        generation = fileio.gcs_write_if(path, mine, 0)
        if generation is not None:
            return generation
        found = fileio.gcs_read_with_generation(path)
        if found is None:
            continue  # released between the two calls: try again
        text, generation = found[0].decode("utf-8", "replace"), found[1]
        if f"\nrun {run}\n" in text:
            return generation  # this run's own write, retried by the client after its answer was lost
        why = refusal(output, text, take_over_after)
        if why:
            raise CheckInBusy(why)
        taken = fileio.gcs_write_if(path, mine, generation)  # only while it is still the stale one read
        if taken is not None:
            other = holder.parse(text)
            LOG.warning("took over the check-in on %s left %s", output,
                        f"by {other.who()} (began {other.began or 'at an unknown time'})" if other else "by a run")
            return taken
    raise CheckInBusy(f"{output}: the check-in of other satsft runs kept changing while this one was starting; "
                      "nothing was done: run this command again")


def refusal(output: str, text: str, take_over_after: float) -> str:
    """Why a check-in found in place stops this run ("" when it is taken as stopped)."""
    other = holder.parse(text)
    if holder.still_running(other):
        return (f"{output}: another satsft run (process {other.pid} on this machine, began {other.began}) is "
                "checking it for writers right now; nothing was done: run this command again in a moment")
    if not holder.elsewhere_recently(other, take_over_after):
        return ""
    return (f"{output}: another satsft run, on {other.place()} (process {other.pid}), began checking it for "
            f"writers at {other.began}: it is about to write this output, or stopped while it checked (its "
            f"`{CHECK_IN}` is left). Nothing was done. If no run goes on there, run this command again with "
            f"--take-over-after 0 (a check-in from elsewhere older than {take_over_after:g} h is taken as stopped)")
