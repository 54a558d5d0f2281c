"""`make bench`'s bucket section: requests and wall time of a gs:// build, its --update and a mix --update,
against the Cloud Storage emulator the tests use (tests/gcs_emulator.py) on loopback. Loopback has no round
trip, so the request count is the figure that carries over to a real bucket, where each is one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.gcs_emulator import BUCKET, gcs_emulator, upload  # noqa: E402


def _kind(line: str) -> str | None:
    found = re.search(r'"(GET|POST|PUT|DELETE|PATCH) (\S+)', line)
    if not found:
        return None
    method, url = found.groups()
    if "/upload/" in url:
        return "writes"
    if "alt=media" in url or "/download/" in url:
        return "reads"
    if "/rewriteTo/" in url or "/copyTo/" in url:
        return "store copies"
    return "listings and metadata" if method == "GET" else "deletes and other"


def bench_bucket(tree: Path, work: Path) -> list[dict]:
    """The tree uploaded, then: build into gs://, the same build with --update, a mix of it with --update twice
    (the second replaces the first). Per command: wall s and requests by kind."""
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    with gcs_emulator(work) as env:
        upload(env, tree, BUCKET, "tree")
        log = work / "gcs-emulator.log"
        gs = f"gs://{BUCKET}"
        commands = [("build", ["build", "--input", f"{gs}/tree", "--output", f"{gs}/out"]),
                    ("build --update", ["build", "--input", f"{gs}/tree", "--output", f"{gs}/out", "--update"]),
                    ("mix --update (first)", ["mix", "--source", f"name=s,path={gs}/out", "--output", f"{gs}/mix",
                                              "--update"]),
                    ("mix --update (again)", ["mix", "--source", f"name=s,path={gs}/out", "--output", f"{gs}/mix",
                                              "--update"])]
        for label, args in commands:
            start = len(log.read_text().splitlines())
            began = time.monotonic()
            subprocess.run([sys.executable, "-m", "pipeline.cli", *args, "--quiet"], cwd=REPO, check=True,
                           env={**os.environ, **env, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            wall = time.monotonic() - began
            kinds = Counter(k for k in map(_kind, log.read_text().splitlines()[start:]) if k)
            runs.append({"command": label, "wall_s": wall, "requests": sum(kinds.values()), **kinds})
    return runs
