"""Mix recipes (`satsft mix`): a YAML file or --source specs, checked and resolved before anything is read
or written, so a bad recipe is a usage error that names the problem and leaves no output behind.

```yaml
seed: 0
sources:
  - name: main              # required, unique, [a-z0-9_-]+; used in ids and media paths
    path: builds/sat        # a satsft output, one Parquet, Arrow, JSONL or .json-array file, or a folder / glob of them
    repeat: 1               # number > 0: 8 = eight copies, 0.5 = a deterministic half; default 1
    where: {task: production_analysis, profile: wildfire}   # optional; task, profile, split: str or list
    share: 0.05             # instead of repeat: this source's share of the mix's train rows
    image_root: other/media # optional; default: the satsft output the files lie in, else their folder
```
Relative paths are taken from the working directory, as every other satsft path.
"""

from __future__ import annotations

import hashlib
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

import fsspec
import yaml

from pipeline.errors import UsageError
from pipeline.yaml_limits import MAX_YAML_VALUES, shown, values_past
from transforms import fileio
from transforms.input.sidecars import VALID_SPLITS
from transforms.mix.rows import FILTER_KEYS, split_of_path
from transforms.output import claim
from transforms.output.tree import (
    FOOTPRINTS_DIR,
    MANIFEST_DIR,
    SPOOL_DIR,
    UPDATE_JOURNAL,
    DamagedReport,
    OutputTree,
    parse_report,
)
from transforms.paths import JSONL_SUFFIXES, is_hidden
from transforms.rebuild.manifest import files_as_read, manifest_tiles_files
from transforms.records import name_not_utf8, written_name
from transforms.splits.footprints import is_footprints_file

RECIPE_KEYS = frozenset({"seed", "sources"})
SOURCE_KEYS = frozenset({"name", "path", "repeat", "share", "where", "image_root"})
NAME = re.compile(r"^[a-z0-9_-]+$")
MAX_NAME_CHARS = 64  # a name is a folder under media/ and part of every row id: a file system holds 255
# .json: one array of rows (LLaVA's shape); .arrow: what `datasets`' save_to_disk writes
DATA_SUFFIXES = (".parquet", *JSONL_SUFFIXES, ".json", ".arrow")
OUTPUT_REPORTS = ("build_report.json", "mix_report.json")  # what makes a folder a satsft output (build, mix)


@dataclass(frozen=True)
class Source:
    """One source of a mix, resolved: which files to read and where their images live."""

    name: str
    path: str  # as the recipe gave it
    kind: str  # "satsft" (an output folder, found by its build_report.json or mix_report.json) or "files"
    files: tuple[str, ...]  # the Parquet or JSONL files to read, sorted
    root: str  # relative image paths resolve against this
    repeat: float | None = 1.0
    share: float | None = None
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dataset: str = ""  # what "the same row of the same dataset" means: the resolved folder or file list
    folder: str = ""  # the satsft output folder, or the folder the files were found in
    # A satsft output's tasks, profiles and splits with rows, from the report read to find its files (read
    # once: in a bucket each read is a request); a mix records no profiles, so it has none ("" only).
    holds: dict[str, frozenset[str]] = field(default_factory=dict)
    # Files found whose names are not UTF-8 (as written, transforms.records.written_name): never read, each a
    # path_not_utf8 reject, since no Beam step, JSON or Parquet can carry such a name.
    unnamable: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "kind": self.kind, "repeat": self.repeat, "share": self.share,
                "where": {k: list(v) for k, v in self.where.items()}, "files": len(self.files)}


@dataclass(frozen=True)
class Recipe:
    seed: int
    sources: tuple[Source, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "sources": [s.as_dict() for s in self.sources]}


def _number(value: Any, what: str) -> float:
    """A finite number (YAML's .nan and .inf, and nan or inf in --source, are numbers no copy count can take)."""
    try:
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer past what a float holds (YAML reads 10**400 as one)
        finite = False
    if not finite:
        given = f"an integer of {value.bit_length()} bits" if isinstance(value, int) else shown(value)
        raise UsageError(f"{what} must be a number, not {given}")
    return float(value)


