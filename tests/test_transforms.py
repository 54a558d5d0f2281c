"""Each PTransform on TestPipeline with beam.Create and assert_that."""

from __future__ import annotations

import gc
import json
import os
from dataclasses import replace

import apache_beam as beam
import orjson
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import transforms.output.files as files_module
from pipeline.sample.tree import chip_png, label_map
from tests.conftest import make_sidecar
from transforms.analysis.render import class_shares, tile_map
from transforms.generate import GenerateRows
from transforms.input.images import ImageFile
from transforms.input.join import IndexStills, JoinOnTileStem
from transforms.input.read import ExtractImageRefs, ListImages, ReadSidecars
from transforms.input.refs import ImageRef
from transforms.input.sidecars import parse_sidecar
from transforms.output.counts import CountOutcomes
from transforms.output.files import (
    CopySourceImages,
    RenderAnalysisImages,
    TakeReusedFiles,
    WriteRejects,
    WriteRowSidecars,
)
from transforms.output.split_files import WriteSplitFiles
from transforms.rebuild.place import PlaceTiles
from transforms.splits.assign import AssignSplits


def _tile(stem, **kw):
    return parse_sidecar(orjson.dumps(make_sidecar(tile_stem=stem, **kw)), f"metadata/{stem}.json").tile


def _write(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def test_read_sidecars(tmp_path):
    _write(str(tmp_path / "metadata/s00000/a_t0000.json"), orjson.dumps(make_sidecar(tile_stem="a_t0000")))
    _write(str(tmp_path / "metadata/deep/er/b.json"), b"{broken")
    _write(str(tmp_path / "metadata/c.json"), orjson.dumps(make_sidecar(
        tile_stem="c", regions=[{"bbox": [1, 1, 2, 2], "label": "water", "class_id": 3}])))
    _write(str(tmp_path / "metadata/D.JSON"), orjson.dumps(make_sidecar(tile_stem="D")))  # renamed on Windows
    _write(str(tmp_path / "metadata/notes.txt"), b"not a sidecar")
    with TestPipeline() as p:
        out = p | ReadSidecars(str(tmp_path))
        assert_that(out["tiles"] | beam.Map(lambda kv: (kv[0], kv[1].source)),
                    equal_to([("a_t0000", "metadata/s00000/a_t0000.json"), ("c", "metadata/c.json"),
                              ("D", "metadata/D.JSON")]), label="tiles")
        assert_that(out["rejects"] | beam.Map(lambda r: (r["source"], r["stage"], r["reason"])),
                    equal_to([("metadata/deep/er/b.json", "sidecar", "sidecar_invalid_json"),
                              ("metadata/c.json", "region", "region_label_mismatch")]), label="rejects")
        assert_that(out["tiles_in"], equal_to([4]), label="count")


def test_hidden_files_are_counted_never_read(tmp_path):
    """A tree copied from a Mac holds an AppleDouble ``._`` file beside each file, and Jupyter keeps checkpoint
    copies: each was a reject, or (a checkpoint sidecar) a second tile."""
    sidecar = orjson.dumps(make_sidecar(tile_stem="a_t0000"))
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X" + bytes(40)
    _write(str(tmp_path / "metadata/s00000/a_t0000.json"), sidecar)
    _write(str(tmp_path / "metadata/s00000/._a_t0000.json"), apple_double)
    _write(str(tmp_path / "metadata/s00000/.ipynb_checkpoints/a_t0000-checkpoint.json"), sidecar)
    _write(str(tmp_path / "data/._train.jsonl"), apple_double)
    _write(str(tmp_path / "images/s00000/a_t0000.png"), _png(16))
    _write(str(tmp_path / "images/s00000/._a_t0000.png"), apple_double)
    _write(str(tmp_path / "images/.DS_Store"), b"\x00\x00\x00\x01Bud1")
    with TestPipeline() as p:
        sidecars = p | "Sidecars" >> ReadSidecars(str(tmp_path))
        refs = p | "Refs" >> ExtractImageRefs(str(tmp_path))
        images = p | "Images" >> ListImages(str(tmp_path), "images")
        assert_that(sidecars["tiles"] | "TileStems" >> beam.Keys(), equal_to(["a_t0000"]), label="tiles")
        assert_that(sidecars["tiles_in"], equal_to([1]), label="count")
        assert_that((sidecars["rejects"], refs["rejects"]) | "Rejects" >> beam.Flatten(), equal_to([]), label="rejects")
        assert_that(images["files"] | "ImageStems" >> beam.Keys(), equal_to(["a_t0000"]), label="images")
        assert_that((sidecars["events"], refs["events"], images["events"]) | "All" >> beam.Flatten()
                    | beam.FlatMap(lambda e: e.items()) | beam.CombinePerKey(sum),
                    equal_to([("hidden_files_skipped", 5)]), label="hidden")


def test_extract_image_refs_first_wins(tmp_path):
    def line(*paths):
        return orjson.dumps({"messages": [{"role": "user", "content": [{"type": "image", "image": p}
                                                                       for p in paths]}]})
    _write(str(tmp_path / "data/test.jsonl"), line("images/s1/a.png") + b"\n")
    _write(str(tmp_path / "data/train.jsonl"), line("images/s0/b.png") + b"\n" + line("images/s0/a.png",
                                                                                       "mapbox_stills/x.png")
           + b"\nnot json\n")
    with TestPipeline() as p:
        out = p | ExtractImageRefs(str(tmp_path))
        # A stem may come once per bundle; the least of its references is the first (the join keeps that one).
        assert_that(out["chips"] | "FirstChip" >> beam.CombinePerKey(min) | beam.MapTuple(lambda s, r: (s, r.path)),
                    equal_to([("a", "images/s0/a.png"), ("b", "images/s0/b.png")]), label="chips")
        assert_that(out["stills"] | "FirstStill" >> beam.CombinePerKey(min)
                    | "StillPaths" >> beam.MapTuple(lambda s, r: (s, r.path)),
                    equal_to([("x", "mapbox_stills/x.png")]), label="stills")
        assert_that(out["rejects"] | beam.Map(lambda r: (r["source"], r["reason"])),
                    equal_to([("data/train.jsonl:3", "invalid_jsonl_line")]), label="rejects")


def test_extract_image_refs_one_per_stem_of_a_file(tmp_path):
    """A tile named on a line per task reaches the join once per bundle, not once per line."""
    line = orjson.dumps({"messages": [{"role": "user", "content": [{"type": "image", "image": "images/s0/c.png"}]}]})
    _write(str(tmp_path / "data/train.jsonl"), b"\n".join([line] * 7) + b"\n")
    with TestPipeline() as p:
        out = p | ExtractImageRefs(str(tmp_path))
        assert_that(out["chips"] | beam.MapTuple(lambda s, r: (s, r.path, r.order)),
                    equal_to([("c", "images/s0/c.png", (0, 1, 1))]))  # train, line 1, part 1


def _png(size: int = 224) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size)).save(buf, format="PNG")
    return buf.getvalue()


