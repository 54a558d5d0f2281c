"""`satsft mix`: three kinds of source at repeats 1/8/80, exact counts, unique ids, images that resolve and
decode, `datasets` loading, byte-identical reruns; the lspace recipe's counts; bad recipes refused."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.cli import main
from scoring.evaluate import evaluate
from tests.conftest import REPO, preview_cards, run_cli
from transforms.input import lfs
from transforms.mix.rows import tile_key


def _png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """A satsft build, a foreign JSONL (string contents, no metadata, images on disk, one missing) and a
    Parquet with embedded images (one of them broken)."""
    base = tmp_path_factory.mktemp("mixsrc")
    run_cli("sample", "--tiles", "16", "--output", str(base / "tree"), "--seed", "5")
    run_cli("build", "--input", str(base / "tree"), "--output", str(base / "sat"), "--tasks",
            "caption,grounding_all,production_analysis", "--profiles", "brief_only,wildfire")
    chat = base / "chat"
    (chat / "pics").mkdir(parents=True)
    for i in range(5):
        (chat / "pics" / f"p{i}.jpg").write_bytes(_jpeg((40 * i, 100, 50)))
    lines = {"train": [], "validation": []}
    for i in range(4):
        lines["train"].append({"messages": [{"role": "user", "content": f"<image>What is in picture {i}?"},
                                            {"role": "assistant", "content": f"Picture {i}."}],
                               "images": [f"pics/p{i}.jpg"], "extra_column": i})
    lines["train"].append({"messages": [{"role": "user", "content": "<image>Gone?"},
                                        {"role": "assistant", "content": "Yes."}], "images": ["pics/missing.jpg"]})
    lines["validation"].append({"messages": [{"role": "user", "content": "<image>Held out."},
                                             {"role": "assistant", "content": "Fine."}], "images": ["pics/p4.jpg"]})
    for split, rows in lines.items():
        (chat / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    emb = base / "embedded"
    emb.mkdir()
    rows = []
    for i in range(3):
        rows.append({"messages": [{"role": "user", "content": "<image><image>Compare these."},
                                  {"role": "assistant", "content": f"Pair {i}."}],
                     "images": [{"bytes": _png((i * 50, 0, 0)), "path": f"a{i}.png"},
                                {"bytes": _png((0, i * 50, 0)), "path": f"b{i}.png"}]})
    rows.append({"messages": [{"role": "user", "content": "<image>Broken."},
                              {"role": "assistant", "content": "No."}],
                 "images": [{"bytes": b"\x89PNG not really", "path": "broken.png"}]})
    schema = pa.schema([("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
                        ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())])))])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), emb / "train-00000-of-00001.parquet")
    return {"sat": base / "sat", "chat": chat, "embedded": emb}


def _recipe(tmp_path: Path, sources: dict[str, Path]) -> Path:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""seed: 3
sources:
  - {{name: main, path: {sources['sat']}, repeat: 1}}
  - {{name: chat, path: {sources['chat']}, repeat: 8}}
  - {{name: pairs, path: {sources['embedded']}/*.parquet, repeat: 80}}
  - name: fire
    path: {sources['sat']}
    where: {{task: production_analysis, profile: wildfire}}
    repeat: 8
""")
    return recipe


