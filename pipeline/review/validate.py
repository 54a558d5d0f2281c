"""`satsft validate OUTPUT`: check a built tree the way a loader and the Hub will see it, and list every problem.

Checks: the report and card exist; every file the report or the card names exists and every split file on disk
is named by them; the card's split names match its files; each file parses in its format with the fixed schema;
row counts agree with the report; every referenced image exists; grounding answers are valid boxes; no per-tile
file lies outside the manifest; no folder holds more than the limit, files and sub-folders alike.

The output may be a local folder or a bucket URL (gs://...): it is listed once, and every check reads that
listing, so a bucket costs one paged listing plus the files that are parsed, not one request per image.
"""

from __future__ import annotations

import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow.parquet as pq
import yaml

from pipeline.yaml_limits import MAX_YAML_VALUES, shown, values_past
from transforms import fileio
from transforms.input import lfs
from transforms.input.sidecars import VALID_SPLITS
from transforms.output.claim import unfinished_in
from transforms.output.formats import (
    FORMATS,
    IMAGE_TOKEN,
    KNOWN_SCHEMAS,
    SIDECAR_SCHEMA,
)
from transforms.output.tree import (
    ANALYSIS_DIR,
    CARD_NAME,
    FOOTPRINTS_DIR,
    MANIFEST_DIR,
    MIX_REPORT_NAME,
    PER_TILE_DIRS,
    PLACES_FILE,
    REPORT_NAME,
    ROW_SIDECARS_DIR,
    SHARED_GROUND_FILE,
    DamagedReport,
    OutputTree,
    parse_report,
    split_of_file,
)
from transforms.rebuild.manifest import (
    STILLS_FILE,
    is_tiles_file,
    parse_stills,
    parse_tiles,
    still_paths,
    unnamed_files,
)
from transforms.rows import file_safe, grounding_problem, row_shape_problem
from transforms.splits.footprints import is_footprints_file, read_footprints, read_held_out, read_places
from transforms.tasks import is_grounding

SHOWN_PER_CHECK = 20


@dataclass
class Findings:
    """Problems grouped by check, so a thousand missing images print as twenty lines and a count."""

    by_check: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)  # what to do about them, printed after the problems
    missing: set[str] = field(default_factory=set)  # images rows name that are not there (the "images" check)

    def add(self, check: str, message: str) -> None:
        self.by_check[check].append(message)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_check.values())

    def lines(self) -> list[str]:
        out = []
        for check in sorted(self.by_check):
            problems = self.by_check[check]
            out.append(f"{check}: {len(problems)} problem(s)")
            out += [f"  - {p}" for p in problems[:SHOWN_PER_CHECK]]
            if len(problems) > SHOWN_PER_CHECK:
                out.append(f"  ... and {len(problems) - SHOWN_PER_CHECK} more")
        return out + [f"note: {note}" for note in self.notes]


LFS_CHECK = "git-lfs (files cloned without Git LFS: run `git lfs install` and then `git lfs pull` in the clone)"


def _check_pointer_images(root: str, tree: OutputTree, seen: set[str], findings: Findings) -> None:
    """Images that are Git LFS pointers (an output cloned without Git LFS; existence alone passed them). The
    listing's sizes pick the files small enough to be one (a pointer is about 130 bytes), and only those are
    read, so a large output costs one more listing, not a read per image."""
    sizes = fileio.file_sizes(root)
    for rel in sorted(p for p in seen if sizes.get(p, lfs.MAX_POINTER_BYTES) < lfs.MAX_POINTER_BYTES):
        try:
            with tree.open(rel) as f:
                head = f.read(64)
        except FileNotFoundError:  # listed, but a link to nothing (the listing gave the link's own size)
            findings.add("images", f"{rel}: cannot be read, a link to nothing or gone while read")
            continue
        if lfs.is_pointer(head):
            findings.add(LFS_CHECK, f"{rel}: a Git LFS pointer, not the image itself")


