"""Building into a clone of a Hugging Face dataset repository (.git, .gitattributes, a README.md), the way a
team that publishes with git keeps its output: the first --update says how to start, --overwrite keeps the
clone's own files, and the updates after it and validate leave them alone."""

from __future__ import annotations

import subprocess

from pipeline.review.validate import validate
from tests.conftest import run_cli


def test_a_hub_clone_holds_a_build_and_its_updates(tmp_path):
    tree, clone = tmp_path / "tree", tmp_path / "clone"
    run_cli("sample", "--tiles", "6", "--output", str(tree), "--seed", "2")
    clone.mkdir()
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    (clone / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    (clone / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# a dataset card from the Hub\n")
    build = ["build", "--input", str(tree), "--output", str(clone), "--tasks", "caption", "--quiet"]
    first = run_cli(*build, "--update", check=False)
    assert first.returncode == 2 and "in a clone of a Hub dataset repository, build once with --overwrite" in (
        first.stderr), first.stderr
    run_cli(*build, "--overwrite")
    run_cli(*build, "--update")
    assert (clone / ".git" / "HEAD").is_file() and (clone / ".gitattributes").read_text().startswith("*.parquet")
    assert "satsft" in (clone / "README.md").read_text(), "the card replaced the placeholder"
    findings, checked = validate(str(clone))
    assert not findings.count and checked["rows"], findings.lines()

    # The same repository cloned elsewhere without Git LFS: its Parquet files are pointers, and validate says so
    from pipeline.review.validate import LFS_CHECK
    from pipeline.sample.faults import lfs_pointer

    shards = sorted(clone.glob("parquet/*.parquet"))
    for shard in shards:
        shard.write_bytes(lfs_pointer(shard.read_bytes()))
    chip = sorted(clone.glob("images/*/*.png"))[0]
    data = chip.read_bytes()
    chip.unlink()  # a hard link to the tree's chip: replaced, not written through
    chip.write_bytes(lfs_pointer(data))
    findings, _ = validate(str(clone))
    pointed = findings.by_check.get(LFS_CHECK, [])
    assert len(pointed) == len(shards) + 1 and "git lfs pull" in LFS_CHECK, findings.lines()
    assert f"{chip.relative_to(clone)}: a Git LFS pointer, not the image itself" in pointed
