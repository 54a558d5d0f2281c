"""--update: how a new build replaces the one in the same folder without a reader ever seeing a gap.

While the update runs, the files of new and changed tiles go to slots no row of the old build names, and every
dataset-level file (split files, row-sidecar shards, manifest, rejects, charts, report, card) goes to
_satsft_update/stage/ under its final name. Then the commit:

1. the old manifest is saved under _satsft_update/previous/gNN/ (it names the files of changed and removed
   tiles, which go last);
2. a journal lists every staged file to move into place and every old dataset-level file that the new build
   no longer has; from here on the update is decided: a rerun, or any satsft reader, completes it;
3. staged files move into place (atomic renames locally; whole objects in a bucket), the report and the card
   last; then the old dataset files the journal lists go;
4. the graph removes the old per-tile files no new row names, then this folder.

A run killed before step 2 leaves the old dataset whole (plus files at new slots that no row names yet); a run
killed after it leaves a journal that OutputTree applies when reading, and that the next --update finishes
before it starts. A commit refused (refusal(): the update would gut the dataset) withdraws the run: its
files at new slots and its stage go, its report and rejects are kept in REFUSED_DIR. No Beam here: the
launcher recovers with it before a graph exists.

`satsft mix --update` commits the same way (``kind="mix"``): a mix writes no per-tile files, so its whole new
output (split files, media, metadata lists, rejects, charts, report, card) is staged, and what the old mix has
under the entries a mix writes (MIX_ENTRIES) and the new one lacks goes after the moves. It saves no manifest
and is refused only for the rows it would remove.
"""

from __future__ import annotations

import datetime
import os
import posixpath
import uuid

import orjson

from transforms import fileio
from transforms.output.tree import (
    CARD_NAME,
    CHARTS_DIR,
    JSONL_DIR,
    LLAVA_DIR,
    MANIFEST_DIR,
    MEDIA_DIR,
    MIX_ENTRIES,
    MIX_REPORT_NAME,
    MIX_TIMINGS_NAME,
    PARQUET_DIR,
    PER_TILE_DIRS,
    PREVIEW_DIR,
    REJECTS_DIR,
    REPORT_NAME,
    SHARED_GROUND_FILE,
    SHAREGPT_DIR,
    SPOOL_DIR,
    UPDATE_DIR,
)
from transforms.output.tree import UPDATE_JOURNAL as JOURNAL
from transforms.output.tree import UPDATE_KEPT_DIR as KEPT_DIR
from transforms.output.tree import UPDATE_REFUSED_DIR as REFUSED_DIR
from transforms.output.tree import UPDATE_STAGE_DIR as STAGE_DIR
from transforms.output.tree import UPDATE_STARTED as STARTED
from transforms.paths import inside, join_path
from transforms.rebuild import holder
from transforms.rebuild.manifest import ROWS_DIR, STILLS_FILE, is_tiles_file, still_paths, unnamed_files

REFUSAL = f"{REFUSED_DIR}/refusal.txt"  # why the last update was refused, and which run
SAVED_DIR = f"{UPDATE_DIR}/previous"  # earlier manifests whose stale files may not all be gone yet
LAST = (REPORT_NAME, MIX_REPORT_NAME, CARD_NAME)  # moved after everything they describe
REPORTS = {"build": REPORT_NAME, "mix": MIX_REPORT_NAME}
UPDATE_REFUSED = "--update of "  # how every refusal to commit begins (the CLI prints it without a traceback)
DEFAULT_MAX_REMOVED_SHARE = 0.5  # an update may remove at most half the tiles of the build it replaces
DEFAULT_TAKE_OVER_HOURS = 12  # an unfinished update from elsewhere runs this long after its last sign (running_update)
STOP_AFTER_ENV = "SATSFT_FAULT_STOP_COMMIT_AFTER"  # tests: die after this many moves ("before": before any)


class UpdateRunning(RuntimeError):
    """Another --update of the same output still runs on this machine."""


def stage_root(output: str) -> str:
    return join_path(output, STAGE_DIR)


