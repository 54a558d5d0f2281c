"""The mix's pure core: repeats and shares, fractional copies, ids, the global order, media names."""

from __future__ import annotations

import base64
import json

import pytest

from transforms.mix.rows import (
    RowProblem,
    copies,
    fraction_threshold,
    matches,
    media_index,
    mix_id,
    normalise_row,
    order_key,
    plan_repeats,
    selection_hash,
    split_of_path,
    tile_key,
)


def test_shares_are_taken_of_the_rows_the_repeats_make():
    # a: 100 train rows x 2 = 200; b asks for 20% of the mix: 200 * 0.2 / 0.8 = 50 rows of its 25 -> repeat 2
    planned = plan_repeats({"a": 100, "b": 25}, {"a": 2.0, "b": None}, {"a": None, "b": 0.2})
    assert planned == {"a": 2.0, "b": pytest.approx(2.0)}
    assert plan_repeats({"a": 10}, {"a": 1.0, "b": None}, {"b": 0.5})["b"] == 0.0  # a share of no rows


def test_a_fraction_selects_exactly_its_rows_and_only_train_repeats():
    hashes = [selection_hash(7, "src", f"row{i}") for i in range(200)]
    threshold = fraction_threshold(hashes, 0.25)
    extra = sum(len(copies("train", 1.25, h, threshold)) == 2 for h in hashes)
    assert extra == 50
    assert all(len(copies("train", 1.25, h, threshold)) >= 1 for h in hashes)
    assert len(copies("validation", 8.0, 0, 1 << 64)) == 1
    assert len(copies("train", 0.0, 0, 0)) == 0
    assert fraction_threshold(hashes, 0.0) == 0 and fraction_threshold(hashes, 1.0) == 1 << 64


@pytest.mark.parametrize(("metadata", "key"), [
    ({"tile_stem": "t1", "sample_id": "t1__caption"}, "t1"),  # a build's row
    ({"tile_stem": "t1", "sample_id": mix_id("t1__caption", "a", 0), "source": "a"}, "a/t1"),
    ({"tile_stem": "t1", "sample_id": mix_id(mix_id("t1__caption", "a", 0), "m", 2), "source": "m"}, "m/a/t1"),
    ({"tile_stem": "t1", "sample_id": "t1__caption#x.r0", "source": "m"}, "m/t1"),  # an id no mix of m gave
    ({"tile_stem": "", "sample_id": "c0ffee#m.r0", "source": "m"}, ""),  # a foreign row: no tile
])
def test_a_tile_is_named_by_every_source_that_carried_it(metadata, key):
    assert tile_key(metadata) == key