def test_list_images(tmp_path):
    _write(str(tmp_path / "images/s00000/a.png"), _png(16))
    _write(str(tmp_path / "images/s00000/b.png"), _png(16)[:-20])
    with open(bytes(tmp_path / "images/s00000") + b"/c\xe9.png", "wb") as f:  # a name that is not UTF-8
        f.write(_png(16))
    with TestPipeline() as p:
        listed = p | ListImages(str(tmp_path), "images")
        assert_that(listed["files"],
                    equal_to([("a", ImageFile("images/s00000/a.png", "", "", 16, 16)),
                              ("b", ImageFile("images/s00000/b.png", "truncated", "file does not end with IEND",
                                              16, 16))]))
        assert_that(listed["rejects"] | beam.Map(lambda r: (r["source"], r["stage"], r["reason"])),
                    equal_to([("images/s00000/c\\xe9.png", "images", "path_not_utf8")]), label="rejects")
        assert_that((p | "none" >> ListImages(str(tmp_path), "mapbox_stills"))["files"], equal_to([]), label="empty")


def test_join_on_tile_stem():
    ref = ImageRef((0, 1, 1), "chip", "a", "images/a.png")
    dup = _tile("a").with_fields(source="metadata/z/a.json")
    with TestPipeline() as p:
        out = {
            "sidecars": p | "s" >> beam.Create([("a", _tile("a")), ("a", dup), ("b", _tile("b")), ("c", _tile("c"))]),
            "refs": p | "r" >> beam.Create([("a", ref), ("c", ImageRef((0, 2, 1), "chip", "c", "images/c.png")),
                                            ("d", ImageRef((0, 3, 1), "chip", "d", "images/d.png"))]),
            "files": p | "f" >> beam.Create([("a", ImageFile("images/a.png", width=224, height=224))]),
        } | JoinOnTileStem("/in", p | "stills" >> beam.Create([{}]))
        assert_that(out["tiles"] | beam.Map(lambda t: (t.tile_stem, t.chip_src)), equal_to([("a", "/in/images/a.png")]),
                    label="tiles")
        assert_that(out["rejects"] | beam.Map(lambda r: (r["tile_stem"], r["reason"])),
                    equal_to([("a", "duplicate_tile_stem"), ("b", "stem_not_in_jsonl"), ("c", "chip_missing"),
                              ("d", "sidecar_missing")]), label="rejects")