def saved_manifests(output: str) -> list[str]:
    """Manifest tile files of earlier builds, kept until their stale files are gone (relative to the output)."""
    return [f"{SAVED_DIR}/{rel}" for rel in fileio.list_files(join_path(output, SAVED_DIR))
            if posixpath.basename(rel).startswith("tiles-")]


def old_dataset_files(output: str) -> set[str]:
    """The dataset-level files of the build now in the folder: what its report lists, its manifest, charts."""
    try:
        report = orjson.loads(fileio.read_if_there(join_path(output, REPORT_NAME)) or b"{}")
    except orjson.JSONDecodeError:
        report = {}
    files = {p for paths in report.get("files", {}).values() for p in paths if inside(p)}  # deleted if gone
    for folder in (MANIFEST_DIR, CHARTS_DIR):
        files.update(f"{folder}/{rel}" for rel in fileio.list_files(join_path(output, folder)))
    if fileio.exists(join_path(output, SHARED_GROUND_FILE)):  # written only when some tiles share ground
        files.add(SHARED_GROUND_FILE)
    return files


def kept_in_place(output: str) -> set[str]:
    """The images a mix --update left where they were, the mix in place holding them with the new mix's bytes
    (transforms.mix.stages.WriteMedia): files of the new mix the stage does not hold, which the commit keeps."""
    kept: set[str] = set()
    for rel in fileio.list_files(join_path(output, KEPT_DIR)):
        kept.update(line for line in fileio.read_bytes(join_path(output, KEPT_DIR, rel)).decode().splitlines()
                    if line and inside(line))
    return kept


def old_mix_files(output: str) -> set[str]:
    """The files of the mix now in the folder: everything under the entries a mix writes but its spool, its
    update's own files and its preview (which goes after the commit only when it shows other rows:
    pipeline.review.preview.remove_stale_preview)."""
    files: set[str] = set()
    for entry in MIX_ENTRIES:
        if entry in (SPOOL_DIR, PREVIEW_DIR, UPDATE_DIR):
            continue
        if entry in (CARD_NAME, MIX_REPORT_NAME, MIX_TIMINGS_NAME):
            if fileio.exists(join_path(output, entry)):
                files.add(entry)
        else:
            files.update(f"{entry}/{rel}" for rel in fileio.list_files(join_path(output, entry)))
    return files


def _stills(manifest: str) -> set[str]:
    data = fileio.read_if_there(manifest)
    return still_paths(data) if data is not None else set()


def _rows_in_place(output: str, kind: str = "build") -> int:
    try:
        earlier = orjson.loads(fileio.read_if_there(join_path(output, REPORTS[kind])) or b"{}")
    except orjson.JSONDecodeError:
        return 0
    rows = earlier.get("rows") if isinstance(earlier, dict) else None
    return rows.get("total", 0) if isinstance(rows, dict) else 0


def refusal(output: str, report: dict, max_removed_share: float = DEFAULT_MAX_REMOVED_SHARE, kind: str = "build"
            ) -> str:
    """Why the staged build must not replace the one in place, "" when it may: it removes more than
    ``max_removed_share`` of that build's tiles or of its rows, or has no rows where that build has some. A
    scheduled update whose input broke (a JSONL file gone, chips moved, every sidecar rejected, sidecars that
    lost their regions) would otherwise publish what is left over a good dataset. A mix (``kind``) is weighed
    by its rows: a source that lost its rows, or a recipe that selects few."""
    if max_removed_share >= 1:
        return ""
    reasons = report.get("rejects_by_reason", {})
    why = ", ".join(f"{r} {n}" for r, n in list(reasons.items())[:3]) or "none"
    rebuild = report.get("rebuild", {})
    removed, before = rebuild.get("tiles_removed", 0), rebuild.get("tiles_kept", 0) + rebuild.get("tiles_removed", 0)
    if before and removed / before > max_removed_share:
        return (f"the new build would remove {removed} of the {before} tiles of the build in place "
                f"({removed / before:.0%}, more than --max-removed-share {max_removed_share:g}; rejects: {why}, "
                f"see {REFUSED_DIR}/rejects/)")
    had, now = _rows_in_place(output, kind), report.get("rows", {}).get("total", 0)
    if not had:
        return ""
    if kind == "mix":
        if (had - now) / had > max_removed_share:
            return (f"the new mix would have {now} rows where the mix in place has {had} ({(had - now) / had:.0%} "
                    f"fewer, more than --max-removed-share {max_removed_share:g}; a source that lost its rows, or "
                    f"a recipe that selects fewer? compare {REFUSED_DIR}/{MIX_REPORT_NAME} with {MIX_REPORT_NAME})")
        return ""
    if not now:
        tiles = report.get("tiles", {})
        return (f"the new build made no rows ({tiles.get('in', 0)} tile(s) in, {tiles.get('rejected', 0)} "
                f"rejected; rejects: {why}, see {REFUSED_DIR}/rejects/) where the build in place has {had}")
    if (had - now) / had > max_removed_share:
        return (f"the new build would have {now} rows where the build in place has {had} ({(had - now) / had:.0%} "
                f"fewer, more than --max-removed-share {max_removed_share:g}; a narrower --tasks, or sidecars that "
                f"lost their regions or captions? compare {REFUSED_DIR}/{REPORT_NAME} with {REPORT_NAME})")
    return ""