def _where(raw: Any, name: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError(f"source {name!r}: where must be a mapping of {', '.join(FILTER_KEYS)}")
    unknown = sorted(set(raw) - set(FILTER_KEYS))
    if unknown:
        raise UsageError(f"source {name!r}: unknown where key(s) {', '.join(map(repr, unknown))}; use "
                         f"{', '.join(FILTER_KEYS)}")
    out = {}
    for key, value in raw.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) and v for v in values):
            raise UsageError(f"source {name!r}: where.{key} must be a name or a list of names")
        out[key] = tuple(values)
    return out


def _list(pattern: str) -> list[str]:
    """Files a path names: a glob's matches, or the one file a plain path names (the most natural source)."""
    fs, _ = fsspec.core.url_to_fs(pattern)
    if fs.isfile(pattern):  # first: a file's own name may hold "[" or "*"
        found = [pattern]
    elif any(c in pattern for c in "*?["):
        found = fs.glob(pattern)
    else:
        found = []
    prefix = "" if fileio.is_local(pattern) else pattern.split("://", 1)[0] + "://"
    return sorted(prefix + p if prefix and not p.startswith(prefix) else p for p in found)


def _holdings(report: dict[str, Any], is_build: bool) -> dict[str, frozenset[str]]:
    """What a filter of a satsft output can select: the tasks and splits its report counts rows for, and the
    profiles of its production_analysis rows ("" for rows of other tasks; a mix's report lists none)."""
    by_task = report["rows"]["by_task_split"]
    tasks = {t for t, splits in by_task.items() if any(splits.values())}
    splits = {s for v in by_task.values() for s, n in v.items() if n}
    profiles = set(report["config"].get("profiles", [])) if "production_analysis" in tasks else set()
    profiles |= {""} if tasks - {"production_analysis"} else set()
    return {"task": frozenset(tasks), "profile": frozenset(profiles), "split": frozenset(splits),
            "build": frozenset({"yes"} if is_build else ())}


def _resolve(name: str, path: str, image_root: str | None
             ) -> tuple[str, tuple[str, ...], str, str, str, dict[str, frozenset[str]], tuple[str, ...]]:
    """(kind, files, image root, dataset identity, folder, what a filter can select, files whose names are not
    UTF-8) of one source path."""
    where = os.path.abspath(os.path.expanduser(os.path.expandvars(path))) if fileio.is_local(path) else path
    where = where.rstrip("/")
    fs, _ = fsspec.core.url_to_fs(where)
    report_name = next((n for n in OUTPUT_REPORTS if fs.isfile(f"{where}/{n}")), "")
    if report_name:  # a build or a mix: its rows once, from the files its report lists (a mix may hold both formats)
        # An --update stopped during its commit: read the build as the commit leaves it, as every reader does
        # (OutputTree), not the new report's files where some still wait in the stage.
        tree = OutputTree(where) if fs.isfile(f"{where}/{UPDATE_JOURNAL}") else None
        try:
            report = parse_report(tree.read(report_name) if tree else fileio.read_bytes(f"{where}/{report_name}"),
                                  report_name)
        except DamagedReport as err:
            raise UsageError(f"source {name!r}: {err}; `satsft validate {path}` lists what else is damaged; restore "
                             "it, or build that output again") from err
        written = report.get("files", {})
        fmt = "parquet" if written.get("parquet") else "jsonl"
        files = tuple(sorted(f"{where}/{tree.staged.get(p, p) if tree else p}" for p in written.get(fmt, {})))
        if not files:
            raise UsageError(f"source {name!r}: the satsft output {path!r} holds no Parquet or JSONL rows; give its "
                             "llava/ or sharegpt/ folder as the path instead, or build it with jsonl or parquet among "
                             "--formats")
        holds = _holdings(report, report_name == OUTPUT_REPORTS[0])
        return "satsft", files, image_root or where, f"satsft:{where}", where, holds, ()
    if fs.isdir(where):
        files = tuple(p for p in _list(f"{fileio.literal_pattern(where)}/**")
                      if p.endswith(DATA_SUFFIXES) and fileio.is_under(where, p) and not is_hidden(where, p))
        base = where
    else:
        listed = _list(where)
        # A file's folder; a glob's is where its wildcards begin.
        literal_head = where if listed == [where] else re.split(r"[*?[]", where, maxsplit=1)[0]
        base = literal_head.rsplit("/", 1)[0] if "/" in literal_head else "."
        files = tuple(p for p in listed if p.endswith(DATA_SUFFIXES) and (listed == [where] or not is_hidden(base, p)))
        if listed == [where] and not files:
            raise UsageError(f"source {name!r}: {path!r} is a file but not .parquet, .arrow, .jsonl (or .jsonl.gz, "
                             ".bz2, .zst, .xz) or a .json array; a source is a "
                             "satsft output, a folder or glob of such files, or one of them")
        if listed == [where] and where.endswith(".json") and not _holds_an_array(fs, where):
            raise UsageError(f"source {name!r}: {path!r} is not a JSON array of rows (a .json source holds one "
                             "array, as LLaVA's data files do; JSON Lines go in a .jsonl file)")
    # A folder's or glob's .json files are rows only where there are no others (LLaVA ships one array per
    # split); beside Parquet or JSONL they are the dataset's metadata (dataset_infos.json), never read.
    if any(not p.endswith(".json") for p in files):
        files = tuple(p for p in files if not p.endswith(".json"))
    else:
        files = tuple(p for p in files if _holds_an_array(fs, p))
    _refuse_unfinished(fs, name, base)
    unnamable = tuple(written_name(p) for p in files if name_not_utf8(p))
    files = tuple(p for p in files if not name_not_utf8(p))
    if unnamable and not files:
        raise UsageError(f"source {name!r}: the name of every file it holds is not UTF-8 (first: {unnamable[0]}); "
                         "rename them")
    if not files:
        raise UsageError(f"source {name!r}: {path!r} is not a satsft output and matches no .parquet, .arrow, "
                         ".jsonl (.jsonl.gz, ...) or .json array files; check the path (relative paths start at the "
                         "working directory)")
    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
    return "files", files, image_root or _enclosing_output(fs, base) or base, f"files:{digest}", base, {}, unnamable


