"""Per-file writers: row sidecars, analysis images, overlays, image copies, rejects (split files are in
transforms.output.split_files).

They run inside the DoFn that has the data (pixels never cross a shuffle), write under deterministic names via a
temporary name, and emit one small count event per file for the build report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from transforms import fileio
from transforms.analysis.overlay import draw_regions
from transforms.analysis.render import TileMap, render_tile_pngs
from transforms.output.tree import ANALYSIS_SPOOL_DIR, REJECTS_FILE, STILLS_DIR
from transforms.paths import join_path
from transforms.records import reject
from transforms.rows import Row

REJECTS = "rejects"
MAX_OPEN_FOLDERS = 64  # folders a worker holds open while it links an earlier build's files


class _WriteSidecarFn(beam.DoFn):
    def __init__(self, root: str, previous: str, in_place: bool):
        self.root, self.previous, self.in_place = root, previous, in_place
        self.written = Metrics.counter("WriteRowSidecars", "files_written")
        self.taken = Metrics.counter("WriteRowSidecars", "files_taken")

    def process(self, row: Row):
        path = join_path(self.root, row.sidecar_path)
        if row.reused:  # the same bytes are in the earlier build, under the same name
            self.taken.inc()
            if not self.in_place:
                try:
                    fileio.link_or_copy(join_path(self.previous, row.sidecar_path), path)
                except OSError:  # the earlier build lost it: write it again
                    pass
                else:
                    yield {"row_sidecars_written": 1}
                    return
            else:
                yield {"row_sidecars_written": 1}
                return
        fileio.write_bytes(path, orjson.dumps(row.sidecar, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        self.written.inc()
        yield {"row_sidecars_written": 1}


@dataclass
class WriteRowSidecars(beam.PTransform):
    """One JSON file per row; a reused tile's are the earlier build's (linked, or already in place)."""

    output_root: str
    previous: str = ""
    in_place: bool = False

    def expand(self, rows):
        return rows | "Write" >> beam.ParDo(_WriteSidecarFn(self.output_root, self.previous, self.in_place))


class _RenderFn(beam.DoFn):
    def __init__(self, root: str, event: str):
        self.root, self.event = root, event
        self.rendered = Metrics.counter("RenderAnalysisImages", "images_written")
        self.bytes = Metrics.counter("RenderAnalysisImages", "bytes_written")

    def process(self, element: tuple[bytes, TileMap, tuple[tuple[str, dict], ...]]):
        chip, fitted, renders = element
        pngs = render_tile_pngs(chip, [spec for _, spec in renders], fitted)
        for (path, _), png in zip(renders, pngs, strict=True):
            fileio.write_bytes(join_path(self.root, path), png)
        n_bytes = sum(len(png) for png in pngs)
        self.rendered.inc(len(pngs))
        self.bytes.inc(n_bytes)
        yield {self.event: len(pngs), "analysis_image_bytes": n_bytes}


@dataclass
class RenderAnalysisImages(beam.PTransform):
    """The hot path: each tile's analysis images, rendered from its chip's fit (made once per tile by
    GenerateRows) and their specs, and written in place; with ``spooled`` (--layout hub) under the spool,
    where the split-file writer embeds each in its row."""

    output_root: str
    spooled: bool = False

    def expand(self, renders):
        root = join_path(self.output_root, ANALYSIS_SPOOL_DIR) if self.spooled else self.output_root
        event = "analysis_images_spooled" if self.spooled else "analysis_images_written"
        return renders | "Render" >> beam.ParDo(_RenderFn(root, event))


def _in_place_already(src: str, dst: str, link: bool) -> bool:
    """Whether an unchanged tile's chip of an --update in place is already what this build would make of it, so
    that it is left alone: a link to the source when linking (else a copy an earlier --copy-images build made is
    turned back into a link, unless the source lies on another device, where a copy is all there can be), a
    copy of its own with --copy-images (a link an earlier build left is replaced by a copy: a rewrite of the
    tree in place would change it). Its bytes are the source's: they are in the tile's fingerprint."""
    try:
        linked = os.path.samefile(src, dst)
        if not link:
            return not linked
        return linked or os.stat(src).st_dev != os.stat(dst).st_dev
    except OSError:  # not there yet: a new tile's chip
        return False


class _CopyFn(beam.DoFn):
    """Copies (links) each file; what it did is counted per bundle and passed on when the bundle ends, one event
    instead of one per file."""

    def __init__(self, root: str, link: bool = True, check_in_place: bool = False):
        self.root, self.link, self.check_in_place = root, link, check_in_place
        self.copied = Metrics.counter("CopySourceImages", "files_copied")

    def start_bundle(self):
        self._done: dict[str, int] = {}

    def process(self, element):
        dst, src = element
        try:
            if (self.check_in_place and fileio.is_local(src)
                    and _in_place_already(src, join_path(self.root, dst), self.link)):
                self._done["files_reused"] = self._done.get("files_reused", 0) + 1
                return
            how = fileio.link_or_copy(src, join_path(self.root, dst), self.link)
        except OSError as err:  # vanished or unreadable since it was listed: one bad input, not a failed job
            yield beam.pvalue.TaggedOutput(REJECTS, reject(src, "", "copy", "source_image_unreadable",
                                                           f"{dst}: {err.__class__.__name__}: {str(err)[:200]}"))
            return
        self.copied.inc()
        key = "source_images_linked" if how == "link" else "source_images_copied"
        self._done[key] = self._done.get(key, 0) + 1

    def finish_bundle(self):
        if self._done:
            yield GlobalWindows.windowed_value(dict(sorted(self._done.items())))
        self._done = {}


@dataclass
class CopySourceImages(beam.PTransform):
    """Each referenced chip and still once, linked when local: ``events``, and ``rejects`` for a source that
    can no longer be read. Only stills are deduplicated (on destination): every tile of a place names its
    still, while a chip's destination is its own tile's slot, which no other tile has, so chips cross no
    shuffle or flatten (21,000 of them crossed one in a 21,000-tile build)."""

    output_root: str
    link: bool = True  # False with --copy-images
    in_place: bool = False  # --update: an unchanged tile's chip may be in place already (_in_place_already)

    def expand(self, copies):
        stills, chips = copies | "ByKind" >> beam.Partition(
            lambda copy, _: 0 if copy[0].startswith(STILLS_DIR + "/") else 1, 2)
        # A chip's bytes are in its tile's fingerprint, a still's are not: every build copies stills again.
        copy_chip = _CopyFn(self.output_root, self.link,
                            check_in_place=self.in_place and fileio.is_local(self.output_root))
        copy_still = _CopyFn(self.output_root, self.link)
        chip_out = chips | "CopyChips" >> beam.ParDo(copy_chip).with_outputs(REJECTS, main="events")
        still_out = (stills
                     | "Dedup" >> beam.CombinePerKey(min)
                     | "CopyStills" >> beam.ParDo(copy_still).with_outputs(REJECTS, main="events"))
        return {"events": (chip_out.events, still_out.events) | "Events" >> beam.Flatten(),
                REJECTS: (chip_out[REJECTS], still_out[REJECTS]) | "Rejects" >> beam.Flatten()}


class _TakeReusedFn(beam.DoFn):
    def __init__(self, previous: str, root: str):
        self.previous, self.root = previous, root
        self.taken = Metrics.counter("TakeReusedFiles", "files_taken")

    def setup(self):
        # Some twenty files per unchanged tile: locally each is first tried as one hard link between the two
        # folders, opened once per bundle (3.4 us a file, nearly all of it the link itself; link_or_copy's whole
        # paths and checks cost 6).
        self._local = fileio.is_local(self.previous) and fileio.is_local(self.root)
        self._src, self._dst = self.previous.rstrip("/") + "/", self.root.rstrip("/") + "/"
        self._folders: dict[str, tuple[int, int]] = {}

    def finish_bundle(self):
        self._close_folders()

    def teardown(self):
        self._close_folders()

    def _close_folders(self):
        # Emptied in place: _take_all holds the dict while _open may close what it holds.
        for fds in self._folders.values():
            for fd in fds:
                os.close(fd)
        self._folders.clear()

    def _open(self, folder: str) -> tuple[int, int]:
        """(earlier build's fd, this build's fd) of a folder below both roots."""
        if len(self._folders) >= MAX_OPEN_FOLDERS:
            self._close_folders()
        src = os.open(self._src + folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            dst = os.open(self._dst + folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            os.close(src)
            raise
        self._folders[folder] = fds = (src, dst)
        return fds

    def process(self, element):
        paths, in_place, sidecars, sidecars_in_place = element
        taken = in_place + (yield from self._take_all(paths))
        self.taken.inc(taken)
        yield {"files_reused": taken}
        if sidecars or sidecars_in_place:  # a tile whose rows were taken: its row sidecars come with them
            yield {"row_sidecars_written": sidecars_in_place + (yield from self._take_all(sidecars))}

    def _take_all(self, paths):
        """Yields a reject for each file that could not be put in place; returns how many were."""
        taken, folders, link, local = 0, self._folders, os.link, self._local
        for path in paths:
            if local:  # the common case: a new name in a folder that exists
                folder, _, name = path.rpartition("/")
                try:
                    fds = folders.get(folder) or self._open(folder)
                    link(name, name, src_dir_fd=fds[0], dst_dir_fd=fds[1])
                    taken += 1
                    continue
                except OSError:  # no folder yet, a file there (--update), another device: link_or_copy sorts it
                    pass
            try:
                fileio.link_or_copy(join_path(self.previous, path), join_path(self.root, path))
            except OSError as err:  # the earlier build lost it: the rows name a file that is not there
                yield beam.pvalue.TaggedOutput(REJECTS, reject(path, "", "copy", "previous_file_unreadable",
                                                               f"{err.__class__.__name__}: {str(err)[:200]}"))
            else:
                taken += 1
        return taken


@dataclass
class TakeReusedFiles(beam.PTransform):
    """The analysis images and overlays of unchanged tiles, linked (or copied) from the earlier build instead of
    drawn again, and their row sidecars when their rows were taken too; with --update they are in place
    already and are only counted."""

    previous: str
    output_root: str

    def expand(self, reused):
        out = reused | "Take" >> beam.ParDo(_TakeReusedFn(self.previous, self.output_root)).with_outputs(
            REJECTS, main="events")
        return {"events": out.events, REJECTS: out[REJECTS]}


class _OverlayFn(beam.DoFn):
    def __init__(self, root: str):
        self.root = root
        self.drawn = Metrics.counter("WriteOverlays", "images_written")

    def process(self, element):
        path, chip_src, size, regions = element
        fileio.write_bytes(join_path(self.root, path), draw_regions(fileio.read_bytes(chip_src), size, regions))
        self.drawn.inc()
        yield {"overlays_written": 1}


@dataclass
class WriteOverlays(beam.PTransform):
    """Region boxes and labels drawn on each chip, for people checking the labels by eye."""

    output_root: str

    def expand(self, overlays):
        return overlays | "Draw" >> beam.ParDo(_OverlayFn(self.output_root))


def write_rejects_file(root: str, rejects: list[dict]) -> dict[str, int]:
    """All rejects in one file, sorted, so a rerun writes the same bytes (an empty file when there are none)."""
    lines = sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in rejects)
    fileio.write_bytes(join_path(root, REJECTS_FILE), b"".join(line + b"\n" for line in lines))
    return {"reject_files_written": 1}


@dataclass
class WriteRejects(beam.PTransform):
    """rejects/rejects-00000-of-00001.jsonl: the dead-letter file, one JSON object with a reason per line."""

    output_root: str

    def expand(self, rejects):
        root = self.output_root
        keyed = rejects | "Key" >> beam.Map(lambda r: (None, r))
        always = keyed.pipeline | "Anchor" >> beam.Create([(None, None)])
        return ((keyed, always)
                | "Both" >> beam.Flatten()
                | "One" >> beam.GroupByKey()
                | "Write" >> beam.MapTuple(lambda _, rs: write_rejects_file(root, [r for r in rs if r is not None])))
