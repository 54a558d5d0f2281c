"""The chip digest of the tile fingerprint: the same value read at chunk boundaries or from bytes, for whole
PNGs and for every way a file can fail to be one; and it moves whenever a chip's bytes do."""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pytest
from PIL import Image

from transforms.input.images import png_chunk
from transforms.input.png_digest import MAX_CHUNKS, PNG_SIGNATURE, png_digest, png_file_digest


def _png(seed: int, size: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    sink = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(sink, "PNG")
    return sink.getvalue()


def _rechunked(data: bytes, idat_bytes: int) -> bytes:
    """The same PNG with its image data in IDAT chunks of ``idat_bytes`` (as libpng-based writers cut it)."""
    chunks, pos, idat = [], 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            chunks += [png_chunk(b"IDAT", idat[i:i + idat_bytes]) for i in range(0, len(idat), idat_bytes)]
            chunks.append(png_chunk(kind, body))
        else:
            chunks.append(png_chunk(kind, body))
        pos += 12 + length
    return PNG_SIGNATURE + b"".join(chunks)


def _variants() -> list[tuple[str, bytes]]:
    whole = _png(1)
    rng = random.Random(5)
    return [
        ("whole", whole),
        ("many_idat", _rechunked(whole, 97)),
        ("too_many_chunks", _rechunked(whole, 5)),
        ("truncated", whole[:-7]),
        ("cut_in_header", whole[:len(whole) - 12 - 3]),
        ("trailing_bytes", whole + b"x"),
        ("not_png", bytes(rng.randrange(256) for _ in range(300))),
        ("signature_only", PNG_SIGNATURE),
        ("empty", b""),
        ("huge_length", PNG_SIGNATURE + struct.pack(">I4s", 2**31, b"IHDR") + b"\0" * 20),
    ]


@pytest.mark.parametrize(("name", "data"), _variants(), ids=[n for n, _ in _variants()])
def test_file_and_bytes_give_the_same_digest(tmp_path, name, data):
    path = tmp_path / f"{name}.png"
    path.write_bytes(data)
    assert png_file_digest(str(path)) == png_digest(data)


def test_chunk_digest_is_used_for_whole_pngs_only():
    variants = dict(_variants())
    assert png_digest(variants["whole"]).startswith("png-crc:")
    assert png_digest(variants["many_idat"]).startswith("png-crc:")
    assert _rechunked(variants["whole"], 5).count(b"IDAT") > MAX_CHUNKS
    for name in ("too_many_chunks", "truncated", "trailing_bytes", "not_png", "empty", "huge_length"):
        assert png_digest(variants[name]).startswith("sha256:"), name


def test_any_change_to_a_chip_moves_its_digest():
    variants = dict(_variants())
    digests = {name: png_digest(data) for name, data in variants.items()}
    assert len(set(digests.values())) == len(digests)
    assert png_digest(_png(1)) == digests["whole"]  # the same bytes, the same digest
    pixels = np.asarray(Image.open(io.BytesIO(_png(1)))).copy()
    rng = random.Random(3)
    for _ in range(20):  # one pixel of one band one step brighter, written again as a PNG
        y, x, band = rng.randrange(64), rng.randrange(64), rng.randrange(3)
        changed = pixels.copy()
        changed[y, x, band] ^= 1
        sink = io.BytesIO()
        Image.fromarray(changed).save(sink, "PNG")
        assert png_digest(sink.getvalue()) != digests["whole"]


def test_a_flip_under_an_unchanged_crc_is_not_seen():
    """The digest trusts each chunk's CRC: a byte that rots inside a chunk's data, its CRC left as it was,
    keeps the digest (a decode would fail on it). --no-reuse reads every chip again."""
    whole = _png(1)
    rotten = bytearray(whole)
    rotten[len(whole) // 2] ^= 0x01
    assert png_digest(bytes(rotten)) == png_digest(whole)
    rotten[-5] ^= 0x01  # the IEND CRC itself
    assert png_digest(bytes(rotten)) != png_digest(whole)