def _rows(out: Path) -> list[dict]:
    return [r for f in sorted((out / "parquet").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def _hashes(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "mix_timings.json"}


@pytest.fixture(scope="module")
def mixed(sources, tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("mix")
    recipe = _recipe(work, sources)
    run_cli("mix", "--recipe", str(recipe), "--output", str(work / "out"), "--formats", "parquet,jsonl")
    return work / "out", recipe


def test_three_sources_counts_ids_and_images(mixed, sources):
    out, _ = mixed
    build = json.loads((sources["sat"] / "build_report.json").read_text())
    by_split = Counter()
    for splits in build["rows"]["by_task_split"].values():
        by_split.update(splits)
    fire = Counter()
    lines = [line for f in (sources["sat"] / "data").glob("*.jsonl") for line in f.read_text().splitlines()]
    for r in map(json.loads, lines):
        if r["metadata"]["analysis_profile"] == "wildfire":
            fire[r["metadata"]["split"]] += 1
    rows = _rows(out)
    got = Counter((r["metadata"]["source"], r["metadata"]["split"]) for r in rows)
    want = {("main", s): n for s, n in by_split.items() if n}
    want[("fire", "train")] = 8 * fire["train"]  # its held-out rows are main's, kept once
    want[("chat", "train")] = 8 * 4  # the row whose image is missing is rejected
    want[("chat", "validation")] = 1  # held out: once, whatever the repeat
    want[("pairs", "train")] = 80 * 3  # the broken embedded image costs its row
    assert dict(got) == want
    ids = [r["metadata"]["sample_id"] for r in rows]
    assert len(ids) == len(set(ids)), "ids unique across copies and sources"
    assert all("#" in i and ".r" in i for i in ids)
    for r in rows:
        for p in r["metadata"]["image_paths"]:
            with Image.open(out / p) as im:
                im.load()
            assert p.startswith("media/")
    chat = next(r for r in rows if r["metadata"]["source"] == "chat")
    assert chat["metadata"]["task"] == "chat" and chat["metadata"]["sample_id"].startswith("h")
    assert [p["type"] for p in chat["messages"][0]["content"]] == ["image", "text"]
    report = json.loads((out / "mix_report.json").read_text())
    assert report["rejects_by_reason"] == {"image_missing": 1, "image_not_png": 1}
    chat_src = next(s for s in report["sources"] if s["name"] == "chat")
    assert chat_src["dropped_columns"] == {"extra_column": 4}
    assert not (out / "media/fire").exists(), "one dataset's images are written once, under its first source"
    card = (out / "README.md").read_text()
    assert "| `pairs` |" in card and "share of train" in card
    proc = run_cli("validate", str(out))
    assert proc.stdout.startswith("OK:"), proc.stdout


def test_copies_are_spread_through_the_order(mixed):
    out, _ = mixed
    metadata = pq.read_table(out / "parquet/train-00000-of-00001.parquet").column("metadata").to_pylist()
    train = [md["sample_id"].split("#")[0] for md in metadata]
    positions: dict[str, list[int]] = {}
    for i, sid in enumerate(train):
        positions.setdefault(sid, []).append(i)
    gaps = [b - a for v in positions.values() for a, b in zip(v, v[1:], strict=False)]
    assert gaps and min(gaps) > 1, "no two copies of a row side by side"


def test_rerun_and_embedded_images(mixed, sources, tmp_path):
    out, recipe = mixed
    again = tmp_path / "out"  # same folder name: the report names it
    run_cli("mix", "--recipe", str(recipe), "--output", str(again), "--formats", "parquet,jsonl")
    assert _hashes(again) == _hashes(out), "same recipe and inputs, same bytes"
    embedded = tmp_path / "embedded"
    run_cli("mix", "--recipe", str(recipe), "--output", str(embedded), "--embed-images")
    assert not (embedded / "media").exists()
    from datasets import load_dataset

    ds = load_dataset("parquet", data_files={"train": str(embedded / "parquet/train-*.parquet")})["train"]
    assert len(ds) == len([r for r in _rows(out) if r["metadata"]["split"] == "train"])
    first = next(r for r in ds if r["metadata"]["source"] == "pairs")
    assert [im.size for im in first["images"]] == [(32, 32), (32, 32)], "embedded images decode to PIL"
    # JSONL rows cannot hold images: beside them the media are written too (JSONL rows named missing files)
    both = tmp_path / "both"
    run_cli("mix", "--recipe", str(recipe), "--output", str(both), "--embed-images", "--formats", "parquet,jsonl")
    proc = run_cli("validate", str(both), check=False)
    assert proc.returncode == 0 and (both / "media").is_dir(), proc.stdout[-2000:]


def test_one_file_is_a_source(sources, tmp_path, capsys):
    """One JSONL file, named on the command line: its rows (the good ones) in its split."""
    out = tmp_path / "one"
    assert main(["mix", "--source", f"name=held,path={sources['chat'] / 'validation.jsonl'}",
                 "--output", str(out), "--formats", "jsonl"]) == 0
    report = json.loads((out / "mix_report.json").read_text())
    assert report["sources"][0]["rows_in"] == {"train": 0, "validation": 1, "test": 0}
    assert report["rows"]["by_task_split"] == {"held": {"validation": 1}}


def test_absolute_image_paths_are_read_below_the_image_root(sources, tmp_path, capsys):
    """Exporters write str(path): a foreign file naming its images by absolute path (here, where it lies; a
    moved copy's old home; a file:// URL; a Windows path) lost every row as unsafe_image_path. Each is read
    below the source's image root; a path below no folder of it stays a reject that says what to set."""
    chat = tmp_path / "chat"
    shutil.copytree(sources["chat"] / "pics", chat / "pics")
    named = [f"{chat}/pics/p0.jpg", "/home/alice/chat/pics/p1.jpg", f"file://{chat}/pics/p2.jpg",
             "C:\\Users\\alice\\chat\\pics\\p3.jpg", "/mnt/elsewhere/p4.jpg"]
    rows = [{"messages": [{"role": "user", "content": f"<image>Picture {i}?"},
                          {"role": "assistant", "content": f"Picture {i}."}], "images": [path]}
            for i, path in enumerate(named)]
    (chat / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["mix", "--source", f"name=chat,path={chat}", "--output", str(out), "--formats", "jsonl"]) == 0
    kept = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    assert sorted(Path(r["metadata"]["image_paths"][0]).name for r in kept) == [f"p{i}.jpg" for i in range(4)]
    for r in kept:
        assert (out / r["metadata"]["image_paths"][0]).read_bytes() == (
            chat / "pics" / Path(r["metadata"]["image_paths"][0]).name).read_bytes()
    rejects = [json.loads(line) for line in (out / "rejects" / "rejects-00000-of-00001.jsonl").open()]
    assert [r["reason"] for r in rejects] == ["unsafe_image_path:absolute_path"]
    assert "set the source's image_root" in rejects[0]["detail"]


def test_image_paths_written_from_the_file_folder(sources, tmp_path, capsys):
    """A file in data/ naming its images as ../images/x.jpg (written from its own folder) lost every row as
    unsafe_image_path:parent_traversal. Below the source's image_root such a path is read where it points; one
    that climbs out of the root stays a reject whose detail says which image_root to set."""
    ds = tmp_path / "ds"
    shutil.copytree(sources["chat"] / "pics", ds / "images")
    (ds / "data").mkdir()
    rows = [{"messages": [{"role": "user", "content": f"<image>Picture {i}?"},
                          {"role": "assistant", "content": f"Picture {i}."}], "images": [f"../images/p{i}.jpg"]}
            for i in range(2)]
    (ds / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "alone"
    assert main(["mix", "--source", f"name=ds,path={ds / 'data'}", "--output", str(out), "--formats", "jsonl"]) == 0
    rejects = [json.loads(line) for line in (out / "rejects" / "rejects-00000-of-00001.jsonl").open()]
    assert [r["reason"] for r in rejects] == ["unsafe_image_path:parent_traversal"] * 2
    assert "set the source's image_root" in rejects[0]["detail"]
    out = tmp_path / "rooted"
    assert main(["mix", "--source", f"name=ds,path={ds / 'data'},image_root={ds}", "--output", str(out),
                 "--formats", "jsonl"]) == 0
    kept = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    assert sorted(Path(r["metadata"]["image_paths"][0]).name for r in kept) == ["p0.jpg", "p1.jpg"]
    for r in kept:
        name = Path(r["metadata"]["image_paths"][0]).name
        assert (out / r["metadata"]["image_paths"][0]).read_bytes() == (ds / "images" / name).read_bytes()
    assert not (out / "rejects" / "rejects-00000-of-00001.jsonl").read_text()


def test_llava_json_sources(sources, tmp_path, capsys):
    """LLaVA's shape (one .json array per split, `conversations` of from/value, an `image` per row) is how
    LLaVA-Instruct, ShareGPT4V, GeoChat-Instruct and satsft's own --formats llava ship: every such source was a
    usage error (no .parquet or .jsonl) or, as JSONL, a no_messages reject per row. A build's llava/ folder now
    mixes to its rows and images; a GeoChat-like file with no image tokens shows its image first; a truncated
    array keeps its rows up to the damage; a dataset_infos.json beside JSONL rows is not read."""
    build = tmp_path / "llava_build"
    run_cli("build", "--input", str(sources["sat"].parent / "tree"), "--output", str(build), "--tasks",
            "caption,grounding_all", "--formats", "llava", "--quiet")
    geo = tmp_path / "geo"
    (geo / "pics").mkdir(parents=True)
    shutil.copy(sources["chat"] / "pics" / "p0.jpg", geo / "pics" / "p0.jpg")
    rows = [{"id": str(i), "image": "pics/p0.jpg", "conversations": [{"from": "human", "value": f"Describe {i}."},
                                                                     {"from": "gpt", "value": f"Scene {i}."}]}
            for i in range(3)]
    (geo / "train.json").write_text(json.dumps(rows, indent=1))
    held = [{**r, "conversations": [{"from": "human", "value": f"Held out {r['id']}."}, *r["conversations"][1:]]}
            for r in rows[:2]]
    (geo / "validation.json").write_text(json.dumps(held)[:-40])  # cut short: its first row survives
    chat = tmp_path / "chat"
    shutil.copytree(sources["chat"], chat)
    (chat / "dataset_infos.json").write_text('{"default": {"features": {}}}')
    out = tmp_path / "out"
    assert main(["mix", "--source", f"name=lv,path={build / 'llava'}", "--source", f"name=geo,path={geo}",
                 "--source", f"name=chat,path={chat}", "--output", str(out)]) == 0
    report = json.loads((out / "mix_report.json").read_text())
    built = json.loads((build / "build_report.json").read_text())["rows"]["by_task_split"]
    per_split = Counter()
    for splits in built.values():
        per_split.update(splits)
    assert report["rows"]["by_task_split"]["lv"] == {k: v for k, v in per_split.items() if v}
    assert report["rows"]["by_task_split"]["geo"] == {"train": 3, "validation": 1}
    assert report["rows"]["by_task_split"]["chat"] == {"train": 4, "validation": 1}
    assert report["rejects_by_reason"] == {"image_missing": 1, "source_file_unreadable": 1}
    mixed = _rows(out)
    geo_row = next(r for r in mixed if r["metadata"]["source"] == "geo")
    assert [p["type"] for p in geo_row["messages"][0]["content"]] == ["image", "text"]
    for r in (r for r in mixed if r["metadata"]["source"] == "lv"):
        image = r["metadata"]["image_paths"][0]
        assert (out / image).read_bytes() == (build / "images").joinpath(*Path(image).parts[-2:]).read_bytes()


def test_a_saved_datasets_folder_is_a_source(sources, tmp_path, capsys):
    """`datasets`' save_to_disk writes Arrow files (with dataset_info.json and state.json beside them): such a
    folder was a usage error. Its rows are read by split from the folders; the JSON beside them is not; an
    Arrow IPC file (not stream) reads too."""
    import datasets

    rows = [{"messages": [{"role": "user", "content": f"<image>Picture {i}?"},
                          {"role": "assistant", "content": f"Picture {i}."}], "images": [f"pics/p{i}.jpg"]}
            for i in range(4)]
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:3]),
                          "validation": datasets.Dataset.from_list(rows[3:])}).save_to_disk(str(saved))
    assert (saved / "train" / "dataset_info.json").exists()
    shutil.copytree(sources["chat"] / "pics", saved / "pics")
    ipc = tmp_path / "ipc"
    shutil.copytree(sources["chat"] / "pics", ipc / "pics")
    table = pa.Table.from_pylist(rows[:2])
    with pa.ipc.new_file(str(ipc / "train.arrow"), table.schema) as writer:
        writer.write_table(table)
    out = tmp_path / "out"
    assert main(["mix", "--source", f"name=saved,path={saved}", "--source", f"name=ipc,path={ipc}",
                 "--output", str(out)]) == 0
    report = json.loads((out / "mix_report.json").read_text())
    assert report["rows"]["by_task_split"] == {"saved": {"train": 3, "validation": 1}, "ipc": {"train": 2}}
    assert report["rejects_by_reason"] == {}


