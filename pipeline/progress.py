"""The launcher's progress display: it sums the workers' progress files (transforms/progress.py) into
"tiles done of total, rate, ETA". In a terminal a bar redrawn in place; elsewhere (CI, logs) one line every
few seconds; nothing with --quiet. No Beam here.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
from typing import TextIO

import orjson

from transforms import fileio
from transforms.output.tree import PROGRESS_DIR

BAR_EVERY_S = 0.5
LINE_EVERY_S = 10.0
BAR_WIDTH = 24


def read_progress(output_root: str, stage: str) -> tuple[int, int, int]:
    """(done, total, rows) over every worker's file of one stage; files that vanish or are mid-write are
    skipped (the spool folder goes when the run ends)."""
    done = total = rows = 0
    for path in glob.glob(os.path.join(glob.escape(output_root), PROGRESS_DIR, f"{stage}-*.json")):
        try:
            with open(path, "rb") as f:
                p = orjson.loads(f.read())
        except (OSError, orjson.JSONDecodeError):
            continue
        done, rows, total = done + p["done"], rows + p["rows"], max(total, p["total"])
    return done, total, rows


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_text(done: int, total: int, rows: int, rate: float, unit: str, bar: bool) -> str:
    """One progress line: done of total, percent, rate, rows and ETA (a bar in front in a terminal)."""
    frac = min(1.0, done / total) if total else 0.0
    eta = format_duration((total - done) / rate) if rate > 0 and total >= done else "?"
    head = ""
    if bar:
        filled = int(frac * BAR_WIDTH)
        head = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
    return (f"{head}{done:,}/{total:,} {unit} ({100 * frac:.0f}%), {rate:,.0f} {unit}/s, {rows:,} rows, "
            f"ETA {eta}")


class ProgressMonitor:
    """Shows one stage's progress while a run lasts; a context manager around `pipeline.run()`."""

    def __init__(self, output_root: str, stage: str, unit: str, quiet: bool = False, stream: TextIO | None = None):
        self.output_root, self.stage, self.unit = output_root, stage, unit
        self.stream = stream or sys.stderr
        self.enabled = not quiet and fileio.is_local(output_root)
        self.tty = self.stream.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="satsft-progress")
        self._first: float | None = None
        self._base = 0
        self._shown = ""

    def __enter__(self) -> ProgressMonitor:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            if self.tty and self._shown:
                self.stream.write("\n")
                self.stream.flush()

    def _loop(self) -> None:
        every = BAR_EVERY_S if self.tty else LINE_EVERY_S
        last_line, last_state = 0.0, (-1, -1)
        while not self._stop.wait(BAR_EVERY_S):
            done, total, rows = read_progress(self.output_root, self.stage)
            now = time.monotonic()
            if not done:
                continue
            if self._first is None:  # the rate counts from the first finished unit, not from start-up
                self._first, self._base = now, done
                if not self.tty:
                    last_line = now  # the first line comes with a rate, one interval in
            if now - last_line < every or (done, rows) == last_state:
                continue  # a line only when something moved: a finished stage is shown once, not every 10 s
            last_line, last_state = now, (done, rows)
            elapsed = now - self._first
            rate = (done - self._base) / elapsed if elapsed >= 1 else 0.0
            text = progress_text(done, total, rows, rate, self.unit, self.tty)
            if self.tty:
                self.stream.write("\r" + text.ljust(len(self._shown)))
            else:
                self.stream.write(f"satsft: {self.stage}: {text}\n")
            self._shown = text
            self.stream.flush()
