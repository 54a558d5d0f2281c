"""Output formats (FORMATS.md 2.1 and 5): one encoder per format from a shard's rows to the file's bytes.

Every encoder is a pure function of rows already sorted by sample_id, so a shard's bytes depend only on
which rows it holds. Parquet has one explicit Arrow schema (two with embedded images), never an inferred one:
a shard with no boxes, no system prompt or no rows at all still has the same columns and types.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from transforms import fileio
from transforms.ids import jump_bucket, stable_uint64
from transforms.output.tree import JSONL_DIR, LLAVA_DIR, PARQUET_DIR, ROW_SIDECARS_DIR, SHAREGPT_DIR
from transforms.tasks import is_grounding

FORMAT_NAMES = ("jsonl", "parquet", "llava", "sharegpt")
ROW_SIDECAR_MODES = ("files", "parquet", "none")  # one JSON file per row, Parquet shards of them, or none
IMAGE_TOKEN = "<image>"
HUB_ROW_GROUP_ROWS = 1000  # --layout hub: about 66 tiles per row group
HUB_DICTIONARY_BYTES = 256 << 20  # room for every distinct image of a row group in its dictionary

_PART = pa.struct([("type", pa.string()), ("text", pa.string()), ("image", pa.string())])
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.list_(_PART))])
METADATA_FIELDS = ("sample_id", "task", "analysis_profile", "tile_stem", "split", "image_paths",
                   "analysis_image_path")
# A mix (`satsft mix`) adds where each row came from and which copy it is; a build with benchmark tasks adds
# the question id and right letter of multiple-choice rows ("" on other rows).
MIX_METADATA_FIELDS = (*METADATA_FIELDS, "source", "repeat_index")
EVAL_METADATA_FIELDS = (*METADATA_FIELDS, "question_id", "answer")
METADATA_LAYOUTS = (METADATA_FIELDS, MIX_METADATA_FIELDS, EVAL_METADATA_FIELDS)
_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_V = {"dtype": "string", "_type": "Value"}


def _metadata_type(name: str) -> tuple[pa.DataType, Any]:
    """(Arrow type, Hugging Face feature) of one metadata field."""
    if name == "image_paths":
        return pa.list_(pa.string()), [_V]
    if name == "repeat_index":
        return pa.int64(), {"dtype": "int64", "_type": "Value"}
    return pa.string(), _V


@functools.lru_cache(maxsize=16)
def parquet_schema(embed_images: bool, names: tuple[str, ...] = METADATA_FIELDS) -> pa.Schema:
    """The one Arrow schema of a build's (or a mix's) Parquet files, with the Hugging Face features stored as
    the schema's "huggingface" metadata so `datasets` decodes images to PIL."""
    metadata = pa.struct([(n, _metadata_type(n)[0]) for n in names])
    features: dict[str, Any] = {
        "messages": [{"role": _V, "content": [{"type": _V, "text": _V, "image": _V}]}],
        "metadata": {n: _metadata_type(n)[1] for n in names},
    }
    fields = [pa.field("messages", pa.list_(_MESSAGE)), pa.field("metadata", metadata)]
    if embed_images:
        fields.append(pa.field("images", pa.list_(_IMAGE)))
        features["images"] = [{"_type": "Image"}]
    return pa.schema(fields, metadata={b"huggingface": orjson.dumps({"info": {"features": features}})})


SCHEMA_PLAIN = parquet_schema(False)
SCHEMA_EMBEDDED = parquet_schema(True)
KNOWN_SCHEMAS = tuple(parquet_schema(embed, names) for names in METADATA_LAYOUTS for embed in (False, True))
# An image list per row: (path in the output tree, PNG bytes), in the order of metadata.image_paths.
Images = list[tuple[str, bytes]]