def test_webp_and_inline_images_keep_their_format(tmp_path, capsys):
    """Hub datasets often store WebP: a mix rejected every such row (not_png_or_jpeg). A WebP file and inline
    JPEG and WebP data: URLs are carried byte for byte under names that say their format (an inline JPEG was
    written as a .png); a GIF is a reject that names the formats taken."""
    import base64

    def encoded(fmt: str, colour: tuple[int, int, int]) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (40, 30), colour).save(buf, format=fmt)
        return buf.getvalue()

    src = tmp_path / "hub"
    (src / "pics").mkdir(parents=True)
    webp, jpeg, inline_webp = encoded("WEBP", (10, 90, 30)), encoded("JPEG", (200, 10, 10)), encoded("WEBP", (5, 5, 99))
    (src / "pics" / "a.webp").write_bytes(webp)
    (src / "pics" / "d.gif").write_bytes(encoded("GIF", (1, 2, 3)))
    images = ["pics/a.webp", f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}",
              f"data:image/webp;base64,{base64.b64encode(inline_webp).decode()}", "pics/d.gif"]
    rows = [{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                       {"type": "text", "text": f"What is {i}?"}]},
                          {"role": "assistant", "content": f"Picture {i}."}]} for i, url in enumerate(images)]
    (src / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["mix", "--source", f"name=hub,path={src}", "--output", str(out), "--formats", "jsonl"]) == 0
    kept = {r["messages"][1]["content"][0]["text"]: r["metadata"]["image_paths"][0]
            for r in map(json.loads, (out / "data" / "train.jsonl").read_text().splitlines())}
    assert sorted(kept) == ["Picture 0.", "Picture 1.", "Picture 2."]
    for text, data, suffix in (("Picture 0.", webp, ".webp"), ("Picture 1.", jpeg, ".jpg"),
                               ("Picture 2.", inline_webp, ".webp")):
        assert Path(kept[text]).suffix == suffix and (out / kept[text]).read_bytes() == data
    rejects = [json.loads(line) for line in (out / "rejects" / "rejects-00000-of-00001.jsonl").open()]
    assert [r["reason"] for r in rejects] == ["image_unsupported_format"]


def test_a_messages_column_of_json_text_reads_as_the_turns_it_holds(tmp_path):
    """Parquet holds one type per column, so exports whose turns mix strings and part lists often write
    `messages` as JSON text: every such row was a no_messages reject. It reads as the same rows a list column
    gives; text that is no JSON list is a reject saying so."""
    png = _png((30, 60, 90))
    turns = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"What is {i}?"}]},
              {"role": "assistant", "content": f"Field {i}."}] for i in range(2)]
    images = [[{"bytes": png, "path": f"p{i}.png"}] for i in range(2)]
    as_text, as_list = tmp_path / "text", tmp_path / "list"
    for folder in (as_text, as_list):
        folder.mkdir()
    pq.write_table(pa.table({"messages": [json.dumps(t) for t in turns] + ['{"role": "user"}', "[not json"],
                             "images": images + images}), as_text / "train-00000-of-00001.parquet")
    (as_list / "train.jsonl").write_text("".join(json.dumps({"messages": t, "images": [
        {"bytes": None, "path": f"p{i}.png"}]}) + "\n" for i, t in enumerate(turns)))
    for i in range(2):
        (as_list / f"p{i}.png").write_bytes(png)
    got = {}
    for folder in (as_text, as_list):
        out = tmp_path / f"out-{folder.name}"
        assert main(["mix", "--source", f"name=chat,path={folder}", "--output", str(out), "--formats", "jsonl"]) == 0
        rows = [json.loads(line) for line in (out / "data" / "train.jsonl").open()]
        # the media names (so the content ids) differ: a carried image is named by its bytes, a file by its path
        got[folder.name] = [[p.get("text") or (out / p["image"]).read_bytes() for m in r["messages"]
                             for p in m["content"]] for r in rows]
    assert sorted(got["text"]) == sorted(got["list"]) and len(got["text"]) == 2
    rejects = [json.loads(line) for line in (tmp_path / "out-text" / "rejects" / "rejects-00000-of-00001.jsonl").open()]
    assert sorted((r["reason"], r["detail"].split(" (")[0]) for r in rejects) == [
        ("no_messages", "messages is JSON text holding dict, not a list of turns"),
        ("no_messages", "messages is text that is not JSON")]


