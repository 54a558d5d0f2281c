"""Trees and datasets fetched the ways teams fetch them: a Hugging Face cache snapshot (every file a link into the
repository's blobs/), git-annex or DataLad (every large file a link into .git/annex/objects/, which lies
outside a tree that is a folder of the repository) and DVC checking out links into .dvc/cache/. Their links
lead to the repository's own content store: such a tree builds, and mixes, as the same files without links
would, and what satsft writes holds no link (a hard link of a relative link named nothing in the output). A
link anywhere else still leads out."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pipeline.review.validate import validate
from pipeline.sample.fetched import as_links
from tests.conftest import run_cli

SKIP = {"build_report.json", "README.md", "build_timings.json", "mix_report.json", "mix_timings.json"}
BUILD = ("--tasks", "caption,grounding_all,cross_view", "--profiles", "brief_only", "--quiet")


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in SKIP}


def _links(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink()]


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    base = tmp_path_factory.mktemp("stores")
    run_cli("sample", "--tiles", "6", "--output", str(base / "tree"), "--seed", "3", "--workers", "1")
    run_cli("build", "--input", str(base / "tree"), "--output", str(base / "plain"), *BUILD)
    hub = base / "cache" / "datasets--org--sat"  # snapshot_download's layout
    shutil.copytree(base / "tree", hub / "snapshots" / "0f3c2a1")
    as_links(hub / "snapshots" / "0f3c2a1", hub / "blobs")
    annex = base / "repo"  # a DataLad dataset holding the tree in a folder of its own
    shutil.copytree(base / "tree", annex / "sat")
    as_links(annex / "sat", annex / ".git" / "annex" / "objects", ("images", "mapbox_stills"))
    dvc = base / "dvc-repo"  # DVC with cache.type symlink
    shutil.copytree(base / "tree", dvc / "data" / "sat")
    as_links(dvc / "data" / "sat", dvc / ".dvc" / "cache" / "files" / "md5")
    return base, {"hub": hub / "snapshots" / "0f3c2a1", "annex": annex / "sat", "dvc": dvc / "data" / "sat"}


@pytest.mark.parametrize("kind", ["hub", "annex", "dvc"])
def test_a_tree_of_links_into_its_repositorys_store_builds_as_its_files(fetched, kind):
    base, trees = fetched
    out = base / f"out-{kind}"
    run_cli("build", "--input", str(trees[kind]), "--output", str(out), *BUILD)
    assert _files(out) == _files(base / "plain"), "the same dataset, rejects and all"
    assert not _links(out), "chips and stills are files of the output, not links that name nothing there"
    findings, _ = validate(str(out))
    assert not findings.count, findings.lines()


def test_a_link_to_a_store_of_another_repository_still_leads_out(fetched, tmp_path):
    base, _ = fetched
    tree = tmp_path / "cache" / "datasets--org--sat" / "snapshots" / "1"
    shutil.copytree(base / "tree", tree)
    as_links(tree, tmp_path / "cache" / "datasets--evil--x" / "blobs", ("images",))
    # A repository whose store is itself a link (Git keeps links: .dvc/cache -> a folder of the machine)
    repo = tmp_path / "repo"
    shutil.copytree(base / "tree", repo / "sat")
    as_links(repo / "sat", tmp_path / "machine" / "files", ("mapbox_stills",))
    (repo / ".dvc").mkdir()
    (repo / ".dvc" / "cache").symlink_to(tmp_path / "machine")
    for name, rejected in ((tree, "chip_outside_root"), (repo / "sat", "still_outside_root")):
        out = tmp_path / f"out-{rejected}"
        run_cli("build", "--input", str(name), "--output", str(out), *BUILD)
        reasons = {json.loads(line)["reason"] for f in (out / "rejects").glob("*.jsonl")
                   for line in f.read_text().splitlines()}
        assert rejected in reasons, reasons


def test_a_dataset_in_the_hub_cache_mixes_and_validates(fetched, tmp_path):
    """A satsft output fetched with snapshot_download: its images are links into blobs/ (the mix refused every
    one as image_link_out once such links were checked); a link to nothing is a finding, not a traceback."""
    base, _ = fetched
    snapshot = tmp_path / "datasets--org--sft" / "snapshots" / "9"
    shutil.copytree(base / "plain", snapshot)
    as_links(snapshot, tmp_path / "datasets--org--sft" / "blobs")
    findings, _ = validate(str(snapshot))
    assert not findings.count, findings.lines()
    run_cli("mix", "--source", f"name=sat,path={snapshot}", "--output", str(tmp_path / "mix"), "--quiet")
    report = json.loads((tmp_path / "mix" / "mix_report.json").read_text())
    assert report["rows"]["total"] > 0 and not report.get("rejects", {}).get("by_reason"), report.get("rejects")
    assert not _links(tmp_path / "mix")
    chip = sorted(snapshot.glob("images/*/*.png"))[0]
    chip.unlink()
    chip.symlink_to("../../../../blobs/gone")  # fetched without its blob
    findings, _ = validate(str(snapshot))
    rel = str(chip.relative_to(snapshot))
    assert findings.by_check["images"] == [f"{rel}: cannot be read, a link to nothing or gone while read"]


def test_a_rebuild_from_an_earlier_build_in_the_hub_cache_takes_every_unchanged_tile(fetched, tmp_path):
    """Its drawn files are links: the listing of its folders found none of them, and every tile was drawn again."""
    base, _ = fetched
    snapshot = tmp_path / "datasets--org--sft" / "snapshots" / "9"
    shutil.copytree(base / "plain", snapshot)
    as_links(snapshot, tmp_path / "datasets--org--sft" / "blobs")
    run_cli("build", "--input", str(base / "tree"), "--output", str(tmp_path / "again"), "--previous", str(snapshot),
            *BUILD)
    rebuild = json.loads((tmp_path / "again" / "build_report.json").read_text())["rebuild"]
    assert rebuild["tiles_reused"] == rebuild["tiles_unchanged"] > 0 and rebuild["tiles_redrawn"] == 0, rebuild
    assert _files(tmp_path / "again") == _files(base / "plain") and not _links(tmp_path / "again")


def test_an_output_whose_top_folders_are_links_is_listed_through_them(fetched, tmp_path):
    """images/ on another disk: the listing showed the link as one entry, and validate found every image missing;
    links that make loops are passed over."""
    from transforms import fileio

    base, _ = fetched
    out = tmp_path / "out"
    shutil.copytree(base / "plain", out)
    (out / "images").rename(tmp_path / "images-elsewhere")
    (out / "images").symlink_to(tmp_path / "images-elsewhere")
    (out / "metadata" / "loop").symlink_to("..")
    findings, checked = validate(str(out))
    assert not findings.count and checked["images"], findings.lines()
    listed = fileio.list_files(str(out))
    assert {f"images/{p.parent.name}/{p.name}" for p in (tmp_path / "images-elsewhere").glob("*/*")} <= set(listed)
    assert not any(p.startswith("metadata/loop") for p in listed)
