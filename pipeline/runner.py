"""Running a graph: the local runner shortcut, run and wait (with the collector tuned and timings kept apart),
preparing the output folder, and refusing flags no option class declares. Shared by `build` and `mix`.

Beam is imported inside the functions: the CLI imports this module for every command.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import resource
import shutil
import signal
import sys
import threading
import time
from typing import Protocol

from pipeline.errors import UsageError, cannot_list
from pipeline.progress import ProgressMonitor
from transforms import collector, fileio
from transforms.output import check_in, claim
from transforms.output.tree import CARD_NAME, CHECK_IN
from transforms.paths import join_path

ASYNC_RUNNERS = ("DataflowRunner",)  # a Flex Template launcher must submit and return, not wait for the job
INTERRUPTED = "KeyboardInterrupt"  # how Beam words a Ctrl-C it caught in a DoFn: "KeyboardInterrupt [while ...]"


class Interrupted(Exception):
    """The user (Ctrl-C) or a scheduler (SIGTERM: `timeout`, systemd, Kubernetes) stopped a run that waited for
    its graph: the command says what the output holds."""

    def __init__(self, output: str, signum: int = signal.SIGINT):
        super().__init__(output)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the stop signal a run met, for Interrupted to name


# The storage refusing writes (ENOSPC, EDQUOT, EROFS): a state of the machine, not a bug; Beam words what a DoFn
# met as "OSError: [Errno 28] No space left on device [while running 'Step']".
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
# (the words only: an error naming its file goes on ": '/path'", which the message says its own way)
_STORAGE_WORDS = re.compile(r"\[Errno (" + "|".join(map(str, STORAGE_ERRNOS)) + r")\] ([^\[\]\n:]+)")


class StorageFull(Exception):
    """The output's storage refused a write (full, over quota, read-only): the command says so in one line and
    what the output holds, with no traceback."""

    def __init__(self, output: str, reason: str):
        super().__init__(f"{reason} (writing to {output})")


def storage_refusal(err: BaseException) -> str:
    """The strerror of a storage refusal in an error or its causes, or ""."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
            return err.strerror or os.strerror(err.errno)
        found = _STORAGE_WORDS.search(str(err))
        if found:
            return found.group(2).strip().rstrip("'\"")
        err, seen = err.__cause__ or err.__context__, seen + 1
    return ""


class OutputConfig(Protocol):
    output: str
    overwrite: bool


def unknown_flags(argv: list[str]) -> list[str]:
    """Flags no PipelineOptions class declares, and words no flag takes; Beam would only warn about the flags
    and passes over the words, we refuse both."""
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
    return unknown


def refuse_unknown_flags(argv: list[str], command: str) -> None:
    """A usage error for a flag no option class declares, or a word no flag takes: a second value after a flag
    that takes one (``--tasks caption grounding_all``, which would build captions alone) or paths given without
    their flags (``satsft build tree out``)."""
    unknown = unknown_flags(argv)
    flags = [u for u in unknown if u.startswith("-")]
    if flags:
        raise UsageError(f"unknown option(s) {' '.join(flags)}; see `satsft {command} --help`")
    if unknown:
        paths, listed = _EXAMPLES.get(command, _EXAMPLES["build"])
        raise UsageError(f"unexpected argument(s) {' '.join(map(repr, unknown))}: every value follows its flag "
                         f"({paths}), and a flag takes one value (lists are comma-separated: {listed}); see "
                         f"`satsft {command} --help`")


_EXAMPLES = {"build": ("--input TREE --output OUT", "--tasks caption,grounding_all"),
             "mix": ("--source name=N,path=BUILD --output OUT", "--formats jsonl,parquet")}


def make_output_folder(out: str) -> None:
    """Make a local output folder; a file of that name or a read-only or missing mount is a usage error."""
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        what = "is a file, not a folder" if os.path.isfile(out) else f"cannot be made ({err.strerror})"
        raise UsageError(f"output {out!r} {what}; pick a folder you can write to") from err


class OutputBusy(Exception):
    """Another run is writing the output (transforms.output.claim): exit 1, nothing done."""