def test_an_image_that_links_out_of_its_source_is_a_reject_not_copied(tmp_path):
    """A source folder from elsewhere keeps links: an image that is a link to a file of this machine was copied
    into the mix (and then uploaded with it). It is an image_link_out reject; the row beside it is mixed."""
    src = tmp_path / "src"
    (src / "pics").mkdir(parents=True)
    private = tmp_path / "private.png"
    private.write_bytes(_png((200, 10, 10)))
    (src / "pics" / "ok.png").write_bytes(_png((10, 200, 10)))
    (src / "pics" / "bad.png").symlink_to(private)
    rows = [{"messages": [{"role": "user", "content": f"<image>What is {n}?"}, {"role": "assistant", "content": n}],
             "images": [f"pics/{n}.png"]} for n in ("ok", "bad")]
    (src / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["mix", "--source", f"name=s,path={src}", "--output", str(out), "--formats", "jsonl"]) == 0
    rejects = [json.loads(line) for line in (out / "rejects" / "rejects-00000-of-00001.jsonl").open()]
    assert [(r["reason"], r["detail"]) for r in rejects] == [("image_link_out", str(src / "pics" / "bad.png"))]
    copied = [p.read_bytes() for p in (out / "media").rglob("*") if p.is_file()]
    assert copied == [(src / "pics" / "ok.png").read_bytes()]


def test_a_mix_is_a_source_read_once(mixed, tmp_path, capsys):
    """A mix written as Parquet and JSONL: its rows once (each file was read, every row twice, half rejected)."""
    out, _ = mixed
    first = json.loads((out / "mix_report.json").read_text())
    again = tmp_path / "again"
    assert main(["mix", "--source", f"name=again,path={out}", "--output", str(again)]) == 0
    report = json.loads((again / "mix_report.json").read_text())
    assert sum(report["sources"][0]["rows_in"].values()) == first["rows"]["total"]
    assert "duplicate_row" not in report["rejects_by_reason"]


def test_a_glob_reads_splits_from_the_folders_it_spans(sources, tmp_path, capsys):
    """`exports/*/rows.jsonl`: each file's split from its folder below where the wildcards begin (the glob's
    own text is no folder; every file read as train before)."""
    for split in ("train", "validation"):
        (tmp_path / "exports" / split).mkdir(parents=True)
        shutil.copy(sources["chat"] / f"{split}.jsonl", tmp_path / "exports" / split / "rows.jsonl")
    out = tmp_path / "globbed"
    assert main(["mix", "--source", f"name=g,path={tmp_path}/exports/*/rows.jsonl,image_root={sources['chat']}",
                 "--output", str(out), "--formats", "jsonl"]) == 0
    report = json.loads((out / "mix_report.json").read_text())
    assert report["sources"][0]["rows_in"]["validation"] == 1 and report["sources"][0]["rows_in"]["train"] > 1


def test_lspace_recipe_counts(tmp_path, monkeypatch):
    """The model card's mix from one 120-tile build: whole build x1, four profiles x8, wildfire x80 (the recipe's
    paths are relative to where it runs)."""
    run_cli("sample", "--tiles", "120", "--output", str(tmp_path / "builds/tree"), "--seed", "2")
    run_cli("build", "--input", str(tmp_path / "builds/tree"), "--output", str(tmp_path / "builds/sat"))
    monkeypatch.chdir(tmp_path)
    proc = run_cli("mix", "--recipe", str(REPO / "templates/mix/lspace.yaml"), "--output", "builds/mix")
    assert "firewatch" in proc.stdout
    build = json.loads((tmp_path / "builds/sat/build_report.json").read_text())
    per_profile_train = build["rows"]["by_task_split"]["production_analysis"]["train"] // 5
    report = json.loads((tmp_path / "builds/mix/mix_report.json").read_text())
    out = {s["name"]: s["rows_out"] for s in report["sources"]}
    main_rows = Counter()
    for splits in build["rows"]["by_task_split"].values():
        main_rows.update(splits)
    assert out["main"] == {s: main_rows.get(s, 0) for s in ("train", "validation", "test")}
    for name, times in (("brief", 8), ("oceanscout", 8), ("floodpulse", 8), ("landshift", 8), ("firewatch", 80)):
        assert out[name] == {"train": times * per_profile_train, "validation": 0, "test": 0}, name
    assert report["rows"]["total"] == sum(main_rows.values()) + 112 * per_profile_train


