"""A tree with every fault kind: exit 0, every fault under its own reason, nothing outside the roots touched,
and a build killed midway then rerun gives the bytes of a clean build."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.sample.faults import FAULTS, LINE_FAULTS, inject_faults
from tests.conftest import REPO, run_cli
from transforms.input.sidecars import split_name
from transforms.splits.plan import hashed_split


def _png(size: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "build_timings.json"}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    outside = base / "outside"
    outside.mkdir()
    canary = outside / "canary.png"
    canary.write_bytes(_png(224))  # a valid chip, so only the symlink check can stop it
    (outside / "canary.json").write_text(json.dumps({"tile_stem": "canary", "caption": "secret"}))
    tree = base / "tree"
    run_cli("sample", "--tiles", "120", "--output", str(tree), "--seed", "4")
    manifest = inject_faults(str(tree), str(canary))
    (tree / "metadata" / "s00000" / "zz_canary.json").unlink(missing_ok=True)
    os.symlink(outside / "canary.json", tree / "metadata" / "s00000" / "zz_canary.json")
    ro_parent = base / "readonly"
    ro_parent.mkdir()
    out = ro_parent / "out"
    out.mkdir()
    before = {**_snapshot(outside), **_snapshot(tree)}
    os.chmod(ro_parent, 0o555)
    try:
        proc = run_cli("build", "--input", str(tree), "--output", str(out), check=False)
    finally:
        os.chmod(ro_parent, 0o755)
    return {"base": base, "tree": tree, "out": out, "canary": canary, "manifest": manifest, "proc": proc,
            "before": before, "outside": outside}


def test_every_fault_kind_is_injected(faulty):
    assert len(faulty["manifest"]) == len(FAULTS) + len(LINE_FAULTS) >= 30


def test_build_exits_zero_and_accounts_for_every_tile(faulty):
    proc = faulty["proc"]
    assert proc.returncode == 0, proc.stderr
    report = json.loads((faulty["out"] / "build_report.json").read_text())
    t = report["tiles"]
    assert t["accounted"] and t["in"] == t["with_rows"] + t["rejected"]
    assert "rejects by reason:" in proc.stdout


def test_each_fault_shows_up_under_its_own_reason(faulty):
    rejects = [json.loads(x) for x in (faulty["out"] / "rejects/rejects-00000-of-00001.jsonl").read_text().splitlines()]
    assert all(r["reason"] and r["stage"] for r in rejects)
    report = json.loads((faulty["out"] / "build_report.json").read_text())
    missing = []
    for kind, expect in faulty["manifest"].items():
        hits = [r for r in rejects if r["reason"] == expect["reason"]
                and (not expect["stem"] or r["tile_stem"] == expect["stem"])
                and (not expect["source"] or r["source"] == expect["source"])]
        if not hits or report["rejects_by_reason"].get(expect["reason"], 0) < 1:
            missing.append(kind)
    assert missing == []
    assert report["outputs"]["split_reassigned"] > 0, "the sample's leaky bases are reassigned and counted"
    pointers = sum(n for r, n in report["rejects_by_reason"].items() if r.endswith("_lfs_pointer"))
    assert (f"WARNING: {pointers} input file(s) are Git LFS pointers" in faulty["proc"].stdout
            and "git lfs pull" in faulty["proc"].stdout), "one line says what to do about every pointer"


def test_nothing_outside_the_roots_is_read_or_written(faulty):
    out, canary = faulty["out"], faulty["canary"]
    outputs = [p for p in out.rglob("*") if p.is_file()]
    assert not any(os.path.samefile(p, canary) for p in outputs), "the symlinked canary was linked into the output"
    canary_bytes = canary.read_bytes()
    assert not any(p.stat().st_size == len(canary_bytes) and p.read_bytes() == canary_bytes for p in outputs)
    assert "secret" not in "".join(p.read_text() for p in (out / "data").glob("*.jsonl"))
    after = {**_snapshot(faulty["outside"]), **_snapshot(faulty["tree"])}
    assert after == faulty["before"], "the input tree and the folder outside it are unchanged"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"], "nothing written beside the output"
    assert not [p for p in out.rglob("*.tmp-*")]


def test_killed_build_rerun_matches_a_clean_build(faulty, tmp_path):
    tree, out = faulty["tree"], tmp_path / "out"
    run_cli("build", "--input", str(tree), "--output", str(out))
    clean = _hashes(out)
    (out / "data" / "train-00007-of-00009.jsonl").write_text("stale shard from an older build\n")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", "--input", str(tree), "--output",
                             str(out), "--overwrite"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
            (out / "build_report.json").exists() or not any((out / "metadata").rglob("*.json"))):
        time.sleep(0.02)  # --overwrite has removed the old build and the new one has started writing
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "build_report.json").exists(), "the build was killed before it finished"
    run_cli("build", "--input", str(tree), "--output", str(out), "--overwrite")
    assert _hashes(out) == clean
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_a_tree_written_by_other_tools(tmp_path):
    """Byte order marks and CRLF (Windows tools), NaN for a missing cloud cover (Python's json), `val` for
    validation: every tile still makes rows; a `split` that names no split is counted and warned about."""
    tree, out = tmp_path / "tree", tmp_path / "out"
    run_cli("sample", "--tiles", "8", "--output", str(tree), "--seed", "5")
    for name in ("train", "validation", "test"):
        path = tree / "data" / f"{name}.jsonl"
        if path.exists():
            path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    sidecars = sorted((tree / "metadata").rglob("*.json"))
    edits = [{"split": "val"}, {"eo_cloud_cover": float("nan")}, {"split": "holdout"}]
    for path, edit in zip(sidecars, edits, strict=False):
        path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    sidecars[3].write_bytes(b"\xef\xbb\xbf" + sidecars[3].read_bytes())
    proc = run_cli("build", "--input", str(tree), "--output", str(out))
    report = json.loads((out / "build_report.json").read_text())
    assert report["rejects_by_reason"] == {} and report["tiles"]["with_rows"] == len(sidecars) == 8
    assert report["outputs"]["split_field_unrecognised"] == 1
    assert "WARNING: 1 tile(s) declare a `split` that names no split" in proc.stdout
    declared = Counter()
    for path in sidecars:
        side = json.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf"))
        declared[split_name(side["split"]) or hashed_split(side["poi_id"])] += 1
    assert report["splits"]["declared"] == {s: declared[s] for s in ("train", "validation", "test")}
    assert split_name("val") == "validation"


@pytest.mark.parametrize("shape", ["trl", "sharegpt", "openai", "llava", "llava_json"])
def test_chat_jsonl_in_trl_sharegpt_openai_or_llava_shape_builds_the_same_rows(tmp_path, shape):
    """The tree's chat JSONL as TRL writes it (image parts naming nothing, an `images` list), as ShareGPT
    does (`<image>` tokens in string contents), as OpenAI's chat format does (`image_url` parts, plain string
    replies, inline data: URLs) or as LLaVA does (`conversations` of from/value turns, the row's `image`; in
    JSONL, or one .json array per split): the build finds the same chips and stills, so the same rows."""
    tree = tmp_path / "tree"
    run_cli("sample", "--tiles", "6", "--output", str(tree), "--seed", "6")
    clean = tmp_path / "clean"
    run_cli("build", "--input", str(tree), "--output", str(clean), "--tasks", "caption,cross_view")
    inline = 0
    for path in (tree / "data").glob("*.jsonl"):
        lines = []
        for line in path.read_text().splitlines():
            row = json.loads(line)
            images = []
            for m in row["messages"]:
                if shape == "openai":
                    m["content"] = [{"type": "image_url", "image_url": {"url": "./" + p["image"]}}
                                    if p["type"] == "image" else p for p in m["content"]]
                    if m["role"] == "user":
                        inline += 1
                        m["content"].append({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}})
                    else:
                        m["content"] = " ".join(p["text"] for p in m["content"])
                elif isinstance(m["content"], list):
                    images += [p.pop("image") for p in m["content"] if p["type"] == "image"]
                    if shape in ("sharegpt", "llava", "llava_json"):
                        m["content"] = "".join("<image>" if p["type"] == "image" else p["text"] for p in m["content"])
            if shape.startswith("llava"):
                turns = [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]}
                         for m in row["messages"]]
                row = {"id": len(lines), "image": images if len(images) > 1 else images[0], "conversations": turns}
            lines.append(json.dumps({**row, "images": images} if images and shape[:5] != "llava" else row))
        if shape == "llava_json":  # LLaVA's container: one array per split, in place of the JSONL
            path.with_suffix(".json").write_text("[\n" + ",\n".join(lines) + "\n]\n")
            path.unlink()
        else:
            path.write_text("\n".join(lines) + "\n")
    if shape == "llava_json":  # a .json beside them that holds no rows is one reject, not a failed build
        (tree / "data" / "notes.json").write_text('{"about": "not rows"}')
    out = tmp_path / "out"
    run_cli("build", "--input", str(tree), "--output", str(out), "--tasks", "caption,cross_view")
    report = json.loads((out / "build_report.json").read_text())
    assert report["rejects_by_reason"] == ({"json_not_rows": 1} if shape == "llava_json" else {})
    assert report["tiles"]["with_rows"] == 6
    assert report["rows"]["by_task_split"]["cross_view"], "the stills are found through the images list too"
    assert report["outputs"].get("image_refs_ignored", 0) == inline, "each inline data: image is counted, not read"
    for name in ("train", "validation", "test"):
        a, b = clean / "data" / f"{name}.jsonl", out / "data" / f"{name}.jsonl"
        assert a.exists() == b.exists() and (not a.exists() or a.read_bytes() == b.read_bytes())