def test_ids_are_unique_and_copies_spread_through_the_order():
    assert mix_id("t1__caption", "sat", 3) == "t1__caption#sat.r3"
    keys = [order_key(1, "x", k, 4) for k in range(4)]
    assert keys == sorted(keys) and all(0 <= k < 1 << 64 for k in keys)
    gaps = [b - a for a, b in zip(keys, keys[1:], strict=False)]
    assert all(abs(g - (1 << 64) // 4) <= 1 for g in gaps)
    assert order_key(1, "x") != order_key(2, "x")  # the seed moves the order


def test_foreign_rows_take_their_split_from_the_path_and_a_content_id():
    assert split_of_path("/d/other/validation-00000.parquet") == "validation"
    assert split_of_path("/d/eval/part.jsonl", "/d") == "test"
    assert split_of_path("/d/rows.jsonl") == "train"
    raw = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    a = normalise_row(raw, "chat", "files", "train", "/d")
    b = normalise_row(dict(raw), "chat", "files", "train", "/d")
    assert a.record["metadata"]["sample_id"] == b.record["metadata"]["sample_id"]
    assert a.record["metadata"]["task"] == "chat" and a.record["metadata"]["split"] == "train"
    with pytest.raises(RowProblem) as err:
        normalise_row({"messages": []}, "chat", "files", "train", "/d")
    assert err.value.reason == "no_messages"
    with pytest.raises(RowProblem) as err:
        normalise_row({**raw, "metadata": {"split": "dev", "sample_id": "x"}}, "sat", "satsft", "train", "/d")
    assert err.value.reason == "bad_metadata"
    with pytest.raises(RowProblem, match="task 5 is not a string"):
        normalise_row({**raw, "metadata": {"split": "train", "sample_id": "x", "task": 5}}, "sat", "satsft", "train",
                      "/d")
    read = normalise_row({**raw, "metadata": {"split": "train", "sample_id": "x", "task": "caption",
                                              "tile_stem": None}}, "sat", "satsft", "train", "/d")
    assert read.record["metadata"]["tile_stem"] == "" and read.record["metadata"]["analysis_profile"] == ""


def test_filters_and_media_names():
    md = {"task": "production_analysis", "analysis_profile": "wildfire", "split": "train"}
    assert matches(md, {"task": ("production_analysis",), "profile": ("wildfire", "flood_pulse")})
    assert not matches(md, {"split": ("test",)})
    index = media_index([("sat", "images/s00000/a.png"), ("sat", "images/s00001/a.png"), ("web", "x.jpg")], 16)
    assert len(set(index.values())) == 3
    assert all(path.startswith("media/") for path in index.values())
    assert index == media_index(reversed(list(index)), 16)  # the names do not depend on arrival order


def test_trl_rows_with_image_placeholders_read_like_sharegpt_rows():
    """TRL's vision rows: content part lists whose image parts name nothing, the images in the `images`
    column, in order. The same row in ShareGPT shape normalises to the same record."""
    trl = {"images": ["img/a.png", "img/b.png"], "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Same."}]}]}
    share = {"images": ["img/a.png", "img/b.png"], "messages": [
        {"role": "user", "content": "<image><image>Compare."}, {"role": "assistant", "content": "Same."}]}
    a, b = (normalise_row(r, "chat", "files", "train", "/d") for r in (trl, share))
    assert a.record == b.record and [i.key for i in a.images] == ["img/a.png", "img/b.png"]
    with pytest.raises(RowProblem) as err:
        normalise_row({**trl, "images": ["img/a.png"]}, "chat", "files", "train", "/d")
    assert err.value.reason == "image_token_mismatch"
    with pytest.raises(RowProblem) as err:
        normalise_row({**trl, "images": ["img/a.png", "img/b.png", "img/c.png"]}, "chat", "files", "train", "/d")
    assert err.value.reason == "image_token_mismatch"


def test_an_images_column_of_encoded_images_is_carried_as_structs_of_them_are():
    """A list<binary> column (the bytes alone, as WebDataset conversions write it) was a bad_image_entry per row."""
    png = b"\x89PNG\r\n\x1a\n" + b"rest"
    messages = [{"role": "user", "content": "<image>What?"}, {"role": "assistant", "content": "Water."}]
    bare, struct = (normalise_row({"images": [given], "messages": messages}, "chat", "files", "train", "/d")
                    for given in (png, {"bytes": png, "path": None}))
    assert bare.record == struct.record and [i.data for i in bare.images] == [png]
    with pytest.raises(RowProblem) as err:
        normalise_row({"images": [b""], "messages": messages}, "chat", "files", "train", "/d")
    assert err.value.reason == "bad_image_entry"


