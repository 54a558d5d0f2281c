"""build_pipeline: the whole Beam graph of ARCHITECTURE.md, assembled from the transforms package."""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from pipeline.build.config import BuildConfig
from pipeline.publish.report import summarise, write_report
from transforms.generate import COPIES, OVERLAYS, RENDERS, TILES_DONE, GenerateRows
from transforms.input.join import JoinOnTileStem, JoinStills
from transforms.input.read import LEAVES, ExtractImageRefs, FingerprintFn, ListImages, ReadSidecars, image_leaf
from transforms.output.counts import CountOutcomes
from transforms.output.files import (
    CopySourceImages,
    RenderAnalysisImages,
    WriteOverlays,
    WriteRejects,
    WriteRowSidecars,
)
from transforms.output.split_files import WriteSplitFiles
from transforms.splits.assign import AssignSplits, IndexTiles, ReadPreviousSplits


@dataclass
class WriteReport(beam.PTransform):
    """Written from the graph itself, after the writers (their events feed the counts), so it works even
    when the launcher does not wait for the job (Dataflow templates)."""

    config: BuildConfig
    fingerprint: beam.PCollection

    def expand(self, counts):
        cfg, out = self.config.as_dict(), self.config.output
        return counts | "Write" >> beam.Map(
            lambda c, fp: write_report(out, cfg, {"input_fingerprint": fp, **summarise(c)}),
            beam.pvalue.AsSingleton(self.fingerprint))


def build_pipeline(config: BuildConfig, pipeline: beam.Pipeline) -> beam.Pipeline:
    """Add the build to ``pipeline`` and return it; running it is the caller's business."""
    root, out = config.input, config.output
    sidecars = pipeline | "ReadSidecars" >> ReadSidecars(root)
    refs = pipeline | "ExtractImageRefs" >> ExtractImageRefs(root)
    chip_files = pipeline | "ListChips" >> ListImages(root, "images")
    still_files = pipeline | "ListStills" >> ListImages(root, "mapbox_stills")

    joined = ({"sidecars": sidecars["tiles"], "refs": refs["chips"], "files": chip_files}
              | "JoinOnTileStem" >> JoinOnTileStem(root))
    with_stills = (joined["tiles"], refs["stills"], still_files) | "JoinStills" >> JoinStills(root)
    previous = None
    if config.previous:
        previous = pipeline | "ReadPreviousSplits" >> ReadPreviousSplits(config.previous, config.previous_files,
                                                                        config.previous_format)
    split = with_stills["tiles"] | "AssignSplits" >> AssignSplits(config.leakage, previous)
    tile_index = split["tiles"] | "IndexTiles" >> IndexTiles()
    generated = (split["tiles"], tile_index) | "GenerateRows" >> GenerateRows(
        config.task_context(), config.tasks, config.max_prompt_chars, config.overlays, out)
    rows = generated["rows"]

    hub = config.layout == "hub"  # images only inside the rows: no image files, analysis images via the spool
    split_files = rows | "WriteSplitFiles" >> WriteSplitFiles(out, config.formats, config.rows_per_shard,
                                                              config.embed_images, config.max_files_per_dir,
                                                              config.row_sidecars, config.extra_metadata,
                                                              config.layout)
    events = [
        split_files["events"],
        generated[RENDERS] | "RenderAnalysisImages" >> RenderAnalysisImages(out, spooled=hub),
        generated[OVERLAYS] | "WriteOverlays" >> WriteOverlays(out),
        sidecars["tiles_in"] | "TilesIn" >> beam.Map(lambda n: {"tiles_in": n}),
        split["declared"],
    ]
    failed = [split_files["rejects"]]
    if not hub:
        copies = generated[COPIES] | "CopySourceImages" >> CopySourceImages(out)
        events.append(copies["events"])
        failed.append(copies["rejects"])
    if config.row_sidecars == "files":
        events.append(rows | "WriteRowSidecars" >> WriteRowSidecars(out))
    rejects = ([sidecars["rejects"], refs["rejects"], joined["rejects"], with_stills["rejects"], split["rejects"],
                generated["rejects"], *failed] | "AllRejects" >> beam.Flatten())
    events.append(rejects | "WriteRejects" >> WriteRejects(out))

    counts = {
        "rows": rows, "rejects": rejects, "tiles_done": generated[TILES_DONE], "reassigned": split["reassigned"],
        "events": events | "AllEvents" >> beam.Flatten(),
    } | "CountOutcomes" >> CountOutcomes()
    leaves = ([sidecars[LEAVES], refs[LEAVES], chip_files | "ChipLeaves" >> beam.Map(image_leaf),
               still_files | "StillLeaves" >> beam.Map(image_leaf)] | "AllLeaves" >> beam.Flatten())
    fingerprint = leaves | "Fingerprint" >> beam.CombineGlobally(FingerprintFn())
    counts | "WriteReport" >> WriteReport(config, fingerprint)
    return pipeline
