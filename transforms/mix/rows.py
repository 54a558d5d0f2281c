"""The pure core of `satsft mix`: rows of any source normalised to the satsft row, filters, copies, ids, the
global order and where each image goes. The Beam steps around it are in transforms.mix.stages.

A row's identity is (dataset, sample id): a satsft row keeps its sample id; a foreign row gets a stable hash of
its content. Every output row has the id `<sample_id>#<source>.r<k>` (k = which copy), unique across the mix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from transforms.ids import stable_uint64
from transforms.input.images import carried_name
from transforms.input.refs import (
    DATA_URL,
    IMAGE_PART_TYPES,
    PLACEHOLDER,
    data_url_bytes,
    llava_images,
    part_image,
)
from transforms.input.sidecars import SPLIT_WORDS, VALID_SPLITS
from transforms.output.formats import IMAGE_TOKEN, METADATA_FIELDS
from transforms.output.tree import MEDIA_DIR
from transforms.paths import (
    ABSOLUTE_REASONS,
    below_image_root,
    file_stem,
    normalise_ref,
    relative_from,
    safe_name,
    shard_dir,
    unsafe_reason,
)

FILTER_KEYS = ("task", "profile", "split")
TEXT_METADATA = ("task", "analysis_profile", "tile_stem", "analysis_image_path")  # of a satsft row: strings
_TOKEN = re.compile(r"[a-z0-9]+")
IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")


def split_of_path(path: str, root: str = "") -> str:
    """A foreign file's split from its name (then its folders, nearest first), as `datasets` reads it."""
    rel = path[len(root) + 1:] if root and path.startswith(root.rstrip("/") + "/") else path.rsplit("/", 1)[-1]
    for part in reversed(rel.lower().split("/")):
        for token in _TOKEN.findall(part):
            for split, words in SPLIT_WORDS.items():
                if token in words:
                    return split
    return "train"


@dataclass(frozen=True)
class SourceImage:
    """One image of a normalised row: its key within the source (the path as the row gives it, or a digest of
    bytes that came without one), where to read it, and its bytes when the row carried them."""

    key: str
    src: str = ""
    data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Normalised:
    record: dict[str, Any]  # messages with image parts naming SourceImage keys; metadata of FORMATS.md 2.1
    images: tuple[SourceImage, ...]
    dropped_columns: tuple[str, ...] = ()


class RowProblem(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail[:300]


def content_id(messages: list[dict[str, Any]], images: Sequence[SourceImage]) -> str:
    """A foreign row's sample id: a stable hash of what it says and shows."""
    h = hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS))
    for img in images:
        h.update(b"\x1f" + (hashlib.sha256(img.data).digest() if img.data is not None else img.key.encode()))
    return "h" + h.hexdigest()[:20]


def _join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}"


def _image_column(raw: dict[str, Any]) -> list[tuple[str, bytes | None]]:
    """The `images` column as (path, bytes or None): plain paths, Hugging Face {bytes, path} structs, or the
    encoded images themselves (a list<binary> column, as tools converting from WebDataset write it)."""
    out = []
    for item in raw.get("images") or []:
        if isinstance(item, str):
            out.append((item, None))
        elif isinstance(item, (bytes, bytearray)) and item:
            out.append(("", bytes(item)))
        elif isinstance(item, dict) and (item.get("bytes") is not None or item.get("path")):
            out.append((item.get("path") or "", item.get("bytes")))
        else:
            raise RowProblem("bad_image_entry", repr(item)[:100])
    return out


def _source_image(path: str, data: bytes | None, root: str, folder: str = "") -> SourceImage:
    """``folder``: where the row's file lies below the image root, for paths written from there (``../``)."""
    if data is not None:
        data = bytes(data)
        return SourceImage(normalise_ref(path) if path else carried_name(data), "", data)
    ref = normalise_ref(path)
    reason = unsafe_reason(ref)
    if reason in ABSOLUTE_REASONS:
        rel = below_image_root(ref, root)
        if rel is not None:
            ref, reason = rel, None
        else:
            ref = f"below no folder of the image root; set the source's image_root to where these paths start: {ref}"
    elif reason == "parent_traversal" and ref.startswith("../"):  # written from the file's own folder
        rel = relative_from(ref, folder)
        if rel is not None:
            ref, reason = rel, None
        else:
            ref = (f"climbs out of the image root {root}; set the source's image_root to a folder that holds both "
                   f"the source's files and their images: {ref}")
    if reason:
        raise RowProblem(f"unsafe_image_path:{reason}", ref)
    return SourceImage(ref, _join(root, ref))


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _url_image(url: str) -> SourceImage | None:
    """An inline base64 ``data:`` image (OpenAI's chat rows) as carried bytes keyed by their digest."""
    if not url.startswith(DATA_URL):
        return None
    data = data_url_bytes(url)
    if data is None:
        raise RowProblem("bad_image_entry", f"a data: URL that is not base64 image data: {url[:60]}")
    return SourceImage(carried_name(data), "", data)


