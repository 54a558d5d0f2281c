"""build_pipeline: the whole Beam graph of ARCHITECTURE.md, assembled from the transforms package."""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from pipeline import __version__
from pipeline.build.config import BuildConfig
from pipeline.publish.report import summarise, write_report
from transforms import fileio
from transforms.generate import (
    COPIES,
    MANIFEST,
    OVERLAYS,
    RENDERS,
    REUSED,
    ROW_COUNTS,
    TAKEN_MANIFEST,
    TILES_DONE,
    GenerateRows,
)
from transforms.input.join import IndexStills, JoinOnTileStem
from transforms.input.read import (
    LEAVES,
    ExtractImageRefs,
    Fingerprint,
    KeepWanted,
    ListImages,
    ReadSidecars,
    image_leaf,
)
from transforms.input.share import SHARE_LEFT_OUT, in_share
from transforms.output.counts import CountOutcomes
from transforms.output.files import (
    CopySourceImages,
    RenderAnalysisImages,
    TakeReusedFiles,
    WriteOverlays,
    WriteRejects,
    WriteRowSidecars,
)
from transforms.output.split_files import WriteSplitFiles, earlier_shard_counts
from transforms.output.tree import STILLS_DIR
from transforms.paths import join_path, still_lookup_keys
from transforms.rebuild.commit import commit, finish, saved_manifests, stage_root
from transforms.rebuild.manifest import options_digest
from transforms.rebuild.place import (
    CHANGED,
    EVENTS,
    KNOWN,
    PLACED,
    STALE_BEFORE,
    FindStaleFiles,
    PlaceTiles,
    ReadPreviousTiles,
    WriteManifest,
    write_stills_file,
)
from transforms.rebuild.take import EXCLUDED, FILES, ReadPreviousRows, TakeEarlierRows
from transforms.splits.assign import AssignSplits
from transforms.splits.shared_ground import (
    FindSharedGround,
    JoinBasesOnSharedGround,
    KeepGroundApart,
    WriteSharedGround,
)


@dataclass
class WriteReport(beam.PTransform):
    """Written from the graph itself, after the writers (their events feed the counts), so it works even
    when the launcher does not wait for the job (Dataflow templates). With --update it goes to the stage with
    the other dataset files, and the commit follows it (transforms.rebuild.commit)."""

    config: BuildConfig
    fingerprint: beam.PCollection
    root: str

    def expand(self, counts):
        cfg, root = self.config.as_dict(), self.root
        return counts | "Write" >> beam.Map(
            lambda c, fp: write_report(root, cfg, {"input_fingerprint": fp, **summarise(c)}),
            beam.pvalue.AsSingleton(self.fingerprint))


@dataclass
class CommitUpdate(beam.PTransform):
    """--update, once the new build is staged: put it in place, then remove what only the old build named (the
    per-tile files of changed and removed tiles), then the update's folder. Each step waits for the one before
    through a side input."""

    output: str
    stale: beam.PCollection  # per-tile files no tile of the new build names
    token: str = ""  # what transforms.rebuild.commit.begin gave this run
    max_removed_share: float = 1.0  # the most of the build in place the commit may remove (else it refuses)

    def expand(self, written_report):
        out, token, share = self.output, self.token, self.max_removed_share
        committed = written_report | "Commit" >> beam.Map(lambda _: bool(commit(out, token, share)))
        removed = (self.stale
                   | "Spread" >> beam.Reshuffle()
                   | "Remove" >> beam.Map(lambda rel, _: fileio.remove(join_path(out, rel)) or 1,
                                          beam.pvalue.AsSingleton(committed))
                   | "CountRemoved" >> beam.combiners.Count.Globally())
        return removed | "Finish" >> beam.Map(lambda n, _: finish(out) or n, beam.pvalue.AsSingleton(committed))