def test_llava_conversations_read_like_sharegpt_rows():
    """LLaVA / original ShareGPT rows (`conversations` of {from, value}, one `image` or an `images` list) read as
    the messages row they mean; a row with images and no token shows them before its first user text, as
    LLaVA's loader does; a text-only row has no image. Each was a no_messages reject."""
    share = {"images": ["img/a.png"], "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "<image>\nWhat is it?"},
        {"role": "assistant", "content": "A field."}]}
    llava = {"id": "0001", "image": "img/a.png", "conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "<image>\nWhat is it?"},
        {"from": "gpt", "value": "A field."}]}
    untokened = {**llava, "conversations": [{**t, "value": t["value"].replace("<image>\n", "")}
                                            for t in llava["conversations"]]}
    want = normalise_row(share, "chat", "files", "train", "/d")
    roles = {**llava, "conversations": [{"role": r, "content": c} for r, c in (
        ("system", "Be brief."), ("user", "<image>\nWhat is it?"), ("assistant", "A field."))]}
    for row in (llava, untokened, roles, {**llava, "image": None, "images": ["img/a.png"]},
                {**llava, "image": ["img/a.png"]}, {**llava, "conversations": json.dumps(llava["conversations"])}):
        got = normalise_row(row, "chat", "files", "train", "/d")
        assert got.record == want.record and got.images == want.images
    assert normalise_row(llava, "chat", "files", "train", "/d").dropped_columns == ("id",)
    png = b"\x89PNG\r\n\x1a\nfake"  # LLaVA-OneVision's Parquet: the image as a Hugging Face {bytes, path} struct
    carried = normalise_row({**llava, "image": {"bytes": png, "path": None}}, "chat", "files", "train", "/d")
    assert [i.data for i in carried.images] == [png] and carried.images[0].key.startswith("sha256-")
    text_only = normalise_row({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]},
                              "chat", "files", "train", "/d")
    assert text_only.images == () and text_only.record["messages"][0]["content"] == [{"type": "text", "text": "Hi"}]
    for bad, reason in (({"conversations": []}, "no_messages"),
                        ({"conversations": [{"from": "narrator", "value": "x"}]}, "bad_message"),
                        ({"conversations": [{"from": "human", "value": None}]}, "bad_message"),
                        ({"image": "a.png", "conversations": [{"from": "gpt", "value": "x"}]}, "image_token_mismatch"),
                        ({**llava, "image": ["img/a.png", "img/b.png"]}, "image_token_mismatch")):
        with pytest.raises(RowProblem) as err:
            normalise_row(bad, "chat", "files", "train", "/d")
        assert err.value.reason == reason, bad


def test_cauldron_texts_read_as_exchanges():
    """The Cauldron (Idefics2's and SmolVLM's mix): `texts` of {user, assistant, source} exchanges, the row's
    `images` structs shown with the first user text."""
    png = b"\x89PNG\r\n\x1a\nfake"
    row = {"images": [{"bytes": png, "path": None}], "texts": [
        {"user": "What is it?", "assistant": "A field.", "source": "geo"},
        {"user": "And the colour?", "assistant": "Green.", "source": "geo"}]}
    got = normalise_row(row, "cauldron", "files", "train", "/d")
    assert [m["role"] for m in got.record["messages"]] == ["user", "assistant", "user", "assistant"]
    assert [p["type"] for p in got.record["messages"][0]["content"]] == ["image", "text"]
    assert got.record["messages"][3]["content"] == [{"type": "text", "text": "Green."}]
    assert [i.data for i in got.images] == [png] and got.dropped_columns == ()
    for bad in ({"texts": []}, {"texts": [{"user": "x"}]}):
        with pytest.raises(RowProblem):
            normalise_row(bad, "cauldron", "files", "train", "/d")


