"""A Cloud Storage stand-in on loopback that both gcsfs and Beam's own gs:// filesystem talk to.

`gcp-storage-emulator` serves the JSON API. Clients still ask Google's auth library for credentials, so a fake
credentials file hands them a token that is already valid; nothing here ever leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PROJECT = "satsft-test"
# The emulator re-serialises its whole object table after every write, so each write costs O(objects) and a
# build slows down as the bucket fills. In memory that snapshot is never read back; skipping it keeps the
# emulator linear and the tests quick.
#
# The emulator takes no notice of preconditions; Cloud Storage refuses a write or delete whose
# ifGenerationMatch is not the object's generation (0: no object) with 412, and satsft's check-in on a bucket
# output (transforms.output.check_in) rests on that, so the launch adds it for inserts and deletes.
_LAUNCH = """
import sys
import threading
from http import HTTPStatus
from gcp_storage_emulator import storage
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects
storage.Storage._write_config_to_file = lambda self: None
_one_at_a_time = threading.Lock()

def _name(request):
    if request.params.get("object_id"):
        return request.params["object_id"]
    if request.query.get("name"):
        return request.query["name"][0]
    meta = request.data.get("meta") if isinstance(request.data, dict) else None
    return (meta or {}).get("name") or (request.data or {}).get("name")

def _generation(store, bucket, name):
    try:
        return str(store.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return "0"

def _on_condition(handler):
    def run(request, response, store, *args, **kwargs):
        wanted = request.query.get("ifGenerationMatch")
        if not wanted:
            return handler(request, response, store, *args, **kwargs)
        with _one_at_a_time:
            if _generation(store, request.params["bucket_name"], _name(request)) != wanted[0]:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "conditionNotMet"}})
                return None
            return handler(request, response, store, *args, **kwargs)
    return run

objects.insert = _on_condition(objects.insert)
objects.delete = _on_condition(objects.delete)
from gcp_storage_emulator.__main__ import main
main(sys.argv[1:])
"""
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
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, "start", "--host", "127.0.0.1",
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
    """A gcsfs client bound to the emulator, which checks no credentials, so none are sent.

    The plain GCSFileSystem class, not the zonal/HNS one gcsfs may swap in at import time: that one probes
    each bucket over gRPC+TLS, which the emulator does not speak, and waits a minute per call for it.
    """
    from gcsfs.core import GCSFileSystem

    return GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], project=PROJECT, token="anon",
                         skip_instance_cache=True)


def _storage_client(env: dict[str, str]):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]})


def upload(env: dict[str, str], src: Path, bucket: str, prefix: str) -> int:
    """Copy a local tree under prefix with the plain storage client (gcsfs waits ~120 ms per object here)."""
    b = _storage_client(env).bucket(bucket)
    files = [p for p in sorted(src.rglob("*")) if p.is_file()]
    for p in files:
        b.blob(f"{prefix}/{p.relative_to(src)}").upload_from_filename(str(p))
    return len(files)


def download(env: dict[str, str], bucket: str, prefix: str, dest: Path) -> int:
    """Fetch every object under prefix into dest."""
    n = 0
    for blob in _storage_client(env).list_blobs(bucket, prefix=prefix.rstrip("/") + "/"):
        target = dest / blob.name[len(prefix.rstrip("/")) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.download_as_bytes())
        n += 1
    return n
