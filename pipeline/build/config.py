"""BuildConfig: every option of a build, validated once before the graph exists."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.errors import UsageError, cannot_list, refuse_past_64_bits
from transforms import fileio
from transforms.analysis.render import RENDERER
from transforms.analysis.tim import PROFILE_ALIASES, PROFILES, SHIFT_MODES
from transforms.fileio import public_location
from transforms.input import lfs
from transforms.input.images import TREE_FOLDERS
from transforms.output.formats import FORMAT_NAMES, ROW_SIDECAR_MODES
from transforms.output.tree import (
    EMBEDDED_ROWS_PER_SHARD,
    HUB_ROWS_PER_SHARD,
    LAYOUTS,
    MANIFEST_DIR,
    MAX_FILES_PER_DIR,
    MIN_FILES_PER_DIR,
    MIX_REPORT_NAME,
    REPORT_NAME,
    ROWS_PER_SHARD,
    DamagedReport,
    is_run_state,
    parse_report,
    record_files,
)
from transforms.paths import is_chat_file
from transforms.prompts import Templates, load_templates
from transforms.rebuild.commit import DEFAULT_MAX_REMOVED_SHARE
from transforms.rebuild.manifest import ROWS_DIR, STILLS_FILE, is_tiles_file
from transforms.rows import DEFAULT_MAX_BOXES, DEFAULT_MIN_BOX_PX, TaskContext
from transforms.splits.plan import LEAKAGE_POLICIES, SHARED_GROUND_POLICIES, SPLIT_UNITS
from transforms.tasks import (
    DEFAULT_TASKS,
    TASK_NAMES,
    default_tasks,
    eval_tasks,
    rows_per_tile_bound,
    rows_version,
    task_names,
)
from transforms.tasks.probe import templates_problem

DEFAULT_FORMATS = ("jsonl", "parquet")


def _pick(raw: str, valid: tuple[str, ...], what: str, aliases: dict[str, str] | None = None,
          default: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Comma list -> names in their canonical order (so paths never depend on how the user listed them).
    'all' is the default set; 'all+eval' (tasks) adds the benchmark tasks."""
    aliases = aliases or {}
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names or names == ["all"]:
        return default or valid
    if names == ["all+eval"] and default is not None:
        return valid
    unknown = [n for n in names if aliases.get(n, n) not in valid]
    if unknown:
        extra = f" (aliases: {', '.join(f'{a}={t}' for a, t in aliases.items())})" if aliases else ""
        also = "'all' or 'all+eval'" if default is not None else "'all'"
        raise UsageError(f"unknown {what} {', '.join(map(repr, unknown))}; valid {what}s: "
                         f"{', '.join(valid)}{extra}, or {also}")
    chosen = {aliases.get(n, n) for n in names}
    return tuple(v for v in valid if v in chosen)


