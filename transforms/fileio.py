"""The one place where DoFns read and write single files, so local paths and gs:// behave the same.

Local paths use the os module directly (hard links, atomic renames, no client start-up cost); anything with
a scheme goes through Beam's FileSystems, which every Beam worker already has.
"""

from __future__ import annotations

import datetime
import errno
import functools
import os
import re
import shutil
import stat
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_local(path: str) -> bool:
    return not _SCHEME.match(path)


class BadLocation(ValueError):
    """A location that names no place (``gs://``): the CLI reports it as a usage error."""


def clean_root(path: str) -> str:
    """A folder as absolute path, a bucket URL without its trailing slash: how every command names a root, so
    two spellings of one place compare equal."""
    if is_local(path):
        return os.path.abspath(os.path.expanduser(path))
    check_scheme(path)
    scheme, rest = path.split("://", 1)
    if scheme == "file" and rest.startswith("/"):  # file:///data/tree: a local folder written as a URL
        return os.path.abspath(rest)
    if not rest.strip("/") or rest.startswith("/"):  # else `gs://` became the local folder `gs:`
        raise BadLocation(f"{path!r} names no bucket: write {scheme}://BUCKET/FOLDER")
    return path.rstrip("/")


SCHEMES = ("gs", "file")  # besides local paths: what the installed file systems (gcsfs, Beam's gcp) reach


def check_scheme(path: str) -> None:
    """A URL of a store satsft cannot reach is a usage error that says what to do, before anything runs: s3:// and
    hf:// stopped a build, a mix or validate with a traceback (Beam's "Must provide one of client or options",
    fsspec's "Install s3fs", a failed name lookup)."""
    found = _SCHEME.match(path)
    scheme = found.group()[:-3] if found else ""
    if scheme and scheme.lower() not in SCHEMES:
        raise BadLocation(f"{path!r}: satsft reads and writes local folders and gs:// buckets, not {scheme}://; "
                          "copy it to one first (aws s3 sync, huggingface-cli download --local-dir, ...) or mount "
                          "it as a folder")


def overlapping(a: str, b: str) -> bool:
    """Whether two roots (clean_root) are one folder or one holds the other, as written or, locally, once links
    are followed: an --output that is a link to the input tree (or into it) passed the check as written, and
    the build's --overwrite then deleted the tree's images, data and sidecars."""
    pairs = [(a, b)]
    if is_local(a) and is_local(b):
        pairs.append((os.path.realpath(a), os.path.realpath(b)))
    for x, y in pairs:
        x, y = x.rstrip("/") + "/", y.rstrip("/") + "/"
        if x.startswith(y) or y.startswith(x):
            return True
    return False


class LinkOut(OSError):
    """A file of a dataset that is a link to somewhere outside it."""


def read_within(root: str, rel: str) -> bytes:
    """A file of the dataset at ``root``, never through a link that leads out of it: a dataset from elsewhere (a
    clone of a repository keeps links) could name a file of this machine by an image link, and preview copies
    what it reads into its page, eval --requests sends it to a model's server. A top folder that is itself a
    link (images/ on another disk) may hold what it links to. Buckets have no links."""
    if links_out(root, rel):
        raise LinkOut(errno.EPERM, "a link out of the dataset", rel)
    return read_bytes(f"{root.rstrip('/')}/{rel}")


def links_out(root: str, rel: str) -> bool:
    """Whether the local file ``rel`` of the folder ``root`` resolves, through links, to somewhere outside it
    (or outside its top folder, when that folder is itself a link); False in a bucket."""
    return escapes(root, f"{root.rstrip('/')}/{rel}")