def _holds_an_array(fs, path: str) -> bool:
    """Whether a .json file's first character (past white space and a byte order mark) opens an array."""
    with fs.open(path, "rb") as f:
        head = f.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"[")


def _refuse_unfinished(fs, name: str, folder: str, levels: int = 3) -> None:
    """A build or mix that has not finished (it runs, or stopped) has no report yet, so its folder looked like a
    plain folder of rows: a mix took the shards written so far, and its manifests as rows (seen: 120 of 240 rows
    and 239 rejects from a build frozen while writing, exit 0). Refused, as validate refuses it; likewise a
    folder of files inside such an output."""
    scheme, sep, path = folder.rpartition("://")
    for _ in range(levels + 1):
        root = f"{scheme}{sep}{path}"
        if any(fs.isfile(f"{root}/{n}") for n in OUTPUT_REPORTS):
            return
        marker = f"{root}/{claim.WRITER}"
        if fs.isfile(marker):
            state = claim.unfinished(fileio.read_bytes(marker).decode("utf-8", "replace"))
            raise UsageError(f"source {name!r}: in {root!r}, {state or 'a satsft run has not finished'}; mix it once "
                             "it has finished (if it stopped, run it again with --overwrite first)")
        if fs.isdir(f"{root}/{SPOOL_DIR}") or fs.isdir(f"{root}/{MANIFEST_DIR}"):
            raise UsageError(f"source {name!r}: {root!r} holds a satsft output without its report (a build or mix "
                             "that stopped before it finished); run it again with --overwrite first")
        parent = posixpath.dirname(path)
        if parent in (path, "", "/") or (sep and "/" not in parent):
            return
        path = parent


def _enclosing_output(fs, folder: str, levels: int = 3) -> str:
    """The satsft output a folder of files lies in (``out/parquet/``, ``out/data/``), or "". Its rows name their
    images from the output's root, so that root, not the folder, is where their images are looked for."""
    scheme, sep, path = folder.rpartition("://")
    for _ in range(levels):
        parent = posixpath.dirname(path)
        if parent in (path, "", "/") or (sep and "/" not in parent):  # a file system's or a bucket's root
            return ""
        path = parent
        if any(fs.isfile(f"{scheme}{sep}{path}/{name}") for name in OUTPUT_REPORTS):
            return f"{scheme}{sep}{path}"
    return ""