@dataclass(frozen=True)
class BuildConfig:
    input: str
    output: str
    tasks: tuple[str, ...] = DEFAULT_TASKS
    profiles: tuple[str, ...] = tuple(PROFILES)
    leakage: str = "reassign"
    split_unit: str = "base"  # --split-unit: what goes whole to one split (a base POI, or bases on shared ground)
    shared_ground: str = "report"  # --shared-ground: tiles of two splits on one ground counted, or new ones dropped
    tim_shift: str = "varied"
    redact_location: bool = False
    max_files_per_dir: int = MAX_FILES_PER_DIR
    max_prompt_chars: int = 16000
    prompts_dir: str = ""
    overwrite: bool = False
    formats: tuple[str, ...] = DEFAULT_FORMATS
    embed_images: bool = False
    overlays: bool = False
    rows_per_shard: int = 0
    row_sidecars: str = "files"
    layout: str = "default"
    max_boxes: int = DEFAULT_MAX_BOXES
    min_box_px: int = DEFAULT_MIN_BOX_PX
    previous: str = ""  # an earlier build whose tiles and bases keep their splits and slots (--previous)
    previous_files: tuple[str, ...] = field(default=(), repr=False, compare=False)
    previous_format: str = ""
    previous_manifest: tuple[str, ...] = field(default=(), repr=False, compare=False)  # its manifest's tile files
    update: bool = False  # --update: the earlier build is the one in --output, replaced in place
    reuse: bool = True  # --no-reuse: draw every tile again (same bytes, more work)
    templates: Templates = field(default_factory=dict, repr=False, compare=False)
    previous_rows: tuple[str, ...] = field(default=(), repr=False, compare=False)  # its row index files
    update_token: str = field(default="", repr=False, compare=False)  # --update: this run's (commit.begin)
    # --update: the most of the build in place a commit may remove (not published: it guards, it shapes nothing)
    max_removed_share: float = DEFAULT_MAX_REMOVED_SHARE
    # --update: files per slot of the build in place, per family whose count the options set (place_widths)
    previous_widths: tuple[int, ...] = ()
    copy_images: bool = False  # chips and stills copied, not hard-linked (a tree rewritten in place)
    tile_share: float = 1.0  # --tile-share: a try-out build of this share of the base POIs (transforms.input.share)

    @classmethod
    def create(cls, *, input: str, output: str, tasks: str = "all", profiles: str = "all",
               leakage: str = "reassign", split_unit: str = "base", shared_ground: str = "report",
               tim_shift: str = "varied",
               redact_location: bool = False,
               max_files_per_dir: int = MAX_FILES_PER_DIR, max_prompt_chars: int = 16000, prompts_dir: str = "",
               overwrite: bool = False, formats: str = "", embed_images: bool = False,
               overlays: bool = False, copy_images: bool = False, rows_per_shard: int = 0, row_sidecars: str = "",
               layout: str = "default",
               max_boxes: int = DEFAULT_MAX_BOXES, min_box_px: int = DEFAULT_MIN_BOX_PX, previous: str = "",
               update: bool = False, reuse: bool = True, check_paths: bool = True,
               max_removed_share: float = DEFAULT_MAX_REMOVED_SHARE, tile_share: float = 1.0) -> BuildConfig:
        if not input:
            raise UsageError("--input is required: the root of a sat-bbox tree (a folder or gs:// URL)")
        refuse_past_64_bits(("--max-files-per-dir", max_files_per_dir), ("--max-prompt-chars", max_prompt_chars),
                            ("--rows-per-shard", rows_per_shard), ("--max-boxes", max_boxes),
                            ("--min-box-px", min_box_px))
        if not output:
            raise UsageError("--output is required: the folder (or gs:// URL) to write the dataset to")
        selected = _pick(tasks, task_names(), "task", default=default_tasks())
        profile_names = _pick(profiles, tuple(PROFILES), "profile", PROFILE_ALIASES)
        if leakage not in LEAKAGE_POLICIES:
            raise UsageError(f"unknown --leakage {leakage!r}; choose one of {', '.join(LEAKAGE_POLICIES)}")
        if split_unit not in SPLIT_UNITS:
            raise UsageError(f"unknown --split-unit {split_unit!r}; choose one of {', '.join(SPLIT_UNITS)} (base: "
                             "each base POI in one split; ground: also every base whose tiles share ground with it)")
        if shared_ground not in SHARED_GROUND_POLICIES:
            raise UsageError(f"unknown --shared-ground {shared_ground!r}; choose one of "
                             f"{', '.join(SHARED_GROUND_POLICIES)} (report: count tiles of two splits on one ground; "
                             "drop: also reject the new tiles that would make such a pair)")
        if tim_shift not in SHIFT_MODES:
            raise UsageError(f"unknown --tim-shift {tim_shift!r}; choose one of {', '.join(SHIFT_MODES)}")
        if max_files_per_dir < MIN_FILES_PER_DIR:
            raise UsageError(f"--max-files-per-dir must be at least {MIN_FILES_PER_DIR}: the output folder itself "
                             "holds up to 15 entries (the Hugging Face Hub refuses folders over 10000)")
        if layout not in LAYOUTS:
            raise UsageError(f"unknown --layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        hub = layout == "hub"
        format_names = _pick(formats or ("parquet" if hub else ",".join(DEFAULT_FORMATS)), FORMAT_NAMES, "format")
        row_sidecars = row_sidecars or ("parquet" if hub else "files")
        if hub:
            if format_names != ("parquet",):
                raise UsageError("--layout hub writes Parquet rows with their images inside; other formats would "
                                 "name image files it does not write: leave out --formats (or give parquet)")
            if row_sidecars == "files" or overlays:
                raise UsageError("--layout hub writes no file per row or per tile: use --row-sidecars parquet "
                                 "(the default there) or none, and leave out --overlays")
            embed_images = True
        if embed_images and "parquet" not in format_names:
            raise UsageError("--embed-images puts images into the Parquet files; add parquet to --formats")
        if rows_per_shard < 0:
            raise UsageError("--rows-per-shard must be 0 (automatic) or a positive number of rows")
        rows_per_shard = rows_per_shard or (HUB_ROWS_PER_SHARD if hub else EMBEDDED_ROWS_PER_SHARD if embed_images
                                            else ROWS_PER_SHARD)
        if row_sidecars not in ROW_SIDECAR_MODES:
            raise UsageError(f"unknown --row-sidecars {row_sidecars!r}; choose one of {', '.join(ROW_SIDECAR_MODES)}")
        if max_boxes < 1 or min_box_px < 0:
            raise UsageError("--max-boxes must be at least 1 and --min-box-px 0 or more (a grounding answer lists "
                             "at most --max-boxes regions, none under --min-box-px pixels)")
        if not 0 <= max_removed_share <= 1:
            raise UsageError("--max-removed-share is a share of the tiles and rows of the build in --output, 0 to 1 "
                             "(1 lets an --update remove every tile)")
        if not 0 < tile_share <= 1:
            raise UsageError(f"--tile-share {tile_share:g}: give the share of the tree's places to build, above 0 and "
                             "at most 1 (0.01 builds about one place in a hundred)")
        if tile_share < 1 and (update or previous):
            raise UsageError("--tile-share builds a try-out of part of the tree into a new folder; a rebuild "
                             "(--update, --previous) takes the whole tree, or it would remove the rest")
        if max_prompt_chars < 100:
            raise UsageError("--max-prompt-chars must be at least 100")
        input_root, output_root = fileio.clean_root(input), fileio.clean_root(output)
        fileio.check_scheme(previous or "")
        if check_paths:
            _check_roots(input_root, output_root)
        previous_root, previous_format, previous_files, manifest, row_index = "", "", (), (), ()
        widths: tuple[int, ...] = ()
        if update:
            if previous and fileio.clean_root(previous) != output_root:
                raise UsageError("--update rebuilds the build already in --output; leave out --previous (or use "
                                 "--previous PREV with a new --output instead)")
            if overwrite:
                raise UsageError("--update keeps the build in --output and replaces it in place; --overwrite would "
                                 "delete it first: give one of the two")
            if not {"jsonl", "parquet"} & set(format_names):
                raise UsageError("--update takes the next run's splits and unchanged rows from the build's JSONL or "
                                 "Parquet files: add jsonl or parquet to --formats (LLaVA and ShareGPT files are "
                                 "written beside them)")
            # The first run of a scheduled --update finds nothing yet: it makes the first build, through the same
            # stage and commit (so it is never seen half written either).
            there = check_paths and (fileio.exists(f"{output_root}/{REPORT_NAME}")
                                     or any(not is_run_state(rel) for rel in fileio.list_files(output_root)))
            previous = output_root if there else ""
        if previous:
            previous_root = fileio.clean_root(previous)
            previous_format, previous_files, manifest, row_index, widths = _previous_build(
                previous_root, output_root, update, max_files_per_dir)
        try:
            templates = load_templates(prompts_dir or None, list(selected))
        except ValueError as err:
            raise UsageError(str(err)) from err
        config = cls(input_root, output_root, selected, profile_names, leakage, split_unit, shared_ground, tim_shift,
                     redact_location, max_files_per_dir, max_prompt_chars, prompts_dir, overwrite, format_names,
                     embed_images, overlays, rows_per_shard, row_sidecars, layout, max_boxes, min_box_px, previous_root,
                     tuple(previous_files), previous_format, tuple(manifest), update, reuse, templates,
                     tuple(row_index), max_removed_share=max_removed_share, copy_images=copy_images,
                     previous_widths=widths if update else (), tile_share=tile_share)
        if prompts_dir:  # edited phrasings: each tried on made-up tiles before any work starts
            problem = templates_problem(config.task_context(), config.tasks)
            if problem:
                raise UsageError(f"{problem}; fix it in {prompts_dir}")
        return config

    @property
    def extra_metadata(self) -> tuple[str, ...]:
        """Metadata fields beyond FORMATS.md 2.1: the benchmark tasks' question id and right letter, present
        (empty for other rows) only in builds that have them, so every other build keeps its schema."""
        return ("question_id", "answer") if set(self.tasks) & set(eval_tasks()) else ()

    def task_context(self) -> TaskContext:
        return TaskContext(self.templates, self.profiles, self.tim_shift, self.redact_location,
                           self.max_files_per_dir, self.max_boxes, self.min_box_px)

    def as_dict(self) -> dict:
        """The config as the report and the card publish it: local folders by name only, so a home folder
        never ends up on the Hub (the input fingerprint identifies the tree); bucket URLs as given."""
        return {"input": public_location(self.input), "output": public_location(self.output),
                "tasks": list(self.tasks),
                "profiles": list(self.profiles), "leakage": self.leakage, "tim_shift": self.tim_shift,
                "redact_location": self.redact_location, "max_files_per_dir": self.max_files_per_dir,
                "max_prompt_chars": self.max_prompt_chars, "prompts_dir": public_location(self.prompts_dir),
                "formats": list(self.formats), "embed_images": self.embed_images, "overlays": self.overlays,
                "rows_per_shard": self.rows_per_shard, "row_sidecars": self.row_sidecars, "layout": self.layout,
                "max_boxes": self.max_boxes, "min_box_px": self.min_box_px,
                "previous": public_location(self.previous) if self.previous and not self.update else "",
                "update": self.update, "copy_images": self.copy_images,
                **({"split_unit": self.split_unit} if self.split_unit != "base" else {}),
                **({"shared_ground": self.shared_ground} if self.shared_ground != "report" else {}),
                **({"tile_share": self.tile_share} if self.tile_share < 1 else {})}

    def shaping_options(self, version: str) -> dict:
        """What a tile's rows and files are made from beside the tile itself (its fingerprint holds their
        digest): every option but where the data comes from and goes, the split-file options (those files are
        written again on every build), the prompt templates themselves, not where they were read from, and the
        analysis-map renderer, whose version moves when its maps do (so a rebuild never mixes maps of two
        renderers, and every spec re-renders with the code that reads it), and the same for the tasks' rows.
        Not --split-unit nor --shared-ground: a rebuild keeps every tile's split whatever the unit and drops no
        tile it keeps, so turning either on for a scheduled --update must not draw every tile again."""
        shaping = {k: v for k, v in self.as_dict().items()
                   if k not in ("input", "output", "previous", "update", "prompts_dir", "formats",
                                "embed_images", "rows_per_shard", "copy_images", "tile_share", "split_unit",
                                "shared_ground")}
        return {**shaping, "templates": self.templates, "satsft_version": version, "renderer": RENDERER,
                "rows": rows_version(self.tasks)}

    @property
    def slot_widths(self) -> tuple[tuple[int, int], ...]:
        """--update: (files per slot in the build in place, in this one) per family whose count may change."""
        return tuple(zip(self.previous_widths, place_widths(self.tasks, self.profiles), strict=False))

    @property
    def rows_are_lines(self) -> bool:
        """A row is its JSONL line and nothing more: no images or row sidecars inside the shards (--layout hub
        has both). Only then can rows be indexed by line and taken back by a rebuild."""
        return not self.embed_images and self.row_sidecars != "parquet"

    @property
    def row_index(self) -> bool:
        """Whether the split files carry a row index, for a later rebuild to take rows from."""
        return "jsonl" in self.formats and self.rows_are_lines

    @property
    def takes_rows(self) -> bool:
        """Unchanged tiles' rows are read from the earlier build's split files instead of made again."""
        return self.reuse and bool(self.previous_rows) and self.rows_are_lines

    @property
    def previous_stills(self) -> str:
        return f"{self.previous}/{STILLS_FILE}" if self.previous_manifest else ""


def place_widths(tasks: Iterable[str], profiles: Iterable[str]) -> tuple[int, int]:
    """Files per slot in the per-tile families whose count the options set: analysis images (one per profile)
    and row sidecars (the rows a tile can give). A task an older build had and this version lacks counts as
    the widest task there is."""
    profiles, tasks = tuple(profiles), tuple(tasks)
    known = tuple(t for t in tasks if t in TASK_NAMES)
    widest = max(rows_per_tile_bound((t,), len(profiles)) for t in TASK_NAMES)
    return len(profiles), rows_per_tile_bound(known, len(profiles)) + widest * (len(tasks) - len(known))


def _previous_build(previous: str, output: str, update: bool, max_files_per_dir: int
                    ) -> tuple[str, list[str], list[str], list[str], tuple[int, ...]]:
    """The format and split files of the earlier build --previous names, its manifest's tile files, its
    row index files (transforms/rebuild/manifest.py) and its place widths; a usage error when it is not one,
    or when it is the output (which is cleared before the build starts)."""
    if not update and fileio.overlapping(previous, output):
        raise UsageError("--previous must be another folder than --output (a build clears its output first): "
                         "build into a new folder, or rebuild in place with --update")
    try:
        report = parse_report(fileio.read_bytes(f"{previous}/{REPORT_NAME}"), REPORT_NAME)
    except (OSError, DamagedReport) as err:
        if fileio.exists(f"{previous}/{MIX_REPORT_NAME}"):
            what = ("--update: --output", "update a build's folder, or build into a new one") if update else (
                "--previous", "give the earlier build of the same tree")
            raise UsageError(f"{what[0]} {previous!r} is a satsft mix (it has {MIX_REPORT_NAME}), not a build: "
                             f"{what[1]}") from err
        if update:
            raise UsageError(f"--update: {previous!r} holds files but no finished satsft build (no readable "
                             f"{REPORT_NAME}); give an empty folder or one a build wrote (if a build without --update "
                             "stopped there before it finished, run that build again with --overwrite, or remove "
                             "the folder, to start the updates; in a clone of a Hub dataset repository, build once "
                             "with --overwrite, which keeps .git and .gitattributes and writes the card as "
                             "README.md, then --update)") from err
        why = "there is none" if isinstance(err, FileNotFoundError) else str(err)[:200]
        raise UsageError(f"--previous {previous!r} is not a finished satsft build (no readable {REPORT_NAME}): "
                         f"{why}") from err
    if report.get("kind") == "mix":
        raise UsageError(f"--previous {previous!r} is a mix; give the earlier build of the same tree")
    fmt, files = record_files(report)
    if not files:
        what = "--update: the build in --output" if update else f"--previous {previous!r}"
        raise UsageError(f"{what} holds no Parquet or JSONL rows to take splits from (it was written in other "
                         "formats only); build it again with --overwrite and jsonl or parquet among --formats")
    before = report.get("config", {}).get("max_files_per_dir", max_files_per_dir)
    if update and before != max_files_per_dir:
        raise UsageError(f"--update: the build in --output has --max-files-per-dir {before}, not "
                         f"{max_files_per_dir}; every path would move, so build into a new folder (with --previous) "
                         "instead")
    listed = fileio.list_files(f"{previous}/{MANIFEST_DIR}")
    manifest = [rel for rel in (f"{MANIFEST_DIR}/{r}" for r in listed) if is_tiles_file(rel)]
    row_index = [rel for rel in (f"{MANIFEST_DIR}/{r}" for r in listed) if rel.startswith(ROWS_DIR + "/")]
    config = report.get("config", {})
    widths = place_widths(config.get("tasks", ()), config.get("profiles", ())) if isinstance(config, dict) else ()
    return fmt, files, manifest, row_index if manifest else [], widths


def _folder_has_files(where: str) -> bool:
    """At least one file lies below the folder (locally; in a bucket, which has no folders, one object has the
    prefix). An empty metadata/ built a dataset of nothing, exit 0: a scheduled build over a tree not synced yet
    would report success."""
    if fileio.is_local(where):
        return any(files for _, _, files in os.walk(where, followlinks=True))
    from apache_beam.io.filesystem import BeamIOError

    try:
        return bool(fileio.match_under(where, limit=1))
    except (BeamIOError, ValueError) as err:
        raise cannot_list(where, err) from err


def _lfs_pointer(path: str) -> bool:
    """Whether a file is a Git LFS pointer; a named pipe is not (the build rejects it as unreadable)."""
    try:
        fileio.refuse_special(path)
        return lfs.is_pointer(fileio.read_head_tail(path, 64, 0)[0])
    except fileio.NotAFile:
        return False


def _folders_in_another_case(input_root: str, missing_only: Iterable[str] = sorted(TREE_FOLDERS)
                             ) -> list[tuple[str, str]]:
    """(found, meant) for each of the tree's folders that is absent but present in another case (`Images/`):
    a tree made on a Mac or on Windows, whose file systems ignore case, reads `images/...` there and lost every
    chip here (30 of 30 tiles chip_missing, nothing said of the folder). Locally one listing of the root; in a
    bucket only when metadata/ or data/ is already missing (no request added to a sound build)."""
    try:
        if fileio.is_local(input_root):
            names = set(os.listdir(input_root))
        else:
            import fsspec

            fs, base = fsspec.core.url_to_fs(input_root)
            names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base.rstrip("/"), detail=False)}
    except OSError:
        return []
    return [(other, meant) for meant in missing_only if meant not in names
            for other in sorted(n for n in names if n.casefold() == meant)[:1]]