def _check_links_out(root: str, tree: OutputTree, seen: set[str], findings: Findings) -> None:
    """Referenced images that are links out of the output (satsft writes none: it copies or hard-links): in a
    dataset from elsewhere such a link could name any file of this machine, which preview and eval --requests
    refuse to read. Local folders only (a bucket has no links); one realpath per image."""
    if not tree.is_local():
        return
    out = [rel for rel in sorted(seen) if fileio.links_out(root, rel)]
    if out:
        findings.add("images", f"{len(out)} image(s) are links out of the output (first: {out[0]}): preview and "
                               "eval --requests will not read them")


def _read_report(tree: OutputTree, name: str, findings: Findings) -> dict[str, Any] | None:
    """The report, or None with a finding: a report that does not parse, or lacks what a build or mix writes,
    is one the checks cannot go by."""
    try:
        return parse_report(tree.read(name), name)
    except DamagedReport as err:
        findings.add("report", f"{err}; restore it, or run the build or mix again with --overwrite")
        return None


def _records(tree: OutputTree, rel: str, fmt: str, findings: Findings) -> Iterator[tuple[dict[str, Any], bool]]:
    """Rows of one file in the shared row shape (jsonl, parquet), each with whether it carries its images
    (then they need no file: --layout hub writes none); llava and sharegpt are checked on their own."""
    with tree.open(rel) as f:
        if lfs.is_pointer(f.read(64)):  # a clone of a published dataset made without Git LFS
            findings.add(LFS_CHECK, f"{rel}: a Git LFS pointer, not the file itself")
            return
    if fmt == "jsonl":
        with tree.open(rel) as f:
            for n, line in enumerate(f, 1):
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as err:
                    findings.add("jsonl", f"{rel} line {n}: not valid JSON ({err})")
                    continue
                problem = row_shape_problem(obj)
                if problem:
                    findings.add("jsonl", f"{rel} line {n}: {problem}")
                    continue
                yield obj, False
    elif fmt == "parquet":
        with tree.open(rel) as f:
            try:
                pf = pq.ParquetFile(f)
            except Exception as err:  # noqa: BLE001 - pyarrow raises several types for damaged files
                findings.add("parquet", f"{rel}: unreadable ({err})")
                return
            schema = pf.schema_arrow
            if not any(schema.equals(s) for s in KNOWN_SCHEMAS):
                findings.add("parquet", f"{rel}: schema differs from the fixed satsft schema")
                return
            embedded = "images" in schema.names
            for batch in pf.iter_batches(batch_size=256):
                for row in batch.to_pylist():
                    sid = row["metadata"]["sample_id"]
                    if embedded and [i["path"] for i in row["images"]] != row["metadata"]["image_paths"]:
                        findings.add("parquet", f"{rel} {sid}: embedded images do not match image_paths")
                    if embedded and not all(i["bytes"] for i in row["images"]):
                        findings.add("parquet", f"{rel} {sid}: an embedded image is empty")
                    row.pop("images", None)
                    problem = row_shape_problem(row)
                    if problem:
                        findings.add("parquet", f"{rel} {sid}: {problem}")
                        continue
                    yield row, embedded


def chat_item_problem(item: Any, fmt: str) -> str:
    """What keeps a LLaVA or ShareGPT record from its format's shape, or "": turns of text (LLaVA's
    conversations of from/value, ShareGPT's messages of role/content) and image paths."""
    if not isinstance(item, dict):
        return "not an object"
    turns_key, who, text = ("conversations", "from", "value") if fmt == "llava" else ("messages", "role", "content")
    turns = item.get(turns_key, [])
    if not isinstance(turns, list) or not all(
            isinstance(t, dict) and isinstance(t.get(who), str) and isinstance(t.get(text), str) for t in turns):
        return f"{turns_key} is not a list of turns with {who} and {text} strings"
    images = item.get("images", [])
    if not isinstance(images, list) or not all(isinstance(path, str) for path in images) or not isinstance(
            item.get("image", ""), str):
        return "its images are not paths"
    return ""


