"""Tile sidecar parsing (FORMATS.md 1.2): one JSON file becomes one validated ``Tile`` or a reject."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import orjson

from transforms.classes import CLASS_IDS, CLASS_NAMES, NUM_CLASSES
from transforms.fileio import UTF16_BOMS
from transforms.input import lfs
from transforms.paths import file_stem, file_type

VALID_SPLITS = ("train", "validation", "test")
# The words `datasets` reads as split names; a sidecar's `split` and a mix source's file names use the same.
SPLIT_WORDS = {"train": ("train", "training"), "validation": ("validation", "valid", "val", "dev"),
               "test": ("test", "testing", "eval", "evaluation")}
UTF8_BOM = b"\xef\xbb\xbf"
DEFAULT_SIZE = 224
MAX_SIDECAR_BYTES = 8 * 1024 * 1024
MAX_STEM_CHARS = 200
# Fields beyond the core travel into every row sidecar as they are, and orjson writes at most 254 levels: a
# sidecar nested deeper than any producer writes (the contract needs 4) is refused here, not in a shuffle.
MAX_SIDECAR_DEPTH = 64
# What Tile holds parsed; anything else in a sidecar travels as it is (Tile.extra).
SIDECAR_CORE_FIELDS = frozenset({
    "tile_stem", "poi_id", "split", "output_size", "caption", "class_fractions", "regions", "latitude",
    "longitude", "stac_item_id", "stac_datetime", "datetime", "eo_cloud_cover"})
# A stem names output files and joins on file stems, so it must be one path segment of printable characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Region(NamedTuple):
    """A pixel box with an inclusive max corner, already clipped to the chip. A named tuple rather than a
    dataclass: real tiles carry dozens, every shuffle pickles each, and a tuple pickles in half the time."""

    label: str
    class_id: int
    bbox: tuple[int, int, int, int]
    area_px: int


@dataclass(frozen=True)
class Tile:
    tile_stem: str
    source: str
    poi_id: str | None
    split_field: str | None
    size: int
    caption: str
    fractions: dict[int, float]  # raw shares per class id, as given (need not sum to 1)
    regions: tuple[Region, ...]
    latitude: float | None
    longitude: float | None
    stac_item_id: str | None
    stac_datetime: str | None
    cloud_cover: float | None
    # The sidecar's fields beyond the ones parsed above, which row sidecars keep as given. Only those: the whole
    # sidecar (its regions a second time) would double what every shuffle pickles per tile.
    extra: dict[str, Any] = field(repr=False, compare=False)
    # Filled in by later stages of the graph.
    chip_src: str = ""
    chip_px: int = 0  # the chip file's width (= height); boxes stay in the output_size frame whatever it is
    still_src: str = ""
    still_stem: str = ""
    still_index: int = -1  # the still's slot among the stills' copies (kept across rebuilds)
    split: str = ""
    sidecar_sha256: str = ""  # of the sidecar's bytes: part of the tile's fingerprint (transforms/rebuild)
    slot: int = -1  # the tile's place in every per-tile family of output files (transforms/rebuild/place)
    fingerprint: str = ""  # set once the tile is placed when an earlier build had it (else by GenerateRows)
    chip_sha256: str = ""  # known with the fingerprint
    reuse: bool = False  # unchanged since the earlier build: its analysis images and overlay are taken from it
    # With reuse, and when the earlier build recorded where its rows lie (transforms/rebuild/take): its record
    # there (PreviousTile fields) and how many of its rows lie in each of that build's JSONL split files
    # ((split file, rows), ...): its rows are taken from there instead of made.
    earlier: tuple = ()
    earlier_rows: tuple = ()
    # (dominant class name, ((region label, regions), ...)): what the dataset card needs of the tile, known once
    # parsed (parse_sidecar), so a tile whose rows are taken never decodes its content. () until then.
    card: tuple = ()

    def normalised_fractions(self) -> dict[int, float]:
        """Class shares summing to 1: the single source of every percentage quoted for this tile."""
        return normalised(self.fractions)

    def with_fields(self, **changes: Any) -> Tile:
        """``dataclasses.replace`` without its per-call introspection (a tile is copied several times on its way
        through the join: 18 us each that way, 4 us this one): a copy of the fields with ``changes`` over them."""
        unknown = changes.keys() - _TILE_FIELD_SET
        if unknown:
            raise TypeError(f"Tile has no field {sorted(unknown)[0]!r}")
        fields_now = self.__dict__
        if "_content" in fields_now and not changes.keys().isdisjoint(_CONTENT_SET):  # the kept bytes go stale
            fields_now = {**{k: v for k, v in fields_now.items() if k != "_content"},
                          **_content_from_json(fields_now["_content"])}
        tile = object.__new__(Tile)
        object.__setattr__(tile, "__dict__", {**fields_now, **changes})
        return tile

    def card_summary(self) -> tuple[str, tuple[tuple[str, int], ...]]:
        """(dominant class name, ((region label, regions), ...) in region order); the dominant class is the
        largest normalised share, the lower class id on a tie."""
        return self.card or card_of(self.normalised_fractions(), self.regions)

    def images_identity(self) -> str:
        """The tile's images as its rows know them beyond the chip's bytes: the chip's file type and the still's
        stem, slot and file type, which fix their output paths (rows name images by path and nothing else; no
        still: none). Part of the tile's fingerprint."""
        still = f"{self.still_stem}|{self.still_index}|{file_type(self.still_src)}" if (
            self.still_src and self.still_index >= 0) else ""
        return f"{file_type(self.chip_src)}|{still}"

    def __reduce__(self):
        """Pickled as two JSON documents: the fields the graph reads on the way (stem, paths, split, slot,
        fingerprint, the earlier build's record) and the sidecar's content (caption, fractions, regions and the
        rest), which only making rows reads. Every shuffle pickles every tile, and this is about three times faster
        than pickling the dataclass and its regions one object at a time. The content is decoded on first use
        and its bytes are kept: an unchanged tile of a rebuild crosses the join's grouping (decoded and encoded
        again there) and reaches its rows without its content ever being decoded or encoded again."""
        d = self.__dict__
        content = d.get("_content")
        if content is None:
            values = [d[name] for name in _CONTENT_FIELDS]
            values[_REGIONS] = [tuple(r) for r in values[_REGIONS]]
            content = orjson.dumps(values, option=orjson.OPT_NON_STR_KEYS)
        return _tile_from_json, (orjson.dumps([d[name] for name in _GRAPH_FIELDS]), content)

    def __getattr__(self, name: str) -> Any:
        """Only called for a field the tile does not hold yet: the content of a tile that crossed a shuffle,
        decoded now (all its fields at once)."""
        d = self.__dict__
        content = d.get("_content")
        if content is None or name not in _CONTENT_SET or name in d:
            raise AttributeError(name)
        d.update(_content_from_json(content))
        return d[name]


