"""`satsft sample --faults`: damage a generated tree in every way real trees break, one victim tile per kind.

Each kind records the reject reason the build must report for it (and the stem or source it must name) in
`<tree>/faults.json`, which sits outside metadata/, data/ and images/ and so is never read by a build.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from transforms.input.images import PNG_SIGNATURE, png_chunk
from transforms.paths import file_stem


@dataclass(frozen=True)
class Victim:
    """One healthy tile picked to be damaged: its sidecar, chip and the JSONL line that references it."""

    root: Path
    stem: str
    sidecar: Path
    chip: Path

    def load(self) -> dict:
        return orjson.loads(self.sidecar.read_bytes())

    def save(self, obj: dict) -> None:
        self.sidecar.write_bytes(orjson.dumps(obj))

    def patch(self, **changes) -> None:
        self.save({**self.load(), **changes})

    def patch_region(self, **changes) -> None:
        obj = self.load()
        obj["regions"][0] = {**obj["regions"][0], **changes}
        self.save(obj)


def pixel_bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny file whose header claims billions of pixels: decoding it would exhaust memory."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def scrambled_png(width: int = 224, height: int = 224) -> bytes:
    """A whole-looking PNG (signature, IHDR, IEND) whose pixel data is not zlib: only decoding finds out."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"not zlib data " * 64)
            + png_chunk(b"IEND", b""))


def _solid_png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (40, 60, 80)).save(buf, format="PNG")
    return buf.getvalue()