def test_join_stills_lookup_order():
    refs = [("poi_1_g001", ImageRef((0, 1, 1), "still", "poi_1_g001", "mapbox_stills/poi_1_g001.png")),
            ("poi_2", ImageRef((0, 2, 1), "still", "poi_2", "mapbox_stills/poi_2.png")),
            ("poi_3", ImageRef((0, 3, 1), "still", "poi_3", "mapbox_stills/poi_3.png"))]
    files = [("poi_1_g001", ImageFile("mapbox_stills/poi_1_g001.png")), ("poi_2", ImageFile("mapbox_stills/poi_2.png")),
             ("poi_3", ImageFile("mapbox_stills/poi_3.png", "truncated"))]
    stems = ["poi_1_g001_t0000", "poi_2_g005_t0003", "poi_4_t0000"]
    chips = {s: ImageRef((1, i, 1), "chip", s, f"images/{s}.png") for i, s in enumerate(stems)}
    with TestPipeline() as p:
        out = (p | "r" >> beam.Create(refs), p | "f" >> beam.Create(files)) | IndexStills()
        joined = {"sidecars": p | "s" >> beam.Create([(s, _tile(s)) for s in stems]),
                  "refs": p | "c" >> beam.Create(list(chips.items())),
                  "files": p | "cf" >> beam.Create([(s, ImageFile(r.path, width=224, height=224))
                                                    for s, r in chips.items()])} | JoinOnTileStem("/in", out["index"])
        assert_that(joined["tiles"] | beam.Map(lambda t: (t.tile_stem, t.still_stem, t.still_index)),
                    equal_to([("poi_1_g001_t0000", "poi_1_g001", 0), ("poi_2_g005_t0003", "poi_2", 1),
                              ("poi_4_t0000", "", -1)]), label="tiles")
        assert_that(out["rejects"] | beam.Map(lambda r: r["reason"]), equal_to(["still_truncated"]), label="rejects")