def _parts_row(raw: dict[str, Any], root: str, folder: str) -> tuple[list[dict[str, Any]], list[SourceImage]]:
    """A row whose contents are part lists (satsft, Qwen-VL, transformers, OpenAI style): kept as it is, image
    parts resolved to ``{"type": "image", "image": key}``. A part that names no image (TRL's
    ``{"type": "image"}``) takes the next entry of the `images` column."""
    column = _image_column(raw)
    carried = {normalise_ref(p): d for p, d in column if d is not None}
    pending = iter(column)
    messages, images, placeholders = [], [], 0
    for m in raw["messages"]:
        parts = []
        for p in m["content"]:
            if not isinstance(p, dict):
                raise RowProblem("bad_message", "a content part is not an object")
            if p.get("type") in IMAGE_PART_TYPES:
                ref = part_image(p)
                if ref is PLACEHOLDER:
                    entry = next(pending, None)
                    if entry is None:
                        raise RowProblem("image_token_mismatch", "more image parts than entries in `images`")
                    placeholders += 1
                    img = _source_image(*entry, root, folder)
                elif isinstance(ref, str):
                    img = _url_image(ref) or _source_image(ref, carried.get(normalise_ref(ref)), root, folder)
                else:
                    raise RowProblem("bad_image_entry", repr(ref)[:100])
                images.append(img)
                parts.append({"type": "image", "image": img.key})
            elif p.get("type") == "text" and isinstance(p.get("text"), str):
                parts.append(_text_part(p["text"]))
            else:
                raise RowProblem("bad_message", f"content part of type {p.get('type')!r}")
        messages.append({"role": _role(m["role"]), "content": parts})
    if placeholders and placeholders < len(column):
        raise RowProblem("image_token_mismatch", f"{placeholders} image parts without a path for {len(column)} "
                         "images")
    return messages, images


def _string_row(raw: dict[str, Any], root: str, folder: str) -> tuple[list[dict[str, Any]], list[SourceImage]]:
    """A ShareGPT / TRL row: string contents with <image> tokens, images in the `images` column, in order."""
    column = _image_column(raw)
    tokens = sum(m["content"].count(IMAGE_TOKEN) for m in raw["messages"])
    if tokens != len(column):
        raise RowProblem("image_token_mismatch", f"{tokens} {IMAGE_TOKEN} tokens for {len(column)} images")
    pending = iter(column)
    messages, images = [], []
    for m in raw["messages"]:
        text = m["content"]
        parts = []
        for _ in range(text.count(IMAGE_TOKEN)):
            path, data = next(pending)
            img = _source_image(path, data, root, folder)
            images.append(img)
            parts.append({"type": "image", "image": img.key})
        body = " ".join(piece.strip() for piece in text.split(IMAGE_TOKEN) if piece.strip())
        if body or not parts:
            parts.append(_text_part(body))
        messages.append({"role": _role(m["role"]), "content": parts})
    return messages, images


KNOWN_COLUMNS = frozenset({"messages", "metadata", "images"})
# LLaVA's and the original ShareGPT's speaker names; any other speaker rejects its row.
SPEAKER_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
                 "model": "assistant", "system": "system"}


def _role(role: str) -> str:
    """A messages row's role as chat templates know it: human and gpt (ShareGPT's names, which some messages rows
    keep), User, bot and model become user and assistant; any other (tool, function) stays as it is."""
    return SPEAKER_ROLES.get(role.strip().lower(), role)


