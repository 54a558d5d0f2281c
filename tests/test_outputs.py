"""Training-ready outputs end to end: the real `datasets` loaders, the LLaVA shape, the card, `satsft validate`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

ALL_FORMATS = "jsonl,parquet,llava,sharegpt"


@pytest.fixture(scope="module")
def full_build(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("outputs")
    tree, out = base / "tree", base / "out"
    run_cli("sample", "--tiles", "40", "--output", str(tree), "--seed", "8")
    run_cli("build", "--input", str(tree), "--output", str(out), "--formats", ALL_FORMATS, "--embed-images",
            "--overlays", "--rows-per-shard", "200")
    return out


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["HF_DATASETS_CACHE"] = str(tmp_path_factory.mktemp("hf_cache"))
    import datasets

    datasets.disable_progress_bars()
    return datasets


def _card_configs(out: Path) -> dict[str, dict[str, list[str]]]:
    header = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    return {c["config_name"]: {d["split"]: d["path"] for d in c["data_files"]} for c in header["configs"]}


def _jsonl_rows(out: Path, split: str) -> list[dict]:
    files = sorted((out / "data").glob(f"{split}*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def _drop_none(value):
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def test_card_lists_every_split_and_file(full_build):
    report = json.loads((full_build / "build_report.json").read_text())
    configs = _card_configs(full_build)
    assert set(configs) == {"default", "jsonl"}
    assert set(configs["default"]) == {"train", "validation", "test"}
    on_disk = {str(p.relative_to(full_build)) for p in (full_build / "parquet").iterdir()}
    assert {p for paths in configs["default"].values() for p in paths} == on_disk == set(report["files"]["parquet"])
    assert len(configs["default"]["train"]) > 1, "--rows-per-shard 200 shards the train split"
    for split, paths in configs["jsonl"].items():
        assert all(p.startswith(f"data/{split}") for p in paths)
    card = (full_build / "README.md").read_text()
    assert "## Rows by task and split" in card and "## Boxes per grounding row" in card


def test_parquet_loads_in_datasets_with_decoded_images(full_build, hf):
    from PIL import Image

    configs = _card_configs(full_build)
    data_files = {s: [str(full_build / p) for p in paths] for s, paths in configs["default"].items()}
    ds = hf.load_dataset("parquet", data_files=data_files)
    for split in ("train", "validation", "test"):
        rows = ds[split]
        expected = sorted(_jsonl_rows(full_build, split), key=lambda r: r["metadata"]["sample_id"])
        got = sorted(rows, key=lambda r: r["metadata"]["sample_id"])
        assert len(got) == len(expected) > 0
        for g, e in zip(got, expected, strict=True):
            images = g.pop("images")
            assert len(images) == len(e["metadata"]["image_paths"])
            assert all(isinstance(im, Image.Image) and im.size == (224, 224) for im in images)
            assert _drop_none(g) == e


def test_analysis_images_re_render_from_their_spec_and_chip(full_build):
    """Each row sidecar's spec and the chip it names (in the output) give the written analysis image byte for
    byte, and so does the embedded copy in Parquet (rendered again in the shard writer)."""
    import pyarrow.parquet as pq

    from transforms.analysis.render import render_analysis_png

    written = {}
    for path in (full_build / "metadata" / "sft_metadata_rows").rglob("*.json"):
        sidecar = json.loads(path.read_text())
        spec = sidecar.get("analysis_image_spec")
        if spec:
            png = (full_build / sidecar["analysis_image_path"]).read_bytes()
            assert render_analysis_png(spec, (full_build / spec["chip"]["path"]).read_bytes()) == png
            written[sidecar["analysis_image_path"]] = png
    assert len(written) == 40 * 5
    embedded = 0
    for path in (full_build / "parquet").glob("*.parquet"):
        for row in pq.read_table(path, columns=["images"]).column("images").to_pylist():
            for image in row:
                if image["path"] in written:
                    assert image["bytes"] == written[image["path"]]
                    embedded += 1
    assert embedded == len(written)


def test_jsonl_loads_every_split(full_build, hf):
    configs = _card_configs(full_build)
    data_files = {s: [str(full_build / p) for p in paths] for s, paths in configs["jsonl"].items()}
    ds = hf.load_dataset("json", data_files=data_files)
    assert set(ds) == {"train", "validation", "test"}
    report = json.loads((full_build / "build_report.json").read_text())
    for split in ds:
        expected = sum(v.get(split, 0) for v in report["rows"]["by_task_split"].values())
        assert ds[split].num_rows == expected


def test_llava_and_sharegpt_shapes(full_build):
    jsonl = {r["metadata"]["sample_id"]: r for s in ("train", "validation", "test") for r in _jsonl_rows(full_build, s)}
    n = 0
    for path in sorted((full_build / "llava").glob("*.json")):
        for item in json.loads(path.read_text()):
            images = item["images"] if "images" in item else [item["image"]]
            assert set(item) in ({"id", "image", "conversations"}, {"id", "images", "conversations"})
            assert [t["from"] for t in item["conversations"]] == ["human", "gpt"]
            assert item["conversations"][0]["value"].count("<image>") == len(images)
            assert "<image>" not in item["conversations"][1]["value"]
            assert images == jsonl[item["id"]]["metadata"]["image_paths"]
            assert all((full_build / p).is_file() for p in images)
            n += 1
    assert n == len(jsonl)
    lines = [json.loads(x) for p in sorted((full_build / "sharegpt").glob("*.jsonl"))
             for x in p.read_text().splitlines()]
    assert len(lines) == len(jsonl)
    for item in lines:
        user = next(m for m in item["messages"] if m["role"] == "user")
        assert user["content"].count("<image>") == len(item["images"])


def test_overlays_are_sharded_pngs(full_build):
    files = sorted((full_build / "overlays").rglob("*.png"))
    assert files and all(p.parent.name.startswith("s") and p.name.endswith("__regions.png") for p in files)


def _damaged(full_build: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(full_build, copy, symlinks=True)
    return copy


def _validate(path: Path):
    return run_cli("validate", str(path), check=False)


def test_validate_passes_on_a_fresh_build(full_build):
    proc = _validate(full_build)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK:")


def _delete_image(out: Path) -> None:
    next((out / "analysis_images").rglob("*.png")).unlink()


def _break_jsonl_line(out: Path) -> None:
    f = out / "data" / "validation.jsonl"
    lines = f.read_text().splitlines()
    lines[0] = lines[0][: len(lines[0]) // 2]
    f.write_text("\n".join(lines) + "\n")


def _overfill_folder(out: Path) -> None:
    limit = json.loads((out / "build_report.json").read_text())["config"]["max_files_per_dir"]
    extra = out / "images" / "s00000"
    for i in range(limit + 1 - len(list(extra.iterdir()))):
        (extra / f"extra_{i}.txt").write_text("x")


def _box_out_of_range(out: Path) -> None:
    f = out / "data" / "test.jsonl"
    rows = [json.loads(x) for x in f.read_text().splitlines()]
    for r in rows:
        if r["metadata"]["task"] == "grounding_all":
            r["messages"][-1]["content"][0]["text"] = json.dumps([{"label": "water", "bbox": [0.2, 0.1, 1.3, 0.5]}])
            break
    else:
        raise AssertionError("no grounding row in test split")
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _card_mismatch(out: Path) -> None:
    card = out / "README.md"
    card.write_text(card.read_text().replace("parquet/test-00000-of-00001.parquet",
                                             "parquet/test-00000-of-00002.parquet"))


def _card_renames_split(out: Path) -> None:
    """A hand-edited card whose YAML calls the validation files `valdation`: a loader would make a new split."""
    card = out / "README.md"
    text = card.read_text()
    assert "- split: validation\n" in text
    card.write_text(text.replace("- split: validation\n", "- split: valdation\n"))


def _overfill_subfolders(out: Path) -> None:
    limit = json.loads((out / "build_report.json").read_text())["config"]["max_files_per_dir"]
    for i in range(limit + 1 - len(list((out / "images").iterdir()))):
        (out / "images" / f"s9{i:04d}").mkdir()
        (out / "images" / f"s9{i:04d}" / "x.txt").write_text("x")


def _stray_tile_file(out: Path) -> None:
    """What an --update stopped before its commit leaves: a chip at a slot no tile of the manifest has."""
    chip = next((out / "images").rglob("*.png"))
    stray = out / "images" / "s09999" / chip.name
    stray.parent.mkdir(parents=True)
    stray.write_bytes(chip.read_bytes())


def _missing_split_file(out: Path) -> None:
    (out / "data" / "test.jsonl").unlink()


@pytest.mark.parametrize(("damage", "check"), [
    (_delete_image, "images:"), (_break_jsonl_line, "jsonl:"), (_overfill_folder, "folders:"),
    (_box_out_of_range, "grounding:"), (_card_mismatch, "card:"), (_missing_split_file, "files:"),
    (_card_renames_split, "card:"), (_overfill_subfolders, "folders:"), (_stray_tile_file, "files:")])
def test_validate_catches_damage(full_build, tmp_path, damage, check):
    copy = _damaged(full_build, tmp_path, damage.__name__)
    damage(copy)
    proc = _validate(copy)
    assert proc.returncode == 1, proc.stdout
    assert any(line.startswith(check) for line in proc.stdout.splitlines()), proc.stdout
    assert "FAILED" in proc.stdout


def test_validate_reads_a_build_in_llava_and_sharegpt_alone(tmp_path):
    """A build written only as LLaVA and ShareGPT has no JSONL or Parquet rows: validate counts and checks its
    rows there (it said "OK: 0 rows, 0 referenced images checked" and missed a missing chip)."""
    tree, out = tmp_path / "tree", tmp_path / "out"
    run_cli("sample", "--tiles", "6", "--output", str(tree), "--seed", "4")
    run_cli("build", "--input", str(tree), "--output", str(out), "--formats", "llava,sharegpt", "--tasks",
            "caption,absence", "--quiet")
    rows = len(json.loads((out / "llava" / "train.json").read_text()))
    rows += sum(len(json.loads(f.read_text())) for f in (out / "llava").glob("*.json") if f.name != "train.json")
    proc = _validate(out)
    assert proc.returncode == 0 and f"{rows} rows, " in proc.stdout and " 0 referenced" not in proc.stdout, proc.stdout
    # the tools that read rows say what to do instead of failing on an empty list of files
    for argv, said in ((["eval", "--dataset", str(out), "--baseline", "majority"], "no Parquet or JSONL rows to score"),
                       (["preview", str(out)], "no Parquet or JSONL rows to preview"),
                       (["mix", "--source", f"name=a,path={out}", "--output", str(tmp_path / "mix")],
                        "give its llava/ or sharegpt/ folder as the path instead"),
                       (["build", "--input", str(tree), "--output", str(out), "--update"],
                        "--update: the build in --output holds no Parquet or JSONL rows"),
                       (["build", "--input", str(tree), "--output", str(tmp_path / "u"), "--update", "--formats",
                         "llava"], "add jsonl or parquet to --formats")):
        proc = run_cli(*argv, check=False)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr, (argv, proc.stderr)
    chip = next((out / "images").rglob("*.png"))
    chip.unlink()
    proc = _validate(out)
    assert proc.returncode == 1 and f"missing {chip.relative_to(out)}" in proc.stdout, proc.stdout
    assert any(line.strip().startswith("- llava/") for line in proc.stdout.splitlines()), proc.stdout
    assert any(line.strip().startswith("- sharegpt/") for line in proc.stdout.splitlines()), proc.stdout


def test_eval_and_preview_of_a_damaged_file_say_so_in_one_line(full_build, tmp_path):
    """A truncated Parquet shard (or a broken JSONL line) gave eval and preview an Arrow traceback: one line
    now, naming Arrow's reason and pointing at validate, which lists the damaged files."""
    copy = _damaged(full_build, tmp_path, "truncated")
    shard = sorted((copy / "parquet").glob("test-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    for argv in (["eval", "--dataset", str(copy), "--baseline", "majority"], ["eval", "--baseline", "majority",
                 str(copy)], ["preview", "--n", "5", str(copy)]):
        proc = run_cli(*argv, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "a file of the dataset cannot be read (ArrowInvalid" in proc.stderr, proc.stderr
        assert f"`satsft validate {copy}` lists the damaged files" in proc.stderr
    assert "unreadable" in _validate(copy).stdout