def _parquet_row(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    messages = [{"role": m["role"], "content": [{"type": p["type"], "text": p.get("text"), "image": p.get("image")}
                                               for p in m["content"]]} for m in record["messages"]]
    return {"messages": messages, "metadata": {k: record["metadata"].get(k, "") for k in fields}}


def tile_row_groups(records: Sequence[dict[str, Any]], target: int) -> list[tuple[int, int]]:
    """(start, stop) of row groups of whole tiles, about ``target`` rows each, for rows that come tile by tile
    (sorted by sample id, which starts with the tile stem)."""
    bounds, start = [], 0
    for i in range(1, len(records) + 1):
        if i == len(records) or (i - start >= target and records[i]["metadata"]["tile_stem"]
                                 != records[i - 1]["metadata"]["tile_stem"]):
            bounds.append((start, i))
            start = i
    return [b for b in bounds if b[1] > b[0]]


def use_system_memory_pool() -> None:
    """Arrow's buffers from the C library's malloc instead of its bundled mimalloc, unless the user chose a pool
    (ARROW_DEFAULT_MEMORY_POOL). The shard writers make and free tables of tens of MB over and over (an earlier
    Parquet file read, sliced, copied once, written); with mimalloc, as pyarrow bundles it, they cost more page
    faults and more CPU on this project's machine: a 20,000-tile update took 0.8-1.5 CPU s (3-5%) less with the
    system pool, and about 70 MB less peak memory (runs side by side on this project's 2-core virtual
    machine). The pool is the process's: a notebook that runs a build keeps it afterwards."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())


def parquet_bytes(records: Sequence[dict[str, Any]], images: Sequence[Images] | None = None,
                  fields: tuple[str, ...] = METADATA_FIELDS, tile_groups: int = 0, jsonl: bytes | None = None,
                  table: pa.Table | None = None) -> bytes:
    """A zstd Parquet file; row groups are smaller when images are embedded, so readers can stream them.

    With ``tile_groups`` (--layout hub), each row group holds whole tiles, about that many rows: Parquet's
    dictionary encoding then stores a chip once per row group however many of its rows show it, so embedding
    costs about what the image files would. ``jsonl``: the rows' JSONL bytes, when the caller has them (then a
    row may be None: its line is all there is of it). ``table``: the rows' table, made already
    (table_with_taken_rows)."""
    if table is None:
        table = parquet_table(records, images, fields, jsonl)
    sink = io.BytesIO()
    if not tile_groups:
        pq.write_table(table, sink, compression="zstd", row_group_size=100 if images is not None else 2000,
                       write_statistics=False)
        return sink.getvalue()
    with pq.ParquetWriter(sink, table.schema, compression="zstd", write_statistics=False,
                          dictionary_pagesize_limit=HUB_DICTIONARY_BYTES) as writer:
        for start, stop in tile_row_groups(records, tile_groups) or [(0, 0)]:
            writer.write_table(table.slice(start, stop - start), row_group_size=max(1, stop - start))
    return sink.getvalue()


def parquet_table(records: Sequence[dict[str, Any]], images: Sequence[Images] | None = None,
                  fields: tuple[str, ...] = METADATA_FIELDS, jsonl: bytes | None = None) -> pa.Table:
    """The rows' table in the one schema: from their JSONL bytes by Arrow's reader where it says the same thing,
    else from the rows themselves."""
    schema = parquet_schema(images is not None, fields)
    table = _table_from_jsonl(jsonl or jsonl_bytes(records), schema, len(records)) if images is None else None
    if table is None:
        if jsonl is not None and any(r is None for r in records):  # rows known only by their lines
            records = [orjson.loads(line) for line in jsonl.split(b"\n")[:-1]]
        rows = [_parquet_row(r, fields) for r in records]
        if images is not None:
            for row, imgs in zip(rows, images, strict=True):
                row["images"] = [{"bytes": data, "path": path} for path, data in imgs]
        table = pa.Table.from_pylist(rows, schema=schema)
    return table


# Where a taken row lies in the earlier build: (its JSONL split file, line number, lines in that file).
TakenSource = tuple[str, int, int]


def table_with_taken_rows(lines: Sequence[bytes], records: Sequence[dict[str, Any] | None],
                          sample_ids: Sequence[str], sources: Sequence[TakenSource | tuple[()]],
                          fields: tuple[str, ...], read_table: Callable[[str], pa.Table | None]) -> pa.Table | None:
    """A shard's table when some of its rows were taken from the earlier build (``sources``; () for a row made
    now): those rows come from the same rows of that build's Parquet file beside their JSONL file (read by
    ``read_table``; None if it is not there), the others from their lines. Reading a Parquet file costs about
    a fifth of parsing the same rows' JSON, and the table is the same, so the file's bytes are too. None (the
    caller then parses every line) when an earlier file is missing, has another schema or row count than its
    JSONL file, or does not hold the expected sample id at a taken row."""
    schema = parquet_schema(False, fields)
    made = [i for i, src in enumerate(sources) if not src]
    made_table = (parquet_table([records[i] for i in made], None, fields, b"".join(lines[i] for i in made))
                  if made else None)
    earlier: dict[str, pa.Table] = {}
    pieces: list[pa.Table] = []
    i, n, made_at = 0, len(sources), 0
    while i < n:  # runs of rows made now, and of rows on consecutive lines of one earlier file: a slice each
        src, j = sources[i], i + 1
        if not src:
            while j < n and not sources[j]:
                j += 1
            pieces.append(made_table.slice(made_at, j - i))
            made_at += j - i
        else:
            file, first = src[0], src[1]
            while j < n and sources[j] and sources[j][0] == file and sources[j][1] == first + j - i:
                j += 1
            table = earlier.get(file)
            if table is None:
                table = read_table(file)
                if table is None or table.num_rows != src[2]:
                    return None
                try:
                    table = earlier[file] = pa.Table.from_arrays(table.columns, schema=schema)
                except (pa.ArrowException, ValueError, TypeError):  # another schema (a cast Arrow lacks included)
                    return None
            if first + j - i > table.num_rows:
                return None
            pieces.append(table.slice(first, j - i))
        i = j
    if not pieces:
        return None
    # One copy of the slices, in one chunk per column as a table made from lines has (the file's bytes follow
    # the chunks); every row must hold the sample id its place says, or the caller parses every line.
    table = pa.concat_tables(pieces).combine_chunks()
    if table.column("metadata").chunk(0).field("sample_id").to_pylist() != list(sample_ids):
        return None
    return table


def row_shard(group: str, n: int) -> int:
    """The shard among n of a row whose group is ``group``: its sample id (--layout hub: its tile)."""
    return jump_bucket(stable_uint64("shard", group), n)


def stays_in_its_shard(sample_ids: Sequence[str], shard: int, n: int) -> bool:
    """Whether rows read from shard ``shard`` of ``n`` belong there: true of every earlier file this build's
    placing wrote, checked on every 50th row so a file placed some other way (a build of before 2026-12-03,
    from the same version) is found and its rows are placed one by one."""
    return all(row_shard(sid, n) == shard for sid in sample_ids[::50])


def split_file_parts(jsonl_path: str) -> tuple[str, int, int, str]:
    """(split, shard, shards in the split, sub-folder) of a JSONL split file (relative path):
    data/[sub/]<split>[-i-of-N].jsonl, the inverse of Format.path."""
    folder, name = jsonl_path.rsplit("/", 1)
    sub = folder[len(JSONL_DIR) + 1:] if folder.startswith(JSONL_DIR + "/") else ""
    stem = name[:-len(".jsonl")]
    split, _, rest = stem.partition("-")
    if rest:
        shard, _, n = rest.partition("-of-")
        return split, int(shard), int(n), sub
    return split, 0, 1, sub


def parquet_beside(jsonl_path: str) -> str:
    """The Parquet split file of a build that holds the same rows, in the same order, as its JSONL split file
    (relative paths): data/[sub/]<split>[-i-of-N].jsonl -> parquet/[sub/]<split>-i-of-N.parquet."""
    return FORMATS["parquet"].path(*split_file_parts(jsonl_path))


def read_parquet_table(path: str) -> pa.Table | None:
    """One earlier Parquet split file, read in this thread (Arrow's thread pool would cost several times the
    CPU), or None when it cannot be read."""
    try:
        return pq.read_table(pa.BufferReader(fileio.read_bytes(path)), use_threads=False)
    except (OSError, pa.ArrowInvalid):
        return None


def _table_from_jsonl(jsonl: bytes, schema: pa.Schema, n_rows: int) -> pa.Table | None:
    """The Parquet table of rows parsed by Arrow's JSON reader in C++ from their JSONL bytes: about 10 us a row
    against 60 for building it from Python dicts, and the same table, so the same file bytes. None when the
    reader cannot say the same thing: a metadata field it reads as null (the dict path gives a missing field
    "" and keeps a null one), or rows it cannot parse to the schema; the dict path then decides."""
    if not n_rows:
        return None
    plain = pa.schema([schema.field("messages"), schema.field("metadata")])
    try:
        table = pj.read_json(io.BytesIO(jsonl), read_options=pj.ReadOptions(use_threads=False,
                                                                            block_size=max(len(jsonl), 1 << 20)),
                             parse_options=pj.ParseOptions(explicit_schema=plain, unexpected_field_behavior="ignore"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != n_rows:
        return None
    messages, metadata = table.column("messages").combine_chunks(), table.column("metadata").combine_chunks()
    if messages.null_count or metadata.null_count or any(
            metadata.field(i).null_count for i in range(metadata.type.num_fields)):
        return None  # the dict path refuses a row without messages and gives missing metadata fields ""
    return pa.Table.from_arrays([messages, metadata], schema=schema)


def jsonl_bytes(records: Sequence[dict[str, Any]], images: Sequence[Images] | None = None) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def _texts(message: dict[str, Any]) -> str:
    return "\n".join(p["text"] for p in message["content"] if p["type"] == "text")


def _images(message: dict[str, Any]) -> list[str]:
    return [p["image"] for p in message["content"] if p["type"] == "image"]


def llava_boxes(answer: str) -> str:
    """Grounding answers re-expressed for LLaVA: boxes on the image padded to a square (chips are square, so
    only the precision changes), 3 decimals, clipped to 0-1."""
    items = orjson.loads(answer)
    return orjson.dumps([{**item, "bbox": [min(1.0, max(0.0, round(v, 3))) for v in item["bbox"]]}
                         for item in items]).decode()


def _answer(record: dict[str, Any]) -> str:
    text = _texts(record["messages"][-1])
    return llava_boxes(text) if is_grounding(record["metadata"]["task"]) else text


def _prompt(record: dict[str, Any]) -> tuple[str, list[str]]:
    """(prompt text with the system text in front, images) for formats without a system role or parts."""
    user = next(m for m in record["messages"] if m["role"] == "user")
    system = [_texts(m) for m in record["messages"] if m["role"] == "system"]
    return "\n\n".join([*system, _texts(user)]), _images(user)


def llava_record(record: dict[str, Any]) -> dict[str, Any]:
    prompt, images = _prompt(record)
    out: dict[str, Any] = {"id": record["metadata"]["sample_id"]}
    if len(images) == 1:
        out["image"] = images[0]
    else:
        out["images"] = images
    out["conversations"] = [{"from": "human", "value": "".join(f"{IMAGE_TOKEN}\n" for _ in images) + prompt},
                            {"from": "gpt", "value": _answer(record)}]
    return out


def sharegpt_record(record: dict[str, Any]) -> dict[str, Any]:
    messages = []
    for m in record["messages"]:
        if m["role"] == "user":
            content = IMAGE_TOKEN * len(_images(m)) + _texts(m)
        else:
            content = _texts(m)
        messages.append({"role": m["role"], "content": content})
    return {"messages": messages, "images": _images(next(m for m in record["messages"] if m["role"] == "user"))}


def llava_bytes(records: Sequence[dict[str, Any]], images: Sequence[Images] | None = None) -> bytes:
    """One JSON array per shard: LLaVA's trainer json.load()s its data_path."""
    return orjson.dumps([llava_record(r) for r in records])