def test_openai_rows_read_with_their_inline_images_carried():
    """OpenAI's chat rows: `image_url` parts (a path, or a base64 data: URL whose bytes the mix carries) in the
    user's part list, plain strings elsewhere. They read as the same record as the satsft shape would give."""
    png = b"\x89PNG\r\n\x1a\nfake"
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    openai = {"messages": [
        {"role": "system", "content": "You are a remote-sensing analyst."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "img/a.png"}},
                                     {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                                     {"type": "text", "text": "Compare."}]},
        {"role": "assistant", "content": "Same."}]}
    got = normalise_row(openai, "chat", "files", "train", "/d")
    a, b = got.images
    assert (a.key, a.data) == ("img/a.png", None) and b.data == png and b.key.startswith("sha256-")
    assert got.record["messages"][0]["content"] == [{"type": "text", "text": "You are a remote-sensing analyst."}]
    assert got.record["messages"][1]["content"][:2] == [{"type": "image", "image": a.key},
                                                        {"type": "image", "image": b.key}]
    assert got.record["messages"][2]["content"] == [{"type": "text", "text": "Same."}]
    for bad, reason in (("data:image/png;base64,%%%", "bad_image_entry"), ("https://x.org/a.png",
                                                                           "unsafe_image_path:url_scheme")):
        with pytest.raises(RowProblem) as err:
            normalise_row({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": bad}}]}]}, "chat", "files", "train", "/d")
        assert err.value.reason == reason
    with pytest.raises(RowProblem) as err:
        normalise_row({"images": ["img/a.png"], "messages": [{"role": "user", "content": [{"type": "image"}]},
                                                             {"role": "assistant", "content": "<image>"}]},
                      "chat", "files", "train", "/d")
    assert err.value.reason == "bad_message"


def test_a_source_file_saved_with_a_byte_order_mark_reads_every_row(tmp_path):
    from transforms.mix.stages import _BAD_LINE, _rows_of

    path = tmp_path / "train.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"messages": []}\r\n{"messages": [1]}\r\n\r\nnot json\n')
    assert list(_rows_of(str(path))) == [{"messages": []}, {"messages": [1]}, _BAD_LINE]


def test_a_source_jsonl_written_whole_reads_its_rows(tmp_path):
    """`json.dump(rows, f)` into a .jsonl, or each row pretty-printed: one bad line per line before; the rows now.
    A first row cut short keeps the file a line at a time (its other lines still count)."""
    import json

    from transforms.mix.stages import _BAD_LINE, _rows_of

    rows = [{"messages": [{"role": "user", "content": "q"}]}, {"messages": []}]
    for i, text in enumerate((json.dumps(rows), json.dumps(rows, indent=2),
                              "\ufeff" + "".join(json.dumps(r, indent=2) + "\n" for r in rows))):
        path = tmp_path / f"train{i}.jsonl"
        path.write_text(text, encoding="utf-8")
        assert list(_rows_of(str(path))) == rows, text
    path.write_text('{"messages": [\n' + json.dumps(rows[1]) + "\n")
    assert list(_rows_of(str(path))) == [_BAD_LINE, rows[1]]
    # a first line that is an array, rows after it: each element of that line, then every row (the array's end
    # hid the rest of the file)
    path.write_text('["x"]\n' + json.dumps(rows[1]) + "\n" + json.dumps(rows[0]) + "\n")
    assert list(_rows_of(str(path))) == ["x", rows[1], rows[0]]


def test_a_row_needs_a_question_and_an_answer_and_speaks_as_chat_templates_do():
    """A row with no user turn or no assistant turn teaches nothing (and validate calls a row without a user turn
    a problem): `no_exchange`. ShareGPT's role names in a messages row become user and assistant; other roles
    (tool) stay."""
    for messages in ([{"role": "system", "content": "s"}], [{"role": "user", "content": "q"}],
                     [{"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}]):
        with pytest.raises(RowProblem) as err:
            normalise_row({"messages": messages}, "chat", "files", "train", "/d")
        assert err.value.reason == "no_exchange"
    read = normalise_row({"messages": [{"role": "Human", "content": "q"}, {"role": "gpt", "content": "call"},
                                       {"role": "tool", "content": [{"type": "text", "text": "r"}]},
                                       {"role": "bot", "content": "a"}]}, "chat", "files", "train", "/d")
    assert [m["role"] for m in read.record["messages"]] == ["user", "assistant", "tool", "assistant"]
