"""Run one command as a child and print its wall time, CPU seconds and peak RSS of the process tree as JSON.

A separate process per measurement, because RUSAGE_CHILDREN accumulates over every child ever waited for.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    started = time.monotonic()
    proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"returncode": proc.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "peak_rss_mb": usage.ru_maxrss / 1024, "stderr_tail": proc.stderr[-2000:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
