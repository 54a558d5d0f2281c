"""Which process an --update's marker names, and whether it still runs.

Two updates of one folder must not overlap: the later one's start would undo the files the earlier one is
still writing, and both give new tiles the same slots, so the earlier one could overwrite the later one's
files after the later one committed. A run on the same machine is known for sure: the marker names its
machine (the kernel's boot id, which also changes with a reboot) and its process (pid and the kernel's start
time of that pid, so a reused pid is not mistaken for it). A marker written on another machine (a Dataflow
launcher, another host) cannot be checked from here: it counts as running while it is younger than the
caller's limit, or has written to the output within that limit (``elsewhere_recently``; a Dataflow job
outlives the launcher that wrote its marker), and as stopped after. Containers on one host share its boot id
but neither their pids nor their host names: a marker whose host name differs counts as written elsewhere (a
marker of an older version, without a host name, is judged by the boot id alone, and the pid's start time
keeps another container's pid from passing for it). A run submitted to a runner that does not wait for the
job (Dataflow) names it (``detached``): its launcher's pid ends at the submission while the job runs on, so
such a marker is judged like one from elsewhere even on the machine that launched it.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

BOOT_ID = "/proc/sys/kernel/random/boot_id"
BEGAN_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


@dataclass(frozen=True)
class Holder:
    """The process that wrote a marker: ``machine`` is the boot id (else the host name), ``start`` the
    kernel's start time of the pid in clock ticks since boot ("" where /proc does not say)."""

    machine: str
    pid: int
    start: str = ""
    began: str = ""  # UTC, BEGAN_FORMAT
    host: str = ""  # the host name, for messages (the boot id means nothing to a reader)
    detached: str = ""  # the runner the job was submitted to when the launcher does not wait for it

    def lines(self) -> str:
        return (f"machine {self.machine}\npid {self.pid}\npid start {self.start or '-'}\nbegan {self.began}\n"
                f"host {self.host or '-'}\ndetached {self.detached or '-'}\n")

    def place(self) -> str:
        """Where it ran, as a reader knows it (the boot id only when the marker names no host)."""
        where = f"host {self.host}" if self.host else f"machine {self.machine}"
        return f"a {self.detached} job launched from {where}" if self.detached else where

    def who(self) -> str:
        """The run, as a reader knows it: "process 42 on host cron-1", or the Dataflow job it launched."""
        return f"as {self.place()}" if self.detached else f"by process {self.pid} on {self.place()}"

    def began_at(self) -> datetime.datetime | None:
        try:
            return datetime.datetime.strptime(self.began, BEGAN_FORMAT).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def machine_id() -> str:
    return _read(BOOT_ID) or f"host {socket.gethostname()}"


def pid_start(pid: int) -> str:
    """Field 22 of /proc/PID/stat (after the command name, which may hold spaces or parentheses)."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def this_process(began: str, detached: str = "") -> Holder:
    return Holder(machine_id(), os.getpid(), pid_start(os.getpid()), began, socket.gethostname(), detached)


def parse(marker: str) -> Holder | None:
    """The holder a marker names; None for a marker of a version that did not name one."""
    fields = dict(re.findall(r"^(machine|pid start|pid|began|host|detached) (.*)$", marker, re.MULTILINE))
    if "machine" not in fields or not fields.get("pid", "").isdigit():
        return None
    start, host, detached = (fields.get(k, "") for k in ("pid start", "host", "detached"))
    return Holder(fields["machine"], int(fields["pid"]), "" if start == "-" else start, fields.get("began", ""),
                  "" if host == "-" else host, "" if detached == "-" else detached)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _written_here(holder: Holder, here: str | None, host: str | None) -> bool:
    """The marker's run is a process this machine (this boot) and this container can see (not a detached job)."""
    return (not holder.detached and holder.machine == (machine_id() if here is None else here)
            and holder.host in ("", socket.gethostname() if host is None else host))


def known_here(holder: Holder) -> bool:
    """Whether this machine can tell if the holder still runs (see ``still_running``)."""
    return _written_here(holder, None, None)


def still_running(holder: Holder | None, here: str | None = None,
                  alive: Callable[[int], bool] = _pid_alive, start_of: Callable[[int], str] = pid_start,
                  host: str | None = None) -> bool:
    """True only when the holder is a process of this machine (this boot and container) that still runs; a
    marker from elsewhere, of a detached job, or of an older version, is not known to run."""
    if holder is None or not _written_here(holder, here, host):
        return False
    if holder.pid == os.getpid():
        return False  # this very process: a marker it wrote itself is no other run
    if not alive(holder.pid):
        return False
    return not holder.start or start_of(holder.pid) == holder.start


def elsewhere_recently(holder: Holder | None, hours: float, here: str | None = None,
                       now: datetime.datetime | None = None, host: str | None = None,
                       last_write: Callable[[], datetime.datetime | None] | None = None) -> datetime.datetime | None:
    """When the run another machine wrote the marker for was last seen at work, if that was less than ``hours``
    ago, else None: nothing here can tell whether it still goes on (a Dataflow job runs on after its launcher
    exits), so it is given that long from when it began, or from ``last_write()``, the last time it wrote to
    the output (its workers' progress files and staged files: a job that runs longer than ``hours`` is still
    seen to run), asked only when the start is too long ago. A marker without a readable time, of an older
    version, or ``hours`` 0, gives None."""
    if holder is None or hours <= 0 or _written_here(holder, here, host):
        return None
    began = holder.began_at()
    if began is None:
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    limit = datetime.timedelta(hours=hours)
    if now - began < limit:
        return began
    wrote = last_write() if last_write is not None else None
    return wrote if wrote is not None and wrote > began and now - wrote < limit else None


def busy(other: Holder | None, hours: float, what: str,
         last_write: Callable[[], datetime.datetime | None] | None = None) -> tuple[str, bool]:
    """Why the run ``other`` names (``what``: "another --update of this output") may still be writing, and
    whether that is known for sure (a process here) rather than assumed for ``hours`` (elsewhere); ("", False)
    when it has stopped."""
    if still_running(other):
        began = other.began or "at an unknown time"
        return f"{what} is running (process {other.pid} on this machine, began {began})", True
    seen = elsewhere_recently(other, hours, last_write=last_write)
    if not seen:
        return "", False
    wrote = "" if seen == other.began_at() else f", last wrote to it {seen.strftime(BEGAN_FORMAT)}"
    where = (f"as {other.place()}{wrote}" if other.detached else
             f"on another machine ({other.place()}, process {other.pid}{wrote})")
    return (f"{what} began {other.began} {where} and has not finished; it may still be running there (a Dataflow "
            "job runs on after its launcher exits)", False)