def _tile_manifests(output: str) -> list[str]:
    return [rel for rel in (f"{MANIFEST_DIR}/{r}" for r in fileio.list_files(join_path(output, MANIFEST_DIR)))
            if is_tiles_file(rel)]


def orphans(output: str) -> list[str]:
    """Per-tile files (chips, stills, analysis images, overlays, row sidecars) that no build in the folder names:
    what an update stopped before its commit, or refused, wrote for its new slots. Left, they would be uploaded
    with the dataset, fail validate's counts and could overfill its folders; a later update, given other
    tiles, would not write over them all. With no build in place, every one is such a file (the first update
    stopped); with a build that has no manifest, what it names is unknown and none is."""
    found = {f"{folder}/{rel}" for folder in PER_TILE_DIRS for rel in fileio.list_files(join_path(output, folder))}
    if not found or not fileio.exists(join_path(output, REPORT_NAME)):
        return sorted(found)
    live = _tile_manifests(output)
    if not live:
        return []
    records = (fileio.read_bytes(join_path(output, rel)) for rel in live + saved_manifests(output))
    # saved manifests: the stale files of an earlier update, which the next update's graph removes
    return unnamed_files(found, records, fileio.read_if_there(join_path(output, STILLS_FILE)),
                         old_dataset_files(output))


def _remove_orphans(output: str) -> int:
    gone = orphans(output)
    for rel in gone:
        fileio.remove(join_path(output, rel))
    for folder in PER_TILE_DIRS:
        fileio.prune_empty_folders(join_path(output, folder))
    return len(gone)


def withdraw(output: str, message: str = "", token: str = "", kind: str = "build") -> int:
    """A refused update's undoing: the files it wrote at new slots (``orphans``), its stage and its marker go,
    so the folder holds the build in place as it was. The refused build's report and rejects move to
    REFUSED_DIR, to be read, with ``message`` (and the run's token: a runner that retries the commit gets the
    same refusal). Returns how many files went."""
    stage = stage_root(output)
    removed = _remove_orphans(output)
    fileio.remove_tree(join_path(output, REFUSED_DIR))
    for rel in fileio.list_files(stage):
        if rel == REPORTS[kind] or rel.startswith(f"{REJECTS_DIR}/"):  # kept to read why, until the next update
            fileio.move(join_path(stage, rel), join_path(output, REFUSED_DIR, rel))
    fileio.write_bytes(join_path(output, REFUSAL), f"{message}\nrun {token}\n".encode())
    fileio.remove_tree(stage)
    fileio.remove_tree(join_path(output, KEPT_DIR))
    fileio.remove(join_path(output, STARTED))
    return removed