def _from_conversations(raw: dict[str, Any]) -> dict[str, Any]:
    """A LLaVA / original ShareGPT row (``{"image": "coco/x.jpg", "conversations": [{"from": "human", "value":
    "<image>\\n..."}, {"from": "gpt", ...}]}``; LLaVA-Instruct, ShareGPT4V, GeoChat-Instruct and satsft's own
    ``--formats llava`` write it) as the messages row it means: string contents with ``<image>`` tokens, its
    image (or ``images``) as the images column. Where a row has images but no token, they go before the first
    user text, as LLaVA's own loader places them. Every such row was a no_messages reject."""
    turns = raw["conversations"]
    if not isinstance(turns, list) or not turns:
        raise RowProblem("no_messages", "conversations must be a non-empty list of {from, value} turns")
    messages = []
    for turn in turns:
        turn = turn if isinstance(turn, dict) else {}
        speaker, value = (turn.get("from"), turn.get("value")) if "from" in turn else (turn.get("role"),
                                                                                      turn.get("content"))
        role = SPEAKER_ROLES.get(speaker.strip().lower()) if isinstance(speaker, str) else None
        if role is None or not isinstance(value, str):
            raise RowProblem("bad_message", f"a conversations turn needs from (human, gpt or system) and a string "
                             f"value: {repr(turn)[:80]}")
        messages.append({"role": role, "content": value})
    images = llava_images(raw)
    if images and not any(IMAGE_TOKEN in m["content"] for m in messages):
        first = next((m for m in messages if m["role"] == "user"), None)
        if first is None:
            raise RowProblem("image_token_mismatch", "images but no user turn to show them in")
        first["content"] = IMAGE_TOKEN * len(images) + "\n" + first["content"]
    out = {k: v for k, v in raw.items() if k not in ("conversations", "image")}
    out["messages"], out["images"] = messages, images
    return out


def _from_texts(raw: dict[str, Any]) -> dict[str, Any]:
    """A row of The Cauldron's shape (Idefics2's and SmolVLM's training mix: ``texts`` of ``{"user": ...,
    "assistant": ...}`` exchanges, the row's ``images`` shown with the first) as the messages row it means."""
    exchanges = raw["texts"]
    if not isinstance(exchanges, list) or not exchanges:
        raise RowProblem("no_messages", "texts must be a non-empty list of {user, assistant} exchanges")
    turns = []
    for item in exchanges:
        if not isinstance(item, dict) or not isinstance(item.get("user"), str) or not isinstance(
                item.get("assistant"), str):
            raise RowProblem("bad_message", f"a texts entry needs user and assistant strings: {repr(item)[:80]}")
        turns += [{"from": "human", "value": item["user"]}, {"from": "gpt", "value": item["assistant"]}]
    return _from_conversations({**{k: v for k, v in raw.items() if k != "texts"}, "conversations": turns})


TURN_COLUMNS = ("messages", "conversations", "texts")


def _turns_from_text(raw: dict[str, Any]) -> dict[str, Any]:
    """A turns column stored as JSON text (Parquet holds one type per column, so exports of rows whose contents
    mix strings and part lists often write `messages` as a string) read as the list it holds. Every such row was a
    no_messages reject; text that is not a JSON list still is, saying why."""
    texts = [k for k in TURN_COLUMNS if isinstance(raw.get(k), str)]
    if not texts:
        return raw
    out = dict(raw)
    for key in texts:
        try:
            value = orjson.loads(raw[key])
        except orjson.JSONDecodeError as e:  # also past orjson's 254 levels: the work stays bounded
            raise RowProblem("no_messages", f"{key} is text that is not JSON ({e})"[:200]) from None
        if not isinstance(value, list):
            raise RowProblem("no_messages", f"{key} is JSON text holding {type(value).__name__}, not a list of "
                                            "turns")
        out[key] = value
    return out


def normalise_row(raw: Any, source: str, kind: str, file_split: str, root: str, folder: str = "") -> Normalised:
    """Any supported row -> the satsft row shape, or RowProblem. A satsft source keeps each row's split and
    metadata; a foreign row gets task = the source's name, a content-hash sample id and its file's split.
    ``folder``: the row's file's folder below the image root ``root`` (image paths starting ``../`` start there)."""
    if not isinstance(raw, dict):
        raise RowProblem("row_not_object", type(raw).__name__)
    raw = _turns_from_text(raw)
    if raw.get("messages") is None and "conversations" in raw:
        raw = _from_conversations(raw)
    elif raw.get("messages") is None and "texts" in raw:
        raw = _from_texts(raw)
    msgs = raw.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise RowProblem("no_messages", "rows need a non-empty messages list")
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(
                m.get("content"), (str, list)):
            raise RowProblem("bad_message", "each message needs a role and a content string or part list")
    if all(isinstance(m["content"], str) for m in msgs):
        messages, images = _string_row(raw, root, folder)
    else:  # part lists; OpenAI rows give the user parts and the others plain strings, read as one text part
        if any(isinstance(m["content"], str) and IMAGE_TOKEN in m["content"] for m in msgs):
            raise RowProblem("bad_message", f"a row mixes part lists and strings with {IMAGE_TOKEN} tokens")
        raw = {**raw, "messages": [m if isinstance(m["content"], list) else {**m, "content": [
            _text_part(m["content"])]} for m in msgs]}
        messages, images = _parts_row(raw, root, folder)
    roles = {m["role"] for m in messages}
    if not {"user", "assistant"} <= roles:  # nothing asked, or nothing answered: no example to learn from
        raise RowProblem("no_exchange", f"rows need a user turn and an assistant turn; this one has "
                                        f"{', '.join(sorted(roles))}")
    given = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    if kind == "satsft":
        split = given.get("split")
        if split not in VALID_SPLITS or not isinstance(given.get("sample_id"), str):
            raise RowProblem("bad_metadata", f"split {split!r}, sample_id {given.get('sample_id')!r}")
        metadata = {k: "" if given.get(k) is None else given[k] for k in METADATA_FIELDS}  # null: the empty one
        # the text fields the mix files, filters and writes by: one of another type (a hand edit) would stop
        # the whole mix at its writer, or sorting tiles, instead of costing that row
        wrong = next((k for k in TEXT_METADATA if not isinstance(metadata[k], str)), None)
        if wrong is not None:
            raise RowProblem("bad_metadata", f"{wrong} {metadata[wrong]!r} is not a string")
    else:
        metadata = {"sample_id": content_id(messages, images), "task": source, "analysis_profile": "",
                    "tile_stem": "", "split": file_split, "image_paths": [], "analysis_image_path": ""}
    metadata["image_paths"] = [img.key for img in images]
    if metadata.get("analysis_image_path") and metadata["analysis_image_path"] not in metadata["image_paths"]:
        metadata["analysis_image_path"] = ""
    dropped = tuple(sorted(k for k in raw if k not in KNOWN_COLUMNS))
    return Normalised({"messages": messages, "metadata": metadata}, tuple(images), dropped)


def matches(metadata: Mapping[str, Any], where: Mapping[str, Sequence[str]]) -> bool:
    fields = {"task": metadata.get("task", ""), "profile": metadata.get("analysis_profile", ""),
              "split": metadata.get("split", "")}
    return all(fields[k] in values for k, values in where.items())


def plan_repeats(train_rows: Mapping[str, int], repeats: Mapping[str, float | None],
                 shares: Mapping[str, float | None]) -> dict[str, float]:
    """Each source's repeat of its train rows. A share s of the mix's train rows, when the sources with a repeat
    make T train rows and the shares add up to S, is s * T / (1 - S) rows."""
    fixed = sum(train_rows.get(n, 0) * r for n, r in repeats.items() if r is not None)
    total_share = sum(s for s in shares.values() if s)
    out = {n: float(r) for n, r in repeats.items() if r is not None}
    for name, share in shares.items():
        if share:
            n = train_rows.get(name, 0)
            out[name] = (share * fixed / (1 - total_share)) / n if n else 0.0
    return out


def selection_hash(seed: int, source: str, sample_id: str) -> int:
    return stable_uint64("mix-select", seed, source, sample_id)


def fraction_threshold(hashes: Iterable[int], fraction: float) -> int:
    """The hash below which exactly round(fraction * n) of these rows get one more copy."""
    ordered = sorted(hashes)
    k = round(fraction * len(ordered))
    if k <= 0:
        return 0
    return ordered[k - 1] + 1 if k < len(ordered) else 1 << 64


def copies(split: str, repeat: float, selection: int, threshold: int) -> range:
    """Which copies of a kept row the mix holds: validation and test once, train floor(repeat) times plus one
    more for the rows the fraction selects."""
    if split != "train":
        return range(1)
    whole = int(repeat)
    return range(whole + (1 if repeat > whole and selection < threshold else 0))


def mix_id(sample_id: str, source: str, k: int) -> str:
    return f"{sample_id}#{source}.r{k}"


_COPY_SUFFIX = re.compile(r"#([a-z0-9_-]+)\.r[0-9]+$")  # what mix_id adds (source names: RecipeSource's rule)


def tile_key(metadata: Mapping[str, Any]) -> str:
    """A row's tile, named so that two tiles never share a name however deep a mix of mixes goes: a build's row
    by its stem; a mix's row by the sources that carried it, outermost first, then the stem (``m/a/<stem>``
    for a row of build ``a`` mixed into ``m`` and then into the mix this row comes from), read off the ids
    mix_id gave it. Naming a mix's row by its own source alone made the same stem of two builds in an inner mix
    one tile, with one footprint, to a mix of that mix: ground shared where none is. "" for a row of no tile."""
    stem = metadata.get("tile_stem") or ""
    source = metadata.get("source")
    if not stem or not isinstance(source, str) or not source:
        return stem
    chain, sample_id = [], str(metadata.get("sample_id") or "")
    while (found := _COPY_SUFFIX.search(sample_id)) is not None:
        chain.append(found.group(1))
        sample_id = sample_id[:found.start()]
    if not chain or chain[0] != source:  # an id no mix gave: the source it names, as before ids were read
        return f"{source}/{stem}"
    return "/".join([*chain, stem])


def order_key(seed: int, row_id: str, k: int = 0, n_copies: int = 1) -> int:
    """A copy's place in the global order, in [0, 2**64): a seeded hash of the row places it at u, and copy k
    of n goes to (k + u) / n, so the copies of one row are spread evenly through the mix, never side by side
    (as a plain shuffle would put some of eighty copies)."""
    return (k * (1 << 64) + stable_uint64("mix-order", seed, row_id)) // n_copies


def media_names(keys: Iterable[str]) -> dict[str, str]:
    """A file name per image key of one source: its own name made safe, with a digest where two keys of the
    source would otherwise share a name."""
    keys = sorted(set(keys))
    base = {}
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        stem, ext = file_stem(name), name.rsplit(".", 1)[-1].lower() if "." in name else "png"
        ext = ext if ext in IMAGE_EXTS else "png"
        base[key] = (safe_name(stem)[:150], ext)
    counts: dict[tuple[str, str], int] = {}
    for b in base.values():
        counts[b] = counts.get(b, 0) + 1
    return {k: (f"{s}.{e}" if counts[(s, e)] == 1 else f"{s}_{hashlib.sha256(k.encode()).hexdigest()[:10]}.{e}")
            for k, (s, e) in base.items()}


def media_index(keys: Iterable[tuple[str, str]], max_files_per_dir: int) -> dict[tuple[str, str], str]:
    """(media owner, image key) -> its path under the mix: media/<owner>/sNNNNN/<name>, numbered densely per
    owner in key order, so no folder goes over the limit."""
    by_owner: dict[str, list[str]] = {}
    for owner, key in keys:
        by_owner.setdefault(owner, []).append(key)
    out = {}
    for owner, owner_keys in sorted(by_owner.items()):
        names = media_names(owner_keys)
        ordered = sorted(names)
        for i, key in enumerate(ordered):
            out[(owner, key)] = f"{MEDIA_DIR}/{owner}/{shard_dir(i, max_files_per_dir, len(ordered))}/{names[key]}"
    return out


def mixed_record(record: dict[str, Any], paths: Mapping[str, str], source: str, k: int) -> dict[str, Any]:
    """The output row: image keys replaced by their media paths, the id of this copy, source and copy index."""
    messages = [{"role": m["role"], "content": [
        {"type": "image", "image": paths[p["image"]]} if p["type"] == "image" else p for p in m["content"]]}
        for m in record["messages"]]
    md = dict(record["metadata"])
    md["sample_id"] = mix_id(md["sample_id"], source, k)
    md["image_paths"] = [paths[p] for p in md["image_paths"]]
    md["analysis_image_path"] = paths.get(md["analysis_image_path"], "")
    md["source"], md["repeat_index"] = source, k
    return {"messages": messages, "metadata": md}
