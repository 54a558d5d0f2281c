"""Fan each tile out through the selected tasks, gate every row, and fix each row's sidecar path."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import collector, fileio
from transforms.analysis.render import ChipError, tile_map
from transforms.gate import gate_problem
from transforms.input.png_digest import png_digest
from transforms.output.counts import row_keys
from transforms.output.tree import ROW_SIDECARS_DIR
from transforms.paths import join_path, slot_dir
from transforms.progress import ProgressCounter
from transforms.rebuild.manifest import PreviousTile, add_counts, tile_fingerprint, tile_record
from transforms.records import reject
from transforms.rows import PreparedTile, Row, TaskContext, file_safe
from transforms.splits.footprints import tile_footprint
from transforms.tasks import TASKS, rows_per_tile_bound

REJECTS = "rejects"
COPIES = "copies"
RENDERS = "renders"
TILES_DONE = "tiles_done"
OVERLAYS = "overlays"
MANIFEST = "manifest"
TAKEN_MANIFEST = "taken_manifest"  # the manifest records of tiles whose rows are taken: their earlier ones
REUSED = "reused"
ROW_COUNTS = "row_counts"  # what a taken tile's rows add to the report's counts


def row_sidecar_path(slot: int, position: int, bound: int, sample_id: str, max_files_per_dir: int) -> str:
    """Each tile owns ``bound`` consecutive places, so the folder follows from the tile's slot alone."""
    return join_path(ROW_SIDECARS_DIR, slot_dir(slot * bound + position, max_files_per_dir),
                     f"{file_safe(sample_id)}.json")


def tile_summary(pt: PreparedTile) -> dict:
    """What the dataset card's tile tables need from a finished tile: its split, dominant class, box labels."""
    dominant, labels = pt.tile.card_summary()
    return {"split": pt.tile.split, "dominant": dominant, "regions": dict(labels)}


def tile_rows(pt: PreparedTile, tasks: tuple[str, ...], max_prompt_chars: int
              ) -> tuple[list[Row], list[tuple[Row, str, str]]]:
    """All rows of one tile that pass the gate, and the ones that did not with (reason, detail)."""
    kept: list[Row] = []
    gated: list[tuple[Row, str, str]] = []
    for task in tasks:
        for row in TASKS[task].rows(pt):
            problem = gate_problem(row, max_prompt_chars)
            if problem:
                gated.append((row, *problem))
            else:
                kept.append(row)
    return kept, gated