def _refuse_folders_in_another_case(input_root: str, found: list[tuple[str, str]]) -> None:
    if found:
        other, meant = found[0]
        raise UsageError(f"input {input_root!r} has {other}/ where a sat-bbox tree has {meant}/ (a Mac or Windows, "
                         "whose file systems ignore case, reads one as the other; here they differ): rename it "
                         f"{meant}/")


def _check_roots(input_root: str, output_root: str) -> None:
    if fileio.is_local(input_root):
        _refuse_folders_in_another_case(input_root, _folders_in_another_case(input_root))
    for report in (REPORT_NAME, MIX_REPORT_NAME):
        # a satsft output has metadata/ and data/*.jsonl too: its row sidecars would pass for tile sidecars
        if fileio.exists(f"{input_root}/{report}"):
            raise UsageError(f"input {input_root!r} is a satsft output (it has {report}), not a sat-bbox tree: "
                             "point --input at the tree it was built from (its report names it under config.input)"
                             "; to rebuild that output, run the build with --update and --output there")
    for sub in ("metadata", "data"):
        where = f"{input_root}/{sub}"
        if not _folder_has_files(where):
            _refuse_folders_in_another_case(input_root, _folders_in_another_case(input_root, (sub,)))
            what = (f"has nothing under {sub}/" if fileio.is_local(where) and os.path.isdir(where) else
                    f"has no {sub}/ folder")
            raise UsageError(f"input {input_root!r} {what}; point --input at the root of a sat-bbox "
                             f"tree (metadata/, data/*.jsonl, images/), e.g. one made by `satsft sample`")
    jsonl = [rel for rel in fileio.list_files(f"{input_root}/data") if is_chat_file(rel)]
    if not any("/" not in rel for rel in jsonl):  # every tile would be rejected: no line names its chip
        found = (f"; found {', '.join('data/' + rel for rel in jsonl[:3])}: move the files into data/ itself"
                 if jsonl else "")
        raise UsageError(f"input {input_root!r} has no data/*.jsonl (or LLaVA's data/*.json arrays), the chat rows "
                         f"whose image references name the chips a build uses{found}")
    top = [rel for rel in jsonl if "/" not in rel]
    if all(_lfs_pointer(f"{input_root}/data/{rel}") for rel in top):
        what = f"data/{top[0]} is" if len(top) == 1 else f"every data/*.jsonl ({len(top)} files) is"
        raise UsageError(f"input {input_root!r}: {what} {lfs.DETAIL}")
    if fileio.overlapping(input_root, output_root):
        raise UsageError("--output must not be inside --input (or the other way round), links followed")
