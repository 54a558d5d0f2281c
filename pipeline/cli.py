"""The satsft command line: `sample` writes a realistic tree, `build` runs the Beam graph, `validate` checks it.

Beam (and its cloud clients) is imported only by the commands that run a pipeline: importing it costs seconds,
and `satsft --help`, `sample` and `validate` never need it.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import time
from typing import TYPE_CHECKING

from pipeline import __version__
from pipeline.errors import UsageError
from transforms import fileio

if TYPE_CHECKING:
    from pipeline.config import BuildConfig

LOG = logging.getLogger("satsft")
ASYNC_RUNNERS = ("DataflowRunner",)  # a Flex Template launcher must submit and return, not wait for the job
OUTPUT_ENTRIES = ("data", "parquet", "llava", "sharegpt", "images", "mapbox_stills", "analysis_images", "overlays",
                  "metadata", "rejects", "README.md", "build_report.json", "build_timings.json", "_satsft_spool")
USAGE = """satsft {sample,build,validate} ...

  satsft sample --tiles N --output DIR [--seed S] [--overwrite] [--faults] [--workers N]
  satsft build --input DIR --output DIR [build options] [Beam options]
  satsft validate DIR

Run `satsft build --help` for the build options."""


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("satsft: %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


def unknown_flags(argv: list[str]) -> list[str]:
    """Flags no PipelineOptions class declares; Beam would only warn about them, we refuse them."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    seen: set[type] = set()
    stack = list(PipelineOptions.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            pass
    _, unknown = parser.parse_known_args(argv)
    return [u for u in unknown if u.startswith("--")]


def prepare_output(config: BuildConfig) -> None:
    """Refuse to mix a new build with an old one; with --overwrite, remove what an earlier build wrote."""
    out = config.output
    if fileio.is_local(out):
        if os.path.isdir(out) and os.listdir(out):
            if not config.overwrite:
                raise UsageError(f"output {out!r} is not empty; pass --overwrite to replace it or pick a new folder")
            for name in OUTPUT_ENTRIES:
                path = os.path.join(out, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
        os.makedirs(out, exist_ok=True)
        return
    from apache_beam.io.filesystems import FileSystems

    existing = FileSystems.match([f"{out}/**"])[0].metadata_list
    if existing:
        if not config.overwrite:
            raise UsageError(f"output {out!r} is not empty; pass --overwrite to replace it or pick a new prefix")
        # As locally: only what a build writes goes; anything else under the prefix stays.
        ours = [m.path for m in existing if m.path[len(out) + 1:].split("/", 1)[0] in OUTPUT_ENTRIES]
        if ours:
            FileSystems.delete(ours)


def run_build(argv: list[str]) -> int:
    from pipeline.options import BuildOptions

    if any(a in ("-h", "--help") for a in argv):
        parser = argparse.ArgumentParser(prog="satsft build", description="Build an SFT dataset from a sat-bbox "
                                         "tree. Any Beam pipeline option (--runner, --direct_num_workers, "
                                         "--project, ...) is passed through.")
        BuildOptions._add_argparse_args(parser)
        parser.print_help()
        return 0
    unknown = unknown_flags(argv)
    if unknown:
        raise UsageError(f"unknown option(s) {' '.join(unknown)}; see `satsft build --help`")
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from pipeline.graph import build_pipeline
    from pipeline.report import add_timings, summary_table

    options = PipelineOptions(argv)
    config = options.view_as(BuildOptions).to_config()
    prepare_output(config)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    LOG.info("building %s -> %s on %s (tasks: %s; profiles: %s)", config.input, config.output, runner,
             ",".join(config.tasks), ",".join(config.profiles))
    started, cpu0 = time.monotonic(), _cpu_seconds()
    local = runner in ("DirectRunner", "SwitchingDirectRunner")
    pipeline = build_pipeline(config, beam.Pipeline(runner=_local_runner(options) if local else None,
                                                    options=options))
    result = pipeline.run()
    if runner in ASYNC_RUNNERS:  # the job writes build_report.json and README.md itself when it finishes
        print(f"submitted to {runner}; the dataset, build_report.json and README.md appear in {config.output} "
              "when the job finishes")
        return 0
    result.wait_until_finish()
    report = add_timings(config.output, {"wall_seconds": time.monotonic() - started,
                                         "cpu_seconds": _cpu_seconds() - cpu0})
    print(summary_table(report))
    print(f"\ndataset written to {config.output} (report: {config.output}/build_report.json)")
    return 0


def _local_runner(options):
    """The runner DirectRunner ends up using for this graph, without the detour: DirectRunner first tries to
    start Prism, which needs a binary from the network (offline that attempt only costs time), then falls
    back to the FnApiRunner. --direct_num_workers and --direct_running_mode apply as before."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_sample(argv: list[str]) -> int:
    from pipeline.sample import write_sample_tree

    parser = argparse.ArgumentParser(prog="satsft sample", description="Write a realistic generated sat-bbox tree.")
    parser.add_argument("--tiles", type=int, required=True, help="number of tiles to generate")
    parser.add_argument("--output", required=True, help="folder to write the tree into")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same tree")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing tree in --output")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes writing tiles (default: one per core); the bytes do not depend on it")
    parser.add_argument("--faults", action="store_true",
                        help="damage the tree once per kind of bad input (needs >= 60 tiles); expected rejects go "
                             "to faults.json")
    args = parser.parse_args(argv)
    if args.tiles < 1:
        raise UsageError("--tiles must be at least 1")
    if args.workers < 0:
        raise UsageError("--workers must be 0 (one per core) or more")
    out = os.path.abspath(args.output)
    if os.path.isdir(out) and os.listdir(out):
        if not args.overwrite:
            raise UsageError(f"output {out!r} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    started = time.monotonic()
    stats = write_sample_tree(out, args.tiles, args.seed, args.workers)
    print(f"wrote {stats['tiles']} tiles ({stats['stills']} stills, {stats['variants']} variants of "
          f"{stats['bases']} base POIs) to {out} in {time.monotonic() - started:.1f}s")
    if args.faults:
        from pipeline.faults import inject_faults

        try:
            manifest = inject_faults(out)
        except ValueError as err:
            raise UsageError(str(err)) from err
        print(f"injected {len(manifest)} kinds of fault; expected reject reasons in {out}/faults.json")
    return 0


def run_validate(argv: list[str]) -> int:
    from pipeline.validate import validate

    parser = argparse.ArgumentParser(prog="satsft validate", description="Check a built dataset folder: schemas, "
                                     "referenced files, grounding answers, folder limits, card and counts.")
    parser.add_argument("output", help="the --output folder (or gs:// URL) of a finished build")
    args = parser.parse_args(argv)
    if fileio.is_local(args.output):
        root = os.path.abspath(args.output)
        if not os.path.isdir(root):
            raise UsageError(f"{root!r} is not a folder; pass the --output folder of a build")
    else:
        root = args.output.rstrip("/")
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
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"satsft {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    commands = {"build": run_build, "sample": run_sample, "validate": run_validate}
    if command not in commands:
        print(f"satsft: error: unknown command {command!r}; use one of: {', '.join(commands)}", file=sys.stderr)
        return 2
    try:
        return commands[command](rest)
    except UsageError as err:
        print(f"satsft: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