class _GenerateRowsFn(beam.DoFn):
    def __init__(self, ctx: TaskContext, tasks: tuple[str, ...], max_prompt_chars: int, overlays: bool,
                 output_root: str, options: str, sidecar_files: bool, in_place: bool, chips_local: bool = False):
        self.ctx, self.tasks, self.max_prompt_chars, self.overlays = ctx, tasks, max_prompt_chars, overlays
        self.output_root, self.options = output_root, options
        self.sidecar_files, self.in_place = sidecar_files, in_place
        # --update of a local build from a local tree: a chip in place may be a link where --copy-images asks for
        # a copy, or a copy an earlier --copy-images build made where a link will do; each is checked, and
        # replaced where it is not what this build makes (transforms.output.files._in_place_already)
        self.chips_in_place_checked = in_place and chips_local
        self.bound = rows_per_tile_bound(tasks, len(ctx.profiles))
        self.tiles_in = Metrics.counter("GenerateRows", "tiles_in")
        self.rows_out = Metrics.counter("GenerateRows", "rows_out")
        self.reused = Metrics.counter("GenerateRows", "tiles_reused")
        self.taken = Metrics.counter("GenerateRows", "tiles_rows_taken")
        self.task_rows = {t: Metrics.counter("GenerateRows", f"rows_{t}") for t in tasks}

    def setup(self):
        # Most of a build's objects are made here; in worker processes (multi_processing) nothing else tunes
        # the collector (transforms.collector). In the build's own process it is tuned already: nothing to do.
        self._collector_before = collector.tune()
        self._progress: ProgressCounter | None = None

    def teardown(self):
        collector.restore(self._collector_before)

    def finish_bundle(self):
        if self._progress is not None:
            self._progress.flush()

    def process(self, tile, total: int):
        self.tiles_in.inc()
        if self._progress is None:  # the total is known once the side input is
            self._progress = ProgressCounter(self.output_root, "build", "tiles", total)
        self._progress.add(0)
        if tile.earlier_rows:
            yield from self._take(tile)
            return
        chip = b""
        if not tile.reuse:  # a reused tile is known by its chip's digest: nothing of it is decoded or drawn
            try:
                chip = fileio.read_bytes(tile.chip_src)
            except OSError as err:  # vanished or unreadable since it was listed: one bad tile, not a failed job
                yield beam.pvalue.TaggedOutput(REJECTS, reject(tile.source, tile.tile_stem, "rows",
                                                               "source_image_unreadable",
                                                               f"{tile.chip_src}: {err.__class__.__name__}"))
                return
            sha = hashlib.sha256(chip).hexdigest()
            tile = tile.with_fields(chip_sha256=sha,
                                    fingerprint=tile_fingerprint(self.options, tile.sidecar_sha256, png_digest(chip),
                                                                  tile.images_identity()))
        pt = PreparedTile(tile, tile.slot, self.ctx, chip)
        kept, gated = tile_rows(pt, self.tasks, self.max_prompt_chars)
        for row, reason, detail in gated:
            yield beam.pvalue.TaggedOutput(REJECTS, reject(row.sample_id, tile.tile_stem, "gate", reason, detail))
        if not kept:
            reasons = sorted({reason for _, reason, _ in gated}) or ["no_task_applies"]
            yield beam.pvalue.TaggedOutput(REJECTS, reject(tile.source, tile.tile_stem, "rows", "no_rows",
                                                           ",".join(reasons)))
            return
        renders = tuple((row.record["metadata"]["analysis_image_path"], row.render_spec) for row in kept
                        if row.render_spec is not None)
        if renders and not tile.reuse:
            try:  # fitted here, so a chip that does not decode costs its tile, before any of its rows exist
                fitted = tile_map(renders[0][1], chip)
            except ChipError as err:
                yield beam.pvalue.TaggedOutput(REJECTS, reject(tile.source, tile.tile_stem, "rows",
                                                               "chip_undecodable", f"{tile.chip_src}: {err}"))
                return
        sources = {pt.chip_path: tile.chip_src}
        if pt.still_path:
            sources[pt.still_path] = tile.still_src
        used = set()
        files = [pt.chip_path, *(path for path, _ in renders)]
        for position, row in enumerate(kept):
            self.task_rows[row.task].inc()
            paths = row.record["metadata"]["image_paths"]
            used.update(paths)
            sidecar_path = row_sidecar_path(pt.slot, position, self.bound, row.sample_id, self.ctx.max_files_per_dir)
            if self.sidecar_files:
                files.append(sidecar_path)
            yield replace(row, sidecar_path=sidecar_path, reused=tile.reuse,
                          image_sources=tuple((p, sources[p]) for p in paths if p in sources))
        overlay = self.overlays and bool(tile.regions)
        if overlay:
            files.append(pt.overlay_path)
        if tile.reuse:  # its analysis images and overlay are the earlier build's, byte for byte
            self.reused.inc()
            taken = [path for path, _ in renders] + ([pt.overlay_path] if overlay else [])
            if self.in_place:
                chip = 0 if self.chips_in_place_checked else 1  # and its chip, unless it goes to be checked
                yield beam.pvalue.TaggedOutput(REUSED, ((), len(taken) + chip, (), 0))  # all there
            else:
                yield beam.pvalue.TaggedOutput(REUSED, (tuple(taken), 0, (), 0))
        else:
            if renders:
                yield beam.pvalue.TaggedOutput(RENDERS, (chip, fitted, renders))
            if overlay:
                yield beam.pvalue.TaggedOutput(OVERLAYS, (pt.overlay_path, tile.chip_src, tile.size,
                                                          tuple((r.label, r.class_id, r.bbox) for r in tile.regions)))
        if not (tile.reuse and self.in_place) or self.chips_in_place_checked:
            yield beam.pvalue.TaggedOutput(COPIES, (pt.chip_path, tile.chip_src))
        if pt.still_path and pt.still_path in used:
            yield beam.pvalue.TaggedOutput(COPIES, (pt.still_path, tile.still_src))
        counts: dict[str, int] = {}
        for row in kept:
            add_counts(counts, row_keys(row))
        still = pt.still_path if pt.still_path in used else ""
        yield beam.pvalue.TaggedOutput(MANIFEST, tile_record(tile.tile_stem, tile.split, pt.slot, tile.fingerprint,
                                                             tile.chip_sha256, files, len(kept), len(gated), still,
                                                             counts.items(), tile_footprint(tile)))
        yield beam.pvalue.TaggedOutput(TILES_DONE, tile_summary(pt))
        self.rows_out.inc(len(kept))
        self._progress.add(1, len(kept))

    def _take(self, tile):
        """An unchanged tile whose rows the earlier build's split files hold, whole (taken from there a file at a
        time, transforms.rebuild.take): the counts they add, its files (taken as they are) and its manifest
        record, all as the earlier build had them; nothing is made. (Its fingerprint covers its image paths, so
        its chip and still are where those rows say.)"""
        prev = PreviousTile(*tile.earlier)
        pt = PreparedTile(tile, tile.slot, self.ctx)
        out = []
        out.append(beam.pvalue.TaggedOutput(ROW_COUNTS, {**dict(prev.counts), "rebuild|rows_reused": prev.rows}))
        sidecars = tuple(f for f in prev.files if f.startswith(ROW_SIDECARS_DIR + "/"))
        others = tuple(f for f in prev.files if f != pt.chip_path and not f.startswith(ROW_SIDECARS_DIR + "/"))
        if self.in_place:  # everything is where it belongs already
            chip = 0 if self.chips_in_place_checked else 1
            out.append(beam.pvalue.TaggedOutput(REUSED, ((), len(others) + chip, (), len(sidecars))))
            if self.chips_in_place_checked:
                out.append(beam.pvalue.TaggedOutput(COPIES, (pt.chip_path, tile.chip_src)))
        else:
            out.append(beam.pvalue.TaggedOutput(REUSED, (others, 0, sidecars, 0)))
            out.append(beam.pvalue.TaggedOutput(COPIES, (pt.chip_path, tile.chip_src)))
        if prev.still:
            out.append(beam.pvalue.TaggedOutput(COPIES, (prev.still, tile.still_src)))
        out.append(beam.pvalue.TaggedOutput(TAKEN_MANIFEST, tile_record(tile.tile_stem, tile.split, pt.slot,
                                                                        tile.fingerprint, tile.chip_sha256,
                                                                        prev.files, prev.rows, 0, prev.still,
                                                                        prev.counts, tile_footprint(tile))))
        out.append(beam.pvalue.TaggedOutput(TILES_DONE, tile_summary(pt)))
        self.reused.inc()
        self.taken.inc()
        self.rows_out.inc(prev.rows)
        self._progress.add(1, prev.rows)
        return out