def commit(output: str, token: str = "", max_removed_share: float = DEFAULT_MAX_REMOVED_SHARE, kind: str = "build"
           ) -> dict[str, list[str]]:
    """Steps 1 to 3 of the module docstring; returns the journal it carried out. ``token``: what begin() gave
    this run. When another update of the same output has begun since (its recover() dropped this run's stage),
    or the stage lacks a split file its report lists, nothing is committed: the old build (or mix, ``kind``)
    stays whole."""
    if os.environ.get(STOP_AFTER_ENV) == "before":  # fault injection for the tests: dies before the commit
        os._exit(137)
    said = (fileio.read_if_there(join_path(output, REFUSAL)) or b"").decode("utf-8", "replace")
    if token and said.endswith(f"\nrun {token}\n"):  # a retry of this run's refused commit: refuse it again
        raise RuntimeError(said.removesuffix(f"\nrun {token}\n"))
    marker = (fileio.read_if_there(join_path(output, STARTED)) or b"").decode("utf-8", "replace")
    if token and f"run {token}" not in marker:
        raise RuntimeError(f"{UPDATE_REFUSED}{output}: another update of this output began while this one ran; this "
                           "one stops before its commit (the dataset stays as it was); run one update at a time")
    staged = fileio.list_files(stage_root(output))
    if REPORTS[kind] not in staged:
        raise RuntimeError(f"--update: nothing staged in {stage_root(output)}; the new {kind} did not finish")
    report = orjson.loads(fileio.read_bytes(join_path(stage_root(output), REPORTS[kind])))
    refused = refusal(output, report, max_removed_share, kind)
    if refused:
        message = (f"{UPDATE_REFUSED}{output}: {refused}; nothing was committed (the dataset stays as it was). Fix "
                   "the input and run the update again; if the tiles or rows are meant to go, run it with "
                   "--max-removed-share 1")
        withdraw(output, message, token, kind)
        raise RuntimeError(message)
    missing = sorted({p for paths in report.get("files", {}).values() for p in paths} - set(staged))
    if missing:
        raise RuntimeError(f"{UPDATE_REFUSED}{output}: the staged {kind} lacks {len(missing)} of the split files "
                           f"its report lists (first: {missing[0]}); nothing was committed (the dataset stays as "
                           "it was): run the update again")
    moves = sorted(set(staged) - set(LAST)) + [rel for rel in LAST if rel in staged]
    if kind == "mix":
        return _write_and_apply(output, moves, old_mix_files(output) - set(staged) - kept_in_place(output))
    generation = len({posixpath.dirname(p) for p in fileio.list_files(join_path(output, SAVED_DIR))})
    for rel in _tile_manifests(output):
        # Only the tile records: their file lists are what a later run may still have to remove. Linked where
        # it can be (the moves below replace the name, never the file: 43 MB read and written again for
        # 21,000 tiles otherwise), else copied.
        fileio.link_or_copy(join_path(output, rel),
                            join_path(output, SAVED_DIR, f"g{generation:02d}", posixpath.basename(rel)))
    gone = old_dataset_files(output) - set(staged)
    # --layout hub writes no still files (its rows hold the stills): every copy an earlier build made goes
    kept = set() if report.get("config", {}).get("layout") == "hub" else _stills(join_path(stage_root(output),
                                                                                           STILLS_FILE))
    gone |= {rel for rel in _stills(join_path(output, STILLS_FILE)) - kept
             if kept or fileio.exists(join_path(output, rel))}
    return _write_and_apply(output, moves, gone)


def _write_and_apply(output: str, moves: list[str], gone: set[str]) -> dict[str, list[str]]:
    """Step 2 and 3: the journal, then what it says."""
    journal = {"moves": moves, "deletes": sorted(gone)}
    fileio.write_bytes(join_path(output, JOURNAL), orjson.dumps(journal, option=orjson.OPT_INDENT_2))
    apply_journal(output)
    return journal


def apply_journal(output: str) -> bool:
    """Carry out a journal that is there (again, if a run stopped halfway: every step can be repeated); False
    when there is none."""
    data = fileio.read_if_there(join_path(output, JOURNAL))
    if data is None:
        return False
    journal = orjson.loads(data)
    # what it moves and deletes, inside the output only: a journal is a file of the folder, which may have come
    # from elsewhere (a clone of a dataset repository taken while its update was committing)
    journal = {key: [rel for rel in journal.get(key, []) if inside(rel)] for key in ("moves", "deletes")}
    stop_after = int(os.environ.get(STOP_AFTER_ENV, "-1").replace("before", "-1"))
    if output.startswith("gs://"):
        _apply_in_bucket(output, journal, stop_after)
    else:
        for i, rel in enumerate(journal["moves"]):
            if i == stop_after:  # fault injection for the tests: the process dies halfway through the commit
                os._exit(137)
            src = join_path(stage_root(output), rel)
            if fileio.exists(src):
                fileio.move(src, join_path(output, rel))
        for rel in journal["deletes"]:
            fileio.remove(join_path(output, rel))
    fileio.remove(join_path(output, JOURNAL))
    fileio.remove_tree(stage_root(output))
    return True