@functools.lru_cache(maxsize=256)
def content_stores(real_root: str) -> tuple[str, ...]:
    """The content stores of the repository a folder lies in, whose files the folder's files are links to:
    the Hugging Face cache (``snapshot_download`` gives ``.../datasets--org--name/snapshots/<rev>/``, every file
    a link into ``.../datasets--org--name/blobs/``), git-annex or DataLad (``<repo>/.git/annex/objects/``) and
    DVC with links for its cache type (``<repo>/.dvc/cache/``), outside a tree that is a folder of the repository.
    Their files are the repository's own: a tree or dataset fetched so was all rejects (every sidecar, chip and
    JSONL file "a symlink out of the root"), while a link anywhere else still counts as leading out. A cache
    elsewhere (DVC's cache.dir) is not taken from the repository's config, which a clone brings with it."""
    stores = []
    folder = real_root
    while True:
        if os.path.basename(folder) == "snapshots" and os.path.isdir(os.path.join(os.path.dirname(folder), "blobs")):
            stores.append(os.path.join(os.path.dirname(folder), "blobs"))
        for store in (os.path.join(folder, ".git", "annex", "objects"), os.path.join(folder, ".dvc", "cache")):
            if os.path.isdir(store):  # a store that is itself a link matches nothing: every real path is link-free
                stores.append(store)
        parent = os.path.dirname(folder)
        if parent == folder:
            return tuple(stores)
        folder = parent


def escapes(root: str, path: str, tops: frozenset[str] | None = None) -> bool:
    """True when a local ``path`` below ``root`` resolves (through links) to somewhere outside ``root``, or
    outside the top folder of ``root`` it lies in when that folder is a link of its own (chips on another disk;
    ``tops``: only those top folders may be). Object stores have no links: False there."""
    if not is_local(path):
        return False
    real = real_path(path)  # absolute and normalised: a prefix test is enough (commonpath costs 10 us)
    if _within(real, _real_folder(root)):  # the root's realpath once per process, not once per file
        return False
    if any(_within(real, store) for store in content_stores(_real_folder(root))):
        return False
    top, _, below = path[len(root.rstrip("/")) + 1:].partition("/")
    linked = os.path.join(root, top)
    return (not below or (tops is not None and top not in tops) or not os.path.islink(linked)
            or not _within(real, _real_folder(linked)))


def real_path(path: str) -> str:
    """os.path.realpath, with each folder resolved once per process: a tree's files share a few thousand
    folders, and realpath costs a stat per path component, for every file."""
    folder, name = os.path.split(path)
    full = os.path.join(_real_folder(folder), name)
    return os.path.realpath(full) if os.path.islink(full) else full


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _within(real: str, real_folder: str) -> bool:
    return real == real_folder or real.startswith(real_folder if real_folder.endswith(os.sep) else real_folder + os.sep)


_GLOB_ESCAPES = {"*": "[*]", "?": "[?]", "[": "[][]"}


def literal_pattern(path: str) -> str:
    """A path as a glob pattern that matches itself. Beam's and fsspec's file matching read ``*``, ``?`` and ``[``
    anywhere in a pattern, folder names included: a tree under ``runs [2024]/`` listed nothing, one under ``a?b/``
    listed ``a1b/`` as well, and removing a bucket folder ``out?`` took ``outX/``'s objects with it. ``[`` becomes
    ``[][]`` (``[`` or ``]``), not glob.escape's ``[[]``, which Beam turns into a regex Python warns about."""
    return "".join(_GLOB_ESCAPES.get(c, c) for c in path)


def is_under(root: str, path: str) -> bool:
    """Whether a matched path lies below ``root`` (drops what ``[][]`` let through, a sibling ``runs]1]``)."""
    return path.startswith(root.rstrip("/") + "/")


def match_under(root: str, tail: str = "**", limit: int | None = None) -> list:
    """Beam's FileMetadata of the files below ``root`` that ``tail`` matches, ``root`` read literally."""
    from apache_beam.io.filesystems import FileSystems

    root = root.rstrip("/")
    pattern = literal_pattern(root)
    exact = pattern == root  # else the listing may hold a sibling, so the limit applies after the check
    found = FileSystems.match([f"{pattern}/{tail}"], limits=[limit if exact else None])[0].metadata_list
    return found if exact else [m for m in found if is_under(root, m.path)][:limit]


class NotAFile(OSError):
    """A local path that names a named pipe, socket or device: no retry makes it a file to read."""


