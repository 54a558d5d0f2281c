"""Chips stored at another square size than `output_size` (FORMATS.md 1.2): a tree exported at native
resolution (448 or 512 px for boxes in a 224 frame) builds to the same rows as one stored at 224 px."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from tests.conftest import run_cli


def _rows(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for f in sorted((out / "data").glob("*.jsonl")) for line in f.read_text().splitlines()]
    return {r["metadata"]["sample_id"]: r for r in rows}


def _answer(row: dict) -> str:
    return row["messages"][-1]["content"][-1]["text"]


def test_square_chips_of_any_size_build_like_output_size_chips(tmp_path):
    tree = tmp_path / "tree"
    run_cli("sample", "--tiles", "12", "--output", str(tree), "--seed", "5")
    native = tmp_path / "native"
    shutil.copytree(tree, native)
    chips = sorted((native / "images").rglob("*.png"))
    sizes = {}
    for i, chip in enumerate(chips):
        with Image.open(chip) as im:
            size = (512, 512) if i == 0 else (224, 200) if i == 1 else (448, 448)
            im.resize(size, Image.NEAREST).save(chip)
        sizes[chip.stem] = size[0]
    not_square = chips[1].stem

    base, big = tmp_path / "base", tmp_path / "big"
    run_cli("build", "--input", str(tree), "--output", str(base), "--overlays")
    run_cli("build", "--input", str(native), "--output", str(big), "--overlays")

    want, got = _rows(base), _rows(big)
    assert set(got) == {sid for sid, r in want.items() if r["metadata"]["tile_stem"] != not_square}
    for sid, row in got.items():
        assert _answer(row) == _answer(want[sid]), f"{sid}: boxes stay in the output_size frame"
        sidecar = next((big / "metadata/sft_metadata_rows").rglob(f"{sid}.json"))
        side = json.loads(sidecar.read_text())
        assert side["chip_size_px"] == sizes[row["metadata"]["tile_stem"]] and side["output_size"] == 224
    for overlay in (big / "overlays").rglob("*.png"):
        stem = overlay.name.removesuffix("__regions.png")
        with Image.open(overlay) as im:
            assert im.size == (sizes[stem], sizes[stem]), "overlays are drawn at the chip's own size"
    report = json.loads((big / "build_report.json").read_text())
    assert report["rejects_by_reason"] == {"chip_not_square": 1}, report["rejects_by_reason"]
    rejects = [json.loads(x) for x in (big / "rejects/rejects-00000-of-00001.jsonl").read_text().splitlines()]
    assert [(r["tile_stem"], r["detail"].rsplit(" ", 1)[-1]) for r in rejects] == [(not_square, "224x200")]
