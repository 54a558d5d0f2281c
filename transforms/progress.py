"""Progress of a long stage, counted where the work is done.

Each DoFn instance counts what it finished. With a local output it rewrites one small JSON file of its own
under the output's progress folder every second or so; the launcher (pipeline/progress.py) sums every worker's
file into one line with the total and an ETA. With a bucket output (Dataflow, Flink) the workers' logs are what
a user reads, so each instance logs its own count and the stage's total instead, and writes its file only every
few minutes: a sign of life for an --update begun on another machine (transforms.rebuild.commit.last_write),
so that a job running longer than --take-over-after is not taken for a stopped one. No Beam here.
"""

from __future__ import annotations

import logging
import os
import time
import uuid

import orjson

from transforms import fileio
from transforms.output.tree import PROGRESS_DIR
from transforms.paths import join_path

LOG = logging.getLogger("satsft.progress")
WRITE_EVERY_S = 1.0
LOG_EVERY_S = 30.0
SIGN_OF_LIFE_EVERY_S = 300.0  # bucket outputs: one small object per DoFn instance this often


class ProgressCounter:
    """Units (tiles, source files) done by one DoFn instance, and rows made from them."""

    def __init__(self, output_root: str, stage: str, unit: str, total: int):
        self.stage, self.unit, self.total = stage, unit, total
        self.enabled = bool(output_root)  # a transform tested on its own reports nothing
        self.local = fileio.is_local(output_root)
        self.path = join_path(output_root, PROGRESS_DIR, f"{stage}-{uuid.uuid4().hex}.json")
        self.done = self.rows = 0
        self._started = self._last = self._last_written = time.monotonic()

    def add(self, units: int = 1, rows: int = 0) -> None:
        self.done += units
        self.rows += rows
        now = time.monotonic()
        if self.enabled and now - self._last >= (WRITE_EVERY_S if self.local else LOG_EVERY_S):
            self._last = now
            self._report(now)

    def flush(self) -> None:
        if self.enabled and self.done:
            self._report(time.monotonic())

    def _report(self, now: float) -> None:
        data = orjson.dumps({"stage": self.stage, "unit": self.unit, "total": self.total, "done": self.done,
                             "rows": self.rows})
        if not self.local:
            rate = self.done / max(now - self._started, 1e-9)
            LOG.info("%s: %d of %d %s done by this worker, %d rows, %.0f %s/s", self.stage, self.done, self.total,
                     self.unit, self.rows, rate, self.unit)
            if now - self._last_written >= SIGN_OF_LIFE_EVERY_S:
                self._last_written = now
                try:
                    fileio.write_bytes(self.path, data)
                except Exception:  # a courtesy, as below
                    LOG.warning("could not write %s", self.path)
            return
        tmp = f"{self.path}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)  # the launcher never reads half a file
        except OSError:
            pass  # progress is a courtesy: never a reason for a bundle to fail