def test_assign_splits_and_index():
    tiles = [_tile("poi_5_g001_t0000", split="train"), _tile("poi_5_g002_t0000", split="test"),
             _tile("poi_6_g001_t0000", split="validation")]
    target = "train"  # declared 1/1/1; poi_5 owes train and test one tile each: a tie, settled by split order
    with TestPipeline() as p:
        out = p | beam.Create(tiles) | AssignSplits("reassign")
        assert_that(out["tiles"] | beam.Map(lambda t: (t.tile_stem, t.split)),
                    equal_to([("poi_5_g001_t0000", target), ("poi_5_g002_t0000", target),
                              ("poi_6_g001_t0000", "validation")]), label="tiles")
        assert_that(out["reassigned"], equal_to([1]), label="moved")
        assert_that(out["declared"], equal_to([{"declared|train": 1, "declared|test": 1},
                                               {"declared|validation": 1}]), label="declared")
        placed = out["tiles"] | PlaceTiles()
        assert_that(placed | beam.Map(lambda t: (t.tile_stem, t.slot)),
                    equal_to([("poi_5_g001_t0000", 0), ("poi_5_g002_t0000", 1), ("poi_6_g001_t0000", 2)]),
                    label="first build: slots in stem order")
    with TestPipeline() as p:
        out = p | beam.Create(tiles) | AssignSplits("drop")
        assert_that(out["rejects"] | beam.Map(lambda r: (r["tile_stem"], r["reason"])),
                    equal_to([("poi_5_g001_t0000", "split_leakage"), ("poi_5_g002_t0000", "split_leakage")]))


def test_generate_rows_gates_and_rejects(ctx, tmp_path):
    chip = tmp_path / "poi_1_t0000.png"
    chip.write_bytes(b"chip bytes: read for the fingerprint, never decoded by these tasks")
    good = _tile("poi_1_t0000").with_fields(split="train", chip_src=str(chip), slot=0)
    empty = _tile("poi_2_t0000", caption="", class_fractions={}, regions=[]).with_fields(split="test",
                                                                                        chip_src=str(chip), slot=1)
    thresholds = gc.get_threshold()
    with TestPipeline() as p:
        out = p | beam.Create([good, empty]) | GenerateRows(ctx, ("caption", "grounding_all"), 16000)
        assert_that(out["rows"] | beam.Map(lambda r: (r.sample_id, r.sidecar_path)),
                    equal_to([("poi_1_t0000__caption", "metadata/sft_metadata_rows/s00000/poi_1_t0000__caption.json"),
                              ("poi_1_t0000__ground_all",
                               "metadata/sft_metadata_rows/s00000/poi_1_t0000__ground_all.json")]), label="rows")
        assert_that(out["rejects"] | beam.Map(lambda r: (r["tile_stem"], r["stage"], r["reason"])),
                    equal_to([("poi_2_t0000", "rows", "no_rows")]), label="rejects")
        assert_that(out["copies"], equal_to([("images/s00000/poi_1_t0000.png", str(chip))]), label="copies")
        assert_that(out["manifest"] | beam.Map(lambda r: (r["stem"], r["slot"], r["files"])),
                    equal_to([("poi_1_t0000", 0, ["images/s00000/poi_1_t0000.png",
                                                  "metadata/sft_metadata_rows/s00000/poi_1_t0000__caption.json",
                                                  "metadata/sft_metadata_rows/s00000/poi_1_t0000__ground_all.json"])]),
                    label="manifest")
        assert_that(out["tiles_done"], equal_to([{"split": "train", "dominant": "crops",
                                                  "regions": {"water": 1, "crops": 1}}]), label="done")
    # The DoFn tunes the collector for its run (transforms.collector) and gives the process its settings back.
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def _chip() -> bytes:
    """A generated chip (Sentinel-2-like colours of a coherent label map)."""
    cells = label_map("poi_000001_g001_t0000", 1, "farmland")
    return chip_png(cells, "poi_000001_g001_t0000", 1)


