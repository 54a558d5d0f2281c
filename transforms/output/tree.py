"""The output tree: the one place every output folder and file is named, and the reader of a finished build
or mix (local or gs://) that `validate`, `preview` and `eval` share.

No Beam here: the commands that read outputs back never start it.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from typing import IO, Any

import fsspec

from transforms.paths import inside

# Split files, one folder per format (FORMATS.md 2).
JSONL_DIR = "data"
PARQUET_DIR = "parquet"
LLAVA_DIR = "llava"
SHAREGPT_DIR = "sharegpt"
# Images a build writes or copies, and the row sidecars.
CHIPS_DIR = "images"
STILLS_DIR = "mapbox_stills"
ANALYSIS_DIR = "analysis_images"
OVERLAYS_DIR = "overlays"
METADATA_DIR = "metadata"
ROW_SIDECARS_DIR = f"{METADATA_DIR}/sft_metadata_rows"
PER_TILE_DIRS = (CHIPS_DIR, STILLS_DIR, ANALYSIS_DIR, OVERLAYS_DIR, ROW_SIDECARS_DIR)  # what the manifest names
MANIFEST_DIR = f"{METADATA_DIR}/manifest"  # one record per tile and per still: what a rebuild keeps (slots, splits)
SHARED_GROUND_FILE = f"{METADATA_DIR}/shared_ground.jsonl"  # held-out tiles on ground another split shows
PLACES_FILE = f"{METADATA_DIR}/places.jsonl"  # a mix's bases on the same ground: one place for `satsft eval`
FOOTPRINTS_DIR = f"{METADATA_DIR}/footprints"  # a mix's tiles with rows and the ground each shows, for a mix of it
MEDIA_DIR = "media"  # a mix's images, under the name of the source that owns them
# What every output has beside its rows.
REJECTS_DIR = "rejects"
REJECTS_FILE = f"{REJECTS_DIR}/rejects-00000-of-00001.jsonl"
CARD_NAME = "README.md"
CHARTS_DIR = "charts"
PREVIEW_DIR = "preview"
REPORT_NAME = "build_report.json"
TIMINGS_NAME = "build_timings.json"
MIX_REPORT_NAME = "mix_report.json"  # `satsft mix` writes this instead of build_report.json
MIX_TIMINGS_NAME = "mix_timings.json"
SPOOL_DIR = "_satsft_spool"  # rows spooled while a build or mix runs; removed at its end
PROGRESS_DIR = f"{SPOOL_DIR}/progress"  # one small file per worker while a run lasts (local outputs)
CHECK_IN = "_satsft_check_in.txt"  # a bucket output: held while a run checks it for writers (output.check_in)
UPDATE_DIR = "_satsft_update"  # --update: the new build's dataset files wait here until they replace the old ones
UPDATE_STAGE_DIR = f"{UPDATE_DIR}/stage"
# a mix --update into a bucket: lists of the images already in place with the new mix's bytes, left unstaged
UPDATE_KEPT_DIR = f"{UPDATE_DIR}/kept"
UPDATE_STARTED = f"{UPDATE_DIR}/started.txt"  # names the --update under way (transforms.rebuild.commit.begin)
UPDATE_JOURNAL = f"{UPDATE_DIR}/journal.json"  # present only while an update's commit is under way
UPDATE_REFUSED_DIR = f"{UPDATE_DIR}/refused"  # the rejects and report of the last update refused, for reading


def is_run_state(rel: str) -> bool:
    """A file satsft keeps beside an output while a run checks in or updates it, not part of any dataset: an
    output holding only such files holds no build or mix yet (a first scheduled --update into a bucket found
    its own check-in there and took the prefix for a build)."""
    return rel == CHECK_IN or rel.startswith((f"{UPDATE_DIR}/", f"{SPOOL_DIR}/"))


# Limits of an output, shared by build and mix.
ROWS_PER_SHARD = 20000  # about 50 MB of JSONL; Parquet shards stay well under the Hub's comfortable size
EMBEDDED_ROWS_PER_SHARD = 500  # with a chip, maybe a still and an analysis image per row: about 100 MB
MAX_FILES_PER_DIR = 9000  # entries per folder by default (the Hub refuses folders over 10,000)
MIN_FILES_PER_DIR = 16  # the output folder itself holds up to 16 entries

# Layouts (--layout): "default" writes every image as a file; "hub" keeps the file count the Hugging Face Hub
# accepts (under 100,000 per repository) at any size: Parquet rows with their images inside.
LAYOUTS = ("default", "hub")
HUB_MAX_FILES = 100_000
HUB_ROWS_PER_SHARD = 5000  # rows of about 330 tiles: Parquet files of some 50 MB
ANALYSIS_SPOOL_DIR = f"{SPOOL_DIR}/analysis"  # --layout hub: analysis images wait here for their row

# The top-level entries each command writes: --overwrite removes these and nothing else.
BUILD_ENTRIES = (JSONL_DIR, PARQUET_DIR, LLAVA_DIR, SHAREGPT_DIR, CHIPS_DIR, STILLS_DIR, ANALYSIS_DIR, OVERLAYS_DIR,
                 METADATA_DIR, REJECTS_DIR, CARD_NAME, REPORT_NAME, TIMINGS_NAME, SPOOL_DIR, CHARTS_DIR, PREVIEW_DIR,
                 UPDATE_DIR)
MIX_ENTRIES = (JSONL_DIR, PARQUET_DIR, MEDIA_DIR, METADATA_DIR, REJECTS_DIR, CARD_NAME, MIX_REPORT_NAME,
               MIX_TIMINGS_NAME, SPOOL_DIR, CHARTS_DIR, PREVIEW_DIR, UPDATE_DIR)  # metadata/: the shared-ground list


class DamagedReport(ValueError):
    """A build's or mix's report that does not parse, or lacks what a build or mix writes (a hand edit, a copy cut
    short): validate names it, and eval and preview stop with one line pointing at validate."""


def report_shape_problem(report: Any) -> str:
    """What keeps a parsed build_report.json or mix_report.json from being one, or "": the fields its readers go
    by (rows per task and split, the row total, rows per file, the config) with their types."""
    if not isinstance(report, dict):
        return "not a JSON object"
    rows = report.get("rows")
    by_task = rows.get("by_task_split") if isinstance(rows, dict) else None
    if not isinstance(by_task, dict) or not all(
            isinstance(splits, dict) and all(isinstance(n, int) for n in splits.values())
            for splits in by_task.values()):
        return "rows.by_task_split is not a row count per task and split"
    if not isinstance(rows.get("total"), int):
        return "rows.total is not a number"
    files = report.get("files", {})
    if not isinstance(files, dict) or not all(
            isinstance(paths, dict) and all(isinstance(n, int) for n in paths.values()) for paths in files.values()):
        return "files is not a row count per file per format"
    outside = next((p for paths in files.values() for p in paths if not inside(p)), None)
    if outside is not None:
        return f"files names {outside[:80]!r}, which is not a path inside the output"
    config = report.get("config")
    if not isinstance(config, dict):
        return "config is not an object"
    if not isinstance(config.get("row_sidecars", "files"), str):
        return "config.row_sidecars is not a string"
    if not isinstance(config.get("max_files_per_dir", 9000), int):
        return "config.max_files_per_dir is not a number"
    if not isinstance(report.get("outputs", {}), dict):
        return "outputs is not an object"
    return ""


def parse_report(data: bytes, name: str) -> dict[str, Any]:
    """The report ``name`` from its bytes; DamagedReport when it is not one."""
    import orjson

    try:
        report = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise DamagedReport(f"{name} cannot be read: not valid JSON ({err})") from err
    problem = report_shape_problem(report)
    if problem:
        raise DamagedReport(f"{name} cannot be read: {problem}")
    return report


def record_files(report: dict) -> tuple[str, list[str]]:
    """The format a finished output's rows are best read in (Parquet, else JSONL) and its split files, as its
    report lists them (no listing of the output needed)."""
    files = report.get("files", {})
    fmt = "parquet" if files.get("parquet") else "jsonl"
    return fmt, sorted(files.get(fmt, {}))


def tile_splits(data: IO[bytes], fmt: str) -> list[tuple[str, str]]:
    """(tile stem, split) of every row of one split file, reading only the rows' metadata."""
    import orjson
    import pyarrow.parquet as pq

    out = set()
    if fmt == "parquet":
        for batch in pq.ParquetFile(data).iter_batches(batch_size=4096, columns=["metadata"]):
            out.update((md["tile_stem"], md["split"]) for md in batch.column("metadata").to_pylist())
    else:
        for line in data:
            if line.strip():
                md = orjson.loads(line)["metadata"]
                out.add((md["tile_stem"], md["split"]))
    return sorted(out)


