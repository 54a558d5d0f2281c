"""Image files are checked before anything opens them: where they really live, how big they are, whether the
PNG is whole and what size it claims. Only 33 bytes at the head and 12 at the tail are read per file.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass, field

from transforms import fileio
from transforms.input import lfs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096  # a 224 px chip is 50k pixels; more than this is a decompression bomb


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC of type and data (for PNGs written without Pillow)."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@dataclass(frozen=True)
class ImageFile:
    """An image file found under the input root; ``problem`` is empty when it is safe to use."""

    path: str  # below the input root
    problem: str = ""
    detail: str = ""
    width: int = 0
    height: int = 0
    size: int = field(default=0, compare=False)  # bytes, for the input fingerprint


_OTHER_FORMATS = ((b"II*\x00", "a TIFF"), (b"MM\x00*", "a TIFF"), (b"\xff\xd8\xff", "a JPEG"), (b"GIF8", "a GIF"),
                  (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000"), (b"BM", "a BMP"), (b"<", "a text or HTML"),
                  (b"{", "a JSON"))


def _not_png_detail(head: bytes, wanted: str = "a PNG") -> str:
    """What the file is instead, when its first bytes say so, and what to do: chips from GIS tools are often
    GeoTIFF or JPEG 2000, and an HTML error page saved as a chip is a common download failure."""
    if head[1:4] == b"PNG":
        return (f"a PNG whose signature is damaged ({head[:8]!r}; a PNG starts {PNG_SIGNATURE!r}), as a text-mode "
                "transfer (FTP in ASCII mode, a line-ending conversion) leaves it: copy it again in binary mode")
    kind = next((name for magic, name in _OTHER_FORMATS if head.startswith(magic)), "")
    if _is_webp(head):
        kind = "a WebP"
    if not kind:
        return repr(head[:8])
    return (f"{kind} file ({head[:8]!r}), not {wanted}: convert it to an 8-bit PNG (e.g. gdal_translate -ot Byte "
            "-scale 0 3000 0 255 -of PNG, or Pillow)")


def png_problem(head: bytes, tail: bytes, n_bytes: int) -> tuple[str, str, int, int]:
    """(problem, detail, width, height) from a file's first 33 and last 12 bytes and its length."""
    if n_bytes == 0:
        return "empty_file", "0 bytes", 0, 0
    if n_bytes > MAX_IMAGE_BYTES:
        return "file_too_large", f"{n_bytes} bytes > {MAX_IMAGE_BYTES}", 0, 0
    if not head.startswith(PNG_SIGNATURE):
        if lfs.is_pointer(head):
            return "lfs_pointer", lfs.DETAIL, 0, 0
        return "not_png", _not_png_detail(head), 0, 0
    if len(head) < 33 or head[12:16] != b"IHDR":
        return "truncated", "no IHDR chunk", 0, 0
    width, height = struct.unpack(">II", head[16:24])
    if width == 0 or height == 0:
        return "bad_dimensions", f"{width}x{height}", width, height
    if width * height > MAX_IMAGE_PIXELS:
        return "too_many_pixels", f"{width}x{height} > {MAX_IMAGE_PIXELS} pixels", width, height
    if tail != PNG_IEND:
        return "truncated", "file does not end with IEND", width, height
    if head[24] == 16:
        return "not_8bit", _sixteen_bit_detail(head[25]), width, height
    return "", "", width, height


_COLOUR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey and alpha", 6: "RGBA"}


def _sixteen_bit_detail(colour_type: int) -> str:
    """Why a 16-bit PNG is no chip for a VLM (uint16 Sentinel-2 bands exported with gdal_translate -of PNG stay
    16-bit): the image loaders of training stacks read 8 bits per channel. Pillow keeps the high byte of a
    16-bit RGB value, so reflectance scaled 0-10000 reads as a near-black chip, and clips a 16-bit grey to white;
    the model would learn the caption and boxes against that picture."""
    kind = _COLOUR_TYPES.get(colour_type, f"colour type {colour_type}")
    return (f"a 16-bit {kind} PNG: image loaders read 8 bits per channel (Pillow keeps each value's high byte, "
            "so reflectance-scaled chips read near black): scale it to 8 bits, e.g. gdal_translate -ot Byte "
            "-scale 0 3000 0 255 -of PNG")


# The folders of a sat-bbox tree. Each may itself be a symlink (chips on another disk, a tree assembled from
# several mounts): what lies below it is then checked against where it points.
TREE_FOLDERS = frozenset({"metadata", "images", "mapbox_stills", "data"})


def escapes_root(root: str, path: str) -> bool:
    """True when a local path resolves (through symlinks) to somewhere outside the input root, or outside the
    tree folder (``images/``, ...) it was found in when that folder is a symlink of its own."""
    return fileio.escapes(root, path, TREE_FOLDERS)


JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
TAIL_BYTES = 64  # the PNG checks read the last 12; a JPEG's end-of-image marker may sit before a few padding bytes
PHOTO_FORMATS = "a PNG, JPEG or WebP"


