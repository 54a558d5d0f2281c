"""Path rules of the data contract: safe names, shard folders, unsafe references, base POIs."""

from __future__ import annotations

import re

_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_BASE_POI = re.compile(r"^(poi_\d+)")
_TILE_SUFFIX = re.compile(r"_t\d{4,}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
MAX_NAME_CHARS = 200


def safe_name(name: str) -> str:
    """Runs of characters outside [A-Za-z0-9._-] become "_", cut to 200 chars; never "." or ".."."""
    cleaned = _UNSAFE_RUN.sub("_", name)[:MAX_NAME_CHARS]
    if cleaned in ("", ".", ".."):
        cleaned = cleaned.replace(".", "_") or "_"
    return cleaned


def shard_levels(capacity: int, max_files_per_dir: int) -> int:
    """Folder levels a family of ``capacity`` files needs so that no folder holds more than the limit, files and
    sub-folders alike: one level up to limit² files (81 M at the default 9000), then one more per factor."""
    if max_files_per_dir < 2:
        raise ValueError("max_files_per_dir must be at least 2")
    levels, folders = 1, -(-max(capacity, 1) // max_files_per_dir)
    while folders > max_files_per_dir:
        levels += 1
        folders = -(-folders // max_files_per_dir)
    return levels


def shard_dir(index: int, max_files_per_dir: int, capacity: int) -> str:
    """The shard folder of the index-th of ``capacity`` files of a family: s00000 holds files 0..max-1, and so
    on; a family too large for one level of folders gets nested ones (s00001/s00042)."""
    if not 0 <= index < max(capacity, 1):
        raise ValueError(f"index {index} outside a family of {capacity} files")
    folder = index // max_files_per_dir
    parts = []
    for _ in range(shard_levels(capacity, max_files_per_dir) - 1):
        parts.append(f"s{folder % max_files_per_dir:05d}")
        folder //= max_files_per_dir
    parts.append(f"s{folder:05d}")
    return "/".join(reversed(parts))


def slot_dir(index: int, max_files_per_dir: int) -> str:
    """The shard folder of the index-th file of a family, whatever the family's size, so a file keeps its folder
    while the family grows (rebuilds keep every unchanged tile's paths). Up to (limit-1)·limit files this is
    s00000, s00001, ... each holding ``limit`` files, as a single level of folders has always been; the last
    entry, s<limit-1>, holds the rest: limit-1 trees of limit² files and again one overflow entry, and so on.
    No folder ever holds more than ``limit`` entries, files and sub-folders alike."""
    m = max_files_per_dir
    if m < 2:
        raise ValueError("max_files_per_dir must be at least 2")
    if index < 0:
        raise ValueError(f"index {index} is negative")
    parts, depth = [], 1
    while True:
        block = m ** depth
        if index < (m - 1) * block:
            parts.append(f"s{index // block:05d}")
            rest = index % block
            for level in range(depth - 1, 0, -1):
                parts.append(f"s{rest // m ** level:05d}")
                rest %= m ** level
            return "/".join(parts)
        index -= (m - 1) * block
        parts.append(f"s{m - 1:05d}")
        depth += 1


def normalise_ref(raw: str) -> str:
    """A reference as a path below the root: ``\\`` becomes ``/``, and ``.`` and empty segments go, so that
    ``./images/a.png`` (what ``os.path.join(".", ...)`` writes) is the chip ``images/a.png``. URLs and ``..``
    are left for unsafe_reason."""
    path = raw.strip().replace("\\", "/")
    if "://" in path:
        return path
    lead = "/" if path.startswith("/") else ""
    return lead + "/".join(part for part in path.split("/") if part not in ("", "."))


def unsafe_reason(path: str) -> str | None:
    """Why a reference from the chat JSONL must never be read, or None when it is safe."""
    if path and path[0] != "/" and ":" not in path and ".." not in path and "\x00" not in path:
        return None  # what nearly every path looks like, answered without the patterns below
    if not path:
        return "empty_path"
    if "\x00" in path:
        return "nul_in_path"
    if path.startswith("/"):
        return "absolute_path"
    if _DRIVE.match(path):
        return "drive_letter"
    if _SCHEME.match(path) or "://" in path:
        return "url_scheme"
    if any(part == ".." for part in path.split("/")):
        return "parent_traversal"
    return None


def inside(rel: str) -> bool:
    """Whether a path an output's own files name (its report, manifest, journal, rows) stays inside it: those
    files may come from elsewhere (a dataset cloned from the Hub, a hand edit), and a path that climbs out would
    have a rebuild delete, or a reader copy, a file of the machine."""
    return isinstance(rel, str) and unsafe_reason(rel) is None


TREE_IMAGE_FOLDERS = ("images", "mapbox_stills")
REBASED_SCHEMES = ("file://", "gs://", "s3://")  # where a tree or dataset itself may have lain; never http(s)
ABSOLUTE_REASONS = ("absolute_path", "drive_letter", "url_scheme")  # unsafe_reason of what may be rebased


def _absolute_parts(path: str) -> list[str] | None:
    """The segments of an absolute path (POSIX or drive letter), a ``file://`` or a bucket URL; None for a
    relative path or any other URL."""
    if path.lower().startswith(REBASED_SCHEMES):
        return path.split("://", 1)[1].split("/")
    return path.split("/") if path.startswith("/") or _DRIVE.match(path) else None


def _last_folder(parts: list[str], names: tuple[str, ...], any_case: bool = False) -> int:
    """Where the last folder (not the file) named one of ``names`` (in any case: ``any_case``) is, or -1."""
    return max((i for i, part in enumerate(parts[:-1]) if (part.casefold() if any_case else part) in names),
               default=-1)


def tree_folder_in_case(path: str) -> str:
    """A reference whose first folder is images/ or mapbox_stills/ in another case (``Images/s00000/x.png``, as a
    tree made on a Mac or on Windows, whose file systems ignore case, may write it) with that folder as the
    tree names it; any other path as it is."""
    head, sep, rest = path.partition("/")
    folded = head.casefold()
    return f"{folded}/{rest}" if sep and folded != head and folded in TREE_IMAGE_FOLDERS else path


def tree_relative(path: str) -> str | None:
    """An absolute reference (``/home/a/tree/images/s00000/x.png``, ``C:/tree/images/...``, ``file://`` or a
    bucket URL) as the path below the tree's root it names: from its last ``images`` or ``mapbox_stills``
    folder on. Producers that write ``str(path)`` of their own copy of the tree name chips this way; the
    build reads the input root's file of that name (never the absolute path), so a tree copied to another
    machine or bucket builds as it did where it was written. None when the path names no such folder."""
    parts = _absolute_parts(path)
    at = _last_folder(parts, TREE_IMAGE_FOLDERS, any_case=True) if parts else -1
    return tree_folder_in_case("/".join(p for p in parts[at:] if p not in ("", "."))) if parts and at >= 0 else None


def relative_from(path: str, folder: str) -> str | None:
    """A path written relative to ``folder`` (``../images/x.png`` from ``data``), as the path below the root
    that ``folder`` lies in that it names (``images/x.png``); None when it climbs out of that root. Tools that
    resolve an image from the file naming it write such paths."""
    parts = [p for p in folder.split("/") if p]
    for part in path.split("/"):
        if part != "..":
            parts.append(part)
        elif not parts:
            return None
        else:
            parts.pop()
    rel = "/".join(parts)
    return rel if rel and unsafe_reason(rel) is None else None


def data_relative(path: str) -> str | None:
    """A tree's reference written relative to the chat JSONL's own folder, ``data/`` (``../images/s00000/x.png``),
    as the path below the tree's root it names (``images/s00000/x.png``). Every such reference was an
    unsafe_path:parent_traversal reject and the build made no rows. None when the path does not start with
    ``../`` (a tree's paths start at its root) or climbs out of the tree."""
    return relative_from(path, "data") if path.startswith("../") else None


def below_image_root(path: str, root: str) -> str | None:
    """An absolute image path of a foreign dataset (``/data/llava/coco/x.jpg``, ``C:/...``, ``file://`` or a
    bucket URL) as the path below a mix source's image root it names: what follows the root itself, or, for a
    dataset written elsewhere and moved, what follows the last folder named as the root's own folder is
    (``/home/alice/llava/coco/x.jpg`` below ``/data/llava``). Exporters write ``str(path)``, and every such row
    was an unsafe_image_path reject. Only files below the root are read, as for relative paths; None when the
    path names none."""
    base = root.rstrip("/")
    local = path[len(REBASED_SCHEMES[0]):] if path.lower().startswith(REBASED_SCHEMES[0]) else path
    if base and local.startswith(base + "/"):
        rest = local[len(base) + 1:]
    else:
        parts, name = _absolute_parts(path), base.rsplit("/", 1)[-1]
        at = _last_folder(parts, (name,)) if parts and name else -1
        if at < 0:
            return None
        rest = "/".join(parts[at + 1:])
    rest = normalise_ref(rest)
    return rest if unsafe_reason(rest) is None else None


def file_stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


# Chat JSONL may come compressed, as `datasets` and most exporters write large files; Beam reads each by its suffix.
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.bz2", ".jsonl.zst", ".jsonl.xz")


def is_jsonl(path: str) -> bool:
    return path.endswith(JSONL_SUFFIXES)


def is_chat_file(path: str) -> bool:
    """A tree's chat rows: JSONL (compressed or not), or one JSON array of rows as LLaVA writes them."""
    return path.endswith(JSONL_SUFFIXES) or path.endswith(".json")


def jsonl_stem(path: str) -> str:
    """``train`` of data/train.jsonl and of data/train.jsonl.gz."""
    name = path.rsplit("/", 1)[-1]
    return name[:name.rindex(".jsonl")] if ".jsonl" in name else file_stem(name)


def file_type(path: str) -> str:
    """The file name's extension, lower case ("" when it has none)."""
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def base_poi_id(stem: str) -> str:
    """poi_000099_g001_t0000 -> poi_000099; a stem without a poi_<digits> prefix is its own base."""
    m = _BASE_POI.match(stem)
    return m.group(1) if m else stem


def still_lookup_keys(stem: str) -> list[str]:
    """Stills are looked up by the stem without its _tNNNN tile suffix first, then by the base POI."""
    keys = [_TILE_SUFFIX.sub("", stem)]
    base = base_poi_id(stem)
    if base not in keys:
        keys.append(base)
    return keys


def join_path(root: str, *parts: str) -> str:
    """Join with "/" for both local paths and bucket URLs (Beam and fsspec accept "/" everywhere)."""
    out = root.rstrip("/")
    for part in parts:
        if part:
            out = f"{out}/{part.strip('/')}"
    return out


CASE_MATCHED = "image_refs_case_matched"  # build event and report key: references found by input.join.file_named
WRITTEN_WHOLE = "jsonl_files_read_whole"  # build event and report key: .jsonl files holding JSON written whole
NESTED_NOT_READ = "chat_files_in_subfolders_not_read"  # build event and report key: input.read.ExtractImageRefs
HIDDEN_SKIPPED = "hidden_files_skipped"  # build event and report key: files of the tree is_hidden leaves unread


def is_hidden(root: str, path: str) -> bool:
    """Whether a file lies below ``root`` under a name starting with "." (``._x.json``, ``.ipynb_checkpoints/``,
    ``.DS_Store``): what a Mac writes beside every file it copies to a shared or FAT drive (AppleDouble ``._``
    files) and Jupyter beside every file it saves, never a tile nor rows. Builds and mixes read none of them (the
    build counts them, ``hidden_files_skipped``): each was a reject (one ``sidecar_invalid_json`` per tile copied
    from a Mac), and a checkpoint copy of a sidecar (an older version) was taken, the sidecar itself rejected as
    ``duplicate_tile_stem``."""
    prefix = root.rstrip("/") + "/"
    below = path[len(prefix):] if path.startswith(prefix) else path
    return any(part.startswith(".") for part in below.split("/"))