def reflectance_png(chip: bytes) -> bytes:
    """The chip as a 16-bit RGB PNG of reflectance-like values (0-3060), as uint16 bands exported straight to
    PNG are: Pillow reads it as a near-black 8-bit chip."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(chip)) as img:
        rgb = (np.asarray(img.convert("RGB"), dtype=np.uint16) * 12).astype(">u2")  # PNG samples are big-endian
    height, width = rgb.shape[:2]
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def lfs_pointer(data: bytes) -> bytes:
    """What a clone without Git LFS holds in place of ``data``: a pointer naming its hash and size."""
    import hashlib

    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def _append_line(root: Path, line: bytes) -> None:
    with open(root / "data" / "train.jsonl", "ab") as f:
        f.write(line + b"\n")


def _ref_line(path: object) -> bytes:
    return orjson.dumps({"messages": [{"role": "user", "content": [{"type": "image", "image": path},
                                                                   {"type": "text", "text": "Describe."}]}]})


def _still_of(v: Victim) -> Path | None:
    for line in (v.root / "data").glob("*.jsonl"):
        for raw in line.read_bytes().splitlines():
            if v.stem.encode() in raw:
                content = orjson.loads(raw)["messages"][0]["content"]
                stills = [p["image"] for p in content if p.get("type") == "image" and "mapbox_stills/" in p["image"]]
                if stills:
                    return v.root / stills[0]
    return None


# kind -> (damage, reason the build reports, what the reject names: "stem", "source" or "" for refs).
# A damage function may return the stem the reject will carry when it is not the victim's own.
Fault = tuple[Callable[[Victim, str], object], str, str]


def _sidecar_bytes(data: bytes) -> Callable[[Victim, str], None]:
    return lambda v, _: v.sidecar.write_bytes(data)


def _dup(v: Victim, _: str) -> None:
    extra = v.root / "metadata" / "s99999" / f"{v.stem}.json"  # sorts after the original, so it is the duplicate
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_bytes(v.sidecar.read_bytes())


def _oversized(v: Victim, _: str) -> None:
    obj = v.load()
    obj["padding"] = "x" * (8 * 1024 * 1024 + 1)
    v.save(obj)


def _symlink_chip(v: Victim, outside: str) -> None:
    v.chip.unlink()
    os.symlink(outside, v.chip)


def _annex_link(v: Victim, _: str) -> None:
    """A chip of a git-annex (DataLad) tree whose content was never fetched: a link into the annex, dangling."""
    v.chip.unlink()
    os.symlink(f"../../.git/annex/objects/Qx/7f/SHA256E-s51234--{v.stem}.png/SHA256E-s51234--{v.stem}.png", v.chip)


def _symlink_sidecar(v: Victim, outside: str) -> None:
    v.sidecar.unlink()
    os.symlink(outside, v.sidecar)


def _orphan_sidecar(v: Victim, _: str) -> str:
    obj = v.load()
    obj["tile_stem"] = f"{v.stem}_orphan"
    (v.sidecar.parent / f"{v.stem}_orphan.json").write_bytes(orjson.dumps(obj))
    return obj["tile_stem"]


def _nan_fraction(v: Victim, _: str) -> None:
    v.save(v.load())  # compact, so the key is spelled exactly once
    v.sidecar.write_bytes(v.sidecar.read_bytes().replace(b'"class_fractions":{', b'"class_fractions":{"8":NaN,', 1))


def _delete_still(v: Victim, _: str) -> None:
    still = _still_of(v)
    assert still is not None
    still.unlink()


def _truncate_still(v: Victim, _: str) -> None:
    still = _still_of(v)
    assert still is not None
    still.write_bytes(still.read_bytes()[:300])


FAULTS: dict[str, Fault] = {
    # sidecar files
    "sidecar_invalid_json": (_sidecar_bytes(b'{"tile_stem": "half written'), "sidecar_invalid_json", "source"),
    "sidecar_empty_file": (_sidecar_bytes(b""), "sidecar_empty", "source"),
    "sidecar_not_object": (_sidecar_bytes(b"[1, 2, 3]"), "sidecar_not_object", "source"),
    "sidecar_not_utf8": (_sidecar_bytes(b'{"tile_stem": "caf\xe9"}'), "sidecar_not_utf8", "source"),
    "sidecar_oversized": (_oversized, "sidecar_too_large", "source"),
    "sidecar_lfs_pointer": (lambda v, _: v.sidecar.write_bytes(lfs_pointer(v.sidecar.read_bytes())),
                            "sidecar_lfs_pointer", "source"),
    "sidecar_symlink_out": (_symlink_sidecar, "sidecar_outside_root", "source"),
    "stem_not_string": (lambda v, _: v.patch(tile_stem=12345), "sidecar_bad_tile_stem", "source"),
    "stem_with_slash": (lambda v, _: v.patch(tile_stem="../../etc/" + v.stem), "sidecar_stem_path_separator",
                        "source"),
    "stem_with_nul": (lambda v, _: v.patch(tile_stem=v.stem + "\x00x"), "sidecar_stem_control_char", "source"),
    "stem_dot_dot": (lambda v, _: v.patch(tile_stem=".."), "sidecar_stem_dots", "source"),
    "stem_very_long": (lambda v, _: v.patch(tile_stem="poi_" + "9" * 400), "sidecar_stem_too_long", "source"),
    "duplicate_stem": (_dup, "duplicate_tile_stem", "stem"),
    "orphan_sidecar": (_orphan_sidecar, "stem_not_in_jsonl", "stem"),
    "bad_output_size": (lambda v, _: v.patch(output_size="big"), "sidecar_bad_output_size", "source"),
    "fraction_not_numeric": (lambda v, _: v.patch(class_fractions={"0": "lots"}), "sidecar_fractions_not_numeric",
                             "source"),
    "fraction_negative": (lambda v, _: v.patch(class_fractions={"0": -0.5, "1": 1.5}), "sidecar_fractions_negative",
                          "source"),
    "fraction_nan": (_nan_fraction, "sidecar_non_finite_number", "source"),
    "fraction_unknown_class": (lambda v, _: v.patch(class_fractions={"0": 0.5, "12": 0.5}), "sidecar_unknown_class",
                               "source"),
    "regions_not_list": (lambda v, _: v.patch(regions={"bbox": [0, 0, 5, 5]}), "sidecar_regions_not_list",
                         "source"),
    # regions (the tile goes on without the bad region)
    "region_label_mismatch": (lambda v, _: v.patch_region(label="water" if v.load()["regions"][0]["class_id"]
                                                          else "trees"), "region_label_mismatch", "stem"),
    "region_unknown_class": (lambda v, _: v.patch_region(class_id=42), "region_unknown_class", "stem"),
    "region_outside_chip": (lambda v, _: v.patch_region(bbox=[300, 300, 400, 400]), "region_outside_chip", "stem"),
    "region_inverted": (lambda v, _: v.patch_region(bbox=[50, 50, 10, 10]), "region_inverted_bbox", "stem"),
    "region_normalised": (lambda v, _: v.patch_region(bbox=[0.12, 0.3, 0.45, 0.61]), "region_bbox_normalised",
                          "stem"),
    "region_zero_area": (lambda v, _: v.patch_region(area_px=0), "region_zero_area", "stem"),
    "region_bad_bbox": (lambda v, _: v.patch_region(bbox=[1, 2, "x"]), "region_bad_bbox", "stem"),
    # chips
    "chip_missing": (lambda v, _: v.chip.unlink(), "chip_missing", "stem"),
    "chip_not_an_image": (lambda v, _: v.chip.write_bytes(b"<html>403 Forbidden</html>"), "chip_not_png", "stem"),
    "chip_truncated": (lambda v, _: v.chip.write_bytes(v.chip.read_bytes()[:2000]), "chip_truncated", "stem"),
    "chip_zero_bytes": (lambda v, _: v.chip.write_bytes(b""), "chip_empty_file", "stem"),
    "chip_pixel_bomb": (lambda v, _: v.chip.write_bytes(pixel_bomb_png()), "chip_too_many_pixels", "stem"),
    "chip_not_square": (lambda v, _: v.chip.write_bytes(_solid_png(224, 200)), "chip_not_square", "stem"),
    "chip_pixels_scrambled": (lambda v, _: v.chip.write_bytes(scrambled_png()), "chip_undecodable", "stem"),
    "chip_too_small": (lambda v, _: v.chip.write_bytes(_solid_png(8, 8)), "chip_too_small", "stem"),
    "chip_lfs_pointer": (lambda v, _: v.chip.write_bytes(lfs_pointer(v.chip.read_bytes())), "chip_lfs_pointer", "stem"),
    "chip_16_bit": (lambda v, _: v.chip.write_bytes(reflectance_png(v.chip.read_bytes())), "chip_not_8bit", "stem"),
    "chip_symlink_out": (_symlink_chip, "chip_outside_root", "stem"),
    "chip_annex_not_fetched": (_annex_link, "chip_missing", "stem"),
    "chip_ref_without_sidecar": (lambda v, _: v.sidecar.unlink(), "sidecar_missing", "stem"),
    # stills (the tile goes on without its still)
    "still_missing": (_delete_still, "still_missing", ""),
    "still_truncated": (_truncate_still, "still_truncated", ""),
    # rows that the gate refuses
    "caption_too_long": (lambda v, _: v.patch(caption="A very long caption. " * 1200), "prompt_too_long", "stem"),
    "banned_substring": (lambda v, _: v.patch(caption="Fields. npz_base64=AAAA"), "bloat:npz_base64", "stem"),
}
# JSONL lines appended to data/train.jsonl (no victim tile)
LINE_FAULTS: dict[str, tuple[bytes, str]] = {
    "jsonl_broken_line": (b'{"messages": [{"role": "user", "content": [', "invalid_jsonl_line"),
    "jsonl_not_object": (b'"just a string"', "jsonl_line_not_object"),
    "jsonl_messages_not_list": (b'{"messages": {"role": "user"}}', "jsonl_messages_not_list"),
    "jsonl_not_utf8": (b'{"messages": [], "note": "\xff\xfe"}', "jsonl_line_not_utf8"),
    "jsonl_text_only": (b'{"messages": [{"role": "user", "content": "Describe."}, {"role": "assistant", '
                        b'"content": "A lake."}]}', "jsonl_line_no_image"),
    "jsonl_null_turn": (b'{"messages": [null, {"role": "assistant", "content": "a lake"}]}',
                        "jsonl_message_not_object"),
    "ref_parent_traversal": (_ref_line("images/../../../etc/passwd"), "unsafe_path:parent_traversal"),
    "ref_absolute": (_ref_line("/etc/passwd"), "unsafe_path:absolute_path"),
    "ref_url_scheme": (_ref_line("https://example.com/chip.png"), "unsafe_path:url_scheme"),
    "ref_backslash_drive": (_ref_line("C:\\Users\\me\\chip.png"), "unsafe_path:drive_letter"),
    "ref_nul": (_ref_line("images/s00000/a\x00.png"), "unsafe_path:nul_in_path"),
    "ref_not_string": (_ref_line(7), "image_ref_not_string"),
}
NEEDS_STILL = frozenset({"still_missing", "still_truncated"})
NEEDS_REGIONS = frozenset(k for k in FAULTS if k.startswith("region_"))


def inject_faults(root: str, outside_target: str = "/etc/passwd") -> dict[str, dict[str, str]]:
    """Damage the tree at ``root`` once per fault kind; returns (and writes to faults.json) what to expect.

    Victims are distinct tiles taken in stem order, so the same tree always gets the same damage.
    """
    base = Path(root)
    sidecars = sorted(base.glob("metadata/**/*.json"), key=lambda p: p.name)
    chips = {file_stem(str(p)): p for p in base.glob("images/**/*.png")}
    victims = [Victim(base, file_stem(str(p)), p, chips[file_stem(str(p))]) for p in sidecars
               if file_stem(str(p)) in chips]
    used_stills: set[Path] = set()
    manifest: dict[str, dict[str, str]] = {}
    pool = iter(victims)
    for kind, (damage, reason, names) in FAULTS.items():
        for v in pool:
            obj = v.load()
            if kind in NEEDS_REGIONS and not obj.get("regions"):
                continue
            if kind in NEEDS_STILL:
                still = _still_of(v)
                if still is None or still in used_stills:
                    continue
                used_stills.add(still)
            break
        else:
            raise ValueError(f"tree too small to inject {kind!r}; generate more tiles")
        result = damage(v, outside_target)  # write_bytes lambdas return a byte count, not a stem
        stem = result if isinstance(result, str) else v.stem
        manifest[kind] = {"reason": reason, "stem": stem if names == "stem" else "",
                          "source": str(v.sidecar.relative_to(base)) if names == "source" else ""}
    for kind, (line, reason) in LINE_FAULTS.items():
        _append_line(base, line)
        manifest[kind] = {"reason": reason, "stem": "", "source": ""}
    (base / "faults.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest
