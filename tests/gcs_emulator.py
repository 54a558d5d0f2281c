"""A Cloud Storage stand-in on loopback that both gcsfs and Beam's own gs:// filesystem talk to.

`gcp-storage-emulator` serves the JSON API. Clients still ask Google's auth library for credentials, so a fake
credentials file hands them a token that is already valid; nothing here ever leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PROJECT = "satsft-test"
BUCKET = "satsft-bucket"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process listening on {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def fake_credentials(path: Path) -> None:
    """User credentials holding a token that never expires, so no client ever asks Google's auth servers."""
    path.write_text(json.dumps({"type": "authorized_user", "client_id": "fake", "client_secret": "fake",
                                "refresh_token": "fake", "token": "fake-token", "expiry": "2099-01-01T00:00:00Z"}))


@contextlib.contextmanager
def gcs_emulator(workdir: Path) -> Iterator[dict[str, str]]:
    """Start the emulator; yields the environment a client process needs to use it."""
    creds = workdir / "fake-credentials.json"
    fake_credentials(creds)
    port = free_port()
    log = open(workdir / "gcs-emulator.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--in-memory", "--default-bucket", BUCKET],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        yield {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "GOOGLE_APPLICATION_CREDENTIALS": str(creds),
               "GOOGLE_CLOUD_PROJECT": PROJECT, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def gcsfs_client(env: dict[str, str]):
    """A gcsfs client bound to the emulator, built from the same environment the build sees.

    The plain GCSFileSystem class, not the zonal/HNS one gcsfs may swap in at import time: that one probes
    each bucket over gRPC+TLS, which the emulator does not speak, and waits a minute per call for it.
    """
    from gcsfs.core import GCSFileSystem

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], project=PROJECT,
                                   token="google_default", skip_instance_cache=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