def _check_llava_sharegpt(tree: OutputTree, rel: str, fmt: str, findings: Findings, seen_images: set[str]) -> int:
    """A LLaVA or ShareGPT file: it parses, each row's first turn holds a token per image, and every image it
    names exists (a build written in these formats alone has no other rows to check)."""
    try:
        data = tree.read(rel)
        items = orjson.loads(data) if fmt == "llava" else [orjson.loads(line) for line in data.splitlines()]
    except orjson.JSONDecodeError as err:
        findings.add(fmt, f"{rel}: not valid JSON ({err})")
        return 0
    if not isinstance(items, list):
        findings.add(fmt, f"{rel}: not a list of rows")
        return 0
    for i, item in enumerate(items):
        problem = chat_item_problem(item, fmt)
        if problem:
            findings.add(fmt, f"{rel}: row {i}: {problem}")
            continue
        if fmt == "llava":
            images = item.get("images") or ([item["image"]] if "image" in item else [])
            turns = item.get("conversations", [])
            first = turns[0]["value"] if turns and turns[0].get("from") == "human" else None
        else:
            images = item.get("images", [])
            first = next((m["content"] for m in item.get("messages", []) if m.get("role") == "user"), None)
        if first is None:
            findings.add(fmt, f"{rel}: a row without a first human/user turn")
        elif first.count(IMAGE_TOKEN) != len(images):
            findings.add(fmt, f"{rel}: {first.count(IMAGE_TOKEN)} {IMAGE_TOKEN} tokens for {len(images)} images")
        for path in images:
            seen_images.add(path)
            if not tree.isfile(path):
                findings.add("images", f"{rel}: row {i} ({item.get('id', 'no id')}): missing {path}")
    return len(items)


def _check_sidecar_shard(tree: OutputTree, rel: str, findings: Findings, sidecar_ids: Counter[str]) -> int:
    """A Parquet shard of row sidecars: the fixed schema, and a JSON object per row whose sample id is its key."""
    with tree.open(rel) as f:
        try:
            pf = pq.ParquetFile(f)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for damaged files
            findings.add("sidecars", f"{rel}: unreadable ({err})")
            return 0
        if not pf.schema_arrow.equals(SIDECAR_SCHEMA):
            findings.add("sidecars", f"{rel}: schema differs from the row sidecar schema")
            return 0
        n = 0
        for batch in pf.iter_batches(batch_size=1024, columns=["sample_id", "sidecar"]):
            for sid, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                n += 1
                sidecar_ids[sid] += 1
                try:
                    side = orjson.loads(text)
                except orjson.JSONDecodeError:
                    findings.add("sidecars", f"{rel} {sid}: sidecar is not JSON")
                    continue
                if not isinstance(side, dict) or side.get("sample_id") != sid:
                    findings.add("sidecars", f"{rel} {sid}: sidecar does not belong to its row")
        return n


def _check_row(row: dict[str, Any], split: str, tree: OutputTree, findings: Findings, seen_images: set[str],
               embedded: bool = False) -> None:
    md = row["metadata"]
    sid = md.get("sample_id", "?")
    if md.get("split") != split:
        findings.add("rows", f"{sid}: split {md.get('split')!r} in the {split} file")
    user = next((m for m in row["messages"] if m.get("role") == "user"), None)
    if user is None:
        findings.add("rows", f"{sid}: no user message")
        return
    parts = user["content"]
    images = [p["image"] for p in parts if p.get("type") == "image"]
    if images != md.get("image_paths"):
        findings.add("rows", f"{sid}: image parts differ from metadata.image_paths")
    for path in [*images, md.get("analysis_image_path") or ""]:
        if not path:
            continue
        seen_images.add(path)
        if not embedded and not tree.isfile(path):
            findings.add("images", f"{sid}: missing {path}")
            findings.missing.add(path)
    if is_grounding(md.get("task", "")):
        answer = "".join(p.get("text") or "" for p in row["messages"][-1]["content"])
        problem = grounding_problem(answer)
        if problem:
            findings.add("grounding", f"{sid}: {problem}")