def refuse_special(path: str) -> None:
    """NotAFile where a local path names a named pipe, socket or device: opening a pipe for reading waits for a
    writer, so one named like a sidecar or a JSONL file held the whole build. For files found by listing a tree
    or a source folder; a file named on the command line may be a pipe (`--predictions <(zcat p.jsonl.gz)`)."""
    if not is_local(path):
        return
    try:
        mode = os.stat(path).st_mode
    except OSError:  # gone, or not to be looked at: the read that follows says so
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise NotAFile(errno.EINVAL, "not a regular file (a named pipe, socket or device)", path)


def read_bytes(path: str, limit: int | None = None) -> bytes:
    """Read a whole file, or at most ``limit + 1`` bytes so callers can tell an oversized file apart."""
    if is_local(path):
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit + 1)
    if path.startswith("gs://"):
        blob, retry = _gcs_object(path)
        try:  # one request (Beam's reader asked for the object's metadata first)
            return blob.download_as_bytes(end=None if limit is None else limit, retry=retry)
        except Exception as err:
            if getattr(err, "code", None) == 416:  # a range past the end of an empty object
                return b""
            raise _as_os_error(err, path) from err
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:  # the bytes, as a local read gives
            return f.read() if limit is None else f.read(limit + 1)
    except Exception as err:
        raise _as_os_error(err, path) from err


def _as_os_error(err: Exception, path: str) -> Exception:
    """A store's "no such object" (Cloud Storage's client raises its own NotFound, code 404) as the
    FileNotFoundError a local read raises, which callers count as a file gone (an unreadable input, a folder
    without a report) instead of stopping on a traceback; other errors as they are."""
    return FileNotFoundError(f"{path}: {err}") if getattr(err, "code", None) == 404 else err


# Where only an object's two ends are asked for, one of a known size below WHOLE_BELOW bytes is read whole (a
# round trip costs more than 64 KB); one of an unknown size is read from its start, PROBE bytes at most, which
# is the whole of an analysis image (under 3 KB) and a sixth of a chip.
WHOLE_BELOW = 65536
PROBE = 16384


def read_head_tail(path: str, n_head: int, n_tail: int, size: int | None = None) -> tuple[bytes, bytes, int]:
    """The first n_head and last n_tail bytes of a file and its size, without reading what lies between.
    ``size``: the file's size as a listing gave it, which saves asking the store for it."""
    if is_local(path):  # two positioned reads on the descriptor: a third of a buffered file's cost
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            return os.pread(fd, n_head, 0), os.pread(fd, n_tail, max(0, size - n_tail)), size
        finally:
            os.close(fd)
    if path.startswith("gs://"):
        try:
            return _gcs_head_tail(path, n_head, n_tail, size)
        except Exception as err:
            raise _as_os_error(err, path) from err
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            head = f.read(n_head)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n_tail))
            return head, f.read(n_tail), size
    except Exception as err:
        raise _as_os_error(err, path) from err


def _gcs_head_tail(path: str, n_head: int, n_tail: int, size: int | None) -> tuple[bytes, bytes, int]:
    """read_head_tail in Cloud Storage, one request per end at most: an object of a known size is read whole
    when small, else by its two ranges; one of an unknown size is read from its start, PROBE bytes at most,
    which is all of it when fewer come back (an analysis image a mix checks: one request, where a metadata
    read and a download were two), else its size is asked and its tail read."""
    from google.api_core.exceptions import RequestRangeNotSatisfiable

    blob, retry = _gcs_object(path)

    def ends(data: bytes) -> tuple[bytes, bytes, int]:
        return data[:n_head], data[max(0, len(data) - n_tail):] if n_tail else b"", len(data)

    try:
        if size is None or size < WHOLE_BELOW:
            first = PROBE if size is None else WHOLE_BELOW
            data = blob.download_as_bytes(start=0, end=first - 1, retry=retry)
            if len(data) < first:
                return ends(data)
            blob.reload(retry=retry)
            size = blob.size or 0
            head = data[:n_head]
        else:
            head = blob.download_as_bytes(start=0, end=n_head - 1, retry=retry) if n_head else b""
    except RequestRangeNotSatisfiable:  # an empty object has no first byte to start at
        return b"", b"", 0
    try:
        tail = blob.download_as_bytes(start=size - n_tail, end=size - 1, retry=retry) if n_tail else b""
    except RequestRangeNotSatisfiable:  # shorter than listed: it changed since; read as it is now
        return _gcs_head_tail(path, n_head, n_tail, None)
    if len(tail) < n_tail and size > n_tail:  # changed since listed
        return _gcs_head_tail(path, n_head, n_tail, None)
    return head, tail, size