def split_of_file(path: str) -> str:
    """parquet/train-00000-of-00001.parquet -> train; data/validation.jsonl -> validation."""
    return posixpath.basename(path).split(".")[0].split("-")[0]


class OutputTree:
    """A finished output, local or in a bucket: its files listed once, relative to the root."""

    def __init__(self, url: str):
        self.fs, self.base = fsspec.core.url_to_fs(url)
        self.base = self.base.rstrip("/")
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.staged: dict[str, str] = {}  # files an --update's commit has yet to move into place
        from transforms import fileio

        self.files: set[str] = set(fileio.list_files(url))  # through links to folders (images/ on another disk)
        if UPDATE_JOURNAL in self.files:
            self._apply_journal()

    def _apply_journal(self) -> None:
        """An update killed during its commit: read the output as the commit will leave it (the next --update
        finishes it for real), so every reader sees one whole build, never half of each."""
        import orjson

        journal = orjson.loads(self.read(UPDATE_JOURNAL))
        for rel in journal["moves"]:
            staged = f"{UPDATE_STAGE_DIR}/{rel}"
            if staged in self.files:
                self.staged[rel] = staged
                self.files.add(rel)
        self.files.difference_update(journal["deletes"])

    def update_unfinished(self) -> bool:
        """An --update began here and has not finished (its folder holds more than a refused one's record)."""
        return any(p.startswith(UPDATE_DIR + "/") and not p.startswith(UPDATE_REFUSED_DIR + "/") for p in self.files)

    def exists(self) -> bool:
        return bool(self.files)

    def is_local(self) -> bool:
        """A folder on this machine, where reading a file costs no request."""
        return self.local

    def isfile(self, rel: str) -> bool:
        return rel in self.files

    def open(self, rel: str) -> IO[bytes]:
        path = f"{self.base}/{self.staged.get(rel, rel)}"
        if self.is_local():  # Python's own file: fsspec's local opener cost 30 us a file (validate reads every sidecar)
            return open(path, "rb")
        return self.fs.open(path, "rb")

    def read(self, rel: str) -> bytes:
        with self.open(rel) as f:
            return f.read()

    def read_within(self, rel: str) -> bytes:
        """``read``, never through a link out of the output (fileio.read_within): for what is copied out of it."""
        from transforms import fileio

        if not self.is_local():  # a bucket has no links
            return self.read(rel)
        return fileio.read_within(self.base, self.staged.get(rel, rel))

    def under(self, folder: str) -> list[str]:
        prefix = folder.rstrip("/") + "/"
        return sorted(p for p in self.files if p.startswith(prefix))

    def report_name(self) -> str:
        """The report this output has: a build's, else a mix's ("" when it has neither)."""
        return next((n for n in (REPORT_NAME, MIX_REPORT_NAME) if n in self.files), "")

    def entries_per_folder(self) -> dict[str, int]:
        """Entries (files and sub-folders) of every folder, from the file listing: a bucket has no empty
        folders, so nothing is missed."""
        children: dict[str, set[str]] = defaultdict(set)
        for path in self.files:
            parent, name = posixpath.split(path)
            children[parent].add(name)
            while parent:
                parent, name = posixpath.split(parent)
                children[parent].add(name)
        return {folder: len(names) for folder, names in children.items()}