def parse_source(raw: Any, index: int) -> Source:
    if not isinstance(raw, dict):
        raise UsageError(f"sources[{index}] must be a mapping with at least name and path")
    unknown = sorted(set(raw) - SOURCE_KEYS)
    if unknown:
        raise UsageError(f"sources[{index}]: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                         f"{', '.join(sorted(SOURCE_KEYS))}")
    name = raw.get("name")
    if name is None:
        raise UsageError(f"sources[{index}] ({raw.get('path', 'no path')}): a name is required (name: N in a recipe, "
                         "name=N in --source; [a-z0-9_-]+, it goes into ids and media paths)")
    if not isinstance(name, str) or not NAME.match(name) or len(name) > MAX_NAME_CHARS:
        raise UsageError(f"sources[{index}]: name must be [a-z0-9_-]+, at most {MAX_NAME_CHARS} characters (it "
                         f"goes into ids and media paths), not {shown(name)}")
    path = raw.get("path")
    if not isinstance(path, str) or not path:
        raise UsageError(f"source {name!r}: path is required (a satsft output folder, or a folder or glob of "
                         "Parquet or JSONL files)")
    if "repeat" in raw and "share" in raw:
        raise UsageError(f"source {name!r}: give repeat or share, not both")
    repeat, share = 1.0, None
    if "share" in raw:
        share, repeat = _number(raw["share"], f"source {name!r}: share"), None
        if not 0 < share < 1:
            raise UsageError(f"source {name!r}: share must be above 0 and below 1, not {share}")
    elif "repeat" in raw:
        repeat = _number(raw["repeat"], f"source {name!r}: repeat")
        if repeat <= 0:
            raise UsageError(f"source {name!r}: repeat must be a number above 0 (8 = eight copies, 0.5 = half), "
                             f"not {raw['repeat']}")
    image_root = raw.get("image_root")
    if image_root is not None and (not isinstance(image_root, str) or not image_root):
        raise UsageError(f"source {name!r}: image_root must be a folder path")
    if image_root and fileio.is_local(image_root):
        image_root = os.path.abspath(os.path.expanduser(image_root))
    where = _where(raw.get("where"), name)
    for location in (path, image_root or ""):
        try:
            fileio.check_scheme(location)
        except fileio.BadLocation as err:
            raise UsageError(f"source {name!r}: {err}") from err
    kind, files, root, dataset, folder, holds, unnamable = _resolve(name, path, image_root)
    return Source(name, path, kind, files, root, repeat, share, where, dataset, folder, holds, unnamable)


def parse_recipe(data: Any, extra: list[Any] | None = None) -> Recipe:
    """A recipe mapping (from YAML) plus --source specs -> a checked Recipe."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UsageError("a recipe is a mapping with seed and sources")
    unknown = sorted(set(data) - RECIPE_KEYS)
    if unknown:
        raise UsageError(f"unknown recipe key(s) {', '.join(map(repr, unknown))}; allowed: seed, sources")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(1 << 63) <= seed < 1 << 63:
        raise UsageError(f"seed must be an integer of at most 64 bits (as the report records it), not "
                         f"{shown(seed)}")
    raw_sources = list(data.get("sources") or []) + list(extra or [])
    if not raw_sources:
        raise UsageError("a mix needs at least one source (recipe sources: or --source)")
    sources = tuple(parse_source(raw, i) for i, raw in enumerate(raw_sources))
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"source names must be unique; repeated: {', '.join(dupes)}")
    shares = sum(s.share or 0 for s in sources)
    if shares and all(s.share for s in sources):
        first = sources[0]
        raise UsageError(f"every source has a share; give at least one a repeat in its place (e.g. "
                         f"name={first.name},repeat=1: its train rows once): a share is a source's share of the "
                         "mix it makes with the sources that have a repeat")
    if shares >= 1:
        raise UsageError(f"shares add up to {shares:g}; they must stay below 1")
    for s in sources:
        check_filter_matches(s)
    return Recipe(seed, sources)


def check_filter_matches(source: Source) -> None:
    """A filter that can select nothing is a mistake in the recipe; what a source can hold is known before
    any row is read (a satsft output's report; a foreign file's task is the source name and its split comes
    from the file name)."""
    if not source.where:
        return
    if source.kind == "satsft":
        tasks, profiles, splits = (set(source.holds[k]) for k in ("task", "profile", "split"))
        if not source.holds["build"]:  # a mix does not record its profiles: a profile filter is taken on trust
            profiles |= set(source.where.get("profile", ()))
    else:
        tasks, profiles = {source.name}, {""}
        splits = {split_of_path(p, source.folder) for p in source.files}
    have = {"task": tasks, "profile": profiles, "split": splits}
    for key, wanted in source.where.items():
        if not set(wanted) & have[key]:
            held = ", ".join(sorted(v or '""' for v in have[key])) or "none"
            raise UsageError(f"source {source.name!r}: where.{key} {list(wanted)} matches nothing; it holds "
                             f"{key}s {held}")
    if "split" in source.where and not set(source.where["split"]) <= set(VALID_SPLITS):
        raise UsageError(f"source {source.name!r}: where.split takes {', '.join(VALID_SPLITS)}")


def parse_source_spec(spec: str) -> dict[str, Any]:
    """--source name=fire,path=builds/sat,repeat=80,task=production_analysis,profile=wildfire (lists: a|b)."""
    out: dict[str, Any] = {}
    where: dict[str, Any] = {}
    pairs: list[list[str]] = []
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep and pairs:  # a comma of the value before: path=runs,2024/sat (every key has its "=")
            pairs[-1][1] += "," + part
            continue
        if not sep or not key.strip():
            raise UsageError(f"--source {spec!r}: expected key=value pairs separated by commas")
        pairs.append([key.strip(), value])
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:  # the last one won without a word, as in a recipe before it refused a key given twice
        raise UsageError(f"--source {spec!r}: {', '.join(twice)} given twice")
    for key, value in pairs:
        if key in FILTER_KEYS:
            where[key] = value.split("|") if "|" in value else value
        elif key in ("repeat", "share"):
            try:
                out[key] = float(value)
            except ValueError as err:
                raise UsageError(f"--source {spec!r}: {key} must be a number") from err
        else:
            out[key] = value
    if where:
        out["where"] = where
    return out


class _RecipeLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: YAML keeps the last without a word, so a
    second `sources:` dropped the first list and a second `repeat:` the first count."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then a key of its own: an override
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                twice = key in seen
            except TypeError:  # unhashable: the loader names it
                continue
            if twice:
                raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                        f"found {key!r} twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_recipe(path: str | None, source_specs: list[str]) -> Recipe:
    data: Any = {}
    if path:
        fileio.check_scheme(path)
        try:
            data = yaml.load(fileio.read_bytes(path), Loader=_RecipeLoader)
        except OSError as err:
            raise UsageError(f"cannot read recipe {path!r}: {err}") from err
        except yaml.YAMLError as err:
            raise UsageError(f"recipe {path!r} is not valid YAML: {err}") from err
        except (ValueError, RecursionError) as err:  # an integer of 4,300 digits or more; nesting 1,000 deep
            raise UsageError(f"recipe {path!r} is not a recipe: {str(err)[:100] or 'nested too deeply'}") from err
        if values_past(data):
            raise UsageError(f"recipe {path!r} holds more than {MAX_YAML_VALUES:,} values once its YAML aliases "
                             "are expanded (aliases of aliases, or an alias inside what it names); write the "
                             "sources out")
    return parse_recipe(data, [parse_source_spec(s) for s in source_specs])


def footprint_lists(recipe: Recipe) -> tuple[tuple[str, str], ...]:
    """(dataset, file) of every build's manifest tile files and every mix's footprint list among the sources,
    each output once (a mix from before such lists has none)."""
    found: dict[str, list[str]] = {}
    for s in recipe.sources:
        if s.kind == "satsft" and s.dataset not in found:
            found[s.dataset] = manifest_tiles_files(s.folder) or mix_footprint_files(s.folder)
    return tuple((dataset, path) for dataset, paths in found.items() for path in paths)


def mix_footprint_files(output: str) -> list[str]:
    """The files of a mix's footprint list, as full paths ([] for a mix from before such lists)."""
    return [path for rel, path in files_as_read(output, FOOTPRINTS_DIR) if is_footprints_file(rel)]
