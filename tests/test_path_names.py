"""Folder names a user may well have (`runs [2024]`, `a?b`) through build, validate and mix: Beam and fsspec
read `*`, `?` and `[` in a pattern as wildcards, folder names included."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli


def test_wildcard_characters_in_folder_names_are_literal(tmp_path: Path):
    tree, decoy = tmp_path / "a?b [1]", tmp_path / "axb 1"  # as patterns, the first name matches the second
    run_cli("sample", "--tiles", "4", "--output", str(tree), "--seed", "5")
    run_cli("sample", "--tiles", "3", "--output", str(decoy), "--seed", "6")
    out = tmp_path / "out [1]"
    proc = run_cli("build", "--input", str(tree), "--output", str(out), "--tasks", "caption,grounding_all")
    assert "tiles: 4 in, 4 with rows, 0 rejected" in proc.stdout, proc.stdout  # was 0 in (or 3 rejected)
    run_cli("validate", str(out))
    rows = json.loads((out / "build_report.json").read_text())["rows"]["total"]

    # A folder of a build's files: its images are found from the output it lies in, wherever the files are.
    mixed = tmp_path / "mix"
    proc = run_cli("mix", "--source", f"name=a,path={out}/parquet", "--output", str(mixed))
    report = json.loads((mixed / "mix_report.json").read_text())
    assert report["rows"]["total"] == rows and not report["rejects_by_reason"], proc.stdout
    assert report["sources"][0]["image_root"] == out.name

    # Files moved away from their images lose every row, and the summary says what to set.
    loose = tmp_path / "loose"
    loose.mkdir()
    for f in (out / "parquet").glob("*.parquet"):
        shutil.copy(f, loose / f.name)
    proc = run_cli("mix", "--source", f"name=a,path={loose}", "--output", str(mixed), "--overwrite")
    assert f"WARNING: source a kept none of its {rows} rows; rejects/ says why" in proc.stdout, proc.stdout
    assert "do not start at loose: set the source's image_root" in proc.stdout, proc.stdout


def test_tree_folders_may_be_symlinks(tmp_path: Path):
    """A tree assembled from folders elsewhere (chips on another disk): its four folders are symlinks."""
    real, tree = tmp_path / "disk" / "tree", tmp_path / "assembled"
    run_cli("sample", "--tiles", "3", "--output", str(real), "--seed", "5")
    tree.mkdir()
    for folder in ("metadata", "images", "mapbox_stills", "data"):
        (tree / folder).symlink_to(real / folder, target_is_directory=True)
    proc = run_cli("build", "--input", str(tree), "--output", str(tmp_path / "out"), "--tasks", "caption,cross_view")
    assert "tiles: 3 in, 3 with rows, 0 rejected" in proc.stdout and "rejects by reason" not in proc.stdout, proc.stdout


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_overwrite_never_deletes_a_tree(tmp_path: Path):
    """An --output that is a link to the input tree (or into it) passed the inside-the-input check as written,
    and --overwrite deleted the tree's images/, data/ and mapbox_stills/ before building into it; an --output
    naming another tree by a slip lost the same. Both are refused now, the trees untouched; a link elsewhere
    and a build's own folder still take --overwrite."""
    tree, other = tmp_path / "tree", tmp_path / "other"
    run_cli("sample", "--tiles", "3", "--output", str(tree), "--seed", "5")
    run_cli("sample", "--tiles", "3", "--output", str(other), "--seed", "6")
    (tmp_path / "to_tree").symlink_to(tree, target_is_directory=True)
    (tree / "sub").mkdir()
    (tmp_path / "into_tree").symlink_to(tree / "sub", target_is_directory=True)
    before = {name: _digests(t) for name, t in (("tree", tree), ("other", other))}
    build = ("build", "--input", str(tree), "--tasks", "caption", "--quiet", "--overwrite", "--output")
    for output, said in (("to_tree", "--output must not be inside --input (or the other way round), links followed"),
                         ("into_tree", "--output must not be inside --input"),
                         ("other", f"output {str(other)!r} holds a sat-bbox tree (data/")):  # as a slip
        proc = run_cli(*build, str(tmp_path / output), check=False)
        assert proc.returncode == 2 and said in proc.stderr, (output, proc.stderr)
    out = tmp_path / "out"
    run_cli(*build, str(out))
    proc = run_cli("mix", "--source", f"name=a,path={out}", "--output", str(other), "--overwrite", check=False)
    assert proc.returncode == 2 and "holds a sat-bbox tree" in proc.stderr, proc.stderr
    foreign = tmp_path / "theirs"  # another tool's dataset: its data/ is not satsft's to remove
    (foreign / "data").mkdir(parents=True)
    (foreign / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    proc = run_cli(*build, str(foreign), check=False)
    assert proc.returncode == 2 and f"output {str(foreign)!r} holds data/, which no satsft run wrote" in proc.stderr
    assert (foreign / "data" / "train-00000-of-00001.parquet").read_bytes() == b"PAR1"
    assert {name: _digests(t) for name, t in (("tree", tree), ("other", other))} == before
    (tmp_path / "to_out").symlink_to(out, target_is_directory=True)
    run_cli(*build, str(tmp_path / "to_out"))  # a build's own folder, by a link: replaced as before
    run_cli("validate", str(out))


def _rename_to_bytes(path: Path, extra: bytes) -> bytes:
    """Rename ``path`` so its name holds a byte that is not UTF-8 (as a Latin-1 system writes `é`)."""
    raw = bytes(path)
    stem, dot, suffix = raw.rpartition(b".")
    new = stem + extra + dot + suffix
    os.rename(raw, new)
    return new


def test_file_names_that_are_not_utf8_are_rejects_not_a_failed_job(tmp_path: Path):
    """Linux allows any bytes in a name; Python reads the others as lone surrogates, which no Beam coder, JSON or
    Parquet writer takes: one such sidecar, chip, still, JSONL file or mix source file failed the whole build or
    mix with a UnicodeEncodeError. Each is now a path_not_utf8 reject naming it with \\xNN; the rest is built."""
    tree = tmp_path / "tree"
    run_cli("sample", "--tiles", "8", "--output", str(tree), "--seed", "5")
    try:
        side = _rename_to_bytes(sorted((tree / "metadata").rglob("*.json"))[0], b"\xff")
    except OSError as err:  # a file system that keeps UTF-8 names only (macOS): nothing to test
        pytest.skip(f"names must be UTF-8 here: {err}")
    _rename_to_bytes(sorted((tree / "images").rglob("*.png"))[-1], b"\xe9")
    _rename_to_bytes(sorted((tree / "mapbox_stills").rglob("*.png"))[-1], b"\xe9")
    _rename_to_bytes(tree / "data" / "validation.jsonl", b"\xe9")
    out = tmp_path / "out"
    for extra in ((), ("--tile-share", "0.999")):
        proc = run_cli("build", "--input", str(tree), "--output", str(out), "--tasks", "caption,cross_view",
                       "--overwrite", *extra)
        assert "tiles: 8 in, " in proc.stdout, proc.stdout
    rejects = [json.loads(line) for f in sorted((out / "rejects").glob("*.jsonl")) for line in f.open()]
    named = sorted((r["stage"], r["source"]) for r in rejects if r["reason"] == "path_not_utf8")
    assert [stage for stage, _ in named] == ["images", "mapbox_stills", "refs", "sidecar"], named
    assert os.fsdecode(side).endswith(named[-1][1].replace("\\xff", "\udcff"))
    assert dict(named)["refs"] == "data/validation\\xe9.jsonl"
    run_cli("validate", str(out))
    run_cli("build", "--input", str(tree), "--output", str(out), "--update")

    # a mix source folder holding such a file: the others are read, it is a reject
    source = tmp_path / "rows"
    source.mkdir()
    shutil.copy(out / "data" / "train.jsonl", source / "train.jsonl")
    shutil.copy(out / "data" / "test.jsonl", source / "test.jsonl")
    _rename_to_bytes(source / "test.jsonl", b"\xe9")
    mixed = tmp_path / "mix"
    run_cli("mix", "--source", f"name=a,path={source},image_root={out}", "--output", str(mixed), "--formats", "jsonl")
    report = json.loads((mixed / "mix_report.json").read_text())
    assert report["rejects_by_reason"] == {"path_not_utf8": 1} and report["rows"]["total"] > 0, report
    # a folder given on the command line whose name is not UTF-8: one line at once (build failed at its start,
    # mix at its report, after all its work, with tracebacks)
    odd = os.fsdecode(bytes(tmp_path / "caf") + b"\xe9")
    for command in (("build", "--input", str(tree), "--output", odd), ("mix", "--source", f"name=a,path={out}",
                                                                         "--output", odd)):
        proc = run_cli(*command, check=False)
        assert proc.returncode == 2 and proc.stderr.strip() == (
            f"satsft: error: '{tmp_path}/caf\\xe9' is not UTF-8 (its other bytes written as \\xNN); the reports "
            f"`satsft {command[0]}` writes record its paths as JSON text: rename the folder or file, or give it by "
            "a link whose name is UTF-8"), proc.stderr



def test_an_output_entry_that_is_a_link_is_replaced_never_written_through(tmp_path: Path):
    """An output's preview/ (or charts/, ...) that is a link to a folder elsewhere (a clone of a repository keeps
    links): preview wrote its page into the folder it named, over an index.html there, and --overwrite stopped
    on rmtree's refusal of a link. The link itself goes now; what it named is untouched. A --to link still
    names where the page goes."""
    run_cli("sample", "--tiles", "3", "--output", str(tmp_path / "tree"), "--seed", "5")
    out = tmp_path / "out"
    build = ("build", "--input", str(tmp_path / "tree"), "--output", str(out), "--tasks", "caption", "--quiet")
    run_cli(*build)
    docs, other = tmp_path / "docs", tmp_path / "other"
    for folder, name in ((docs, "index.html"), (other, "x.svg")):
        folder.mkdir()
        (folder / name).write_text("mine")
    (out / "preview").symlink_to(docs, target_is_directory=True)
    run_cli("preview", str(out))
    assert (docs / "index.html").read_text() == "mine" and list(docs.iterdir()) == [docs / "index.html"]
    assert not (out / "preview").is_symlink() and (out / "preview" / "index.html").is_file()
    shutil.rmtree(out / "charts")
    (out / "charts").symlink_to(other, target_is_directory=True)
    run_cli(*build, "--overwrite")
    assert (other / "x.svg").read_text() == "mine" and not (out / "charts").is_symlink()
    run_cli("validate", str(out))
    # --to given as a link is the folder it names (the user's choice, unlike a link found inside the output)
    (tmp_path / "public").mkdir()
    (tmp_path / "to_public").symlink_to(tmp_path / "public", target_is_directory=True)
    for _ in range(2):  # the second replaces the first page
        run_cli("preview", str(out), "--to", str(tmp_path / "to_public"))
    assert (tmp_path / "to_public").is_symlink() and (tmp_path / "public" / "index.html").is_file()


def test_sample_overwrite_through_a_link_replaces_the_tree_it_names(tmp_path: Path):
    """`sample --output LINK --overwrite` stopped on rmtree's refusal of a link, with a traceback."""
    real, link = tmp_path / "real", tmp_path / "link"
    run_cli("sample", "--tiles", "2", "--output", str(real), "--seed", "5")
    link.symlink_to(real, target_is_directory=True)
    run_cli("sample", "--tiles", "3", "--output", str(link), "--seed", "6", "--overwrite")
    assert link.is_symlink() and len(list((real / "metadata").rglob("*.json"))) == 3


def test_a_tree_copied_from_a_mac_builds_as_the_tree_itself(tmp_path: Path):
    """AppleDouble ._ files beside every file, .DS_Store, a Jupyter checkpoint of a sidecar: a reject per tile,
    and the checkpoint (an older version) taken in place of the sidecar, which was a duplicate_tile_stem reject."""
    tree = tmp_path / "tree"
    run_cli("sample", "--tiles", "4", "--output", str(tree), "--seed", "5")
    build = ("--tasks", "caption,grounding_all", "--quiet")
    run_cli("build", "--input", str(tree), "--output", str(tmp_path / "plain"), *build)
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)
    files = [p for p in tree.rglob("*") if p.is_file()]
    sidecar = sorted(tree.glob("metadata/*/*.json"))[0]
    for path in files:
        (path.parent / f"._{path.name}").write_bytes(apple_double)
    (tree / "images" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    checkpoints = sidecar.parent / ".ipynb_checkpoints"
    checkpoints.mkdir()
    edited = json.loads(sidecar.read_text())
    edited["caption"] = "An older caption."
    (checkpoints / f"{sidecar.stem}-checkpoint.json").write_text(json.dumps(edited))
    proc = run_cli("build", "--input", str(tree), "--output", str(tmp_path / "mac"), *build[:-1])
    assert f"note: {len(files) + 2} file(s) under names starting with '.'" in proc.stdout, proc.stdout

    def digests(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name not in ("build_report.json", "README.md", "build_timings.json")}

    assert digests(tmp_path / "mac") == digests(tmp_path / "plain")
    report = json.loads((tmp_path / "mac" / "build_report.json").read_text())
    assert report["outputs"]["hidden_files_skipped"] == len(files) + 2 and not report["rejects_by_reason"]
