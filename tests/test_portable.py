"""The build on the PortableRunner through the path Flink uses: a job service and an external SDK worker pool,
each its own process on loopback. Flink replaces the job service; the worker pool is what Flink task managers
start. The output must equal the DirectRunner build byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ALL_OUTPUTS, assert_same_outputs, run_cli
from tests.gcs_emulator import free_port, wait_for_port


@pytest.fixture(scope="module")
def portable_services(tmp_path_factory):
    """Job service and worker pool; the pool starts workers with `python` from PATH, so PATH leads to this venv."""
    logs = tmp_path_factory.mktemp("portable")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    job_port, pool_port = free_port(), free_port()
    commands = {
        "job-service": [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                        "--port", str(job_port), "--staging_dir", str(logs / "staging")],
        "worker-pool": [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                        "--service_port", str(pool_port)],
    }
    procs = []
    try:
        for name, cmd in commands.items():
            log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 (the process owns it until terminated)
            procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        wait_for_port(job_port, procs[0][0])
        wait_for_port(pool_port, procs[1][0])
        yield f"localhost:{job_port}", f"localhost:{pool_port}", logs
    finally:
        for proc, log in procs:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def test_portable_runner_matches_direct_runner(portable_services, damaged_tree, direct_build, tmp_path):
    job_endpoint, pool, logs = portable_services
    out = tmp_path / "portable"
    proc = run_cli("build", "--input", str(damaged_tree), "--output", str(out), *ALL_OUTPUTS,
                   "--runner", "PortableRunner", "--job_endpoint", job_endpoint, "--environment_type", "EXTERNAL",
                   "--environment_config", pool)
    assert "on PortableRunner" in proc.stderr and "24 in, 22 with rows, 2 rejected" in proc.stdout
    assert "Starting worker" in (logs / "worker-pool.log").read_text(), "the external pool ran the bundles"
    assert_same_outputs(direct_build, out, {f"--output {out.name}": f"--output {direct_build.name}"})


def test_portable_runner_mixes_like_direct_runner(portable_services, direct_build, tmp_path):
    """The mix on the Flink path: same bytes as on DirectRunner (a build with embedded images as source), with
    --shared-ground drop, whose tiles to drop travel as a side input."""
    job_endpoint, pool, _ = portable_services
    specs = ["--source", f"name=main,path={direct_build}",
             "--source", f"name=fire,path={direct_build},repeat=8,task=production_analysis,profile=wildfire",
             "--shared-ground", "drop"]
    portable = ["--runner", "PortableRunner", "--job_endpoint", job_endpoint, "--environment_type", "EXTERNAL",
                "--environment_config", pool]
    outs = {}
    for name, extra in (("direct", []), ("portable", portable)):
        outs[name] = tmp_path / name / "mix"
        run_cli("mix", *specs, "--output", str(outs[name]), "--formats", "parquet,jsonl", *extra)
    hashes = [{str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
               if p.is_file() and p.name != "mix_timings.json"} for out in outs.values()]
    assert any(k.startswith("media/main/") for k in hashes[0]) and hashes[0] == hashes[1]
    assert b'"dropped_tiles": 0' in hashes[0]["mix_report.json"], "the drop ran, and one build has no shared ground"