def sharegpt_bytes(records: Sequence[dict[str, Any]], images: Sequence[Images] | None = None) -> bytes:
    return b"".join(orjson.dumps(sharegpt_record(r)) + b"\n" for r in records)


@dataclass(frozen=True)
class Format:
    """Where one format's shards go and how their bytes are made."""

    name: str
    folder: str
    suffix: str
    encode: Callable[[Sequence[dict[str, Any]], Sequence[Images] | None], bytes]
    always_sharded: bool = False  # parquet names always carry -of-N; the others only when N > 1

    def path(self, split: str, shard: int, n_shards: int, sub: str = "") -> str:
        folder = f"{self.folder}/{sub}" if sub else self.folder
        if n_shards == 1 and not self.always_sharded:
            return f"{folder}/{split}{self.suffix}"
        return f"{folder}/{split}-{shard:05d}-of-{n_shards:05d}{self.suffix}"


FORMATS: dict[str, Format] = {
    "jsonl": Format("jsonl", JSONL_DIR, ".jsonl", jsonl_bytes),
    "parquet": Format("parquet", PARQUET_DIR, ".parquet", parquet_bytes, always_sharded=True),
    "llava": Format("llava", LLAVA_DIR, ".json", llava_bytes),
    "sharegpt": Format("sharegpt", SHAREGPT_DIR, ".jsonl", sharegpt_bytes),
}


