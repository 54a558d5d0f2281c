"""Run one command as a child and print its wall time, CPU seconds and peak memory as JSON.

Peak memory is sampled every 0.1 s as the sum of the RSS of the whole process tree (a multi-process build
holds memory in several processes at once); ``peak_rss_mb`` is that sum, ``peak_rss_one_mb`` the largest
single process (the kernel's own ru_maxrss). A separate process per measurement, because RUSAGE_CHILDREN
accumulates over every child ever waited for.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def _children(pid: int) -> list[int]:
    """Children of every thread of ``pid``: Beam starts its worker processes from a thread other than the
    main one, and /proc lists a child under the thread that started it."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def tree_rss_kb(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack.extend(_children(p))
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


def main() -> int:
    started = time.monotonic()
    proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    stderr_chunks: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        if os.path.exists("/proc"):
            peak = max(peak, tree_rss_kb(proc.pid))
        time.sleep(0.1)
    reader.join()
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"returncode": proc.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
                      "peak_rss_mb": max(peak, usage.ru_maxrss) / 1024, "peak_rss_one_mb": usage.ru_maxrss / 1024,
                      "stderr_tail": "".join(stderr_chunks)[-2000:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
