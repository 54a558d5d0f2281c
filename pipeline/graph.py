"""build_pipeline: the whole Beam graph of ARCHITECTURE.md, assembled from the transforms package."""

from __future__ import annotations

import apache_beam as beam

from pipeline.config import BuildConfig
from pipeline.report import WriteReport
from transforms.assign import AssignSplits, IndexTiles
from transforms.generate import COPIES, OVERLAYS, TILES_DONE, GenerateRows
from transforms.join import JoinOnTileStem, JoinStills
from transforms.read import ExtractImageRefs, ListImages, ReadSidecars
from transforms.stats import CountOutcomes
from transforms.write import (
    CopySourceImages,
    RenderAnalysisImages,
    WriteOverlays,
    WriteRejects,
    WriteRowSidecars,
    WriteSplitFiles,
)


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
    split = with_stills["tiles"] | "AssignSplits" >> AssignSplits(config.leakage)
    tile_index = split["tiles"] | "IndexTiles" >> IndexTiles()
    generated = (split["tiles"], tile_index) | "GenerateRows" >> GenerateRows(
        config.task_context(), config.tasks, config.max_prompt_chars, config.overlays)
    rows = generated["rows"]

    events = [
        rows | "WriteSplitFiles" >> WriteSplitFiles(out, config.formats, config.rows_per_shard, config.embed_images),
        rows | "WriteRowSidecars" >> WriteRowSidecars(out),
        rows | "RenderAnalysisImages" >> RenderAnalysisImages(out),
        generated[COPIES] | "CopySourceImages" >> CopySourceImages(out),
        generated[OVERLAYS] | "WriteOverlays" >> WriteOverlays(out),
        sidecars["tiles_in"] | "TilesIn" >> beam.Map(lambda n: {"tiles_in": n}),
    ]
    rejects = ([sidecars["rejects"], refs["rejects"], joined["rejects"], with_stills["rejects"], split["rejects"],
                generated["rejects"]] | "AllRejects" >> beam.Flatten())
    events.append(rejects | "WriteRejects" >> WriteRejects(out))

    counts = {
        "rows": rows, "rejects": rejects, "tiles_done": generated[TILES_DONE], "reassigned": split["reassigned"],
        "events": events | "AllEvents" >> beam.Flatten(),
    } | "CountOutcomes" >> CountOutcomes()
    counts | "WriteReport" >> WriteReport(config)
    return pipeline
