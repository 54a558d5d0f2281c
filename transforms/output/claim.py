"""Which run is writing an output. A build or mix into a folder names its process in the spool (``WRITER``)
from its start until the spool goes at its end, so that a second run given --overwrite (a scheduled rebuild
that overlaps the previous one, the same command started twice) does not delete the files the first is
writing (seen: the second died halfway through the removal, and the first reported success over a folder with
thousands of rows naming images that were gone). An --update names itself in its own
marker (transforms.rebuild.commit.STARTED); each command respects both. Whether the named run still goes on
is ``holder``'s question: for sure on this machine, for ``--take-over-after`` hours after its last write from
elsewhere. No Beam here.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import hashlib
import os
import tempfile
from collections.abc import Iterator

from transforms import fileio
from transforms.output.tree import (
    JSONL_DIR,
    LLAVA_DIR,
    PARQUET_DIR,
    SHAREGPT_DIR,
    SPOOL_DIR,
    UPDATE_STARTED,
)
from transforms.paths import join_path
from transforms.rebuild import commit, holder

WRITER = f"{SPOOL_DIR}/writer.txt"


def claim(output: str, command: str, detached: str = "") -> None:
    """Name this process as the one writing ``output`` (``command``: build or mix; ``detached``: the runner a
    job is submitted to when this process does not wait for it)."""
    began = datetime.datetime.now(datetime.timezone.utc).strftime(holder.BEGAN_FORMAT)
    fileio.write_bytes(join_path(output, WRITER), f"a satsft {command} is writing this output, or stopped before it "
                       f"finished\ncommand {command}\n{holder.this_process(began, detached).lines()}".encode())


@contextlib.contextmanager
def exclusive(output: str) -> Iterator[None]:
    """Hold ``output`` against other satsft runs on this machine while one checks for a writer and names itself
    (for a build, clearing an --overwrite in between). Without it two runs started in the same instant (two cron
    entries, a command fired twice) could both find no writer and both go on. A local output's folder is locked
    itself (two spellings of one folder, users sharing it, all see one lock); a bucket's output by a lock file
    named after its URL in the temporary folder, which guards the runs of this machine only: runs elsewhere are
    told apart by the marker alone. Where the storage has no locks (some network mounts) it goes on without."""
    made = fileio.is_local(output) and not os.path.lexists(output)
    fd = _lock_handle(output)
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing drops the lock
        if made:  # made for the lock, and the run stopped before writing (a usage error): leave no empty folder
            with contextlib.suppress(OSError):
                os.rmdir(output)


def _lock_handle(output: str) -> int | None:
    try:
        if fileio.is_local(output):
            os.makedirs(output, exist_ok=True)
            return os.open(output, os.O_RDONLY | os.O_DIRECTORY)
        folder = os.path.join(tempfile.gettempdir(), "satsft-claims")
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
            os.chmod(folder, 0o1777)  # as /tmp: every user's runs lock here, none removes another's files
        name = hashlib.sha256(output.encode()).hexdigest()[:24]
        return os.open(os.path.join(folder, f"{name}.lock"), os.O_RDONLY | os.O_CREAT, 0o666)  # flock needs no write
    except OSError:
        return None  # a usage error (a file named like the output, no permission) is reported by the caller


def unfinished(marker: str) -> str:
    """A writer marker read back as the state of its run, for a reader that found no report beside it ("" for a
    marker that names no run): 'the satsft build begun ... by process 42 on host h is still running'."""
    run = holder.parse(marker)
    if run is None:
        return ""
    state = ("is still running" if holder.still_running(run) else "stopped before it finished" if
             holder.known_here(run) else "has not finished (it may still run there)")
    return f"the satsft {command_of(marker)} begun {run.began or 'at an unknown time'} {run.who()} {state}"


def unfinished_in(tree) -> str:
    """``unfinished`` of the writer marker in an output (a transforms.output.tree.OutputTree), "" without one."""
    return unfinished(tree.read(WRITER).decode("utf-8", "replace")) if tree.isfile(WRITER) else ""


def command_of(marker: str, default: str = "build") -> str:
    """The command a writer marker names ("build" for a marker that names none)."""
    for line in marker.splitlines():
        if line.startswith("command "):
            return line.split(" ", 1)[1].strip() or default
    return default


# Where a build or mix writes while it goes on: its spool (progress files rewritten every few minutes while tiles
# are drawn, spooled rows), and the split files a build or mix writes straight into the output after
# drawing, shard by shard (so a long write stage is not taken for silence). Not the per-tile folders: a listing of
# every analysis image would cost more than the answer is worth.
WRITTEN_WHILE_RUNNING = (SPOOL_DIR, JSONL_DIR, PARQUET_DIR, LLAVA_DIR, SHAREGPT_DIR)


def last_write(output: str) -> datetime.datetime | None:
    """When the run writing ``output`` last wrote there, as far as a listing of its small folders tells."""
    return fileio.newest_write([join_path(output, rel) for rel in WRITTEN_WHILE_RUNNING])


def writing(output: str, take_over_after: float, markers: tuple[str, ...] = (WRITER, UPDATE_STARTED)
            ) -> tuple[str, bool]:
    """Why another run may still be writing ``output`` ("" when none is) and whether that is known for sure
    (a process on this machine) rather than assumed from a recent start or write elsewhere."""
    for rel in markers:
        marker = fileio.read_if_there(join_path(output, rel))
        if marker is None:
            continue
        text = marker.decode("utf-8", "replace")
        what = "an --update of this output" if rel == UPDATE_STARTED else f"a satsft {command_of(text)} into it"
        wrote = commit.last_write if rel == UPDATE_STARTED else last_write  # an update leaves data/ as it was
        why, sure = holder.busy(holder.parse(text), take_over_after, f"{output} is being written: {what}",
                                functools.partial(wrote, output))
        if why:
            return why, sure
    return "", False


def refusal(output: str, take_over_after: float, doing: str,
            markers: tuple[str, ...] = (WRITER, UPDATE_STARTED)) -> str:
    """The error for a run that must not start now because another writes ``output`` ("" when it may);
    ``doing``: what starting now would do to it ("--overwrite would delete the files it is writing")."""
    why, sure = writing(output, take_over_after, markers)
    if not why:
        return ""
    if sure:
        return f"{why}; {doing}. Nothing was done: let it finish, or stop it, then run this command again"
    return (f"{why}; {doing}. Nothing was done. Once it has stopped, run this command again with --take-over-after 0 "
            f"(a run from elsewhere that neither began nor wrote to the output in the last {take_over_after:g} h is "
            "taken as stopped)")