# Row sidecars as Parquet shards (`--row-sidecars parquet`): one per split file shard, beside where the JSON files
# would go; the sidecar itself is kept whole as JSON text, since its fields differ by task.
SIDECAR_SCHEMA = pa.schema([("sample_id", pa.string()), ("task", pa.string()), ("tile_stem", pa.string()),
                            ("split", pa.string()), ("sidecar", pa.string())])


def sidecar_parquet_bytes(entries: Sequence[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> bytes:
    """(sample id, row metadata, sidecar) of one shard's rows, in sample id order -> a zstd Parquet file."""
    rows = [{"sample_id": sid, "task": md["task"], "tile_stem": md["tile_stem"], "split": md["split"],
             "sidecar": orjson.dumps(sidecar, option=orjson.OPT_SORT_KEYS).decode()} for sid, md, sidecar in entries]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=SIDECAR_SCHEMA), sink, compression="zstd",
                   row_group_size=2000, write_statistics=False)
    return sink.getvalue()


def sidecar_shard_path(split: str, shard: int, n_shards: int, sub: str = "") -> str:
    folder = f"{ROW_SIDECARS_DIR}/{sub}" if sub else ROW_SIDECARS_DIR
    return f"{folder}/{split}-{shard:05d}-of-{n_shards:05d}.parquet"
