"""gs:// in and out, against a Cloud Storage emulator on loopback: same bytes as a build from a local folder."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.gcs_emulator import BUCKET, gcs_emulator, gcsfs_client

FLAGS = ("--formats", "jsonl,parquet,llava,sharegpt", "--embed-images", "--overlays")


def _comparable_report(data: bytes) -> bytes:
    """Where input and output live, and whether images were hard-linked or copied, may differ; nothing else."""
    report = json.loads(data)
    report["config"].pop("input")
    report["config"].pop("output")
    outputs = report["outputs"]
    outputs["source_images_placed"] = outputs.pop("source_images_linked", 0) + outputs.pop("source_images_copied", 0)
    return json.dumps(report, sort_keys=True).encode()


def _hashes(root: Path, replace: dict[str, str]) -> dict[str, str]:
    """File hashes under root, with the input and output names in the card and report made comparable."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name == "build_timings.json":
            continue
        data = p.read_bytes()
        if p.name == "build_report.json":
            data = _comparable_report(data)
        elif p.name == "README.md":
            for old, new in replace.items():
                data = data.replace(old.encode(), new.encode())
        out[str(p.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as env:
        yield env


@pytest.fixture(scope="module")
def damaged_tree(tmp_path_factory) -> Path:
    """A small tree with one broken sidecar and one truncated chip, so rejects are compared too."""
    tree = tmp_path_factory.mktemp("gcs-tree") / "tree"
    run_cli("sample", "--tiles", "24", "--output", str(tree), "--seed", "11")
    sidecars = sorted((tree / "metadata").rglob("*.json"))
    sidecars[0].write_text('{"tile_stem": "broken", ')
    chip = sorted((tree / "images").rglob("*.png"))[-1]
    chip.write_bytes(chip.read_bytes()[:200])
    return tree


def test_gs_build_matches_local_build(emulator, damaged_tree, tmp_path):
    fs = gcsfs_client(emulator)
    fs.put(f"{damaged_tree}/", f"{BUCKET}/tree", recursive=True)
    gs_in, gs_out = f"gs://{BUCKET}/tree", f"gs://{BUCKET}/out"
    local_out = tmp_path / "local"
    run_cli("build", "--input", str(damaged_tree), "--output", str(local_out), *FLAGS)
    proc = run_cli("build", "--input", gs_in, "--output", gs_out, *FLAGS, env=emulator)
    assert "24 in, 22 with rows, 2 rejected" in proc.stdout, proc.stdout

    written = fs.find(f"{BUCKET}/out")
    assert not [p for p in written if ".tmp" in p or "beam-temp" in p], "objects go straight to their final names"
    fetched = tmp_path / "fetched"
    fs.get(f"{BUCKET}/out/", str(fetched), recursive=True)
    local = _hashes(local_out, {})
    remote = _hashes(fetched, {gs_in: str(damaged_tree), gs_out: str(local_out)})
    assert any(p.startswith("analysis_images/") for p in local) and any(p.startswith("rejects/") for p in local)
    assert sorted(remote) == sorted(local)
    differ = [p for p in local if local[p] != remote[p]]
    detail = "".join(difflib.unified_diff((local_out / differ[0]).read_text(errors="replace").splitlines(True),
                                          (fetched / differ[0]).read_text(errors="replace").splitlines(True))) \
        if differ else ""
    assert differ == [], f"every row, image, shard and reject is identical\n{detail[:3000]}"


def test_gs_output_refuses_old_build_unless_overwrite(emulator, damaged_tree):
    fs = gcsfs_client(emulator)
    fs.pipe(f"{BUCKET}/old/data/stale-00000-of-00001.jsonl", b"{}\n")
    gs_in, gs_out = f"gs://{BUCKET}/tree", f"gs://{BUCKET}/old"
    if not fs.exists(f"{BUCKET}/tree"):
        fs.put(f"{damaged_tree}/", f"{BUCKET}/tree", recursive=True)
    proc = run_cli("build", "--input", gs_in, "--output", gs_out, check=False, env=emulator)
    assert proc.returncode == 2 and "pass --overwrite" in proc.stderr, proc.stderr
    run_cli("build", "--input", gs_in, "--output", gs_out, "--overwrite", "--tasks", "caption", env=emulator)
    names = fs.find(f"{BUCKET}/old")
    assert f"{BUCKET}/old/data/stale-00000-of-00001.jsonl" not in names
    assert f"{BUCKET}/old/build_report.json" in names


def test_missing_gs_input_fails_fast(emulator, tmp_path):
    proc = run_cli("build", "--input", f"gs://{BUCKET}/no-such-tree", "--output", str(tmp_path / "o"), check=False,
                   env=emulator)
    assert proc.returncode == 2 and "no-such-tree" in proc.stderr, proc.stderr