def prepare_output(config: OutputConfig, entries: tuple[str, ...], command: str, take_over_after: float,
                   detached: str = "") -> None:
    """Refuse to mix a new output with an old one; with --overwrite, remove what an earlier run wrote (the
    ``entries`` a build or a mix writes; anything else stays), unless another run is still writing it. Then
    name this run as the output's writer until its spool goes."""
    out = config.output
    doing = ("--overwrite would delete the files it is writing" if config.overwrite else
             "wait for it, or pick a new folder")
    with check_in.checking_in(out, take_over_after):
        busy = claim.refusal(out, take_over_after, doing)
        if busy:
            raise OutputBusy(busy)
        if config.overwrite:
            _refuse_the_other_kind(out, command)
        _clear_output(config, entries)
        claim.claim(out, command, detached)


def _refuse_the_other_kind(out: str, command: str) -> None:
    """--overwrite replaces an earlier output of the same command. A mix's over a build (or the other way round)
    removed only the entries a mix writes and left a folder of both that validates as neither; and a build given
    as a mix's output is more likely a slip than something to delete."""
    from transforms.output.tree import MIX_REPORT_NAME, REPORT_NAME

    other, kind = (MIX_REPORT_NAME, "mix") if command == "build" else (REPORT_NAME, "build")
    if fileio.exists(join_path(out, other)):
        raise UsageError(f"output {out!r} holds a satsft {kind} (it has {other}); --overwrite replaces an earlier "
                         f"{command} only: pick another folder, or remove that {kind} first")


def _not_ours(out: str, present: list[str]) -> str:
    """Why --overwrite must leave ``present`` (entries a build or mix writes, found in ``out``) alone: satsft
    neither wrote nor is writing there (no report, no run marker), so they are someone else's. images/, data/ and
    metadata/ are a sat-bbox tree's own folders: an --output naming a tree by a slip (seen: a link to the input)
    lost its chips, chat rows and sidecars; a folder of another dataset lost its data/. "" when they may go."""
    from transforms.output.tree import MIX_REPORT_NAME, REPORT_NAME, UPDATE_STARTED
    from transforms.paths import is_chat_file

    if not present or any(fileio.exists(join_path(out, marker)) for marker in (
            REPORT_NAME, MIX_REPORT_NAME, claim.WRITER, UPDATE_STARTED)):
        return ""
    chat = [rel for rel in fileio.list_files(join_path(out, "data")) if "/" not in rel and is_chat_file(rel)]
    if chat and "metadata" in present:
        what = f"a sat-bbox tree (data/{chat[0]}, metadata/, ...)"
    else:
        what = f"{', '.join(f'{e}/' if '.' not in e else e for e in present)}"
    return (f"output {out!r} holds {what}, which no satsft run wrote (it has no build or mix report and no run "
            "marker): --overwrite removes only what satsft wrote. Pick another folder (is --output the input tree, "
            "or a link to it?), or remove those yourself if they are to go")