@dataclass
class GenerateRows(beam.PTransform):
    """Placed tiles -> gated rows, with a reject for each gated row and for each tile left without rows; and per
    tile, its chip's bytes and colour fit with the analysis images to render from them (``renders``): the chip
    is read, decoded and fitted once for all of the tile's profiles, and a chip that does not decode rejects
    its tile before any of its rows are emitted. A tile unchanged since the earlier build (``reuse``) is never
    decoded, and its analysis images, overlay (and, when its rows are taken, row sidecars) come from that build
    (``reused``). When that build's row index covers it (``earlier_rows``), its rows are not made either:
    they are taken from that build's JSONL split files (transforms.rebuild.take) and ``row_counts`` carries
    what they add to the report, from its manifest record; else its rows are made again, with the same bytes.
    ``manifest``: one record per tile with rows."""

    ctx: TaskContext
    tasks: tuple[str, ...]
    max_prompt_chars: int
    overlays: bool = False
    output_root: str = ""  # where progress files go while the build runs; "" for none
    options: str = ""  # rebuild.manifest.options_digest: part of every tile's fingerprint
    sidecar_files: bool = True  # row sidecars are files, so the manifest lists them among the tile's files
    in_place: bool = False  # --update: a reused tile's files are already where they belong
    chips_local: bool = False  # input and output local: chips in place are checked (link or copy) on --update
    # The progress display's total: by default the tiles counted here, which holds every tile back until all are
    # in; the build passes the number of sidecar files instead, known from the listing.
    expected: beam.PCollection | None = None

    def expand(self, tiles):
        total = (self.expected if self.expected is not None
                 else tiles | "CountTiles" >> beam.combiners.Count.Globally())
        out = tiles | "Generate" >> beam.ParDo(
            _GenerateRowsFn(self.ctx, self.tasks, self.max_prompt_chars, self.overlays, self.output_root,
                            self.options, self.sidecar_files, self.in_place, self.chips_local),
            beam.pvalue.AsSingleton(total)
        ).with_outputs(*OUTPUTS, main="rows")
        return {"rows": out.rows, **{tag: out[tag] for tag in OUTPUTS}}


OUTPUTS = (REJECTS, COPIES, TILES_DONE, OVERLAYS, RENDERS, MANIFEST, TAKEN_MANIFEST, REUSED, ROW_COUNTS)