def _apply_in_bucket(output: str, journal: dict, stop_after: int = -1) -> None:
    """Step 3 in Cloud Storage, where every call is a round trip and the dataset is half old, half new until the
    last copy: one listing of the stage rather than a check per file; a staged object whose bytes the object in
    place already holds (the same size and MD5, as the listings of its folder give them: a split file no
    changed row falls in, a chart that did not change) is not copied; the others are copied into place several at a
    time (the report and card still last, one after the other); the staged objects stay where they are until
    the stage goes as a whole, and the old files are deleted 100 to a request. Repeatable: a rerun copies the
    same bytes again. A 100-tile mix --update's commit took about 1,940 requests one after the other; it now
    takes about 665 with its copies 16 at a time, and 20 when its sources did not change (bench/bucket.py, the
    emulator's log from the journal's read on; the unchanged images were not staged: WriteMedia's in_place)."""
    stage = stage_root(output)
    staged = fileio.same_bytes_marks(stage)
    moves = [rel for rel in journal["moves"] if rel in staged]
    body, last = [rel for rel in moves if rel not in LAST], [rel for rel in moves if rel in LAST]
    placed: dict[str, str] = {}
    for folder in sorted({posixpath.dirname(rel) for rel in body if staged[rel]}):
        placed.update({posixpath.join(folder, name): mark for name, mark in
                       fileio.same_bytes_marks(join_path(output, folder) if folder else output, False).items()})
    body = [rel for rel in body if not staged[rel] or placed.get(rel) != staged[rel]]
    if stop_after >= 0:  # fault injection for the tests: the process dies halfway through the commit
        fileio.copy_files([(join_path(stage, rel), join_path(output, rel)) for rel in body[:stop_after]])
        os._exit(137)
    # a source gone: another process applying the same journal (a reader) finished the copies and removed it
    fileio.copy_files([(join_path(stage, rel), join_path(output, rel)) for rel in body], gone_ok=True)
    for rel in last:
        fileio.copy_files([(join_path(stage, rel), join_path(output, rel))], gone_ok=True)
    fileio.delete_files([join_path(output, rel) for rel in journal["deletes"]])


def begin(output: str, detached: str = "", kind: str = "build") -> str:
    """Mark the output as being updated before anything is written, so a reader (validate) knows that files no
    row names yet belong to an update under way, from its first file to its last. Returns this run's token
    (the commit checks that no other update has begun since). The marker also names this process, so that a
    second update on this machine knows the first still runs (``holder``); ``detached`` names the runner when
    this process only submits the job (Dataflow), so that its end is not taken for the job's."""
    token = uuid.uuid4().hex  # names this run only; never part of the dataset
    began = datetime.datetime.now(datetime.timezone.utc).strftime(holder.BEGAN_FORMAT)
    fileio.remove_tree(join_path(output, KEPT_DIR))  # an earlier run's: what it kept may not be in this mix
    fileio.write_bytes(join_path(output, STARTED), b"an --update of this output is running, or stopped before it "
                                                   b"finished: run it again to finish it\n"
                       + f"run {token}\nkind {kind}\n{holder.this_process(began, detached).lines()}".encode())
    return token


def update_kind(output: str) -> str:
    """What the update begun in ``output`` writes, "build" or "mix", as its marker says ("" for none, or a marker
    of a version that did not say): recover() finishes or undoes it, so an update of the other kind must not."""
    marker = (fileio.read_if_there(join_path(output, STARTED)) or b"").decode("utf-8", "replace")
    return next((line[5:].strip() for line in marker.splitlines() if line.startswith("kind ")), "")