def test_generate_rows_fits_each_chip_once_and_rejects_chips_it_cannot_use(ctx, tmp_path):
    chip = tmp_path / "good.png"
    chip.write_bytes(_chip())
    broken = tmp_path / "broken.png"  # a PNG signature, IHDR and IEND, so the listing passes it; no pixels
    broken.write_bytes(_chip()[:33] + b"\x00" * 64 + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    tiles = [_tile("poi_1_t0000").with_fields(split="train", chip_src=str(chip), slot=0),
             _tile("poi_2_t0000").with_fields(split="train", chip_src=str(broken), slot=1),
             _tile("poi_3_t0000").with_fields(split="train", chip_src=str(tmp_path / "vanished.png"), slot=2)]
    with TestPipeline() as p:
        out = p | beam.Create(tiles) | GenerateRows(ctx, ("production_analysis", "caption"), 16000)
        assert_that(out["renders"] | beam.Map(lambda e: (e[0] == chip.read_bytes(), e[1].observed.size,
                                                         sorted(path.rsplit("__", 1)[1] for path, _ in e[2]))),
                    equal_to([(True, 112 * 112, [f"analysis_{pr}.png" for pr in sorted(ctx.profiles)])]),
                    label="renders")
        assert_that(out["rows"] | beam.Map(lambda r: r.record["metadata"]["tile_stem"]) | beam.Distinct(),
                    equal_to(["poi_1_t0000"]), label="rows")
        assert_that(out["rejects"] | beam.Map(lambda r: (r["tile_stem"], r["stage"], r["reason"])),
                    equal_to([("poi_2_t0000", "rows", "chip_undecodable"),
                              ("poi_3_t0000", "rows", "source_image_unreadable")]), label="rejects")


def test_embedded_analysis_images_are_read_back_or_drawn_again(tmp_path, prepared):
    """The shard writer reads each analysis image the render step wrote; when the file is missing it draws it
    again from the spec and the chip, and a chip that changed since the spec was made costs the row."""
    from dataclasses import replace as with_chip

    from transforms.analysis.render import render_analysis_png
    from transforms.output.split_files import read_entry, shard_images, spool_bytes
    from transforms.tasks import production_analysis

    pt = with_chip(prepared(still=False), chip=_chip())
    chip_src = tmp_path / "in" / "chip.png"
    _write(str(chip_src), pt.chip)
    rows = [replace(r, image_sources=((pt.chip_path, str(chip_src)),)) for r in production_analysis.rows(pt)[:2]]
    entries = [read_entry(r.sample_id, spool_bytes(r, True, False)) for r in rows]
    written = tmp_path / "out" / rows[0].record["metadata"]["analysis_image_path"]
    _write(str(written), b"written by the render step")
    found = shard_images(entries, str(tmp_path / "out"))
    assert [path for path, _ in found[0]] == rows[0].record["metadata"]["image_paths"]
    assert found[0][-1][1] == b"written by the render step"
    assert found[1][-1][1] == render_analysis_png(rows[1].render_spec, pt.chip)
    chip_src.write_bytes(_chip()[:-12] + b"\x00" * 12)  # changed after the specs were made
    changed = shard_images(entries, str(tmp_path / "empty"))
    assert all(isinstance(f, str) and "sha256" in f for f in changed)


def test_writers(tmp_path, prepared):
    from dataclasses import replace as with_chip

    from transforms.tasks import caption, production_analysis

    pt = with_chip(prepared(), chip=_chip())
    rows = caption.rows(pt) + production_analysis.rows(pt)[:2]
    from dataclasses import replace

    rows = [replace(r, sidecar_path=f"metadata/sft_metadata_rows/s00000/{r.sample_id}.json") for r in rows]
    src = tmp_path / "in/chip.png"
    _write(str(src), b"pngbytes")
    out = str(tmp_path / "out")
    with TestPipeline() as p:
        pr = p | beam.Create(rows)
        split_files = pr | WriteSplitFiles(out, ("jsonl",), 100)
        assert_that(split_files["events"], equal_to([{"files|jsonl|data/train.jsonl": 3}]), label="split_files")
        assert_that(split_files["rejects"], equal_to([]), label="split_rejects")
        rejects = p | "rj" >> beam.Create([{"reason": "b"}, {"reason": "a"}])
        assert_that(rejects | WriteRejects(out), equal_to([{"reject_files_written": 1}]), label="rejects")
        assert_that(pr | WriteRowSidecars(out), equal_to([{"row_sidecars_written": 1}] * 3), label="sidecars")
        specs = tuple((r.record["metadata"]["analysis_image_path"], r.render_spec) for r in rows if r.render_spec)
        renders = p | "r" >> beam.Create([(pt.chip, tile_map(specs[0][1], pt.chip), specs)])
        assert_that(renders | RenderAnalysisImages(out) | beam.Map(lambda e: e["analysis_images_written"]),
                    equal_to([2]), label="render")
        # A chip's destination is its tile's own; a still's is named by every tile of its place: copied once.
        copies = p | "c" >> beam.Create([("images/s00000/x.png", str(src))] + [("mapbox_stills/s00000/p.png",
                                                                                 str(src))] * 3)
        gone = p | "g" >> beam.Create([("images/s00000/gone.png", str(tmp_path / "vanished.png"))])
        copied = (copies, gone) | "cg" >> beam.Flatten() | CopySourceImages(out)
        assert_that(copied["events"], equal_to([{"source_images_linked": 1}] * 2), label="copy")
        assert_that(copied["rejects"] | beam.Map(lambda r: (r["stage"], r["reason"])),
                    equal_to([("copy", "source_image_unreadable")]), label="copy_rejects")
    lines = (tmp_path / "out/data/train.jsonl").read_text().splitlines()
    assert [json.loads(x)["metadata"]["sample_id"] for x in lines] == sorted(r.sample_id for r in rows)
    assert (tmp_path / "out/rejects/rejects-00000-of-00001.jsonl").read_text() == '{"reason":"a"}\n{"reason":"b"}\n'
    assert not (tmp_path / "out/data/test.jsonl").exists(), "a split without rows gets no file"
    for r in rows:
        assert json.loads((tmp_path / "out" / r.sidecar_path).read_text()) == r.sidecar
    png = (tmp_path / "out" / rows[1].record["metadata"]["analysis_image_path"]).read_bytes()
    assert set(class_shares(png)) <= {0, 1, 4, 6, 7}
    assert os.path.samefile(tmp_path / "out/images/s00000/x.png", src)
    assert os.path.samefile(tmp_path / "out/mapbox_stills/s00000/p.png", src)


def test_count_outcomes(prepared):
    from transforms.tasks import caption

    row = caption.rows(prepared())[0]
    with TestPipeline() as p:
        counts = {
            "rows": p | "r" >> beam.Create([row]),
            "rejects": p | "j" >> beam.Create([{"stage": "join", "reason": "chip_missing"}]),
            "tiles_done": p | "t" >> beam.Create([{"split": "train", "dominant": "water", "regions": {"water": 2}}]),
            "reassigned": p | "m" >> beam.Create([2]),
            "events": p | "e" >> beam.Create([{"tiles_in": 2}, {"a": 1}, {"a": 1}]),
        } | CountOutcomes()
        assert_that(counts, equal_to([{"rows|caption|train": 1, "rejects|join|chip_missing": 1, "tiles|train": 1,
                                       "dominant|water": 1, "regions|water": 2, "split_reassigned": 2,
                                       "tiles_in": 2, "a": 2}]))


def test_embedded_split_files_reject_a_row_whose_image_vanished(tmp_path, prepared):
    """A source image listed as fine but gone by the time the shard is written: that row becomes a reject and
    leaves every format and its row sidecar; the shard is still written with the other rows."""
    from dataclasses import replace

    from transforms.tasks import caption

    out = tmp_path / "out"
    rows = []
    for i, stem in enumerate(("poi_000001_t0000", "poi_000002_t0000")):
        row = caption.rows(prepared(i, still=False, tile_stem=stem))[0]
        src = tmp_path / "in" / f"{stem}.png"
        if i == 0:
            _write(str(src), b"\x89PNG chip bytes")
        sidecar = f"metadata/sft_metadata_rows/s00000/{row.sample_id}.json"
        _write(str(out / sidecar), b"{}")
        rows.append(replace(row, sidecar_path=sidecar,
                            image_sources=((row.record["metadata"]["image_paths"][0], str(src)),)))
    with TestPipeline() as p:
        written = p | beam.Create(rows) | WriteSplitFiles(str(out), ("jsonl", "parquet"), 100, embed_images=True)
        assert_that(written["events"], equal_to([
            {"rows|caption|train": -1, "row_sidecars_written": -1},
            {"files|jsonl|data/train.jsonl": 1}, {"files|parquet|parquet/train-00000-of-00001.parquet": 1}]),
            label="events")
        assert_that(written["rejects"] | beam.Map(lambda r: (r["source"], r["stage"], r["reason"])),
                    equal_to([("poi_000002_t0000__caption", "write", "source_image_unreadable")]), label="rejects")
    kept = [json.loads(x)["metadata"]["sample_id"] for x in (out / "data/train.jsonl").read_text().splitlines()]
    assert kept == ["poi_000001_t0000__caption"]
    assert (out / rows[0].sidecar_path).exists() and not (out / rows[1].sidecar_path).exists()


@pytest.mark.parametrize("open_folders", [1, 64])
def test_take_reused_files_links_each_file_once_and_rejects_what_the_earlier_build_lost(tmp_path, monkeypatch,
                                                                                        open_folders):
    """An unchanged tile's files come from the earlier build as hard links, into folders made as needed (however
    few folders a worker may hold open); a file that build lost is a reject, and the others are still taken."""
    monkeypatch.setattr(files_module, "MAX_OPEN_FOLDERS", open_folders)
    prev, out = tmp_path / "prev", tmp_path / "out"
    names = ["analysis_images/s00000/a__brief.png", "analysis_images/s00001/b__brief.png", "overlays/a.png"]
    for name in names:
        (prev / name).parent.mkdir(parents=True, exist_ok=True)
        (prev / name).write_bytes(name.encode())
    sidecars = ["row_sidecars/s00000/a__caption.json", "row_sidecars/s00000/gone.json"]
    (prev / sidecars[0]).parent.mkdir(parents=True)
    (prev / sidecars[0]).write_bytes(b"{}")
    with TestPipeline() as p:
        out_ = (p | beam.Create([(tuple(names[:2]), 0, (), 0), ((names[2],), 1, tuple(sidecars), 2)])
                | TakeReusedFiles(str(prev), str(out)))
        assert_that(out_["events"], equal_to([{"files_reused": 2}, {"files_reused": 2},
                                              {"row_sidecars_written": 3}]), label="events")
        assert_that(out_["rejects"] | beam.Map(lambda r: (r["source"], r["reason"])),
                    equal_to([(sidecars[1], "previous_file_unreadable")]), label="rejects")
    for name in [*names, sidecars[0]]:
        assert os.path.samefile(prev / name, out / name)
    assert not (out / sidecars[1]).exists()


def test_take_reused_files_never_links_through_a_folder_it_closed(tmp_path, monkeypatch):
    """With one folder held open, going back to a folder whose descriptors were closed (and their numbers given
    to another folder since) opens it again: each file comes from its own folder, never from a namesake."""
    monkeypatch.setattr(files_module, "MAX_OPEN_FOLDERS", 1)
    prev, out = tmp_path / "prev", tmp_path / "out"
    for folder in ("a", "b"):
        (prev / folder).mkdir(parents=True)
        (out / folder).mkdir(parents=True)  # there already: every link goes through the held descriptors
        for name in ("x.png", "y.png"):
            (prev / folder / name).write_bytes(f"{folder}/{name}".encode())
    with TestPipeline() as p:
        _ = p | beam.Create([(("a/x.png", "b/x.png", "a/y.png"), 0, (), 0)]) | TakeReusedFiles(str(prev), str(out))
    for name in ("a/x.png", "b/x.png", "a/y.png"):
        assert os.path.samefile(prev / name, out / name)
    assert not (out / "b/y.png").exists()
