"""A chip's digest for the tile fingerprint, from its PNG chunk headers and CRCs rather than all its bytes.

A rebuild must tell whether each unchanged tile's chip is still the same file. Hashing every chip (read and
SHA-256 of some 100 KB) was the largest single cost of recognising an unchanged tile. A PNG already carries a
CRC-32 of every chunk's type and data, so a digest of each chunk's length, type and CRC changes whenever the
bytes do (a change that keeps every chunk's length and CRC: about 2^-32 per changed chunk), and locally it
reads 12 bytes per chunk: a few dozen bytes of a chip instead of all of them.

The digest is a function of the file's bytes alone, whichever way it is read (``png_digest`` from bytes,
``png_file_digest`` from a local file), so it is the same wherever the tree lies. A file that is not a whole
PNG (no signature, a chunk running past the end, bytes after IEND) or that has more than MAX_CHUNKS chunks is
digested as SHA-256 of all its bytes instead.
"""

from __future__ import annotations

import hashlib
import os
import struct

from transforms import fileio

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 512  # past this many chunks, reading the whole file costs less than reading it 12 bytes at a time
_HEADER = struct.Struct(">I4s")


def _chunk_digest(records: list[bytes], size: int) -> str:
    return "png-crc:" + hashlib.sha256(f"{size}|".encode() + b"".join(records)).hexdigest()


def _whole_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def png_digest(data: bytes) -> str:
    """The digest of a file's bytes: of its PNG chunks' lengths, types and CRCs when it is a whole PNG of at
    most MAX_CHUNKS chunks, else of all its bytes."""
    size = len(data)
    if not data.startswith(PNG_SIGNATURE):
        return _whole_digest(data)
    records: list[bytes] = []
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= size and len(records) < MAX_CHUNKS:
        length, kind = _HEADER.unpack_from(data, pos)
        end = pos + 12 + length
        if end > size:
            break
        records.append(data[pos:pos + 8] + data[end - 4:end])
        pos = end
        if kind == b"IEND":
            return _chunk_digest(records, size) if pos == size else _whole_digest(data)
    return _whole_digest(data)


def png_file_digest(path: str) -> str:
    """png_digest of a file's bytes; a local PNG is read only at its chunk boundaries (one 12-byte read per
    chunk: the CRC that ends one chunk and the header that starts the next), anything else whole."""
    if not fileio.is_local(path):
        return png_digest(fileio.read_bytes(path))
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 16, 0)
        if len(head) == 16 and head.startswith(PNG_SIGNATURE):
            records: list[bytes] = []
            pos, header = len(PNG_SIGNATURE), head[8:]
            while len(records) < MAX_CHUNKS:
                length, kind = _HEADER.unpack(header)
                end = pos + 12 + length
                if end > size:
                    break
                tail = os.pread(fd, 12, end - 4)  # this chunk's CRC and the next chunk's header
                if len(tail) < 4:
                    break
                records.append(header + tail[:4])
                pos, header = end, tail[4:]
                if kind == b"IEND":
                    if pos == size:
                        return _chunk_digest(records, size)
                    break
                if len(header) < 8:
                    break
        return png_digest(fileio.read_bytes(path))  # not a whole PNG, or one of very many chunks: as from bytes
    finally:
        os.close(fd)
