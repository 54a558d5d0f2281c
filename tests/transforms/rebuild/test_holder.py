"""Which process an --update's marker names, and whether it is known to run still."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys

from transforms.rebuild import holder


def test_a_marker_names_its_process_and_reads_back():
    me = holder.this_process("2026-12-05 19:00:00 UTC")
    text = "an --update of this output is running\nrun abc\n" + me.lines()
    assert holder.parse(text) == me
    assert me.machine == holder.machine_id() and me.pid == os.getpid() and me.host == socket.gethostname()
    assert me.start.isdigit(), "on Linux the kernel gives each pid's start time"


def test_markers_of_older_versions_name_no_process():
    assert holder.parse("an --update of this output is running, or stopped before it finished\nrun abc\n") is None
    assert not holder.still_running(None)


def test_only_a_live_process_of_this_machine_counts_as_running():
    other = holder.Holder("boot-a", os.getpid() + 1, "777", "then")
    alive, start = (lambda pid: True), (lambda pid: "777")
    assert holder.still_running(other, "boot-a", alive, start)
    assert not holder.still_running(other, "boot-b", alive, start), "another machine (or a reboot): not known"
    assert not holder.still_running(other, "boot-a", lambda pid: False, start), "the process is gone"
    assert not holder.still_running(other, "boot-a", alive, lambda pid: "778"), "its pid now names another process"
    mine = holder.Holder("boot-a", os.getpid(), "1", "then")
    assert not holder.still_running(mine, "boot-a", alive, start), "a marker this process wrote is no other run"


def test_a_real_process_is_running_until_it_ends():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        marker = holder.Holder(holder.machine_id(), child.pid, holder.pid_start(child.pid), "now")
        assert holder.still_running(holder.parse(marker.lines()))
    finally:
        child.kill()
        child.wait()
    assert not holder.still_running(marker)


def test_a_marker_from_elsewhere_counts_as_running_while_it_is_young():
    """Another machine's run cannot be checked (a Dataflow job outlives its launcher): it is given some hours."""
    now = datetime.datetime(2026, 12, 5, 20, 0, tzinfo=datetime.timezone.utc)
    other = holder.Holder("boot-b", 4242, "99", "2026-12-05 09:00:00 UTC", "launcher")
    assert holder.elsewhere_recently(other, 12, "boot-a", now), "11 h old"
    assert not holder.elsewhere_recently(other, 10, "boot-a", now), "older than the limit: taken as stopped"
    assert not holder.elsewhere_recently(other, 0, "boot-a", now), "0: taken over at once"
    assert not holder.elsewhere_recently(other, 12, "boot-b", now, host="launcher"), "here: the process decides"
    assert not holder.elsewhere_recently(holder.Holder("boot-b", 1, "", "whenever"), 12, "boot-a", now)
    assert not holder.elsewhere_recently(None, 12, "boot-a", now)
    old_version = "machine boot-b\npid 4242\npid start 99\nbegan 2026-12-05 19:00:00 UTC\n"
    assert holder.parse(old_version).host == "" and holder.elsewhere_recently(holder.parse(old_version), 12,
                                                                              "boot-a", now)


def test_a_run_from_elsewhere_that_still_writes_counts_as_running_past_the_limit():
    """A job that runs longer than the limit keeps writing its workers' progress files: it is still running, and
    the next scheduled update must not take it over (each day's run would otherwise undo the one before)."""
    now = datetime.datetime(2026, 12, 5, 20, 0, tzinfo=datetime.timezone.utc)
    other = holder.Holder("boot-b", 4242, "99", "2026-12-04 20:00:00 UTC", "launcher")  # 24 h ago
    asked = []

    def wrote(hours_ago):
        return lambda: asked.append(hours_ago) or now - datetime.timedelta(hours=hours_ago)

    assert holder.elsewhere_recently(other, 12, "boot-a", now, last_write=wrote(0.1)) == now - datetime.timedelta(
        hours=0.1)
    assert not holder.elsewhere_recently(other, 12, "boot-a", now, last_write=wrote(13)), "silent since: stopped"
    assert not holder.elsewhere_recently(other, 12, "boot-a", now, last_write=lambda: None), "never wrote"
    stale = datetime.datetime(2026, 12, 4, 19, 0, tzinfo=datetime.timezone.utc)  # a file older than the run
    assert not holder.elsewhere_recently(other, 12, "boot-a", now, last_write=lambda: stale)
    assert not holder.elsewhere_recently(other, 0, "boot-a", now, last_write=wrote(0)), "0: taken over at once"
    young = holder.Holder("boot-b", 4242, "99", "2026-12-05 19:00:00 UTC", "launcher")
    assert holder.elsewhere_recently(young, 12, "boot-a", now, last_write=wrote(5)) == young.began_at()
    assert asked == [0.1, 13], "the output is listed only when the start is too long ago (and hours > 0)"


def test_a_marker_from_another_container_on_this_host_counts_as_from_elsewhere():
    """Containers share the host's boot id but not its pids: the host name tells them apart."""
    now = datetime.datetime(2026, 12, 5, 20, 0, tzinfo=datetime.timezone.utc)
    there = holder.Holder("boot-a", 4242, "99", "2026-12-05 19:00:00 UTC", "container-2")
    alive, start = (lambda pid: True), (lambda pid: "99")
    assert not holder.still_running(there, "boot-a", alive, start, host="container-1")
    assert holder.elsewhere_recently(there, 12, "boot-a", now, host="container-1")
    assert holder.still_running(there, "boot-a", alive, start, host="container-2")
    assert not holder.elsewhere_recently(there, 12, "boot-a", now, host="container-2")


def test_a_marker_names_its_run_as_a_reader_knows_it():
    here = holder.Holder("boot-a", 7, "9", "then", "cron-1")
    assert here.who() == "by process 7 on host cron-1"
    job = holder.Holder("boot-a", 7, "9", "then", "cron-1", "DataflowRunner")
    assert job.who() == "as a DataflowRunner job launched from host cron-1"
    assert holder.parse(job.lines()) == job and holder.parse(here.lines()) == here
    assert not holder.known_here(job), "its launcher's process says nothing about the job"