def build_pipeline(config: BuildConfig, pipeline: beam.Pipeline) -> beam.Pipeline:
    """Add the build to ``pipeline`` and return it; running it is the caller's business."""
    root, out = config.input, config.output
    # --update writes the dataset-level files (split files, manifest, rejects, report, card) to the stage; the
    # per-tile files go straight to their (new or unchanged) places, which no row of the old build names.
    dataset_root = stage_root(out) if config.update else out
    share = config.tile_share
    sidecars = pipeline | "ReadSidecars" >> ReadSidecars(root, share)
    refs = pipeline | "ExtractImageRefs" >> ExtractImageRefs(root)
    chip_listing = pipeline | "ListChips" >> ListImages(root, "images", share=share)
    chip_files = chip_listing["files"]
    still_refs, wanted = refs["stills"], None
    if share < 1:  # only the stills the chosen tiles look up are listed, checked and indexed
        wanted = (sidecars["tiles"]
                  | "StillKeys" >> beam.FlatMap(lambda kv: [(key, None) for key in still_lookup_keys(kv[0])]))
        still_refs = still_refs | "WantedRefs" >> KeepWanted(wanted)
        still_refs = still_refs | "RekeyRefs" >> beam.Map(lambda ref: (ref.stem, ref))
    still_listing = pipeline | "ListStills" >> ListImages(root, "mapbox_stills", still=True, wanted=wanted)
    still_files = still_listing["files"]

    stills = (still_refs, still_files) | "IndexStills" >> IndexStills(config.previous_stills, config.input)
    previous = previous_splits = None
    chip_refs = refs["chips"]
    if share < 1:  # the tiles outside the share are not read: their references are no sidecar_missing rejects
        chip_refs = chip_refs | "RefsInShare" >> beam.Filter(lambda ref: in_share(ref[0], share))
    parts = {"sidecars": sidecars["tiles"], "refs": chip_refs, "files": chip_files}
    reuse = config.reuse and config.layout != "hub"  # unchanged tiles take the earlier build's files
    if config.previous:
        previous = pipeline | "ReadPreviousTiles" >> ReadPreviousTiles(
            config.previous, config.previous_manifest, config.previous_files, config.previous_format, reuse)
        previous_splits = previous | "PreviousSplits" >> beam.Map(lambda t: (t[0], t[1]))
        parts["previous"] = previous | "PreviousByStem" >> beam.Map(lambda t: (t[0], t))
    if config.takes_rows:
        earlier_rows = pipeline | "ReadPreviousRows" >> ReadPreviousRows(config.previous, config.previous_rows)
        parts["rows"] = earlier_rows["runs"]
    options = options_digest(config.shaping_options(__version__))
    # An update's stale files are found per stem; tiles whose rows are taken (with their files, as they were)
    # stay out of that join, unless an interrupted update left manifests whose files must be checked against
    # every tile.
    saved = saved_manifests(out) if config.update else ()
    stale_by_join = bool(config.update and config.previous and not saved)
    joined = parts | "JoinOnTileStem" >> JoinOnTileStem(root, stills["index"], options, reuse, stale_by_join)
    ground = (sidecars["tiles"] | "JoinBasesOnSharedGround" >> JoinBasesOnSharedGround()
              if config.split_unit == "ground" else None)
    split = joined["tiles"] | "AssignSplits" >> AssignSplits(config.leakage, previous_splits,
                                                             joined[KNOWN] if previous is not None else None,
                                                             ground["groups"] if ground else None)
    new_tiles, apart_rejects = split["tiles"], []
    if config.shared_ground == "drop":  # new tiles that would put one ground in two splits go; kept tiles stay
        kept = ((joined[PLACED], joined[CHANGED]) | "KeptTiles" >> beam.Flatten()) if previous is not None else None
        apart = new_tiles | "KeepGroundApart" >> KeepGroundApart(kept)
        new_tiles, apart_rejects = apart["tiles"], [apart["rejects"]]
    # Unchanged tiles keep their slot (and their split); new and changed ones are given one.
    unplaced = (new_tiles, joined[CHANGED]) | "Unplaced" >> beam.Flatten()
    placed = ((unplaced | "PlaceTiles" >> PlaceTiles(previous, config.max_files_per_dir,
                                                                    config.slot_widths), joined[PLACED])
              | "AllPlaced" >> beam.Flatten())
    generated = placed | "GenerateRows" >> GenerateRows(
        config.task_context(), config.tasks, config.max_prompt_chars, config.overlays, out, options,
        config.row_sidecars == "files", config.update, expected=sidecars["tiles_in"],
        # only where a link could have been made: a bucket's chips are copies already, and checked again they would
        # be copied on every update
        chips_local=fileio.is_local(config.input) and fileio.is_local(config.output))
    rows = generated["rows"]
    manifest = (generated[MANIFEST], generated[TAKEN_MANIFEST])  # made and taken tiles' records

    # The rows of unchanged tiles, taken from the earlier build's split files a file at a time (read by the writers).
    taken = (joined[EXCLUDED] | "TakeEarlierRows" >> TakeEarlierRows(earlier_rows[FILES]) if config.takes_rows
             else None)
    hub = config.layout == "hub"  # images only inside the rows: no image files, analysis images via the spool
    # A rebuild keeps each split's shard count while its shards stay near --rows-per-shard (split_shard_count).
    kept_shards = tuple(sorted(earlier_shard_counts(config.previous_files).items())) if config.previous else ()
    split_files = rows | "WriteSplitFiles" >> WriteSplitFiles(out, config.formats, config.rows_per_shard,
                                                              config.embed_images, config.max_files_per_dir,
                                                              config.row_sidecars, config.extra_metadata,
                                                              config.layout, dataset_root, taken,
                                                              config.previous, config.row_index, kept_shards)
    reused = generated[REUSED] | "TakeReusedFiles" >> TakeReusedFiles(config.previous, out)
    shared = manifest | "FindSharedGround" >> FindSharedGround()
    events = [
        split_files["events"],
        shared["events"],
        shared["held_out"] | "WriteSharedGround" >> WriteSharedGround(dataset_root),
        generated[RENDERS] | "RenderAnalysisImages" >> RenderAnalysisImages(out, spooled=hub),
        generated[OVERLAYS] | "WriteOverlays" >> WriteOverlays(out),
        reused["events"],
        generated[ROW_COUNTS],
        manifest | "WriteManifest" >> WriteManifest(dataset_root),
        stills["index"] | "WriteStillsManifest" >> beam.Map(
            write_stills_file, dataset_root, config.max_files_per_dir, beam.pvalue.AsSingleton(
                generated[COPIES]
                | "StillCopies" >> beam.FlatMap(lambda c: [c[0]] if c[0].startswith(STILLS_DIR + "/") else [])
                | "UsedStills" >> beam.Distinct()
                | "AllUsed" >> beam.combiners.ToList())),
        sidecars["tiles_in"] | "TilesIn" >> beam.Map(lambda n: {"tiles_in": n}),
        *([sidecars["left_out"] | "LeftOut" >> beam.Map(lambda n: {SHARE_LEFT_OUT: n})] if share < 1 else []),
        split["declared"],
        *([ground["events"]] if ground else []),
        joined[EVENTS],
        stills[EVENTS],
        refs[EVENTS],
        sidecars[EVENTS],
        chip_listing[EVENTS],
        still_listing[EVENTS],
    ]
    failed = [split_files["rejects"], reused["rejects"]]
    if not hub:
        copies = generated[COPIES] | "CopySourceImages" >> CopySourceImages(out, link=not config.copy_images,
                                                                            in_place=config.update)
        events.append(copies["events"])
        failed.append(copies["rejects"])
    if config.row_sidecars == "files":
        events.append(rows | "WriteRowSidecars" >> WriteRowSidecars(out, config.previous, config.update))
    rejects = ([sidecars["rejects"], refs["rejects"], chip_listing["rejects"], still_listing["rejects"],
                joined["rejects"], stills["rejects"], split["rejects"],
                *apart_rejects, generated["rejects"], *failed] | "AllRejects" >> beam.Flatten())
    events.append(rejects | "WriteRejects" >> WriteRejects(dataset_root))

    counts = {
        "rows": rows, "rejects": rejects, "tiles_done": generated[TILES_DONE], "reassigned": split["reassigned"],
        **{f"events/{i}": part for i, part in enumerate(events)},
    } | "CountOutcomes" >> CountOutcomes()
    fingerprint = ({"Sidecars": sidecars[LEAVES], "Refs": refs[LEAVES],
                    "Chips": chip_files | "ChipLeaves" >> beam.Map(image_leaf),
                    "Stills": still_files | "StillLeaves" >> beam.Map(image_leaf)} | "Fingerprint" >> Fingerprint())
    report = counts | "WriteReport" >> WriteReport(config, fingerprint, dataset_root)
    if config.update:
        # Stale: files of the old build's tiles (and of builds an interrupted update left to clean up) that no
        # tile of this build names.
        before = [previous] if previous is not None else []
        if saved:
            before.append(pipeline | "ReadSavedManifests" >> ReadPreviousTiles(out, tuple(saved)))
        if stale_by_join:
            stale = generated[MANIFEST] | "FindStaleFiles" >> FindStaleFiles(None, joined[STALE_BEFORE])
        elif before:
            stale = (manifest | "AllManifest" >> beam.Flatten()
                     | "FindStaleFiles" >> FindStaleFiles(before | "AllBefore" >> beam.Flatten()))
        else:  # the first build in an empty folder: nothing was there before
            stale = pipeline | "NothingStale" >> beam.Create([])
        report | "CommitUpdate" >> CommitUpdate(out, stale, config.update_token, config.max_removed_share)
    return pipeline