def normalised(fractions: dict[int, float]) -> dict[int, float]:
    total = sum(fractions.values())
    if total <= 0:
        return {}
    return {cid: v / total for cid, v in sorted(fractions.items()) if v > 0}


def card_of(shares: dict[int, float], regions: tuple[Region, ...]) -> tuple[str, tuple[tuple[str, int], ...]]:
    """Tile.card from normalised class shares and regions."""
    top = max(shares.items(), key=lambda kv: (kv[1], -kv[0]), default=None)
    labels: dict[str, int] = {}
    for r in regions:
        labels[r.label] = labels.get(r.label, 0) + 1
    return CLASS_NAMES[top[0]] if top else "", tuple(labels.items())


def _earlier_from_json(earlier: list) -> tuple:
    """A PreviousTile's fields (transforms.rebuild.manifest) as tuples again: its files and counts are the only
    lists in it. Spelled out rather than converted recursively: every unchanged tile of a rebuild crosses a
    shuffle with it, and a recursive walk took most of the tile's decoding."""
    if not earlier:
        return ()
    stem, split, slot, fingerprint, files, rows, gated, still, counts, chip_sha256, gone = earlier
    return (stem, split, slot, fingerprint, tuple(files), rows, gated, still, tuple(map(tuple, counts)), chip_sha256,
            gone)


def _earlier_rows_from_json(runs: list) -> tuple:
    """(split file, rows in it) per run, as tuples again."""
    return tuple(map(tuple, runs))


def _content_from_json(content: bytes) -> dict[str, Any]:
    d = dict(zip(_CONTENT_FIELDS, orjson.loads(content), strict=True))
    d["regions"] = tuple([tuple.__new__(Region, (label, cid, tuple(bbox), area))
                          for label, cid, bbox, area in d["regions"]])
    d["fractions"] = {int(k): v for k, v in d["fractions"].items()}
    return d


def _tile_from_json(graph: bytes, content: bytes) -> Tile:
    d = dict(zip(_GRAPH_FIELDS, orjson.loads(graph), strict=True))
    d["earlier"] = _earlier_from_json(d["earlier"])
    d["earlier_rows"] = _earlier_rows_from_json(d["earlier_rows"])
    card = d["card"]
    d["card"] = (card[0], tuple(map(tuple, card[1]))) if card else ()
    d["_content"] = content
    tile = object.__new__(Tile)
    object.__setattr__(tile, "__dict__", d)
    return tile


_TILE_FIELDS = tuple(f.name for f in fields(Tile))
_TILE_FIELD_SET = frozenset(_TILE_FIELDS)
# The sidecar's content: what only making a tile's rows reads.
_CONTENT_FIELDS = ("caption", "fractions", "regions", "latitude", "longitude", "stac_item_id", "stac_datetime",
                   "cloud_cover", "extra")
_CONTENT_SET = frozenset(_CONTENT_FIELDS)
_GRAPH_FIELDS = tuple(name for name in _TILE_FIELDS if name not in _CONTENT_SET)
_REGIONS = _CONTENT_FIELDS.index("regions")


@dataclass(frozen=True)
class SidecarProblem:
    reason: str
    detail: str


@dataclass(frozen=True)
class ParsedSidecar:
    tile: Tile | None
    problem: SidecarProblem | None
    region_problems: tuple[SidecarProblem, ...] = ()


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


def _decode_failure(data: bytes) -> str:
    """Name why strict JSON parsing failed: bad UTF-8 and NaN/Infinity get their own reasons."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "sidecar_not_utf8"
    try:
        json.loads(text, parse_constant=_reject_constant)
    except _NonFinite:
        return "sidecar_non_finite_number"
    except (ValueError, RecursionError):  # orjson stops at 1,024 levels, Python's scanner near 1,000 frames
        pass
    return "sidecar_invalid_json"


class _PastSixtyFourBits(ValueError):
    """An integer orjson would not read (it holds -2**63 to 2**64 - 1, and writes no other)."""


def _int_as_orjson_reads(digits: str) -> int:
    """An integer as orjson reads one: a sidecar that reaches Python's reader for its NaN must not carry one
    past 64 bits into row sidecars, which orjson then refuses to write (the job failed there)."""
    if len(digits.lstrip("-")) > 20 or not -(1 << 63) <= (value := int(digits)) < 1 << 64:
        raise _PastSixtyFourBits(f"an integer past 64 bits: {digits[:30]}")
    return value


def _with_non_finite(text: bytes) -> Any:
    """Python's json writes NaN for a float it lacks (a cloud cover a STAC item did not give): where the rows
    do not depend on the number (coordinates, cloud cover, fields carried through) it reads as missing. In the
    fields the rows are made from it is an error: None."""
    obj = json.loads(text.decode("utf-8"), parse_int=_int_as_orjson_reads)
    if not isinstance(obj, dict):
        return obj
    return None if _has_non_finite([obj.get(k) for k in ("class_fractions", "regions", "output_size")]) else obj


def nested_deeper(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (walked without recursion, so any depth is safe)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def _fail(reason: str, detail: str = "") -> ParsedSidecar:
    return ParsedSidecar(None, SidecarProblem(reason, detail[:300]))


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _coordinate(value: Any, limit: float) -> float | None:
    """A latitude (limit 90) or longitude (180) in degrees; one out of range (a projected metre value written in
    the wrong field, a swapped pair past 90) reads as missing, as NaN does, instead of going into the analysis
    JSON's coordinates a model is trained to quote."""
    number = _finite_number(value)
    return number if number is not None and -limit <= number <= limit else None


def split_name(word: str) -> str | None:
    """The split a word names (``val`` is validation), or None."""
    word = word.strip().lower()
    return next((split for split, words in SPLIT_WORDS.items() if word in words), None)