def last_write(output: str) -> datetime.datetime | None:
    """When an update of ``output`` last wrote there: its workers' progress files (rewritten every few minutes
    while tiles are drawn, transforms.progress), its spooled rows and its staged dataset files."""
    return fileio.newest_write([join_path(output, SPOOL_DIR), stage_root(output)])


def unfinished_update(output: str) -> tuple[str, str]:
    """Who began the unfinished update of ``output`` and when it last wrote there ("" when its marker says
    nothing), and whether it still runs, for a reader wondering: "running" or "stopped" where this machine can
    tell (a process of its own), else "unknown"."""
    marker = fileio.read_if_there(join_path(output, STARTED))
    other = holder.parse((marker or b"").decode("utf-8", "replace"))
    if other is None:
        return "", "unknown"
    wrote = last_write(output)
    last = f", last wrote {wrote.strftime(holder.BEGAN_FORMAT)}" if wrote else ""
    state = ("running" if holder.still_running(other) else "stopped") if holder.known_here(other) else "unknown"
    return f"begun {other.began or 'at an unknown time'} {other.who()}{last}", state


def running_update(output: str, marker: bytes | None, take_over_after: float = DEFAULT_TAKE_OVER_HOURS) -> str:
    """Why an --update must not start now ("" when it may): the run that wrote ``marker`` (the output's STARTED)
    still runs on this machine, or on another machine began, or last wrote to the output, less than
    ``take_over_after`` hours ago and may still run there. Its recover() would undo the files that run is
    writing."""
    other = holder.parse((marker or b"").decode("utf-8", "replace"))
    why, sure = holder.busy(other, take_over_after, "another --update of this output", lambda: last_write(output))
    if not why:
        return ""
    if sure:
        return (f"{UPDATE_REFUSED}{output}: {why}; nothing was done. Let it finish, or stop it, then run this "
                "update again")
    return (f"{UPDATE_REFUSED}{output}: {why}, and starting now would undo the files it is writing. Nothing was "
            "done. Once it has stopped, run this update again with --take-over-after 0 (an unfinished update from "
            f"elsewhere that neither began nor wrote to the output in the last {take_over_after:g} h is taken as "
            "stopped)")


def recover(output: str, take_over_after: float = DEFAULT_TAKE_OVER_HOURS) -> str:
    """Before an --update starts: finish a commit an earlier run began; or undo a run stopped before its commit
    (its stage, its spool, and the files it wrote at new slots: the tiles it drew may not be the ones this run
    gives those slots). Returns what was done, for the log ("" for nothing). Refuses (UpdateRunning) while that
    run may still run (``running_update``)."""
    marker = fileio.read_if_there(join_path(output, STARTED))
    running = running_update(output, marker, take_over_after)
    if running:
        raise UpdateRunning(running)
    if apply_journal(output):
        return "finished the commit of an interrupted --update"
    if marker is None and not fileio.list_files(stage_root(output)):
        return ""
    removed = _remove_orphans(output) if marker is not None else 0
    fileio.remove_tree(stage_root(output))
    fileio.remove_tree(join_path(output, SPOOL_DIR))  # its rows and progress files (summed into this run's)
    fileio.remove(join_path(output, STARTED))
    earlier = holder.parse((marker or b"").decode("utf-8", "replace"))
    when = f", begun {earlier.began}" if earlier and earlier.began else ""
    wrote = f" and {removed} file(s) it wrote at new slots" if removed else ""
    return f"undid an --update stopped before its commit{when} (its stage{wrote})"


def finish(output: str) -> None:
    """Step 4's end: every stale file is gone, so the saved manifests and the folder go too, and so do the
    folders the stale files leave empty (a removed tile's shard folder; images/ and data/ after a switch to
    --layout hub, llava/ after it left --formats)."""
    fileio.remove_tree(join_path(output, UPDATE_DIR))
    for folder in (*PER_TILE_DIRS, JSONL_DIR, PARQUET_DIR, LLAVA_DIR, SHAREGPT_DIR, ROWS_DIR, MEDIA_DIR):
        fileio.prune_empty_folders(join_path(output, folder), itself=True)