def _card_configs(tree: OutputTree, findings: Findings) -> list[dict[str, Any]]:
    """The `configs` of the card's YAML header, or [] (with a finding) when there is no usable header."""
    if not tree.isfile(CARD_NAME):
        findings.add("card", f"{CARD_NAME} is missing")
        return []
    text = tree.read(CARD_NAME).decode("utf-8", errors="replace")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        findings.add("card", f"{CARD_NAME} has no YAML header")
        return []
    try:
        header = yaml.safe_load(text[4:text.index("\n---\n", 4)])
    except yaml.YAMLError as err:
        findings.add("card", f"{CARD_NAME} YAML header does not parse: {err}")
        return []
    if values_past(header):
        findings.add("card", f"{CARD_NAME} YAML header holds more than {MAX_YAML_VALUES:,} values once its "
                             "aliases are expanded (aliases of aliases, or an alias inside what it names)")
        return []
    configs = header.get("configs", []) if isinstance(header, dict) else None
    if header is not None and not isinstance(configs, list):
        findings.add("card", f"{CARD_NAME} YAML header holds no list of configs")
        return []
    for config in configs or []:
        if not isinstance(config, dict):
            findings.add("card", f"{CARD_NAME}: a config that is not a mapping ({shown(config)})")
    return [config for config in configs or [] if isinstance(config, dict)]


def _card_files(configs: list[dict[str, Any]], splits_with_rows: set[str], findings: Findings) -> set[str]:
    """Every file the card's configs name; each entry's split must be a real split whose files it lists, and
    each config must cover exactly the splits that have rows (a renamed split would load as a new one)."""
    files: set[str] = set()
    for config in configs:
        name = config.get("config_name", "?")
        seen: set[str] = set()
        entries = config.get("data_files", [])
        if not isinstance(entries, list):
            findings.add("card", f"config {name}: data_files is not a list of split and path entries")
            entries = []
        for entry in entries:
            split = entry.get("split", "") if isinstance(entry, dict) else None
            paths = entry.get("path", []) if isinstance(entry, dict) else None
            paths = paths if isinstance(paths, list) else [paths]
            if not isinstance(split, str) or not all(isinstance(path, str) for path in paths):
                findings.add("card", f"config {name}: a data_files entry that is not a split and its paths "
                                     f"({shown(entry)})")
                continue
            files.update(paths)
            seen.add(split)
            if split not in VALID_SPLITS:
                findings.add("card", f"config {name}: split {split!r} is not one of {', '.join(VALID_SPLITS)}")
            for path in paths:
                if split_of_file(path) != split:
                    findings.add("card", f"config {name}: split {split!r} points at {path}, a "
                                         f"{split_of_file(path)} file")
        for split in sorted(splits_with_rows - seen):
            findings.add("card", f"config {name}: no data_files for split {split!r}, which has rows")
        for split in sorted(seen - splits_with_rows):
            findings.add("card", f"config {name}: split {split!r} has no rows in the report")
    return files


MAX_SIDECAR_FILES_READ = 100_000  # locally some 40 us each; in a bucket a request each, so names only there


def _check_sidecar_files(tree: OutputTree, files: list[str], sample_ids: Counter[str], findings: Findings) -> None:
    """As many row sidecar files as rows: each is named after a row (``file_safe(sample_id).json``), and, read
    where reading is cheap (a local folder, up to MAX_SIDECAR_FILES_READ files), each is a JSON object naming
    that row. A sidecar swapped, renamed or cut short by hand was not seen: only the count was checked."""
    of_name = {f"{file_safe(sid)}.json": sid for sid in sample_ids}
    nameless = [p for p in files if posixpath.basename(p) not in of_name]
    if nameless:
        findings.add("sidecars", f"{len(nameless)} row sidecar file(s) named after no row (first: {nameless[0]}), "
                                 f"as many rows without one")
        return
    if not tree.is_local() or len(files) > MAX_SIDECAR_FILES_READ:
        return
    wrong = []
    for rel in files:
        sid = of_name[posixpath.basename(rel)]
        try:
            side = orjson.loads(tree.read(rel))
        except (OSError, orjson.JSONDecodeError) as err:
            wrong.append(f"{rel}: not JSON ({str(err)[:80]})")
            continue
        if not isinstance(side, dict) or side.get("sample_id") != sid:
            wrong.append(f"{rel}: does not name its row {sid}")
    if wrong:
        findings.add("sidecars", f"{len(wrong)} row sidecar file(s) damaged (first: {wrong[0]})")


