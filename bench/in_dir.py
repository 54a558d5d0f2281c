"""Run a command in a given folder with this repository importable: `python in_dir.py DIR CMD...`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")]))
    sys.exit(subprocess.run(sys.argv[2:], cwd=sys.argv[1], env=env).returncode)