def _clear_output(config: OutputConfig, entries: tuple[str, ...]) -> None:
    out = config.output
    if fileio.is_local(out):
        if os.path.isdir(out) and os.listdir(out):
            if not config.overwrite:
                raise UsageError(f"output {out!r} is not empty; pass --overwrite to replace it or pick a new folder")
            foreign = _not_ours(out, [e for e in entries if e != CARD_NAME and os.path.lexists(os.path.join(out, e))])
            if foreign:
                raise UsageError(foreign)
            for name in entries:
                path = os.path.join(out, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                elif os.path.lexists(path):  # a file, or a link (removed itself, never what it names)
                    os.remove(path)
        make_output_folder(out)
        return
    from apache_beam.io.filesystem import BeamIOError

    try:
        existing = [m for m in fileio.match_under(out) if m.path != join_path(out, CHECK_IN)]  # this run's own
    except (BeamIOError, ValueError) as err:
        raise cannot_list(out, err) from err
    if existing:
        if not config.overwrite:
            raise UsageError(f"output {out!r} is not empty; pass --overwrite to replace it or pick a new prefix")
        # As locally: only what a build writes goes; anything else under the prefix stays.
        ours = [m.path for m in existing if m.path[len(out) + 1:].split("/", 1)[0] in entries]
        foreign = _not_ours(out, sorted({p[len(out) + 1:].split("/", 1)[0] for p in ours} - {CARD_NAME}))
        if foreign:
            raise UsageError(foreign)
        fileio.delete_files(ours)


def runner_name(options) -> str:
    from apache_beam.options.pipeline_options import StandardOptions

    return options.view_as(StandardOptions).runner or "DirectRunner"


def detached_runner(options) -> str:
    """The runner's name when it only submits the job and this process does not wait for it ("" otherwise);
    Beam also takes its short, lower-case spellings (``--runner dataflow``)."""
    name = runner_name(options)
    for known in ASYNC_RUNNERS:
        if name.lower() in (known.lower(), known.lower().removesuffix("runner")):
            return known
    return ""


def new_pipeline(options):
    """A Pipeline on the runner the options name; the DirectRunner goes straight to the FnApiRunner. The
    pipeline gets options whose views are made once per option class (pipeline.cached_views), and Beam looks for
    a DoFn's state parameters once per class (pipeline.cached_dofn_specs)."""
    import apache_beam as beam

    from pipeline import cached_dofn_specs
    from pipeline.cached_views import cached_views

    cached_dofn_specs.install()

    local = runner_name(options) in ("DirectRunner", "SwitchingDirectRunner")
    return beam.Pipeline(runner=_local_runner(options) if local else None, options=cached_views(options))


def run(pipeline, options, output: str, timings_name: str, report_name: str, progress: ProgressMonitor | None = None
        ) -> dict | None:
    """Run a graph; wait for it unless the runner only submits it (showing ``progress`` meanwhile). Returns the
    report with timings."""
    from pipeline.publish.report import add_timings

    runner = runner_name(options)
    started, cpu0 = time.monotonic(), _cpu_seconds()
    if detached_runner(options):  # the job writes the report and README.md itself when it finishes
        pipeline.run()
        print(f"submitted to {runner}; the output, {report_name} and README.md appear in {output} when the job "
              "finishes")
        return None
    try:
        with collector.tuned(), progress or contextlib.nullcontext(), _quiet_after_ctrl_c():
            pipeline.run().wait_until_finish()
        return add_timings(output, {"wall_seconds": time.monotonic() - started,
                                    "cpu_seconds": _cpu_seconds() - cpu0}, timings_name, report_name)
    except KeyboardInterrupt:
        raise Interrupted(output, _received[-1] if _received else signal.SIGINT) from None
    except (RuntimeError, OSError) as err:  # Beam re-raises a KeyboardInterrupt a DoFn met as a RuntimeError
        if str(err).startswith(INTERRUPTED):
            raise Interrupted(output, _received[-1] if _received else signal.SIGINT) from None
        refused = storage_refusal(err)
        if refused:
            raise StorageFull(output, refused) from None
        raise


@contextlib.contextmanager
def _quiet_after_ctrl_c():
    """After Ctrl-C, the local runner's threads (workers of --direct_running_mode multi_processing, gRPC readers)
    die with errors of their own; the command says once what happened instead. Outside the main thread (tests
    running a build in a thread) signals are not ours to handle."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopped = threading.Event()
    _received.clear()

    def on_stop(signum, frame):
        stopped.set()
        _received.append(signum)
        raise KeyboardInterrupt

    before = {s: signal.signal(s, on_stop) for s in STOP_SIGNALS}
    before_hook = threading.excepthook
    threading.excepthook = lambda args: None if stopped.is_set() else before_hook(args)
    try:
        with _workers_leave_ctrl_c():
            yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        threading.excepthook = before_hook


@contextlib.contextmanager
def _workers_leave_ctrl_c():
    """Ctrl-C reaches every process of the terminal's process group (and a scheduler's SIGTERM often every process
    of the job): the worker processes of --direct_running_mode multi_processing each printed a KeyboardInterrupt
    traceback, or died first and made the launcher log gRPC tracebacks, before the command's one line. They are
    started through a shell (Beam's SubprocessSDKEnvironment command); started with SIGINT and SIGTERM ignored
    (which exec and Python keep), they leave the stop to this process and end when it closes their channel."""
    from apache_beam.transforms import environments

    cls = environments.SubprocessSDKEnvironment
    plain = cls.__dict__["from_command_string"]

    def leaving_stops(_cls, command_string, *args, **kwargs):
        if command_string.startswith(sys.executable) and "sdk_worker_main" in command_string:  # the local workers
            command_string = f"trap '' INT TERM; exec {command_string}"  # (a command of the user's goes as given)
        return plain.__func__(_cls, command_string, *args, **kwargs)

    cls.from_command_string = classmethod(leaving_stops)
    try:
        yield
    finally:
        cls.from_command_string = plain


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