def _check_sidecar_count(tree: OutputTree, mode: str, total: int, sample_ids: Counter[str],
                         sidecar_ids: Counter[str], findings: Findings) -> bool:
    """One row sidecar per row, as files or in Parquet shards (--row-sidecars), or none at all; returns whether
    row sidecar files are fewer than rows (some gone)."""
    files = [p for p in tree.under(ROW_SIDECARS_DIR) if p.endswith(".json")]
    if mode == "files":
        # An unfinished --update has written the sidecars of new and changed tiles before any row names them, and
        # removes the old ones only after its commit: more files than rows then, never fewer.
        if len(files) < total or (len(files) > total and not tree.update_unfinished()):
            findings.add("counts", f"{len(files)} row sidecars under {ROW_SIDECARS_DIR}, {total} rows")
        elif sample_ids and not tree.update_unfinished():
            _check_sidecar_files(tree, files, sample_ids, findings)
        return len(files) < total
    if files:
        findings.add("sidecars", f"{len(files)} row sidecar files under {ROW_SIDECARS_DIR}, but row_sidecars is "
                                 f"{mode!r}")
    if mode == "parquet" and sample_ids and sidecar_ids != sample_ids:
        missing, extra = set(sample_ids) - set(sidecar_ids), set(sidecar_ids) - set(sample_ids)
        findings.add("sidecars", f"row sidecar shards: {len(missing)} rows without a sidecar, {len(extra)} "
                                 f"sidecars without a row, {sum(1 for n in sidecar_ids.values() if n > 1)} repeated")
    return False


MANIFEST_DAMAGE = (ValueError, KeyError, TypeError, AttributeError)  # what parsing a damaged line raises (orjson's
# JSONDecodeError is a ValueError)


def manifest_problem(data: bytes, stills: bool) -> str:
    """Why a file of the manifest (tiles, or the stills) does not parse, or "": the next --update or --previous
    build stops on it."""
    try:
        if stills:
            parse_stills(data)
            still_paths(data)
        else:
            parse_tiles(data)
    except MANIFEST_DAMAGE as err:
        return f"{err.__class__.__name__}: {str(err)[:120]}"
    return ""


def _check_stray_files(tree: OutputTree, listed: set[str], findings: Findings) -> None:
    """Per-tile files (chips, stills, analysis images, overlays, row sidecars) that no tile of the manifest
    names; a Hub upload would carry them. An --update stopped before its commit leaves such files until the
    next one removes them, so the check waits while an update is unfinished; it skips builds without a
    manifest."""
    manifests = [p for p in tree.under(MANIFEST_DIR) if is_tiles_file(p)]
    if not manifests or tree.update_unfinished():
        return
    tiles = [tree.read(rel) for rel in manifests]
    stills = tree.read(STILLS_FILE) if tree.isfile(STILLS_FILE) else None
    found = [p for folder in PER_TILE_DIRS for p in tree.under(folder)]
    try:  # each manifest file parsed once; only when one does not parse is each tried alone, to name it
        parse_stills(stills or b"")  # as a rebuild reads it (unnamed_files reads only its paths)
        stray = unnamed_files(found, tiles, stills, listed)
    except MANIFEST_DAMAGE:
        for rel, data in [*zip(manifests, tiles, strict=True), (STILLS_FILE, stills or b"")]:
            problem = manifest_problem(data, rel == STILLS_FILE)
            if problem:
                findings.add("files", f"{rel} does not parse ({problem}): an --update or --previous build of this "
                                      "output stops on it; restore it, or build again with --overwrite")
        return  # which files the manifest names is not known
    if stray:
        findings.add("files", f"{len(stray)} file(s) under {', '.join(f'{d}/' for d in PER_TILE_DIRS)} that no tile of "
                              f"the manifest names (first: {stray[0]}): left by an update that ran while another "
                              "update of the folder began, or put there by hand; delete them")


