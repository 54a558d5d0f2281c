"""--copy-images: chips and stills copied, not hard-linked, so a tree rewritten in place (PIL, numpy and most
writers truncate the file they save to, keeping its inode) leaves the output as it was built."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import run_cli


def _rewrite_in_place(path: Path) -> None:
    data = path.read_bytes()
    with open(path, "r+b") as f:  # same inode, as Image.save(path) does
        f.write(data[:-12] + b"\x00" * 12)


def test_copied_images_survive_a_tree_rewritten_in_place(tmp_path: Path):
    tree = tmp_path / "tree"
    run_cli("sample", "--tiles", "3", "--output", str(tree), "--seed", "5")
    linked, copied = tmp_path / "linked", tmp_path / "copied"
    run_cli("build", "--input", str(tree), "--output", str(linked), "--tasks", "caption,cross_view")
    run_cli("build", "--input", str(tree), "--output", str(copied), "--tasks", "caption,cross_view", "--copy-images")
    chip = sorted((tree / "images").rglob("*.png"))[0]
    rel = chip.relative_to(tree)
    assert os.path.samefile(chip, linked / rel) and not os.path.samefile(chip, copied / rel)
    report = json.loads((copied / "build_report.json").read_text())
    assert report["config"]["copy_images"] and "source_images_linked" not in report["outputs"]
    before = (copied / rel).read_bytes()
    _rewrite_in_place(chip)
    assert (copied / rel).read_bytes() == before, "the copied build keeps the chip it was built from"
    assert (linked / rel).read_bytes() != before, "a hard link shares the rewrite (README says so)"


def test_an_update_with_copy_images_copies_the_chips_a_linked_build_left(tmp_path: Path):
    tree, out = tmp_path / "tree", tmp_path / "out"
    run_cli("sample", "--tiles", "3", "--output", str(tree), "--seed", "5")
    run_cli("build", "--input", str(tree), "--output", str(out), "--tasks", "caption")
    chips = sorted((tree / "images").rglob("*.png"))
    for _ in range(2):  # the second finds its copies in place and leaves them
        run_cli("build", "--input", str(tree), "--output", str(out), "--tasks", "caption", "--update",
                "--copy-images")
        assert not any(os.path.samefile(c, out / c.relative_to(tree)) for c in chips)
        report = json.loads((out / "build_report.json").read_text())
        assert report["rebuild"]["tiles_kept"] == 3 and report["rebuild"].get("tiles_changed", 0) == 0
        assert report["file_count"] == sum(1 for p in out.rglob("*") if p.is_file()), "each file counted once"
    assert report["outputs"]["files_reused"] >= 3 and "source_images_copied" not in report["outputs"]
    run_cli("validate", str(out))
    # dropped again: the copies become links (they stayed copies until their tile changed), then stay links
    for turn in range(2):
        run_cli("build", "--input", str(tree), "--output", str(out), "--tasks", "caption", "--update")
        assert all(os.path.samefile(c, out / c.relative_to(tree)) for c in chips)
        report = json.loads((out / "build_report.json").read_text())
        assert report["outputs"].get("source_images_linked", 0) == (3 if turn == 0 else 0), report["outputs"]
        assert report["file_count"] == sum(1 for p in out.rglob("*") if p.is_file())
    run_cli("validate", str(out))
