"""`--row-sidecars files|parquet|none`: the same sidecar records as one JSON file per row, as Parquet shards
beside the split files, or not at all; `satsft validate` understands all three."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("sidecars") / "tree"
    run_cli("sample", "--tiles", "30", "--output", str(tree), "--seed", "21")
    return tree


@pytest.fixture(scope="module")
def file_sidecars(small_tree, tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("files") / "out"
    run_cli("build", "--input", str(small_tree), "--output", str(out), "--rows-per-shard", "200")
    return {p.stem: json.loads(p.read_text()) for p in (out / "metadata/sft_metadata_rows").rglob("*.json")}


@pytest.mark.parametrize("mode", ["parquet", "none"])
def test_row_sidecar_modes(mode, small_tree, file_sidecars, tmp_path):
    out = tmp_path / mode
    run_cli("build", "--input", str(small_tree), "--output", str(out), "--rows-per-shard", "200",
            "--row-sidecars", mode)
    assert not list((out / "metadata").rglob("*.json")), "no per-row files"
    shards = sorted((out / "metadata/sft_metadata_rows").glob("*.parquet")) if mode == "parquet" else []
    if mode == "parquet":
        assert len(shards) == len(list((out / "parquet").glob("*.parquet"))) > 1, "one sidecar shard per row shard"
        stored = {}
        for shard in shards:
            for row in pq.read_table(shard).to_pylist():
                stored[row["sample_id"]] = json.loads(row["sidecar"])
        assert stored == {sid.split("/")[-1]: side for sid, side in file_sidecars.items()}, "same records"
    else:
        assert [p.name for p in (out / "metadata").iterdir()] == ["manifest"], "only what a rebuild needs"
    proc = run_cli("validate", str(out))
    assert proc.stdout.startswith("OK:"), proc.stdout
    if mode == "parquet":
        shards[0].unlink()
        proc = run_cli("validate", str(out), check=False)
        assert proc.returncode == 1 and "sidecars:" in proc.stdout and "files:" in proc.stdout, proc.stdout