def _check_shared_ground_list(tree: OutputTree, outputs: dict[str, Any], report_name: str,
                              findings: Findings) -> None:
    """metadata/shared_ground.jsonl, which `satsft eval` reads to score rows on unseen ground apart, and a mix's
    metadata/places.jsonl, which it reads to draw a chip's views as one place, and a mix's footprint list, which
    a mix of it reads to check its ground, are there as the report says, and parse. Missing, each would pass
    for a run that found nothing to list: eval would score shared ground as unseen, and a mix of the mix would
    call its tiles unchecked, made before mixes listed footprints."""
    footprints = [rel for rel in tree.under(FOOTPRINTS_DIR) if is_footprints_file(rel)]
    for what, key, found in (
            (SHARED_GROUND_FILE, "shared_ground_files_written", int(tree.isfile(SHARED_GROUND_FILE))),
            (PLACES_FILE, "places_files_written", int(tree.isfile(PLACES_FILE))),
            (f"{FOOTPRINTS_DIR}/", "footprint_files_written", len(footprints))):
        said = int(outputs.get(key, 0) or 0)
        if found != said and not (found and key not in outputs):  # an older report does not count the file
            findings.add("files", f"{what}: {found} file(s) there, {report_name} says {said} ({key}); run the build "
                                  "or mix again to write its lists anew")
    lists = [(SHARED_GROUND_FILE, read_held_out), (PLACES_FILE, read_places)]
    lists += [(rel, read_footprints) for rel in footprints]
    for name, read in lists:
        if not tree.isfile(name):
            continue
        try:
            read(tree.read(name))
        except (orjson.JSONDecodeError, KeyError, TypeError) as err:
            findings.add("files", f"{name} does not parse ({err.__class__.__name__}: {str(err)[:120]}); run the "
                                  "build or mix again to write it anew")


def _names_apart_in_any_case(tree: OutputTree, findings: Findings) -> None:
    """A note, not a problem: file names that differ in case only (two tile stems `A` and `a` give both) are two
    files here and in a bucket, and one in a clone on macOS or Windows, whose file systems ignore case (git
    checks one out over the other), so a dataset published to the Hub loses one of each there."""
    first: dict[str, str] = {}
    clashes = []
    for path in sorted(tree.files):
        other = first.setdefault(path.casefold(), path)
        if other != path:
            clashes.append((other, path))
    if clashes:
        a, b = clashes[0]
        findings.notes.append(f"{len(clashes)} file name(s) differ from another in case only (first: {a} and {b}): a "
                              "clone on macOS or Windows, whose file systems ignore case, keeps one of each; they "
                              "come from tile stems that differ in case only, which a tree made there cannot hold")


def _folder_limits(tree: OutputTree, limit: int, findings: Findings) -> None:
    for folder, n in sorted(tree.entries_per_folder().items()):
        if n > limit:
            findings.add("folders", f"{folder or '.'} holds {n} entries, files and sub-folders (limit {limit})")


def _unfinished(tree: OutputTree, root: str) -> str:
    """Why a folder has no report: a run that names itself there has not finished (it runs, or stopped)."""
    state = unfinished_in(tree)
    if not state:
        return f"is {root!r} a satsft build or mix output?"
    return f"{state}; validate it once it has finished, or run it again with --overwrite if it stopped"