def read_if_there(path: str) -> bytes | None:
    """A file's bytes, or None when there is none: locally and in Cloud Storage (whose "no such object" reads as
    FileNotFoundError) one read; in other stores Beam reaches, whose clients raise errors of their own, a check
    first."""
    if not missing_is_not_found(path) and not exists(path):
        return None
    try:
        return read_bytes(path)
    except (FileNotFoundError, NotADirectoryError):  # a folder on the way is a file: not there either
        return None


def exists(path: str) -> bool:
    if is_local(path):
        return os.path.exists(path)
    if path.startswith("gs://"):
        blob, retry = _gcs_object(path)
        return blob.exists(retry=retry)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def write_bytes(path: str, data: bytes) -> None:
    """Write under a temporary name and rename, so a reader or a retried bundle never sees half a file."""
    if is_local(path):
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with _create_local(tmp) as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException as err:  # a full disk: the half-written file goes, and the error names the file
            try:
                os.remove(tmp)
            except OSError:
                pass
            if isinstance(err, OSError) and err.filename is None:
                err.filename = path
            raise
        return
    if path.startswith("gs://"):
        # One request, the object whole or not at all (Beam's writer began a resumable upload for every file,
        # and then sent it: two); retried as Beam retries its own writes.
        blob, retry = _gcs_object(path)
        blob.upload_from_string(data, content_type="application/octet-stream", retry=retry)
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path, compression_type="uncompressed") as f:  # an object appears when it is closed
        f.write(data)