def _is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def photo_format(head: bytes) -> str:
    """png, jpeg or webp from an image's first bytes ("" for anything else): the media type of bytes that came
    without a file name (an inline data: URL, a Parquet image struct without a path)."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SOI):
        return "jpeg"
    return "webp" if _is_webp(head) else ""


def carried_name(data: bytes) -> str:
    """The name of image bytes that came without one: their digest, with ``.jpg`` or ``.webp`` for those
    formats, so the file a mix writes says what it holds (an inline JPEG was written as a .png). A PNG's name
    stays the bare digest (written as .png, as before): the name is part of the row, so its id stays too."""
    fmt = photo_format(data[:12])
    digest = f"sha256-{hashlib.sha256(data).hexdigest()[:32]}"
    return digest if fmt in ("png", "") else f"{digest}.{'jpg' if fmt == 'jpeg' else fmt}"


def still_problem(head: bytes, tail: bytes, n_bytes: int) -> tuple[str, str, int, int]:
    """(problem, detail, width, height) of a photo-like image (an overhead still, or an image a mix carries),
    which may also be a JPEG or a WebP: the Mapbox Static Images API serves its satellite style as JPEG, Hub
    datasets often store WebP, and a tree of such stills lost every still and every cross_view row. A JPEG's
    size sits in a frame header past its tables, beyond the head read here; nothing reads a still's size (its
    bytes are only copied), so it stays 0. A WebP says its own length in its RIFF header, so one cut short is
    known from the file's size."""
    if n_bytes and n_bytes <= MAX_IMAGE_BYTES and head.startswith(JPEG_SOI):
        if JPEG_EOI not in tail:
            return "truncated", "JPEG without its end-of-image marker", 0, 0
        return "", "", 0, 0
    if n_bytes and n_bytes <= MAX_IMAGE_BYTES and _is_webp(head):
        whole = struct.unpack("<I", head[4:8])[0] + 8
        if n_bytes < whole:
            return "truncated", f"WebP of {n_bytes} bytes where its RIFF header says {whole}", 0, 0
        return "", "", 0, 0
    problem, detail, width, height = png_problem(head, tail[-12:], n_bytes)
    if problem == "not_png" and head[1:4] != b"PNG":  # a PNG with a damaged signature stays not_png
        return "unsupported_format", _not_png_detail(head, PHOTO_FORMATS), 0, 0
    return problem, detail, width, height


def inspect_image(root: str, rel_path: str, n_bytes: int, still: bool = False) -> ImageFile:
    """Check one listed image without decoding it; every way it can be bad has its own problem name. ``still``:
    a JPEG or WebP is as good as a PNG (a chip is decoded and fingerprinted as a PNG)."""
    full = f"{root.rstrip('/')}/{rel_path}"
    if escapes_root(root, full):
        return ImageFile(rel_path, "outside_root", "symlink to " + os.path.realpath(full)[:200], size=n_bytes)
    if n_bytes == 0 or n_bytes > MAX_IMAGE_BYTES:
        problem, detail, _, _ = png_problem(b"", b"", n_bytes)
        return ImageFile(rel_path, problem, detail, size=n_bytes)
    try:
        head, tail, _ = fileio.read_head_tail(full, 33, TAIL_BYTES if still else 12, n_bytes)
    except (OSError, ValueError) as err:
        return ImageFile(rel_path, "unreadable", str(err)[:200], size=n_bytes)
    problem, detail, width, height = still_problem(head, tail, n_bytes) if still else png_problem(head, tail, n_bytes)
    return ImageFile(rel_path, problem, detail, width, height, n_bytes)


def missing_detail(root: str, rel_path: str) -> str:
    """The detail of a missing image: its path, and, for a dangling link into a git-annex (or DataLad) store,
    that its content was never fetched and how to fetch it. Such a tree lists no file at the link, so each
    chip was only "missing"."""
    full = f"{root.rstrip('/')}/{rel_path}"
    if not fileio.is_local(full) or not os.path.islink(full):
        return rel_path
    target = os.readlink(full)
    if "/annex/objects/" in target and not os.path.exists(full):
        return (f"{rel_path}: a git-annex link whose content is not here; run `git annex get .` (or "
                "`datalad get .`) in the tree")
    return f"{rel_path}: a link to {target[:200]}, which does not exist" if not os.path.exists(full) else rel_path


def media_problem_of(head: bytes, tail: bytes, size: int) -> str:
    """Why an image a mix carries (PNG, JPEG or WebP) is not usable, from its first 33 and last 64 bytes and
    its size; "" when it is. The same checks as a build's stills."""
    return still_problem(head, tail, size)[0]


def media_problem(data: bytes) -> str:
    return media_problem_of(data[:33], data[-64:], len(data))


def media_file_problem(path: str) -> str:
    """The same checks on a file, reading only its head and tail (locally and in Cloud Storage one read, whose
    FileNotFoundError says missing; other stores are asked first)."""
    try:
        if not fileio.missing_is_not_found(path) and not fileio.exists(path):
            return "missing"
        head, tail, size = fileio.read_head_tail(path, 33, 64)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except (OSError, ValueError):
        return "unreadable"
    return media_problem_of(head, tail, size)