def validate(root: str) -> tuple[Findings, dict[str, int]]:
    """All problems found in the built tree at ``root`` (a folder or bucket URL), and what was checked."""
    findings = Findings()
    checked: Counter[str] = Counter()
    tree = OutputTree(root)
    name = next((n for n in (REPORT_NAME, MIX_REPORT_NAME) if tree.isfile(n)), None)
    if name is None:
        findings.add("report", f"{REPORT_NAME} (or {MIX_REPORT_NAME}) is missing: {_unfinished(tree, root)}")
        return findings, checked
    report = _read_report(tree, name, findings)
    if report is None:
        return findings, checked
    checked["update_unfinished"] = int(tree.update_unfinished())
    files: dict[str, dict[str, int]] = report.get("files", {})
    split_rows: Counter[str] = Counter()
    for splits in report["rows"]["by_task_split"].values():
        split_rows.update(splits)
    card_files = _card_files(_card_configs(tree, findings), {s for s, n in split_rows.items() if n}, findings)
    listed = {p for paths in files.values() for p in paths}
    for p in sorted(card_files - listed):
        findings.add("card", f"{CARD_NAME} names {p}, which the build did not write")
    for fmt in ("parquet", "jsonl"):
        for p in sorted(set(files.get(fmt, {})) - card_files):
            findings.add("card", f"{p} is not named in the {CARD_NAME} configs")
    mode = report["config"].get("row_sidecars", "files")
    folders = [(spec.folder, spec.suffix) for spec in FORMATS.values()] + [(ROW_SIDECARS_DIR, ".parquet")]
    for folder, suffix in folders:
        for p in tree.under(folder):
            if p not in listed and p.endswith(suffix):
                findings.add("files", f"{p} is not listed in {name}")
    counted: Counter[tuple[str, str]] = Counter()
    sample_ids: Counter[str] = Counter()
    seen_images: set[str] = set()
    sidecar_ids: Counter[str] = Counter()
    record_formats = [f for f in ("jsonl", "parquet") if f in files]
    for fmt, paths in sorted(files.items()):
        for rel, expected in sorted(paths.items()):
            split = split_of_file(rel)
            if not tree.isfile(rel):
                findings.add("files", f"{rel} is missing ({expected} rows expected)")
                continue
            checked["files"] += 1
            if fmt in ("llava", "sharegpt"):
                n = _check_llava_sharegpt(tree, rel, fmt, findings, seen_images)
                checked["rows"] += n if not record_formats and fmt == min(set(files) & {"llava", "sharegpt"}) else 0
            elif fmt == "row_sidecars":
                n = _check_sidecar_shard(tree, rel, findings, sidecar_ids)
            else:
                n = 0
                for row, embedded in _records(tree, rel, fmt, findings):
                    n += 1
                    if fmt == record_formats[0]:
                        _check_row(row, split, tree, findings, seen_images, embedded)
                        md = row["metadata"]
                        counted[(md.get("task", "?"), split)] += 1
                        sample_ids[md.get("sample_id", "?")] += 1
                checked["rows"] += n if fmt == record_formats[0] else 0
            if n != expected:
                findings.add("counts", f"{rel}: {n} rows, {name} says {expected}")
    for split in VALID_SPLITS:
        if not split_rows[split]:
            continue
        for fmt in record_formats:
            if not any(split_of_file(p) == split for p in files[fmt]):
                findings.add("files", f"no {fmt} file for split {split}")
    if record_formats:
        by_task = report["rows"]["by_task_split"]
        expected_counts = {(t, s): n for t, splits in by_task.items() for s, n in splits.items()}
        for key in sorted(set(expected_counts) | set(counted)):
            if expected_counts.get(key, 0) != counted.get(key, 0):
                findings.add("counts", f"{key[0]}/{key[1]}: {counted.get(key, 0)} rows in files, {name} "
                                       f"says {expected_counts.get(key, 0)}")
        for sid, n in sample_ids.items():
            if n > 1:
                findings.add("rows", f"sample_id {sid} appears {n} times")
    checked["images"] = len(seen_images)
    _check_pointer_images(root, tree, seen_images, findings)
    _check_links_out(root, tree, seen_images, findings)
    sidecars_gone = _check_sidecar_count(tree, mode, report["rows"]["total"], sample_ids, sidecar_ids, findings)
    _check_stray_files(tree, listed, findings)
    _check_shared_ground_list(tree, report.get("outputs", {}), name, findings)
    _folder_limits(tree, int(report["config"].get("max_files_per_dir", 9000)), findings)
    _names_apart_in_any_case(tree, findings)
    maps_gone = any(p.startswith(f"{ANALYSIS_DIR}/") for p in findings.missing)
    if name == REPORT_NAME and (maps_gone or sidecars_gone):
        # the next --update lists the folders and draws a tile whose files are gone again, in its slot
        findings.notes.append("some of the analysis images, overlays or row sidecars the build drew are gone: "
                              "`satsft build ... --update` draws their tiles again")
    return findings, checked