def declared_split(value: Any) -> str | None:
    """A sidecar's `split` as a split name; a value no split answers to is kept as text (so it can be counted
    and the tile placed by hash), and a missing or empty one is None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return split_name(text) or text.strip().lower()[:40]


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_region(item: Any, size: int) -> tuple[Region | None, str]:
    """A region is kept only when its label and class id agree and its box survives clipping.

    The common case first: integer corners inside the chip, an integer area or none. Real tiles carry dozens of
    regions, and this way each costs about a third of the general checks below, which give the same answer."""
    if type(item) is dict:
        class_id, bbox, area = item.get("class_id"), item.get("bbox"), item.get("area_px")
        if (type(class_id) is int and 0 <= class_id < NUM_CLASSES and type(bbox) is list and len(bbox) == 4
                and (area is None or type(area) is int)):
            x1, y1, x2, y2 = bbox
            if (type(x1) is int and type(y1) is int and type(x2) is int and type(y2) is int
                    and 0 <= x1 <= x2 < size and 0 <= y1 <= y2 < size
                    and item.get("label") == CLASS_NAMES[class_id]):
                box_area = (x2 - x1 + 1) * (y2 - y1 + 1)
                if area is None or area > box_area:
                    return Region(CLASS_NAMES[class_id], class_id, (x1, y1, x2, y2), box_area), ""
                if area > 0:
                    return Region(CLASS_NAMES[class_id], class_id, (x1, y1, x2, y2), area), ""
    return _parse_region_checked(item, size)


def _parse_region_checked(item: Any, size: int) -> tuple[Region | None, str]:
    if not isinstance(item, dict):
        return None, "region_not_object"
    label, class_id, bbox = item.get("label"), item.get("class_id"), item.get("bbox")
    named = class_of_name(label) if label is not None else None
    if class_id is None and named is not None:  # a producer that writes the label alone
        class_id = named
    if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id < NUM_CLASSES:
        return None, "region_unknown_class"
    if label is not None and named != class_id:
        return None, "region_label_mismatch"
    label = CLASS_NAMES[class_id]  # "Snow and ice", or none at all (the class id alone), as the contract spells it
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None, "region_bad_bbox"
    nums = [_finite_number(v) for v in bbox]
    if any(v is None for v in nums):
        return None, "region_bad_bbox"
    if max(nums) <= 1.0 and any(v != int(v) for v in nums):  # type: ignore[arg-type]
        # 0-1 coordinates (as many detectors write them), not pixel indices: floored, every such box became the
        # chip's top-left pixel, and the grounding rows left them out as too small, without a word.
        return None, "region_bbox_normalised"
    x1, y1, x2, y2 = (int(math.floor(v)) for v in nums)  # type: ignore[arg-type]
    if x1 > x2 or y1 > y2:
        return None, "region_inverted_bbox"
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(x2, size - 1), min(y2, size - 1)
    if x1 > x2 or y1 > y2:
        return None, "region_outside_chip"
    area = item.get("area_px")
    if _finite_number(area) is not None and area <= 0:
        return None, "region_zero_area"
    box_area = (x2 - x1 + 1) * (y2 - y1 + 1)
    area_px = int(area) if _finite_number(area) is not None and 0 < area <= box_area else box_area
    return Region(label, class_id, (x1, y1, x2, y2), area_px), ""


XYWH = "region_bbox_xywh"
XYWH_DETAIL = ("the tile's boxes fit the chip as [x, y, width, height] (COCO's order), and read as [x1, y1, x2, y2] "
               "some are inverted: write x2 = x + width - 1, y2 = y + height - 1")


PAST_FRAME = "region_past_default_frame"
PAST_FRAME_DETAIL = ("the sidecar has no output_size, so its boxes are in the default 224 px frame, and they run to "
                     "{at} px: write output_size, the frame of its boxes (the chip's width when they are its pixels)")


def _numeric_boxes(raw_regions: list[Any]) -> Iterator[tuple[Any, list[float]]]:
    """(region, its four numbers) of each region whose bbox is four finite numbers."""
    for item in raw_regions:
        bbox = item.get("bbox") if isinstance(item, dict) else None
        if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
            nums = [_finite_number(v) for v in bbox]
            if all(v is not None for v in nums):
                yield item, nums  # type: ignore[misc]


def boxes_fit_as_xywh(raw_regions: list[Any], size: int) -> bool:
    """Whether every box of a tile reads as [x, y, width, height] inside the chip, no larger than its area_px.

    Asked only of a tile with an inverted box: a producer that writes COCO's order had some of its boxes
    rejected as inverted and the rest, those near the top left, kept as wrong boxes in the grounding rows
    (a 30-tile tree: 129 of 178 regions rejected, 49 kept, each wrong). Boxes of the contract's order spread
    over the chip do not fit so (x1 + x2 runs past the chip), so a tree of them is not taken for one."""
    fitting = 0
    for item, (x, y, w, h) in _numeric_boxes(raw_regions):
        area = _finite_number(item.get("area_px"))
        if not (x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= size and y + h <= size
                and (area is None or area <= w * h)):
            return False
        fitting += 1
    return fitting >= 2


def max_coordinate(raw_regions: list[Any]) -> float:
    """The largest box coordinate of a tile (0 with none). A sidecar without output_size whose boxes run past
    the default frame drew them on a larger chip (448 px chips, boxes in their pixels): read in the 224 px
    frame, those past it were rejected as outside the chip and the rest clipped to it and scaled by it, wrong
    boxes in the grounding rows. A max corner of 224 (an exclusive one) is still the default frame."""
    return max((max(nums) for _, nums in _numeric_boxes(raw_regions)), default=0.0)


def every_region_rejected(raw_regions: list[Any], size: int, reason: str, why: str) -> list[SidecarProblem]:
    """Every region of a tile whose boxes are read in the wrong order or frame (``reason``): rejected, with its
    own problem where it has another one (a class the contract lacks). None is kept: read so, each is wrong."""
    out = []
    for i, item in enumerate(raw_regions):
        _, own = parse_region(item, size)
        if own in ("", "region_inverted_bbox", "region_outside_chip"):
            own = reason
        shown = f"regions[{i}]: {_shown(item)}"
        out.append(SidecarProblem(own, f"{shown}: {why}" if own == reason else shown))
    return out


def _shown(item: Any) -> str:
    """A rejected region as its reject names it: what the producer wrote (bbox, label, class id), shortened, so
    a writer's mistake (``{"x_min": ...}`` for the bbox list, corners in another order) is seen from rejects/."""
    if isinstance(item, dict):
        item = {k: item[k] for k in ("bbox", "label", "class_id", "area_px") if k in item}
    try:
        return orjson.dumps(item, default=repr).decode()[:160]
    except TypeError:  # an integer past 64 bits
        return repr(item)[:160]


