"""`satsft eval --requests`: a split's prompts as an OpenAI Batch API input file.

A model served by the OpenAI Batch API, or by vLLM (`vllm run-batch` reads and writes the same shapes), then
answers every row, and `satsft eval --predictions` reads its output back: each request's ``custom_id`` is the
row's sample id. Images go inline as base64 data URLs, since a batch runner cannot see the dataset's folders.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from scoring.evaluate import records, split_files
from transforms import fileio
from transforms.input.images import photo_format
from transforms.output.tree import OutputTree

BATCH_URL = "/v1/chat/completions"


def image_data_url(data: bytes) -> str:
    """The image inline, with its own media type: a served model's image decoder trusts it."""
    kind = photo_format(data[:12]) or "png"
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def batch_request(record: dict[str, Any], images: Mapping[str, bytes], model: str) -> dict[str, Any]:
    """One request: the row's messages before its answer (the last assistant message), images inline, at
    temperature 0 so that a rerun scores the same."""
    messages = record["messages"]
    answer = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    prompt = []
    for message in messages[:answer]:
        parts = [{"type": "image_url", "image_url": {"url": image_data_url(images[p["image"]])}}
                 if p["type"] == "image" else {"type": "text", "text": p["text"]} for p in message["content"]]
        prompt.append({"role": message["role"], "content": parts})
    return {"custom_id": record["metadata"]["sample_id"], "method": "POST", "url": BATCH_URL,
            "body": {"model": model, "messages": prompt, "temperature": 0}}


# What the OpenAI Batch API takes in one input file (its documentation, 2025): more is refused at upload, and a
# split's requests carry their images inline (188 KB each on a 40-tile sample tree's test split), so a 2,000-tile
# build's test split (3,231 requests, some 600 MB) is three times past it.
OPENAI_BATCH_MAX_REQUESTS = 50_000
OPENAI_BATCH_MAX_BYTES = 200 * 1000 * 1000


def too_large_for_openai(n: int, size: int, out: str) -> str:
    """The note to print when ``out`` (``n`` requests, ``size`` bytes) is more than one OpenAI batch takes: how
    to cut it into parts at line ends and join their answers; "" when it fits."""
    if n <= OPENAI_BATCH_MAX_REQUESTS and size <= OPENAI_BATCH_MAX_BYTES:
        return ""
    parts = max(-(-n // OPENAI_BATCH_MAX_REQUESTS), -(-size // (OPENAI_BATCH_MAX_BYTES * 95 // 100)))
    stem = out[:-len(".jsonl")] if out.endswith(".jsonl") else out
    return (f"note: {n:,} requests, {size / 1e6:,.0f} MB: the OpenAI Batch API takes at most "
            f"{OPENAI_BATCH_MAX_REQUESTS:,} requests and {OPENAI_BATCH_MAX_BYTES // 1000000} MB in one file "
            f"(`vllm run-batch` takes any size). For OpenAI, cut it at line ends into {parts} or more parts "
            "(GNU split; on a Mac coreutils' gsplit), "
            f"`split -n l/{parts} -d --additional-suffix=.jsonl {out} {stem}-part-`, run each, and join their "
            "answers for --predictions: `cat answers-*.jsonl > answers.jsonl`")


def write_requests(dataset: str, split: str, model: str, out: str) -> tuple[int, int]:
    """Every row of ``split`` as one request line of ``out``; returns how many, and the file's bytes
    (EvalError: no such rows)."""
    tree = OutputTree(dataset)
    fmt, paths = split_files(tree, split)
    n, size, partial = 0, 0, f"{out}.partial"  # a run that fails leaves no file that looks whole
    try:
        with fileio.open_for_write(partial) as sink:
            for path in paths:
                for record in records(tree, path, fmt, images=True):
                    carried = {i["path"]: i["bytes"] for i in record.get("images") or []
                               if i.get("bytes") is not None}
                    wanted = {p["image"] for m in record["messages"] for p in m["content"] if p["type"] == "image"}
                    images = {p: carried[p] if p in carried else tree.read_within(p) for p in wanted}
                    line = orjson.dumps(batch_request(record, images, model)) + b"\n"
                    sink.write(line)
                    n, size = n + 1, size + len(line)
    except BaseException as err:  # nor any partial file: a full disk gets its space back, named
        if fileio.exists(partial):
            fileio.remove(partial)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = partial
        raise
    fileio.move(partial, out)
    return n, size
