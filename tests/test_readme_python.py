"""The README's "From Python" example runs as written: a stage on TestPipeline, the whole build graph, and a
build that validates."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_readme_python_example_runs(tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^\d+ rows$", proc.stdout, re.MULTILINE), proc.stdout
    assert (tmp_path / "sft" / "build_report.json").is_file()