def class_of_name(name: Any) -> int | None:
    """The class a name means, in any case and with spaces or hyphens for underscores ("Snow and ice")."""
    if not isinstance(name, str):
        return None
    return CLASS_IDS.get(re.sub(r"[\s-]+", "_", name.strip().lower()))


def parse_fractions(value: Any) -> tuple[dict[int, float] | None, str]:
    if value is None:
        return {}, ""
    if not isinstance(value, dict):
        return None, "fractions_not_object"
    out: dict[int, float] = {}
    for key, raw in value.items():
        try:
            cid = int(key)
        except (TypeError, ValueError):
            named = class_of_name(key)
            cid = -1 if named is None else named
        if not 0 <= cid < NUM_CLASSES:
            return None, f"fractions_unknown_class:{str(key)[:40]}"
        num = _finite_number(raw)
        if num is None:
            return None, "fractions_not_numeric"
        if num < 0:
            return None, "fractions_negative"
        out[cid] = out.get(cid, 0.0) + num
    return out, ""


def parse_sidecar(data: bytes, source: str) -> ParsedSidecar:
    """Decode and validate one sidecar; every way it can be wrong has its own reason."""
    if len(data) > MAX_SIDECAR_BYTES:
        return _fail("sidecar_too_large", f"{len(data)} bytes")
    if not data.strip():
        return _fail("sidecar_empty")
    text = data.removeprefix(UTF8_BOM)  # Windows tools write one
    if text[:2] in UTF16_BOMS:  # or save as UTF-16 (Notepad's "Unicode", PowerShell's `>`): the same JSON
        try:
            text = text.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as err:
            return _fail("sidecar_not_utf8", f"UTF-16 text (it starts with that byte order mark) that does not "
                                             f"decode: {err.reason}")
    if lfs.is_pointer(text[:64]):
        return _fail("sidecar_lfs_pointer", lfs.DETAIL)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        reason = _decode_failure(text)
        if reason != "sidecar_non_finite_number":
            return _fail(reason, str(err))
        try:
            obj = _with_non_finite(text)
        except RecursionError:
            return _fail("sidecar_too_deep", f"containers nested deeper than {MAX_SIDECAR_DEPTH} levels")
        except _PastSixtyFourBits as past:  # orjson's reason for refusing it, with the NaN beside it
            return _fail("sidecar_invalid_json", str(past))
        if obj is None:
            return _fail(reason, "NaN or Infinity in class_fractions, regions or output_size")
    if not isinstance(obj, dict):
        return _fail("sidecar_not_object", type(obj).__name__)
    if nested_deeper(obj, MAX_SIDECAR_DEPTH):
        return _fail("sidecar_too_deep", f"containers nested deeper than {MAX_SIDECAR_DEPTH} levels")
    stem = obj.get("tile_stem", file_stem(source))
    if not isinstance(stem, str) or not stem.strip():
        return _fail("sidecar_bad_tile_stem", repr(stem)[:100])
    if len(stem) > MAX_STEM_CHARS:
        return _fail("sidecar_stem_too_long", f"{len(stem)} characters")
    if "/" in stem or "\\" in stem:
        return _fail("sidecar_stem_path_separator", repr(stem)[:100])
    if _CONTROL.search(stem):
        return _fail("sidecar_stem_control_char", repr(stem)[:100])
    if stem.strip(".") == "":
        return _fail("sidecar_stem_dots", repr(stem)[:100])
    size_raw = obj.get("output_size", DEFAULT_SIZE)
    size = int(size_raw) if _finite_number(size_raw) is not None and float(size_raw).is_integer() else -1
    if not 8 <= size <= 4096:
        return _fail("sidecar_bad_output_size", repr(size_raw)[:50])
    fractions, why = parse_fractions(obj.get("class_fractions"))
    if fractions is None:
        return _fail(f"sidecar_{why}" if not why.startswith("fractions_unknown") else "sidecar_unknown_class",
                     why)
    raw_regions = obj.get("regions", [])
    if raw_regions is None:
        raw_regions = []
    if not isinstance(raw_regions, list):
        return _fail("sidecar_regions_not_list", type(raw_regions).__name__)
    regions: list[Region] = []
    problems: list[SidecarProblem] = []
    for i, item in enumerate(raw_regions):
        region, why = parse_region(item, size)
        if region is None:
            problems.append(SidecarProblem(why, f"regions[{i}]: {_shown(item)}"))
        else:
            regions.append(region)
    if any(p.reason == "region_inverted_bbox" for p in problems) and boxes_fit_as_xywh(raw_regions, size):
        regions, problems = [], every_region_rejected(raw_regions, size, XYWH, XYWH_DETAIL)
    elif "output_size" not in obj and (reach := max_coordinate(raw_regions)) > DEFAULT_SIZE:
        regions, problems = [], every_region_rejected(raw_regions, size, PAST_FRAME, PAST_FRAME_DETAIL.format(
            at=int(reach)))
    caption = obj.get("caption")
    split = obj.get("split")
    kept = tuple(regions)
    tile = Tile(
        tile_stem=stem,
        source=source,
        poi_id=_optional_str(obj.get("poi_id")),
        split_field=declared_split(split),
        size=size,
        caption=caption.strip() if isinstance(caption, str) else "",
        fractions=fractions,
        regions=kept,
        latitude=_coordinate(obj.get("latitude"), 90),
        longitude=_coordinate(obj.get("longitude"), 180),
        stac_item_id=_optional_str(obj.get("stac_item_id")),
        stac_datetime=_optional_str(obj.get("stac_datetime")) or _optional_str(obj.get("datetime")),
        cloud_cover=_finite_number(obj.get("eo_cloud_cover")),
        extra={k: v for k, v in obj.items() if k not in SIDECAR_CORE_FIELDS},
        sidecar_sha256=hashlib.sha256(data).hexdigest(),
        card=card_of(normalised(fractions), kept),
    )
    return ParsedSidecar(tile, None, tuple(problems))