def open_for_write(path: str) -> BinaryIO:
    """A file to stream into (spools); its parent folders are made locally, objects appear when closed."""
    if is_local(path):
        return _create_local(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.create(path)


def _create_local(path: str) -> BinaryIO:
    """Open a local file for writing, making its folders only when they are missing: a build writes about 20
    files per tile into a few hundred folders, and asking for the folders first on every file cost a system
    call and a caught exception each."""
    try:
        return open(path, "wb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return open(path, "wb")


def open_for_read(path: str) -> BinaryIO:
    """A seekable file to read ranges from."""
    if is_local(path):
        return open(path, "rb")
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type="uncompressed")


class DamagedFile(ValueError):
    """A compressed file that does not decompress: truncated, damaged, or not of the kind its suffix says."""


class _StorageFailed(Exception):
    """A read of the compressed bytes themselves failed (its cause): the storage, not the file's contents."""


class _Raw:
    """The compressed bytes, their read errors told apart from the decompressor's (bz2 and gzip raise OSError
    for bad data, as storage does for a failed read)."""

    def __init__(self, f: BinaryIO):
        self.f = f

    def read(self, size: int = -1) -> bytes:
        try:
            return self.f.read(size)
        except OSError as err:
            raise _StorageFailed() from err

    def readable(self) -> bool:
        return True


def read_lines(path: str) -> Iterator[bytes]:
    """The lines of a text file, decompressed by its suffix (.gz, .bz2, .zst, .xz; see paths.JSONL_SUFFIXES).
    Python's own readers, not Beam's: Beam's read a truncated .bz2 file as empty, without an error, so every
    chip it named would have been "not in the JSONL" with nothing pointing at the file. Damaged contents raise
    DamagedFile (after the lines before the damage); storage errors stay OSError, for the runner to retry."""
    import lzma
    import zlib

    kind = path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ""
    with open_for_read(path) as handle:
        if kind not in ("gz", "bz2", "xz", "zst"):
            yield from _plain_lines(handle)
            return
        raw = _Raw(handle)
        try:
            if kind == "zst":
                yield from _zstd_lines(raw)
                return
            if kind == "gz":
                import gzip

                f: BinaryIO = gzip.GzipFile(fileobj=raw)  # type: ignore[arg-type]
            elif kind == "bz2":
                import bz2

                f = bz2.BZ2File(raw)  # type: ignore[arg-type]
            else:
                f = lzma.LZMAFile(raw)  # type: ignore[arg-type]
            with f:
                yield from f
        except _StorageFailed as failed:
            raise failed.__cause__ from None  # type: ignore[misc]
        except (zlib.error, EOFError, lzma.LZMAError, OSError, ValueError) as err:
            raise DamagedFile(f"{type(err).__name__}: {str(err)[:200]}") from err


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _plain_lines(handle: BinaryIO, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The lines of an uncompressed text file as UTF-8 bytes: a file saved as UTF-16 with its byte order mark
    (PowerShell's `>`, Notepad's "Unicode") is decoded, as a text editor would show it; any other is passed on
    as it is. Read forward only: a named pipe (`<(zcat ...)`) cannot seek back."""
    head = handle.read(2)
    if head not in UTF16_BOMS:
        while b"\n" in head:
            line, head = head.split(b"\n", 1)
            yield line + b"\n"
        if head:
            yield head + handle.readline()
        yield from handle
        return
    import codecs

    decoder = codecs.getincrementaldecoder("utf-16")()
    try:
        pending = decoder.decode(head)
        while data := handle.read(chunk):
            pending += decoder.decode(data)
            *whole, pending = pending.split("\n")
            for line in whole:
                yield (line + "\n").encode("utf-8")
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError as err:
        raise DamagedFile(f"UTF-16 text (it starts with that byte order mark) that does not decode: {err.reason}"
                          ) from err
    if pending:
        yield pending.encode("utf-8")


def _zstd_lines(raw: _Raw, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Lines of a Zstandard stream (frames one after another), raising EOFError where it stops mid-frame: the
    zstandard package's own stream reader ends there without a word."""
    import zstandard

    pending = b""
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        while data := raw.read(chunk):
            while data:
                pending += dobj.decompress(data)
                data = dobj.unused_data if dobj.eof else b""
                if dobj.eof and data:
                    dobj = zstandard.ZstdDecompressor().decompressobj()
            *whole, pending = pending.split(b"\n")
            for line in whole:
                yield line + b"\n"
    except zstandard.ZstdError as err:
        raise ValueError(str(err)) from err
    if not dobj.eof:
        raise EOFError("Zstandard stream ended before the end of its frame")
    if pending:
        yield pending


def remove_tree(path: str) -> None:
    """Delete a folder (locally) or every object under a prefix (in a bucket), if there is one. A local link is
    removed itself, never what it links to: rmtree refuses a link (and, told to ignore errors, left it, so a page
    written there went into the folder it named)."""
    if is_local(path):
        if os.path.islink(path):
            os.remove(path)
            return
        shutil.rmtree(path, ignore_errors=True)
        return
    delete_files([m.path for m in match_under(path)])


def prune_empty_folders(path: str, itself: bool = False) -> None:
    """Remove the empty folders below ``path`` (and ``path`` itself when it ends up empty and ``itself``;
    locally: a bucket has no folders to leave behind)."""
    if not is_local(path) or not os.path.isdir(path):
        return
    for folder, _, _ in sorted(os.walk(path), key=lambda entry: -entry[0].count(os.sep)):
        if (folder != path or itself) and not os.listdir(folder):
            os.rmdir(folder)


def remove(path: str) -> None:
    """Delete a file if it is there."""
    if is_local(path):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        return
    if path.startswith("gs://") or exists(path):  # Cloud Storage's delete passes over a missing object
        delete_files([path])


COPY_THREADS = 16  # copies (copy_files) and delete batches the store is asked for at once, each a thread
DELETE_BATCH = 100  # names in one delete request (Cloud Storage's batch limit)


def delete_files(paths: list[str]) -> None:
    """Delete objects by their exact names. Beam's Cloud Storage delete takes each name as a pattern: it listed
    the bucket once per object, and ``runs[1]/x`` took ``runs1/x`` too. Its batch call, under that, deletes names
    as they are, 100 to a request, and passes over those already gone (a retried commit)."""
    if not paths:
        return
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems

    others = [p for p in paths if not p.startswith("gs://")]
    if others:
        FileSystems.delete(others)
    gcs = [p for p in paths if p.startswith("gs://")]
    if gcs:
        # The client Beam's own delete uses, made with the run's options (credentials, impersonation), one per
        # thread; batches of 100 sent several at a time (a mix's stage of 150,000 images is 1,500 of them).
        from concurrent.futures import ThreadPoolExecutor

        def batch(names: list[str]) -> list[tuple[str, int | None]]:
            return _gcs_client(names[0]).delete_batch(names)

        chunks = [gcs[i:i + DELETE_BATCH] for i in range(0, len(gcs), DELETE_BATCH)]
        if len(chunks) == 1:
            done = batch(chunks[0])
        else:
            with ThreadPoolExecutor(max_workers=min(COPY_THREADS, len(chunks)),
                                    thread_name_prefix="satsft-delete") as pool:
                done = [result for results in pool.map(batch, chunks) for result in results]
        failed = {p: code for p, code in done if code}
        if failed:
            raise BeamIOError("Delete operation failed", failed)


_CLIENTS = threading.local()  # this thread's Cloud Storage client, with the options it was made with


def _gcs_client(path: str):
    """The Cloud Storage client Beam's own filesystem uses for ``path``, made with the run's options
    (credentials, impersonation), once per thread and set of options. Beam's filesystem makes a new one for
    every call: a new connection to the store for every file, and a background fetch of the bucket's metadata
    each time (900 of a 100-tile build's 5,520 requests against the emulator)."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.gcp.gcsio import GcsIO

    store = FileSystems.get_filesystem(path)
    options = getattr(store, "_pipeline_options", None)
    held = getattr(_CLIENTS, "held", None)
    if held is None or held[0] is not options:
        held = (options, store._gcsIO() if hasattr(store, "_gcsIO") else GcsIO())
        _CLIENTS.held = held
    return held[1]


def _gcs_object(path: str):
    """An object's handle (no request yet) and the retry Beam gives its own calls (transient errors and
    throttling, counted for Dataflow's autoscaler); a write of the same bytes again is harmless, so writes and
    copies retry too."""
    from apache_beam.io.gcp.gcsio import parse_gcs_path
    from google.cloud.storage.retry import DEFAULT_RETRY

    client = _gcs_client(path)
    bucket, name = parse_gcs_path(path)
    return client.client.bucket(bucket).blob(name), getattr(client, "_storage_client_retry", DEFAULT_RETRY)


def missing_is_not_found(path: str) -> bool:
    """Whether reading ``path`` when it is not there raises FileNotFoundError (local files, and Cloud Storage
    through _as_os_error), so a caller may read and catch rather than ask first: one request, not two. Other
    stores Beam reaches raise errors of their own."""
    return is_local(path) or path.startswith("gs://")


def gcs_write_if(path: str, data: bytes, generation: int) -> int | None:
    """Write an object only while its generation is ``generation`` (0: while there is none), as one step of the
    store, which no other client can come between (Cloud Storage's ``ifGenerationMatch``). Returns the new
    object's generation, or None when another write came first."""
    from google.api_core.exceptions import PreconditionFailed

    blob = _gcs_object(path)[0]
    try:
        blob.upload_from_string(data, if_generation_match=generation)
    except PreconditionFailed:
        return None
    return int(blob.generation)


def gcs_read_with_generation(path: str) -> tuple[bytes, int] | None:
    """An object's bytes and the generation they belong to; None when it is not there (or changed while read)."""
    from google.api_core.exceptions import NotFound, PreconditionFailed

    blob = _gcs_object(path)[0]
    try:
        blob.reload()
        generation = int(blob.generation)
        return blob.download_as_bytes(if_generation_match=generation), generation
    except (NotFound, PreconditionFailed):
        return None


def gcs_delete_if(path: str, generation: int) -> bool:
    """Delete an object only while its generation is ``generation`` (not one another client wrote since)."""
    from google.api_core.exceptions import NotFound, PreconditionFailed

    try:
        _gcs_object(path)[0].delete(if_generation_match=generation)
    except (NotFound, PreconditionFailed):
        return False
    return True


def link_or_copy(src: str, dst: str, link: bool = True) -> str:
    """Hard-link when both ends are local on one device (and ``link``), else copy. Returns "link" or "copy".
    A link shares the file: a tool that rewrites the source in place (``open(path, "wb")``) changes both."""
    if link and is_local(src) and is_local(dst):
        if os.path.islink(src):  # link(2) links a symbolic link itself: its relative target names nothing in the
            src = os.path.realpath(src)  # output (git-annex, DataLad and the Hugging Face cache keep files so)
        try:  # the common case, a new name: one system call, and the file appears whole
            os.link(src, dst)
            return "link"
        except FileExistsError:
            if os.path.samefile(src, dst):  # linked by an earlier build (--update)
                return "link"
        except FileNotFoundError:  # its folder is not there yet (or the source is gone: that shows below)
            os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        except OSError:  # another device, or no hard links here: the copy below
            pass
        tmp = f"{dst}.tmp-{os.getpid()}"
        try:
            os.link(src, tmp)
            os.replace(tmp, dst)  # a reader finds the old file or the new one, never none (--update)
            return "link"
        except OSError:
            if os.path.lexists(tmp):
                os.remove(tmp)
    copy_file(src, dst)
    return "copy"


def copy_file(src: str, dst: str) -> None:
    """Copy one file whole. Within Cloud Storage the store copies it (rewriteTo, which also carries a large
    object across locations and storage classes, in as many calls as it takes, where copyTo gives up after 30
    s): no byte passes through this process, which is a Dataflow worker or the small machine a scheduled update
    commits from; a mix of 21,000 tiles between buckets sent every image down to it and up again. Elsewhere,
    bytes read and written (write_bytes: the copy appears whole)."""
    if src.startswith("gs://") and dst.startswith("gs://"):
        blob, retry = _gcs_object(src)
        target = _gcs_object(dst)[0]
        try:
            token, _, _ = target.rewrite(blob, retry=retry)
            while token is not None:
                token, _, _ = target.rewrite(blob, token=token, retry=retry)
            return
        except Exception as err:  # a source gone is an OSError, as it is locally
            raise _as_os_error(err, src) from err
    write_bytes(dst, read_bytes(src))


def copy_files(pairs: list[tuple[str, str]], gone_ok: bool = False) -> int:
    """Copy many files, each whole, several at a time where every copy is a round trip to a store (copy_file);
    the order among them is not kept. ``gone_ok``: a source no longer there is passed over (someone else
    finished the job). Returns how many were copied. A failure raises once the copies under way are done."""
    from concurrent.futures import ThreadPoolExecutor

    def one(pair: tuple[str, str]) -> int:
        try:
            copy_file(*pair)
        except FileNotFoundError:
            if not gone_ok:
                raise
            return 0
        return 1

    if len(pairs) < 2 or all(is_local(p) for pair in pairs for p in pair):
        return sum(map(one, pairs))
    with ThreadPoolExecutor(max_workers=min(COPY_THREADS, len(pairs)), thread_name_prefix="satsft-copy") as pool:
        return sum(pool.map(one, pairs))


def move(src: str, dst: str) -> None:
    """Put a finished file in its place: an atomic rename locally; in a bucket a copy (an object appears whole)
    and then the source goes."""
    if is_local(src) and is_local(dst):
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        os.replace(src, dst)
        return
    copy_file(src, dst)
    remove(src)


def _found(root: str, recursive: bool = True) -> tuple[str, dict[str, dict]]:
    """fsspec's listing of every file below a folder or bucket prefix (or only directly in it: not
    ``recursive``), path -> details, with that prefix. Never from gcsfs's cache of earlier listings: objects come
    from Beam's file systems, which fsspec does not see, so a listing cached before they were written would miss
    them (a mix --update's commit found its stage empty)."""
    import fsspec

    fs, base = fsspec.core.url_to_fs(root)
    base = base.rstrip("/")
    fs.invalidate_cache(base)
    if not recursive:
        try:
            return base + "/", {info["name"]: info for info in fs.ls(base, detail=True) if _is_file(info)}
        except FileNotFoundError:
            return base + "/", {}
    if not fs.isdir(base):
        return base + "/", {}
    found = fs.find(base, detail=True)
    return base + "/", (_through_links(fs, found, set()) if is_local(root) else found)


def _is_file(info: dict) -> bool:
    """A file, or a link to one: fsspec lists every link as type "other" (a Hugging Face cache snapshot is
    links only: a rebuild from one found none of its drawn files and drew every tile again)."""
    return info.get("type") == "file" or bool(info.get("islink")) and os.path.isfile(info["name"])


def _through_links(fs: Any, found: dict[str, dict], walked: set[str]) -> dict[str, dict]:
    """A local listing with each link to a folder replaced by what it holds: fsspec lists such a link as one
    entry and does not descend (an output whose images/ is a link to another disk listed none of its images).
    A link to a folder the walk is already in, or has walked, is passed over: links can make loops."""
    out: dict[str, dict] = {}
    for name, info in found.items():
        if not (info.get("islink") and os.path.isdir(name)):
            out[name] = info
            continue
        real = os.path.realpath(name)
        if real in walked or _within(os.path.realpath(os.path.dirname(name)), real):
            continue
        walked.add(real)
        out.update(_through_links(fs, fs.find(name, detail=True), walked))
    return out


def list_files(root: str) -> list[str]:
    """Every file below a folder or bucket prefix, relative to it, sorted ([] when there is none)."""
    prefix, found = _found(root)
    return sorted(p[len(prefix):] for p in found if p.startswith(prefix))


def names_in(folder: str) -> set[str]:
    """The names of the files directly in a folder or bucket prefix (not below it): one listing, a request per
    thousand objects in a bucket, where asking after each file would cost a request each."""
    prefix, found = _found(folder, recursive=False)
    return {p[len(prefix):] for p in found if p.startswith(prefix)}


def file_sizes(root: str) -> dict[str, int]:
    """Every file below a folder or bucket prefix, relative to it, with its size in bytes (one listing)."""
    prefix, found = _found(root)
    return {p[len(prefix):]: int(info.get("size") or 0) for p, info in found.items() if p.startswith(prefix)}


def same_bytes_marks(root: str, recursive: bool = True) -> dict[str, str]:
    """Files below a bucket prefix (or only directly in it), relative to it, with what tells their bytes apart
    without reading them: size and MD5 as Cloud Storage lists them, from one listing; "" for an object the
    store gives no MD5 for (a composed one). None elsewhere. Two files with the same mark (not "") hold the
    same bytes."""
    if not root.startswith("gs://"):
        return {}
    prefix, found = _found(root, recursive)
    return {p[len(prefix):]: f"{info.get('size')} {info['md5Hash']}" if info.get("md5Hash") else ""
            for p, info in found.items() if p.startswith(prefix)}


def bytes_mark(data: bytes) -> str:
    """same_bytes_marks' mark of bytes at hand (size and base64 MD5, as Cloud Storage lists an object's)."""
    import base64
    import hashlib

    return f"{len(data)} {base64.b64encode(hashlib.md5(data).digest()).decode()}"


def newest_write(roots: list[str]) -> datetime.datetime | None:
    """When a file below any of ``roots`` was last written (UTC; None when there is none or the store does not
    say): the storage's own time, so machines with different clocks agree on it."""
    times = [when for root in roots for when in map(_written_at, _found(root)[1].values()) if when is not None]
    return max(times, default=None)


def _written_at(info: dict) -> datetime.datetime | None:
    """An fsspec listing entry's modification time; each filesystem names it its own way (local and gcsfs
    ``mtime``, s3fs ``LastModified``, adlfs ``last_modified``)."""
    for key in ("mtime", "LastModified", "last_modified", "updated"):
        when = info.get(key)
        if isinstance(when, (int, float)):
            return datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
        if isinstance(when, str):
            try:
                when = datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(when, datetime.datetime):
            return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)
    return None


def public_location(path: str) -> str:
    """How a report names a location: a local folder by its name only (reports travel; home folders should
    not), a bucket URL in full."""
    return os.path.basename(path.rstrip("/")) if is_local(path) else path
