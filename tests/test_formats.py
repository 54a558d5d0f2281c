"""Output formats: pure encoders, the sharded split writer over every format, card and validate helpers."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import apache_beam as beam
import orjson
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.publish.card import card_configs, render_card, size_category
from transforms.analysis.overlay import draw_regions
from transforms.output.formats import (
    FORMAT_NAMES,
    FORMATS,
    SCHEMA_EMBEDDED,
    SCHEMA_PLAIN,
    llava_boxes,
    llava_record,
    parquet_bytes,
    sharegpt_record,
)
from transforms.output.split_files import WriteSplitFiles, shard_count


def _rows(prepared, n_tiles: int = 3):
    from transforms.tasks import caption, cross_view, grounding_all, production_analysis

    rows = []
    for i in range(n_tiles):
        pt = prepared(i, tile_stem=f"poi_00000{i}_g001_t0000")
        for task in (caption, grounding_all, cross_view, production_analysis):
            rows += task.rows(pt)
    return [replace(r, image_sources=((r.record["metadata"]["image_paths"][0], "/unused"),)) for r in rows]


def _decode(name: str, data: bytes) -> list[str]:
    """Sample ids in a file of any format, in file order."""
    if name == "parquet":
        return [m["sample_id"] for m in pq.read_table(io.BytesIO(data)).column("metadata").to_pylist()]
    if name == "llava":
        return [item["id"] for item in orjson.loads(data)]
    return [orjson.loads(line)["metadata"]["sample_id"] for line in data.splitlines()]


def test_llava_record_has_one_image_token_per_image(prepared):
    from transforms.tasks import cross_view, grounding_all, production_analysis

    pt = prepared()
    pa_row = production_analysis.rows(pt)[0].record
    item = llava_record(pa_row)
    assert item["id"] == pa_row["metadata"]["sample_id"]
    assert item["images"] == pa_row["metadata"]["image_paths"] and "image" not in item
    human, gpt = item["conversations"]
    assert (human["from"], gpt["from"]) == ("human", "gpt")
    assert human["value"].count("<image>") == 3 and human["value"].startswith("<image>\n<image>\n<image>\n")
    system = pa_row["messages"][0]["content"][0]["text"]
    assert system in human["value"]  # LLaVA has no system turn: its text leads the first human turn
    single = llava_record(cross_view.rows(pt)[0].record)
    assert isinstance(single["images"], list) and len(single["images"]) == 2
    ground = llava_record(grounding_all.rows(pt)[0].record)
    assert ground["image"].startswith("images/") and ground["conversations"][0]["value"].count("<image>") == 1
    boxes = json.loads(ground["conversations"][1]["value"])
    assert all(len(str(v).split(".")[-1]) <= 3 for b in boxes for v in b["bbox"])


def test_llava_boxes_round_to_three_decimals_and_clip():
    assert json.loads(llava_boxes('[{"label":"water","bbox":[0.0446,0.1,0.99996,0.5]}]')) == [
        {"label": "water", "bbox": [0.045, 0.1, 1.0, 0.5]}]


def test_sharegpt_record_keeps_roles_and_tokens(prepared):
    from transforms.tasks import production_analysis

    record = production_analysis.rows(prepared())[0].record
    item = sharegpt_record(record)
    assert [m["role"] for m in item["messages"]] == ["system", "user", "assistant"]
    assert item["messages"][1]["content"].count("<image>") == len(item["images"]) == 3
    assert item["images"] == record["metadata"]["image_paths"]


def test_parquet_schema_is_fixed_even_without_rows():
    assert pq.read_schema(io.BytesIO(parquet_bytes([]))).equals(SCHEMA_PLAIN)
    assert pq.read_schema(io.BytesIO(parquet_bytes([], []))).equals(SCHEMA_EMBEDDED)
    assert b"huggingface" in SCHEMA_EMBEDDED.metadata


def _dict_path_parquet(records, fields):
    """Parquet as Arrow builds it from Python dicts: what the JSONL reader path must equal byte for byte."""
    import pyarrow as pa

    from transforms.output.formats import _parquet_row, parquet_schema

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([_parquet_row(r, fields) for r in records],
                                        schema=parquet_schema(False, fields)),
                   sink, compression="zstd", row_group_size=2000, write_statistics=False)
    return sink.getvalue()


@pytest.mark.parametrize("change", ["none", "field_missing", "field_null", "extra_fields", "not_a_string",
                                    "no_messages"])
def test_parquet_from_jsonl_equals_parquet_from_dicts(prepared, change):
    from transforms.output.formats import EVAL_METADATA_FIELDS, METADATA_FIELDS

    records = [json.loads(json.dumps(r.record)) for r in _rows(prepared)]
    fields = METADATA_FIELDS
    if change == "field_missing":  # eval fields on a row without them: "" by the dict path
        fields = EVAL_METADATA_FIELDS
        records[0]["metadata"].update(question_id="q1", answer="B")
    elif change == "field_null":
        records[1]["metadata"]["analysis_profile"] = None
    elif change == "extra_fields":
        records[0]["metadata"]["unlisted"] = {"nested": [1, 2]}
        records[0]["messages"][0]["name"] = "extra"
    elif change == "not_a_string":
        records[2]["metadata"]["task"] = 7
    elif change == "no_messages":
        del records[1]["messages"]
    if change in ("not_a_string", "no_messages"):  # neither path writes it: both refuse
        with pytest.raises(Exception):  # noqa: B017
            _dict_path_parquet(records, fields)
        with pytest.raises(Exception):  # noqa: B017
            parquet_bytes(records, fields=fields)
        return
    assert parquet_bytes(records, fields=fields) == _dict_path_parquet(records, fields)
    assert pq.read_table(io.BytesIO(parquet_bytes(records, fields=fields))).num_rows == len(records)


def test_shard_names_and_counts():
    assert [shard_count(n, 10) for n in (0, 1, 10, 11, 95)] == [1, 1, 1, 2, 10]
    assert FORMATS["jsonl"].path("train", 0, 1) == "data/train.jsonl"
    assert FORMATS["jsonl"].path("train", 1, 3) == "data/train-00001-of-00003.jsonl"
    assert FORMATS["parquet"].path("test", 0, 1) == "parquet/test-00000-of-00001.parquet"


@pytest.mark.parametrize("name", FORMAT_NAMES)
@pytest.mark.parametrize("rows_per_shard", [100, 4])
def test_write_split_files_every_format(name, rows_per_shard, prepared, tmp_path):
    rows = _rows(prepared)
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        with TestPipeline() as p:
            events = (p | beam.Create(rows) | WriteSplitFiles(str(out), (name,), rows_per_shard))["events"]
            n = shard_count(len(rows), rows_per_shard)
            paths = [FORMATS[name].path("train", i, n) for i in range(n)]
            assert_that(events | beam.Map(lambda e: next(iter(e))), equal_to([f"files|{name}|{p}" for p in paths]))
        outs.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert outs[0] == outs[1], "same rows, same bytes"
    train = [data for path, data in sorted(outs[0].items()) if path.name.startswith("train")]
    if name == "sharegpt":
        assert sum(len(d.splitlines()) for d in train) == len(rows)
        return
    ids = [_decode(name, d) for d in train]
    assert sorted(i for part in ids for i in part) == sorted(r.sample_id for r in rows)
    assert all(part == sorted(part) for part in ids), "each shard is sorted by sample id"
    if rows_per_shard == 4:
        assert len(train) == shard_count(len(rows), 4) and all(len(part) <= 8 for part in ids)


def test_pointer_batches_do_not_change_the_files(prepared, tmp_path, monkeypatch):
    """Pointers cross the shuffle in tuples, sent when full and when the bundle ends; with tuples of 3 (many
    of both kinds) every shard file has the same bytes as with one tuple for all."""
    from transforms.output import split_files

    rows = _rows(prepared)
    outs = []
    for run, batch in (("whole", 10_000), ("threes", 3)):
        monkeypatch.setattr(split_files, "POINTERS_PER_BATCH", batch)
        out = tmp_path / run
        with TestPipeline() as p:
            _ = p | beam.Create(rows) | WriteSplitFiles(str(out), ("jsonl", "parquet"), 4)
        outs.append({f.relative_to(out): f.read_bytes() for f in out.rglob("*") if f.is_file()})
    assert len(rows) > 3 * 2 and outs[0] == outs[1] and len(outs[0]) == 2 * shard_count(len(rows), 4)


def test_split_files_move_into_shard_folders_past_the_folder_limit(prepared, tmp_path):
    """More shard files than --max-files-per-dir: they go into shard folders, so no folder is over the limit."""
    rows = _rows(prepared)
    n = shard_count(len(rows), 2)
    assert n > 3
    with TestPipeline() as p:
        events = (p | beam.Create(rows) | WriteSplitFiles(str(tmp_path), ("parquet",), 2, max_files_per_dir=3))
        assert_that(events["events"] | beam.Map(lambda e: next(iter(e)).split("|")[2].count("/")),
                    equal_to([3] * n), label="two levels: 12 files, 4 folders of 3")
    for folder in [tmp_path, *(d for d in tmp_path.rglob("*") if d.is_dir())]:
        assert len(list(folder.iterdir())) <= 3, folder
    assert len(list(tmp_path.rglob("*.parquet"))) == n


def test_embedded_parquet_holds_every_image(prepared, tmp_path):
    chip = tmp_path / "chip.png"
    from PIL import Image

    Image.new("RGB", (224, 224), (10, 20, 30)).save(chip)
    rows = [replace(r, image_sources=tuple((p, str(chip)) for p in r.record["metadata"]["image_paths"]
                                           if not p.startswith("analysis_images/")))
            for r in _rows(prepared, 1)]
    out = tmp_path / "out"
    with TestPipeline() as p:
        _ = p | beam.Create(rows) | WriteSplitFiles(str(out), ("parquet",), 500, embed_images=True)
    table = pq.read_table(out / "parquet/train-00000-of-00001.parquet")
    assert table.schema.equals(SCHEMA_EMBEDDED)
    for row in table.to_pylist():
        assert [i["path"] for i in row["images"]] == row["metadata"]["image_paths"]
        for img in row["images"]:
            with Image.open(io.BytesIO(img["bytes"])) as im:
                assert im.size == (224, 224)


def test_overlay_draws_boxes_in_palette_colours(tmp_path):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (224, 224), (0, 0, 0)).save(buf, format="PNG")
    png = draw_regions(buf.getvalue(), 224, [("built", 6, (100, 100, 150, 150))])
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (224, 224)
        assert im.getpixel((150, 130)) == (0xC4, 0x28, 0x1B)  # right edge of the box, built red
        assert im.getpixel((5, 5)) == (0, 0, 0)


def test_card_configs_and_header(prepared):
    files = {"parquet": {"parquet/train-00000-of-00002.parquet": 5, "parquet/train-00001-of-00002.parquet": 4,
                         "parquet/test-00000-of-00001.parquet": 1},
             "jsonl": {"data/train.jsonl": 9, "data/test.jsonl": 1}, "llava": {"llava/train.json": 9}}
    configs = card_configs(files)
    assert configs[0] == {"config_name": "default", "data_files": [
        {"split": "train", "path": ["parquet/train-00000-of-00002.parquet", "parquet/train-00001-of-00002.parquet"]},
        {"split": "test", "path": ["parquet/test-00000-of-00001.parquet"]}]}
    assert configs[1]["config_name"] == "jsonl" and len(configs) == 2
    assert size_category(999) == "n<1K" and size_category(12_000) == "10K<n<100K"
    report = {"satsft_version": "0.1.0", "config": {"input": "/in", "output": "/out", "tasks": ["caption"],
                                                    "leakage": "reassign"},
              "rows": {"total": 10, "by_task_split": {"caption": {"train": 9, "test": 1}}},
              "tiles": {"in": 11, "with_rows": 10, "rejected": 1, "by_split": {"train": 9, "test": 1}},
              "rejects_by_reason": {"chip_missing": 1}, "files": files, "classes": {}, "boxes_per_row": {}}
    card = render_card(report)
    import yaml

    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"] == configs and header["size_categories"] == ["n<1K"]
    assert "| caption | 9 | 0 | 1 | 10 |" in card and "| `chip_missing` | 1 |" in card


def test_taken_parquet_rows_equal_rows_made_from_their_lines(prepared):
    """A rebuild's shard whose rows are partly taken from the earlier build's Parquet file writes the same bytes
    as one made from every line; a mismatched earlier file gives None (the caller parses every line)."""
    import pyarrow as pa

    from transforms.output.formats import METADATA_FIELDS, parquet_table, table_with_taken_rows

    records = sorted((json.loads(json.dumps(r.record)) for r in _rows(prepared)),
                     key=lambda r: r["metadata"]["sample_id"])
    lines = [orjson.dumps(r) + b"\n" for r in records]
    ids = [r["metadata"]["sample_id"] for r in records]
    earlier_rows = records[1::2][::-1]  # the earlier file holds every other row, in another order
    earlier = parquet_table(earlier_rows)
    at = {r["metadata"]["sample_id"]: i for i, r in enumerate(earlier_rows)}
    sources = [("data/train.jsonl", at[s], len(earlier_rows)) if s in at else () for s in ids]
    table = table_with_taken_rows(lines, [None if s in at else r for s, r in zip(ids, records, strict=True)], ids,
                                  sources, METADATA_FIELDS, lambda f: earlier if f == "data/train.jsonl" else None)
    assert table is not None
    assert parquet_bytes(records, table=table) == parquet_bytes(records)
    wrong = [("data/train.jsonl", src[1], src[2] + 1) if src else () for src in sources]
    assert table_with_taken_rows(lines, records, ids, wrong, METADATA_FIELDS, lambda f: earlier) is None
    assert table_with_taken_rows(lines, records, ids, sources, METADATA_FIELDS, lambda f: None) is None
    shuffled = pa.Table.from_arrays(earlier.columns[::-1], names=earlier.column_names[::-1])
    assert table_with_taken_rows(lines, records, ids, sources, METADATA_FIELDS, lambda f: shuffled) is None


@pytest.mark.parametrize(("jsonl", "parquet"), [
    ("data/train.jsonl", "parquet/train-00000-of-00001.parquet"),  # Parquet names always carry -of-N
    ("data/validation-00001-of-00003.jsonl", "parquet/validation-00001-of-00003.parquet"),
    ("data/s00002/test-00004-of-00020.jsonl", "parquet/s00002/test-00004-of-00020.parquet"),
])
def test_parquet_beside_names_the_file_of_the_same_rows(jsonl, parquet):
    from transforms.output.formats import parquet_beside

    assert parquet_beside(jsonl) == parquet