@pytest.mark.parametrize(("recipe", "message"), [
    ("sources: [{name: a, path: nowhere}]", "matches no .parquet, .arrow, .jsonl"),
    ("sources: [{name: a, path: SAT, colour: red}]", "unknown key(s) 'colour'"),
    ("sources: [{name: a, path: SAT, repeat: -2}]", "repeat must be a number above 0"),
    ("sources: [{name: a, path: SAT}, {name: b, path: SAT, share: 1.5}]", "share must be above 0 and below 1"),
    ("sources: [{name: a, path: SAT, where: {profile: volcano}}]", "matches nothing"),
    ("sources: [{name: A B, path: SAT}]", "name must be [a-z0-9_-]+"),
    ("sources: [{path: SAT}]", "a name is required (name: N in a recipe, name=N in --source"),
    ("speed: 3\nsources: [{name: a, path: SAT}]", "unknown recipe key(s) 'speed'"),
    # each of these stopped the mix with a traceback (the long name writing its media folder), or (the key
    # given twice) mixed the second list alone without a word
    ("sources: [{name: a, path: SAT, repeat: " + "9" * 400 + "}]", "repeat must be a number, not an integer of"),
    ("sources: " + "[" * 2000 + "]" * 2000, "is not a recipe"),
    ("sources: [{name: " + "a" * 300 + ", path: SAT}]", "at most 64 characters"),
    ("sources: [{name: a, path: SAT}]\nsources: [{name: b, path: SAT}]", "found 'sources' twice"),
    ("base: &b {name: a, path: SAT, repeat: 2}\nsources: [{<<: *b, repeat: 3}]", "unknown recipe key(s) 'base'"),
])
def test_bad_recipes_are_usage_errors(recipe, message, sources, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(recipe.replace("SAT", str(sources["sat"])))
    out = tmp_path / "out"
    assert main(["mix", "--recipe", str(path), "--output", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists(), "nothing is written"


def test_integer_flags_past_64_bits_are_usage_errors(sources, tmp_path, capsys):
    """The mix ran to its end and failed writing the report, which records them as 64-bit integers."""
    for flag in ("--rows-per-shard", "--max-files-per-dir"):
        assert main(["mix", "--source", f"name=a,path={sources['sat']}", "--output", str(tmp_path / "o"), flag,
                     str(1 << 64)]) == 2
        assert f"{flag} {1 << 64} is too large" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize(("source", "flag", "message"), [
    ("chat", "drop", "--shared-ground drop compares where tiles lie, which only satsft outputs record"),
    ("old mix", "drop", "(a build in its manifest, a mix in metadata/footprints/; older mixes record none)"),
    ("chat", "keep", "--shared-ground takes report or drop, not 'keep'"),
])
def test_shared_ground_drop_needs_a_build_among_the_sources(source, flag, message, sources, mixed, tmp_path, capsys):
    out = tmp_path / "out"
    path = sources["chat"]
    if source == "old mix":  # a mix made before mixes listed their tiles' footprints
        path = tmp_path / "old"
        shutil.copytree(mixed[0], path)
        shutil.rmtree(path / "metadata" / "footprints")
    assert main(["mix", "--source", f"name=src,path={path}", "--output", str(out), "--shared-ground", flag]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists(), "nothing is written"


def test_a_damaged_parquet_source_file_is_a_reject_not_a_failed_mix(sources, tmp_path, capsys):
    """A truncated Parquet file among a source's files failed the whole mix with an Arrow traceback: it is one
    reject (source_file_unreadable, with Arrow's reason), and the other files' rows are mixed."""
    import shutil

    folder = tmp_path / "pairs"
    shutil.copytree(sources["embedded"], folder)
    good = folder / "train-00000-of-00001.parquet"
    (folder / "validation-00000-of-00001.parquet").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = tmp_path / "out"
    assert main(["mix", "--source", f"name=pairs,path={folder}", "--output", str(out), "--formats", "jsonl",
                 "--quiet"]) == 0
    rejects = [json.loads(line) for line in (out / "rejects" / "rejects-00000-of-00001.jsonl").read_text().splitlines()]
    unreadable = [r for r in rejects if r["reason"] == "source_file_unreadable"]
    assert len(unreadable) == 1 and "validation-00000-of-00001.parquet: ArrowInvalid" in unreadable[0]["detail"]
    report = json.loads((out / "mix_report.json").read_text())
    assert report["sources"][0]["rows_in"]["train"] == 3, "the good file's rows (its broken image costs one)"
    assert report["rejects_by_reason"]["source_file_unreadable"] == 1

    from pipeline.sample.faults import lfs_pointer  # a file of a clone without Git LFS: named, with what to do

    (folder / "validation-00000-of-00001.parquet").write_bytes(lfs_pointer(good.read_bytes()))
    assert main(["mix", "--source", f"name=pairs,path={folder}", "--output", str(out), "--formats", "jsonl",
                 "--quiet", "--overwrite"]) == 0
    said = capsys.readouterr().out
    assert "WARNING: 1 input file(s) are Git LFS pointers" in said and "git lfs pull" in said, said
    rejects = [json.loads(line) for line in (out / "rejects" / "rejects-00000-of-00001.jsonl").read_text().splitlines()]
    assert [r["detail"] for r in rejects if r["reason"] == "source_file_lfs_pointer"] == [
        f"validation-00000-of-00001.parquet: {lfs.DETAIL}"]


def test_sources_reading_one_build_each_count_its_rejects(sources, tmp_path, capsys, monkeypatch):
    """Two sources read one build's files once between them; a row that does not normalise and a file cut
    short are still each source's rejects, named by it, as when each source read the build alone."""
    from transforms.mix import stages

    read: list[str] = []
    rows_of = stages._readable_rows
    monkeypatch.setattr(stages, "_readable_rows", lambda path: read.append(path) or rows_of(path))
    build = tmp_path / "sat"
    shutil.copytree(sources["sat"], build)
    train = sorted((build / "parquet").glob("train-*.parquet"))[0]
    table = pq.read_table(train)
    rows = table.to_pylist()
    rows[0]["metadata"]["split"] = "bogus"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), train)
    held_out = sorted((build / "parquet").glob("validation-*.parquet"))[0]
    held_out.write_bytes(held_out.read_bytes()[: held_out.stat().st_size // 2])
    out = tmp_path / "out"
    assert main(["mix", "--source", f"name=main,path={build}", "--source",
                 f"name=fire,path={build},task=production_analysis,profile=wildfire", "--output", str(out),
                 "--formats", "jsonl", "--quiet"]) == 0
    assert sorted(read) == sorted(str(p) for p in (build / "parquet").glob("*.parquet")), "each file read once"
    rejects = [json.loads(line) for f in sorted((out / "rejects").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert Counter((r["source"].split(":")[0], r["reason"]) for r in rejects) == {
        ("main", "bad_metadata"): 1, ("fire", "bad_metadata"): 1,
        ("main", "source_file_unreadable"): 1, ("fire", "source_file_unreadable"): 1}, rejects
    report = json.loads((out / "mix_report.json").read_text())
    alone = tmp_path / "alone"
    assert main(["mix", "--source", f"name=fire,path={build},task=production_analysis,profile=wildfire",
                 "--output", str(alone), "--formats", "jsonl", "--quiet"]) == 0
    fire = json.loads((alone / "mix_report.json").read_text())["sources"][0]
    assert next(s for s in report["sources"] if s["name"] == "fire")["rows_in"] == fire["rows_in"]
    assert sum(fire["rows_in"].values()) > 0


def test_sources_reading_one_chat_file_each_take_its_rows_under_their_name(sources, tmp_path, monkeypatch):
    """Two sources on one foreign folder read each file once between them; each source's rows carry its own name
    as their task, as when each read the folder alone."""
    from transforms.mix import stages

    read: list[str] = []
    rows_of = stages._readable_rows
    monkeypatch.setattr(stages, "_readable_rows", lambda path: read.append(path) or rows_of(path))
    out = tmp_path / "out"
    assert main(["mix", "--source", f"name=chat,path={sources['chat']}", "--source",
                 f"name=talk,path={sources['chat']},repeat=2", "--output", str(out), "--formats", "parquet",
                 "--quiet"]) == 0
    assert sorted(read) == sorted(str(p) for p in sources["chat"].glob("*.jsonl")), "each file read once"
    report = json.loads((out / "mix_report.json").read_text())
    assert {s["name"]: s["rows_out"]["train"] for s in report["sources"]} == {"chat": 4, "talk": 8}
    assert Counter((r["metadata"]["source"], r["metadata"]["task"], r["metadata"]["split"]) for r in _rows(out)) == {
        ("chat", "chat", "train"): 4, ("talk", "talk", "train"): 8, ("chat", "chat", "validation"): 1}


def test_an_unfinished_build_is_no_source(sources, tmp_path, capsys):
    """A build still running (or stopped) has no report yet: its folder passed for a folder of rows, and a mix took
    the shards written so far and the manifests as rows, exit 0. Refused, with who writes it."""
    import datetime
    import socket
    import subprocess
    import sys

    from transforms.output.claim import WRITER
    from transforms.rebuild import holder

    part = tmp_path / "part"
    shutil.copytree(sources["sat"], part)
    (part / "build_report.json").unlink()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        began = datetime.datetime.now(datetime.timezone.utc).strftime(holder.BEGAN_FORMAT)
        run = holder.Holder(holder.machine_id(), child.pid, holder.pid_start(child.pid), began, socket.gethostname())
        (part / WRITER).parent.mkdir(exist_ok=True)
        (part / WRITER).write_text(f"a satsft build is writing this output\ncommand build\n{run.lines()}")
        out = tmp_path / "out"
        for path in (part, part / "parquet", f"{part}/data/*.jsonl"):
            assert main(["mix", "--source", f"name=p,path={path}", "--output", str(out), "--quiet"]) == 2
            err = capsys.readouterr().err
            assert (f"source 'p': in '{part}', the satsft build begun {began} by process {child.pid} on host "
                    f"{socket.gethostname()} is still running; mix it once it has finished") in err, err
            assert not out.exists()
        for command, doing in ((["eval", "--dataset", str(part), "--baseline", "majority"], "score"),
                               (["preview", str(part)], "preview")):  # they said only "pass the --output folder"
            assert main(command) != 0
            err = capsys.readouterr().err
            assert f"by process {child.pid} on host" in err and f"is still running; {doing} it once" in err, err
    finally:
        child.kill()
        child.wait()
    (part / WRITER).unlink()  # a build of an older version, or one whose marker went: its manifests still say
    assert main(["mix", "--source", f"name=p,path={part}", "--output", str(out), "--quiet"]) == 2
    assert "holds a satsft output without its report" in capsys.readouterr().err


@pytest.fixture(scope="module")
def moved(sources, tmp_path_factory) -> tuple[Path, str, list[str], int]:
    """The sources' tree built again with one train-only place declared test: (that build, the place, its
    tiles' stems, the tiles of the tree)."""
    tree = sources["sat"].parent / "tree"
    sidecars = [json.loads(p.read_text()) for p in sorted((tree / "metadata").rglob("*.json"))]
    by_base: dict[str, set[str]] = {}
    for s in sidecars:
        by_base.setdefault(s["tile_stem"].split("_g")[0], set()).add(s["split"])
    place = next(b for b, splits in sorted(by_base.items()) if splits == {"train"})
    second = tmp_path_factory.mktemp("moved") / "tree2"
    shutil.copytree(tree, second)
    stems = []
    for p in sorted((second / "metadata").rglob("*.json")):
        s = json.loads(p.read_text())
        if s["tile_stem"].startswith(place + "_"):
            s["split"] = "test"
            p.write_text(json.dumps(s))
            stems.append(s["tile_stem"])
    assert main(["build", "--input", str(second), "--output", str(second.parent / "sat2"), "--quiet",
                 "--tasks", "caption,grounding_all,production_analysis", "--profiles", "brief_only,wildfire"]) == 0
    return second.parent / "sat2", place, stems, len(sidecars)


def test_a_mix_counts_ground_two_builds_show_in_different_splits(sources, moved, tmp_path, capsys):
    """The same places built twice, one of them declared test in the second tree: the mix finds those tiles
    on ground the first build's train tiles show (from the builds' manifests, which carry each tile's
    footprint), warns and says so on its card; a build whose manifest predates footprints is counted as not
    checked; a mix of foreign files only says nothing of ground."""
    sat2, place, moved, tiles = moved
    recipe = tmp_path / "recipe.yaml"  # two sources read the second build: rows name the one they came from
    recipe.write_text(f"""sources:
  - {{name: first, path: {sources['sat']}}}
  - {{name: again, path: {sat2}, where: {{task: caption}}}}
  - {{name: again_boxes, path: {sat2}, where: {{task: [grounding_all, production_analysis]}}}}
""")
    assert main(["mix", "--recipe", str(recipe), "--output", str(tmp_path / "mix"), "--quiet"]) == 0
    said = capsys.readouterr().out
    shared = json.loads((tmp_path / "mix" / "mix_report.json").read_text())["shared_ground"]
    assert shared["tiles"]["test"] == len(moved) > 0 and shared["tiles"]["validation"] == 0
    assert shared["tiles"]["train"] == len(moved), "the same tiles in the first build's train split"
    assert shared["pairs"]["train|test"] >= len(moved) and shared["tiles_without_footprint"] == 0
    assert shared["builds"] == 2
    first = shared["examples"][0]
    assert first["tile"].startswith("first/" + place) and first["other_tile"].startswith("again/" + place)
    assert (first["split"], first["other_split"], first["share"]) == ("train", "test", 1.0)
    assert f"WARNING: {len(moved)} held-out tile(s) (test {len(moved)}) show ground" in said, said
    card = (tmp_path / "mix" / "README.md").read_text()
    assert "**Held-out tiles on ground another split shows.**" in card and "the same place in two builds" in card
    assert "`satsft eval` scores the rows on ground no other split shows apart" in card
    report = json.loads((tmp_path / "mix" / "mix_report.json").read_text())
    assert report["file_count"] == sum(1 for p in (tmp_path / "mix").rglob("*") if p.is_file()), "the list counted"
    # eval scores the test rows on ground no other split shows apart, whichever source a row came from
    test_rows = [r["metadata"] for r in _rows(tmp_path / "mix") if r["metadata"]["split"] == "test"]
    on_shared = {f"{md['source']}/{md['tile_stem']}" for md in test_rows if md["tile_stem"] in moved}
    assert {k.split("/")[0] for k in on_shared} == {"again", "again_boxes"}
    scored = evaluate(str(tmp_path / "mix"), "test", baseline="majority")
    rows_on_shared = sum(md["tile_stem"] in moved for md in test_rows)
    assert scored["shared_ground"] == {"tiles": len(on_shared), "rows": rows_on_shared, "counted_in": "mix_report.json"}
    unseen = sum(t["unseen_ground"]["n"] for t in scored["tasks"].values())
    assert unseen == len(test_rows) - scored["shared_ground"]["rows"]  # the sample tree has no other test tile
    assert main(["eval", str(tmp_path / "mix"), "--baseline", "majority", "--split", "test"]) == 0
    assert "too (mix_report.json, shared_ground)" in capsys.readouterr().out
    marked = {f"{c['source']}/{c['metadata']['tile_stem']}" for c in preview_cards(tmp_path / "mix", "--splits", "test")
              if c["shared_ground"]}
    assert marked == on_shared, "the preview marks the same rows, whichever source they came from"
    # --shared-ground drop: the first build's train tiles on that ground lose their rows, the test tiles keep
    # theirs; mixed over the same output (--overwrite), whose list of held-out tiles must not outlive it
    mixed_rows = [r["metadata"] for r in _rows(tmp_path / "mix")]
    apart_dir = tmp_path / "mix"
    assert main(["mix", "--recipe", str(recipe), "--output", str(apart_dir), "--quiet", "--overwrite",
                 "--shared-ground", "drop"]) == 0
    said = capsys.readouterr().out
    apart = json.loads((apart_dir / "mix_report.json").read_text())
    gone = [json.loads(line) for f in (apart_dir / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    first_rows = [md for md in mixed_rows if md["source"] == "first" and md["tile_stem"] in moved]
    assert len(gone) == apart["rejects_by_reason"]["split_shared_ground"] == len(first_rows) > 0
    assert {r["tile_stem"] for r in gone} == set(moved) and all(r["stage"] == "split" for r in gone)
    assert gone[0]["detail"].startswith("train tile first/" + place) and "with test tile again/" in gone[0]["detail"]
    assert apart["shared_ground"]["dropped_tiles"] == len(moved) and sum(apart["shared_ground"]["tiles"].values()) == 0
    assert apart["rows"]["total"] == report["rows"]["total"] - len(first_rows)
    kept_rows = [r["metadata"] for r in _rows(apart_dir)]
    assert sorted(md["sample_id"] for md in kept_rows) == sorted(
        md["sample_id"] for md in mixed_rows if not (md["source"] == "first" and md["tile_stem"] in moved))
    assert apart["config"]["shared_ground"] == "drop" and "shared_ground" not in report["config"]
    assert not (apart_dir / "metadata" / "shared_ground.jsonl").exists() and "WARNING" not in said
    assert f"the rows of {len(moved)} tile(s) on ground" in (apart_dir / "README.md").read_text()
    assert evaluate(str(apart_dir), "test", baseline="majority")["shared_ground"]["tiles"] == 0
    assert apart["file_count"] == sum(1 for p in apart_dir.rglob("*") if p.is_file())
    # a build from before manifests carried footprints: its tiles are not checked, and nothing is found; a
    # damaged line or footprint there loses nothing else
    old = tmp_path / "old"
    shutil.copytree(sat2, old)
    for f in (old / "metadata" / "manifest").glob("tiles-*.jsonl"):
        records = [json.loads(line) for line in f.read_text().splitlines()]
        records[0]["footprint"] = [1, 2, 3]
        f.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "footprint" or r is records[0]}) + "\n"
                             for r in records) + '{"stem": "cut sho\n')
    argv = ["mix", "--source", f"path={sources['sat']},name=first", "--source", f"path={old},name=again",
            "--output", str(tmp_path / "mix_old")]
    capsys.readouterr()
    assert main(argv) == 0
    said = capsys.readouterr().out  # no warning (nothing found), but the summary says what was not checked
    assert "WARNING" not in said and f"NOTE: {tiles} tile(s) say nothing of where they lie" in said, said
    assert "mix the builds themselves, to check them" in said
    shared = json.loads((tmp_path / "mix_old" / "mix_report.json").read_text())["shared_ground"]
    assert shared["tiles_without_footprint"] == tiles, "every tile of the old build, none of the other"
    assert sum(shared["tiles"].values()) == 0
    assert not (tmp_path / "mix_old" / "metadata" / "shared_ground.jsonl").exists()
    scored = evaluate(str(tmp_path / "mix_old"), "test", baseline="majority")
    assert scored["shared_ground"] == {"tiles": 0, "rows": 0, "counted_in": "mix_report.json",
                                       "tiles_not_checked": tiles}, "nothing found, and it says why"
    capsys.readouterr()
    assert main(["mix", "--source", f"path={sources['chat']},name=chat", "--output", str(tmp_path / "foreign"),
                 "--quiet"]) == 0
    assert "share ground" not in (tmp_path / "foreign" / "README.md").read_text()
    assert "shared_ground" not in json.loads((tmp_path / "foreign" / "mix_report.json").read_text())
    capsys.readouterr()


def test_one_stem_from_two_builds_stays_two_tiles_to_a_mix_of_their_mix(sources, moved, tmp_path, capsys):
    """An inner mix of two builds holding the same stems in the same splits on different ground; mixed with a
    third build whose test tiles lie on the first build's train ground, --shared-ground drop takes the first
    build's train rows there and none of the other's. Named by the inner mix's source and the stem alone, the
    two were one tile to the outer mix, and drop took the rows of both."""
    sat2, _, stems, _ = moved
    elsewhere = tmp_path / "elsewhere"  # the first build moved 5 degrees east: the same stems, other ground
    shutil.copytree(sources["sat"], elsewhere)
    for f in (elsewhere / "metadata" / "manifest").glob("tiles-*.jsonl"):
        records = [json.loads(line) for line in f.read_text().splitlines()]
        for r in records:
            r["footprint"] = [r["footprint"][0] + 5, r["footprint"][1], r["footprint"][2] + 5, r["footprint"][3]]
        f.write_text("".join(json.dumps(r) + "\n" for r in records))
    inner, outer = tmp_path / "inner", tmp_path / "outer"
    assert main(["mix", "--source", f"name=first,path={sources['sat']}", "--source", f"name=east,path={elsewhere}",
                 "--output", str(inner), "--quiet"]) == 0
    assert sum(json.loads((inner / "mix_report.json").read_text())["shared_ground"]["tiles"].values()) == 0
    assert main(["mix", "--source", f"name=inner,path={inner}", "--source", f"name=again,path={sat2}",
                 "--output", str(outer), "--quiet", "--shared-ground", "drop"]) == 0
    gone = [json.loads(line) for f in (outer / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    on_ground = [r["metadata"] for r in _rows(inner) if r["metadata"]["tile_stem"] in stems]
    assert len(gone) == sum(md["source"] == "first" for md in on_ground) > 0, "the east build's rows stay"
    assert {r["tile_stem"] for r in gone} == {f"first/{stem}" for stem in stems}
    kept = {tile_key(r["metadata"]) for r in _rows(outer) if r["metadata"]["tile_stem"] in stems}
    assert kept == {*(f"inner/east/{stem}" for stem in stems), *(f"again/{stem}" for stem in stems)}
    assert {f'{r["source"]}/{r["stem"]}' for r in _footprint_lines(outer)} >= kept
    capsys.readouterr()


def _footprint_lines(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "metadata" / "footprints").glob("footprints-*.jsonl"))
            for line in f.read_text().splitlines()]


def test_a_mix_of_a_mix_checks_the_ground_its_builds_show(sources, moved, tmp_path, capsys):
    """A mix lists the footprint of every tile with rows in it (metadata/footprints/), so a mix of that mix
    finds the held-out tiles of a new build on ground the inner mix trains on, and --shared-ground drop takes
    the train rows, as if the builds were mixed themselves (a mix used to keep no footprints: every such tile
    went unchecked). A mix of their mix names each tile by the sources that carried it (tile_key), so drop
    takes the train rows on that ground, never the test rows. A damaged or missing list is a validate finding;
    a mix from before the lists leaves its tiles unchecked, and says so."""
    sat2, place, stems, tiles = moved
    inner, outer = tmp_path / "inner", tmp_path / "outer"
    assert main(["mix", "--source", f"name=first,path={sources['sat']}", "--output", str(inner), "--quiet"]) == 0
    listed = _footprint_lines(inner)
    with_rows = {r["metadata"]["tile_stem"] for r in _rows(inner)}
    assert sorted(r["stem"] for r in listed) == sorted(with_rows) and len(with_rows) == tiles
    assert {r["source"] for r in listed} == {"first"} and all(len(r["footprint"]) == 4 for r in listed)
    report = json.loads((inner / "mix_report.json").read_text())
    assert report["outputs"]["footprint_files_written"] == 1
    assert report["file_count"] == sum(1 for p in inner.rglob("*") if p.is_file())
    assert main(["validate", str(inner)]) == 0
    capsys.readouterr()

    assert main(["mix", "--source", f"name=inner,path={inner}", "--source", f"name=again,path={sat2}",
                 "--output", str(outer), "--quiet"]) == 0
    said = capsys.readouterr().out
    shared = json.loads((outer / "mix_report.json").read_text())["shared_ground"]
    assert shared["tiles"] == {"train": len(stems), "validation": 0, "test": len(stems)} and stems
    assert shared["tiles_without_footprint"] == 0 and shared["builds"] == 2 and "NOTE" not in said
    first = shared["examples"][0]
    assert (first["tile"], first["other_tile"]) == (f"inner/first/{stems[0]}", f"again/{stems[0]}")
    assert f"WARNING: {len(stems)} held-out tile(s) (test {len(stems)})" in said, said
    assert {f'{r["source"]}/{r["stem"]}' for r in _footprint_lines(outer)} == {
        tile_key(r["metadata"]) for r in _rows(outer)} >= {f"inner/first/{stems[0]}", f"again/{stems[0]}"}
    assert evaluate(str(outer), "test", baseline="majority")["shared_ground"]["tiles"] == len(stems)
    # --shared-ground drop over that mix (outer/inner/first/<stem> and outer/again/<stem>): exactly the train
    # rows on that ground go (the inner mix's), the test rows stay
    third = tmp_path / "third"
    assert main(["mix", "--source", f"name=outer,path={outer}", "--output", str(third), "--quiet",
                 "--shared-ground", "drop"]) == 0
    gone = [json.loads(line) for f in (third / "rejects").glob("*.jsonl") for line in f.read_text().splitlines()]
    outer_rows = [r["metadata"] for r in _rows(outer) if r["metadata"]["tile_stem"] in stems]
    assert len(gone) == sum(md["split"] == "train" for md in outer_rows) > 0
    assert {r["tile_stem"] for r in gone} == {f"inner/first/{stem}" for stem in stems}
    assert gone[0]["source"].startswith("outer:")
    kept = [r["metadata"] for r in _rows(third) if r["metadata"]["tile_stem"] in stems]
    assert kept and {md["split"] for md in kept} == {"test"}
    assert len(kept) == sum(md["split"] == "test" for md in outer_rows)
    # a damaged list: validate names it (a mix of it passes over the damaged lines: _footprints_of)
    damaged = tmp_path / "damaged"
    shutil.copytree(inner, damaged)
    part = next((damaged / "metadata" / "footprints").glob("*.jsonl"))
    lines = part.read_text().splitlines()
    part.write_text("\n".join([*lines[:-1], lines[-1][:20]]) + "\n")
    assert main(["validate", str(damaged)]) == 1
    assert f"metadata/footprints/{part.name} does not parse" in capsys.readouterr().out
    # a list gone from a mix whose report says it wrote one: validate says so (a mix of it would call its
    # tiles unchecked, eval would score shared ground as unseen)
    shutil.rmtree(damaged / "metadata" / "footprints")
    (damaged / "metadata" / "footprints").mkdir()
    capsys.readouterr()
    assert main(["validate", str(damaged)]) == 1
    assert "metadata/footprints/: 0 file(s) there, mix_report.json says 1 (footprint_files_written)" in (
        capsys.readouterr().out)
    gone_list = tmp_path / "gone_list"
    shutil.copytree(outer, gone_list)
    (gone_list / "metadata" / "shared_ground.jsonl").unlink()
    assert main(["validate", str(gone_list)]) == 1
    assert "metadata/shared_ground.jsonl: 0 file(s) there, mix_report.json says 1" in capsys.readouterr().out
    # a mix from before the lists: its tiles are not checked, and the summary says so
    assert main(["mix", "--source", f"name=inner,path={damaged}", "--source", f"name=again,path={sat2}",
                 "--output", str(tmp_path / "of_old")]) == 0
    said = capsys.readouterr().out
    assert f"NOTE: {tiles} tile(s) say nothing of where they lie" in said and "WARNING" not in said, said


def test_a_build_row_whose_text_metadata_is_not_text_is_its_own_reject(sources, tmp_path):
    """A hand-edited JSONL row of a build whose task, profile or tile stem is a number or a list stopped the whole
    mix (Arrow's writer, or sorting the tiles); now it is that row's reject (``bad_metadata``, per source reading
    it) and the mix goes on."""
    build = tmp_path / "sat"
    shutil.copytree(sources["sat"], build)
    report = json.loads((build / "build_report.json").read_text())
    report["files"].pop("parquet")  # the mix reads the JSONL rows then
    (build / "build_report.json").write_text(json.dumps(report))
    train = build / "data" / "train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    for row, (field, value) in zip(rows, [("task", 7), ("tile_stem", ["x"]), ("analysis_profile", {"a": 1})],
                                   strict=False):
        row["metadata"][field] = value
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    run_cli("mix", "--source", f"name=main,path={build}", "--output", str(out), "--quiet")
    rejects = [json.loads(line) for f in sorted((out / "rejects").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert Counter(r["reason"] for r in rejects) == {"bad_metadata": 3}, rejects
    assert {r["detail"].split(" ")[0] for r in rejects} == {"task", "tile_stem", "analysis_profile"}
    assert json.loads((out / "mix_report.json").read_text())["rows"]["total"] == report["rows"]["total"] - 3
    assert run_cli("validate", str(out)).returncode == 0
