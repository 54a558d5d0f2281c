"""Reading the input tree: tile sidecars, image references from the chat JSONL, and the image listings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from transforms.fileio import (
    DamagedFile,
    NotAFile,
    is_under,
    literal_pattern,
    open_for_read,
    read_bytes,
    read_head_tail,
    read_lines,
    refuse_special,
)
from transforms.input import lfs
from transforms.input.fingerprint import file_leaf, fingerprint
from transforms.input.images import ImageFile, escapes_root, inspect_image
from transforms.input.refs import IGNORED_REFS, OTHER, REBASED_REFS, ImageRef, file_rank, parse_line, parse_row
from transforms.input.share import path_in_share
from transforms.input.sidecars import MAX_SIDECAR_BYTES, parse_sidecar
from transforms.json_array import HEAD_BYTES, NotAnArray, json_array_rows, written_whole
from transforms.paths import (
    HIDDEN_SKIPPED,
    NESTED_NOT_READ,
    WRITTEN_WHOLE,
    file_stem,
    is_chat_file,
    is_hidden,
    join_path,
)
from transforms.records import NAME_NOT_UTF8, NAME_NOT_UTF8_DETAIL, name_not_utf8, reject, written_name

REJECTS = "rejects"
LEAVES = "leaves"
EVENTS = "events"


def relative_to(root: str, path: str) -> str:
    """The path below the input root, so reject sources read the same on a laptop and in a bucket."""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


class _ParseSidecarFn(beam.DoFn):
    def __init__(self, root: str):
        self.root = root
        self.tiles_in = Metrics.counter("ReadSidecars", "tiles_in")
        self.parsed = Metrics.counter("ReadSidecars", "tiles_parsed")
        self.rejected = Metrics.counter("ReadSidecars", "tiles_rejected")

    def _read(self, match: FileMetadata, source: str) -> tuple[bytes | None, dict | None]:
        """(bytes, None), or (None, reject) for a sidecar that must not or cannot be read."""
        if escapes_root(self.root, match.path):  # a symlink out of the tree is never followed
            return None, reject(source, file_stem(source), "sidecar", "sidecar_outside_root",
                                "symlink out of the input root")
        if match.size_in_bytes > MAX_SIDECAR_BYTES:  # never load an oversized sidecar whole
            return None, reject(source, file_stem(source), "sidecar", "sidecar_too_large",
                                f"{match.size_in_bytes} bytes")
        try:  # not Beam's ReadableFile: its file object costs about 40 us a file more, read by read by read
            refuse_special(match.path)
            return read_bytes(match.path), None
        except Exception as err:  # an unreadable file is one bad input, not a failed job
            return None, reject(source, file_stem(source), "sidecar", "sidecar_unreadable", str(err)[:300])

    def process(self, match: FileMetadata):
        source = relative_to(self.root, match.path)
        self.tiles_in.inc()
        if name_not_utf8(source):  # its name could not cross a shuffle, nor be written: one reject, the job goes on
            self.rejected.inc()
            name = written_name(source)
            yield beam.pvalue.TaggedOutput(LEAVES, file_leaf("sidecar", name, match.size_in_bytes))
            yield beam.pvalue.TaggedOutput(REJECTS, reject(name, file_stem(name), "sidecar", NAME_NOT_UTF8,
                                                           NAME_NOT_UTF8_DETAIL))
            return
        data, problem = self._read(match, source)
        yield beam.pvalue.TaggedOutput(LEAVES, file_leaf("sidecar", source, match.size_in_bytes, data))
        if problem is not None:
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, problem)
            return
        parsed = parse_sidecar(data, source)
        if parsed.tile is None:
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, reject(source, file_stem(source), "sidecar", parsed.problem.reason,
                                                           parsed.problem.detail))
            return
        self.parsed.inc()
        for p in parsed.region_problems:
            yield beam.pvalue.TaggedOutput(REJECTS, reject(source, parsed.tile.tile_stem, "region", p.reason, p.detail))
        yield parsed.tile.tile_stem, parsed.tile


def match_below(pbegin, root: str, tail: str, **options) -> tuple[beam.PCollection, beam.PCollection]:
    """Beam's MatchFiles of ``root/tail``, with ``root`` a literal folder name even when it holds ``[``, ``*`` or
    ``?`` (transforms.fileio.literal_pattern; then a sibling the escaped pattern lets through is dropped), and
    without hidden files (is_hidden): (matches, the event counting those left unread)."""
    pattern = literal_pattern(root)
    matches = pbegin | "Match" >> fileio.MatchFiles(join_path(pattern, tail), **options)
    if pattern != root:
        matches = matches | "KeepBelowRoot" >> beam.Filter(lambda m: is_under(root, m.path))
    shown, hidden = matches | "Hidden" >> beam.Partition(lambda m, _: int(is_hidden(root, m.path)), 2)
    return shown, (hidden
                   | "CountHidden" >> beam.combiners.Count.Globally()
                   | "HiddenEvent" >> beam.Map(lambda n: {HIDDEN_SKIPPED: n}))


@dataclass
class ReadSidecars(beam.PTransform):
    """metadata/**.json -> (tile_stem, Tile), with a reject for every sidecar that cannot be used.

    ``tiles_in`` is the number of sidecar files, the left side of the accounting identity; ``leaves`` holds one
    fingerprint leaf per sidecar file (transforms.input.fingerprint)."""

    input_root: str
    share: float = 1.0  # --tile-share: only the sidecars of this share of the base POIs are read

    def expand(self, pbegin):
        listed, hidden = match_below(pbegin, self.input_root, "metadata/**")
        # .JSON too: a tree renamed on Windows, whose names ignore case; its sidecar was "sidecar_missing"
        matches = listed | "SidecarsOnly" >> beam.Filter(lambda m: m.path[-5:].lower() == ".json")
        out = {EVENTS: hidden}
        if self.share < 1:
            share = self.share
            out["left_out"] = (matches
                               | "LeftOut" >> beam.Filter(lambda m: not path_in_share(m.path, share))
                               | "CountLeftOut" >> beam.combiners.Count.Globally())
            matches = matches | "InShare" >> beam.Filter(lambda m: path_in_share(m.path, share))
        # Straight from the matches: the sidecar is read by path (Beam's ReadMatches wrapped each in a file
        # object that was pickled on its way, some 50 us a sidecar).
        parsed = matches | "Parse" >> beam.ParDo(_ParseSidecarFn(self.input_root)).with_outputs(REJECTS, LEAVES,
                                                                                              main="tiles")
        tiles_in = matches | "CountFiles" >> beam.combiners.Count.Globally()
        return {"tiles": parsed.tiles, REJECTS: parsed[REJECTS], "tiles_in": tiles_in, LEAVES: parsed[LEAVES],
                **out}


def _parsed_rows(path: str, rank: int, whole: bool = False):
    """(refs, problems) of each row of a chat file: a JSONL line, or an element of a .json array (LLaVA's
    container) or of a .jsonl written whole (``whole``: json_array.written_whole), read element by element."""
    if path.endswith(".json") or whole:
        with open_for_read(path) as f:
            for n, row in enumerate(json_array_rows(f, one_after_another=whole), start=1):
                yield parse_row(row, rank, n)
        return
    for line_no, line in enumerate(read_lines(path), start=1):
        yield parse_line(line, rank, line_no)


class _ExtractRefsFn(beam.DoFn):
    """The first reference of each stem among a bundle's lines, per kind. Upstream trees name a tile's chip on
    several lines (one per task), and every reference crossing a shuffle of its own cost more than it is worth;
    the join and the still index keep the least of what reaches them from all bundles (``min``), the same
    reference a combine per stem gave. At most ``MAX_STEMS`` stems of a kind are held; past that they are
    passed on and gathering starts again."""

    MAX_STEMS = 50_000  # some 10 MB of references

    def __init__(self, root: str):
        self.root = root
        self.chips = Metrics.counter("ExtractImageRefs", "chip_refs")
        self.stills = Metrics.counter("ExtractImageRefs", "still_refs")
        self.bad = Metrics.counter("ExtractImageRefs", "bad_refs")

    def start_bundle(self):
        self._first: dict[str, dict[str, ImageRef]] = {"chip": {}, "still": {}}

    def process(self, readable: fileio.ReadableFile):
        source = relative_to(self.root, readable.metadata.path)
        if name_not_utf8(source):
            self.bad.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, reject(written_name(source), "", "refs", NAME_NOT_UTF8,
                                                           NAME_NOT_UTF8_DETAIL))
            return
        if escapes_root(self.root, readable.metadata.path):
            self.bad.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, reject(source, "", "refs", "jsonl_outside_root",
                                                           "symlink out of the input root"))
            return
        yield beam.pvalue.TaggedOutput(LEAVES, file_leaf("jsonl", source, readable.metadata.size_in_bytes))
        rank = file_rank(source)
        ignored = rebased = 0
        path = readable.metadata.path
        try:
            refuse_special(path)
            head = read_head_tail(path, HEAD_BYTES, 0)[0]
        except NotAFile as err:  # a named pipe held the job until something wrote to it
            self.bad.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, reject(source, "", "refs", "jsonl_unreadable", str(err)[:300]))
            return
        if lfs.is_pointer(head):  # one reject for the file, not one per line
            self.bad.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, reject(source, "", "refs", "jsonl_lfs_pointer", lfs.DETAIL))
            return
        whole = path.endswith(".jsonl") and written_whole(head)
        if whole:
            yield beam.pvalue.TaggedOutput(EVENTS, {WRITTEN_WHOLE: 1})
        parsed = _parsed_rows(path, rank, whole)
        while True:
            try:
                refs, problems = next(parsed)
            except StopIteration:
                break
            except DamagedFile as err:  # a damaged .gz/.zst/... or JSON array: the rows before it count
                self.bad.inc()
                yield beam.pvalue.TaggedOutput(REJECTS, reject(source, "", "refs", "jsonl_unreadable", str(err)))
                break
            except NotAnArray as err:
                self.bad.inc()
                yield beam.pvalue.TaggedOutput(REJECTS, reject(source, "", "refs", "json_not_rows", str(err)))
                break
            for p in problems:
                self.bad.inc()
                yield beam.pvalue.TaggedOutput(REJECTS, reject(f"{source}:{p.line_no}", "", "refs", p.reason,
                                                               p.detail))
            for ref in refs:
                rebased += ref.rebased
                if ref.kind == OTHER:
                    ignored += 1
                    continue
                (self.chips if ref.kind == "chip" else self.stills).inc()
                first = self._first[ref.kind]
                held = first.get(ref.stem)
                if held is None or ref < held:
                    first[ref.stem] = ref
                    if len(first) >= self.MAX_STEMS:
                        yield from self._flush(ref.kind)
        counts = {k: n for k, n in ((IGNORED_REFS, ignored), (REBASED_REFS, rebased)) if n}
        if counts:
            yield beam.pvalue.TaggedOutput(EVENTS, counts)

    def finish_bundle(self):
        for kind in sorted(self._first):
            for out in self._flush(kind):
                yield beam.pvalue.TaggedOutput(kind, GlobalWindows.windowed_value(out.value))

    def _flush(self, kind: str) -> list[beam.pvalue.TaggedOutput]:
        first, self._first[kind] = self._first[kind], {}
        return [beam.pvalue.TaggedOutput(kind, (stem, ref)) for stem, ref in sorted(first.items())]


@dataclass
class ExtractImageRefs(beam.PTransform):
    """data/*.jsonl (or .jsonl.gz, ...: transforms.paths.JSONL_SUFFIXES) -> (stem, chip reference) and (stem,
    still reference): the first of each stem per bundle, so a stem may come more than once; the first of all
    (train, validation, test; line order) is the least. Chat files in sub-folders of data/ are not read (an
    older export under data/v1/ would name chips the tree no longer has) but counted (NESTED_NOT_READ): a tree
    with data/train/part-00000.jsonl beside data/test.jsonl lost every train tile as stem_not_in_jsonl without
    a word about the file."""

    input_root: str

    def expand(self, pbegin):
        root = self.input_root
        listed, hidden = match_below(pbegin, root, "data/**")
        chat = listed | "ChatFilesOnly" >> beam.Filter(lambda m: is_chat_file(m.path))  # .jsonl, .jsonl.gz, .json
        matches, deeper = chat | "InDataItself" >> beam.Partition(
            lambda m, _: int(relative_to(root, m.path).count("/") > 1), 2)
        not_read = (deeper
                    | "CountDeeper" >> beam.combiners.Count.Globally()
                    | "DeeperEvent" >> beam.FlatMap(lambda n: [{NESTED_NOT_READ: n}] if n else []))
        out = (matches
               | "Read" >> fileio.ReadMatches()
               | "Parse" >> beam.ParDo(_ExtractRefsFn(self.input_root)).with_outputs("chip", "still", REJECTS, LEAVES,
                                                                                   EVENTS))
        events = (out[EVENTS], hidden, not_read) | "Events" >> beam.Flatten()
        return {"chips": out.chip, "stills": out.still, REJECTS: out[REJECTS], LEAVES: out[LEAVES], EVENTS: events}


def inspected(root: str, match, still: bool = False) -> tuple[str, ImageFile]:
    rel = relative_to(root, match.path)
    return file_stem(rel), inspect_image(root, rel, match.size_in_bytes, still)


@dataclass
class ListImages(beam.PTransform):
    """Which files exist under one image folder, keyed by stem, each checked (head and tail bytes only) so
    that a truncated, empty, oversized or escaping file is known before anything opens it: ``files``; and
    ``rejects``, of files whose names are not UTF-8."""

    input_root: str
    folder: str
    still: bool = False  # JPEGs and WebPs pass too
    share: float = 1.0  # --tile-share: only the files of tiles in this share are inspected
    wanted: beam.PCollection | None = None  # (stem, None) of the only stems to inspect (--tile-share's stills)

    def expand(self, pbegin):
        root, still, share = self.input_root, self.still, self.share
        listed, hidden = match_below(pbegin, root, f"{self.folder}/**",
                                     empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
        named = listed | "NamesNotUtf8" >> beam.ParDo(_NameNotUtf8Fn(root, self.folder)).with_outputs(
            REJECTS, main="files")
        matches = named.files
        if self.wanted is not None:
            matches = (matches | "ByStem" >> beam.Map(lambda m: (file_stem(m.path), m))) | "Wanted" >> KeepWanted(
                self.wanted)
        elif share < 1:
            matches = matches | "InShare" >> beam.Filter(lambda m: path_in_share(m.path, share))
        return {"files": matches | "Inspect" >> beam.Map(lambda m: inspected(root, m, still)),
                REJECTS: named[REJECTS], EVENTS: hidden}


class _NameNotUtf8Fn(beam.DoFn):
    """An image whose name is not UTF-8 is no file any sidecar or JSONL line can name (their text is UTF-8), and
    its name could not cross a shuffle: a reject, not a failed job."""

    def __init__(self, root: str, folder: str):
        self.root, self.folder = root, folder
        self.bad = Metrics.counter("ListImages", "names_not_utf8")

    def process(self, match: FileMetadata):
        source = relative_to(self.root, match.path)
        if name_not_utf8(source):
            self.bad.inc()
            yield beam.pvalue.TaggedOutput(REJECTS, reject(written_name(source), "", self.folder, NAME_NOT_UTF8,
                                                           NAME_NOT_UTF8_DETAIL))
        else:
            yield match


@dataclass
class KeepWanted(beam.PTransform):
    """(key, value) -> the values whose key is among ``wanted``'s keys: a still is named by its place, not by
    a tile, so a --tile-share try-out keeps the stills its tiles look up (paths.still_lookup_keys), and reads
    no other."""

    wanted: beam.PCollection

    def expand(self, keyed):
        return ({"values": keyed, "wanted": self.wanted}
                | "CoGroup" >> beam.CoGroupByKey()
                | "Keep" >> beam.FlatMap(lambda kv: kv[1]["values"] if kv[1]["wanted"] else []))


def image_leaf(element: tuple[str, ImageFile]) -> bytes:
    """The fingerprint leaf of a listed image: its path and size (images are not read for this)."""
    return file_leaf("image", element[1].path, element[1].size)


class FingerprintFn(beam.CombineFn):
    """Batches of leaves in, one hex digest out. Holds 32 bytes per input file (about 10 MB at 100,000 tiles)."""

    def create_accumulator(self) -> list[bytes]:
        return []

    def add_input(self, acc: list[bytes], leaves: tuple[bytes, ...]) -> list[bytes]:
        acc.extend(leaves)
        return acc

    def merge_accumulators(self, accs: Iterable[list[bytes]]) -> list[bytes]:
        merged: list[bytes] = []
        for acc in accs:
            merged.extend(acc)
        return merged

    def extract_output(self, acc: list[bytes]) -> str:
        return fingerprint(acc)


@dataclass
class Fingerprint(beam.PTransform):
    """Named PCollections of leaves -> the input fingerprint. Each goes on in batches of up to ``BATCH``
    leaves, at most one part batch per bundle, not one by one: a leaf crossing into the combine's stage costs
    more than making it (some 50,000 of them in a 20,000-tile build). The digest sorts its leaves, so how they
    were batched does not change it."""

    BATCH = 10_000

    def expand(self, parts):
        batched = [parts[name] | f"Batch{name}" >> beam.BatchElements(min_batch_size=self.BATCH,
                                                                      max_batch_size=self.BATCH)
                   for name in sorted(parts)]
        return batched | "All" >> beam.Flatten() | "Digest" >> beam.CombineGlobally(FingerprintFn())
