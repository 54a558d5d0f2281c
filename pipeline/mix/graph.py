"""build_mix_pipeline: the graph of `satsft mix` (sources -> normalise -> dedup -> copies -> global order ->
split files and media), its report mix_report.json and its dataset card."""

from __future__ import annotations

import apache_beam as beam

from pipeline.mix.config import MixConfig
from pipeline.mix.recipe import Recipe, footprint_lists
from pipeline.publish.report import write_mix_report
from transforms.mix.stages import (
    EVENTS,
    REJECTS,
    TILES,
    CheckMedia,
    ChooseRows,
    KeepMixGroundApart,
    ListTilesWithRows,
    MixSource,
    PlanCopies,
    ReadMixSources,
    ReadMixTileRecords,
    WriteMedia,
    WriteMixShards,
    held_out_by_source,
)
from transforms.output.counts import SumEvents, event_items, reject_key
from transforms.output.files import WriteRejects
from transforms.output.spool import RemoveSpool
from transforms.rebuild.commit import commit, finish
from transforms.records import NAME_NOT_UTF8, NAME_NOT_UTF8_DETAIL, reject
from transforms.splits.shared_ground import FindSharedGround, WriteMixFootprints, WriteMixPlaces, WriteSharedGround


def mix_sources(recipe: Recipe) -> tuple[MixSource, ...]:
    owners: dict[str, str] = {}
    out = []
    for i, s in enumerate(recipe.sources):
        owner = owners.setdefault(s.dataset, s.name)
        out.append(MixSource(i, s.name, s.kind, s.root, dict(s.where), s.dataset, owner, s.folder))
    return tuple(out)


def source_files(recipe: Recipe) -> list[tuple[tuple[int, ...], int, str]]:
    """(the indices of the sources reading it, its index in their file lists, path) per file to read. Sources
    reading one dataset the same way (the same kind, images resolved against the same root) read each of its
    files once, its rows normalised once and then filtered per source (a foreign row takes each source's name
    as its task): the model card's recipe reads one build six times (2,000 tiles: 30.2 -> 25.6 s wall, seven
    paired runs)."""
    readers: dict[tuple, list[int]] = {}
    for s_index, s in enumerate(recipe.sources):
        for f_index, path in enumerate(s.files):
            readers.setdefault((s.kind, s.dataset, s.root, s.folder, f_index, path), []).append(s_index)
    return [(tuple(indices), key[-2], key[-1]) for key, indices in readers.items()]


def build_readers(sources: tuple[MixSource, ...]) -> dict[str, tuple[str, ...]]:
    """First source reading a build -> every source reading it, in recipe order."""
    readers: dict[str, list[str]] = {}
    for s in sources:
        if s.kind == "satsft":
            readers.setdefault(s.media_owner, []).append(s.name)
    return {owner: tuple(names) for owner, names in readers.items()}


def build_mix_pipeline(recipe: Recipe, config: MixConfig, pipeline: beam.Pipeline) -> beam.Pipeline:
    """The mix's graph, from the named stages of transforms.mix.stages; returns the pipeline."""
    sources = mix_sources(recipe)
    root = config.root  # with --update, the stage: the mix in place stays whole until the commit
    in_place = kept_in_place_root(config)
    files = source_files(recipe)
    read = (pipeline
            | "SourceFiles" >> beam.Create(files)
            | "ReadMixSources" >> ReadMixSources(sources, root, sum(len(readers) for readers, _, _ in files)))
    chosen = read["rows"] | "ChooseRows" >> ChooseRows(sources)
    kept, rejected = chosen["kept"], [read[REJECTS], chosen[REJECTS]]
    unnamable = [reject(f"{s.name}:{p.rsplit('/', 1)[-1]}", "", "read", NAME_NOT_UTF8, NAME_NOT_UTF8_DETAIL)
                 for s in recipe.sources for p in s.unnamable]
    if unnamable:  # listed, never read: their names could not cross the graph
        rejected.append(pipeline | "NamesNotUtf8" >> beam.Create(unnamable))
    manifests = footprint_lists(recipe)
    # Only builds and mixes say where their tiles lie (manifests, footprint lists); the report says how many.
    if manifests or config.shared_ground == "drop":
        records = read[TILES] | "ReadMixTileRecords" >> ReadMixTileRecords(manifests)
    if config.shared_ground == "drop":  # the train rows on held-out ground go before anything is written
        apart = {"kept": kept, "records": records} | "KeepMixGroundApart" >> KeepMixGroundApart(sources)
        kept, shared = apart["kept"], apart
        rejected.append(apart[REJECTS])
    elif manifests:
        shared = records | "FindSharedGroundInMix" >> FindSharedGround()
    roots = tuple(sorted({(s.media_owner, s.root) for s in sources if s.media_owner == s.name}))
    media = kept | "CheckMedia" >> CheckMedia(config.max_files_per_dir, in_place, roots)
    planned = ({"kept": kept, "bad": media["bad"]}
               | "PlanCopies" >> PlanCopies(sources, recipe.seed, {s.name: s.repeat for s in recipe.sources},
                                            {s.name: s.share for s in recipe.sources}))
    written = ({"copies": planned["copies"], "index": media["index"], "locations": media["locations"]}
               | "WriteMixShards" >> WriteMixShards(root, config.formats, config.embed_images, config.rows_per_shard,
                                                    sources))
    events = [written, read[EVENTS], chosen[EVENTS]]
    if manifests:
        events.append(shared["events"])
        events.append(shared["held_out"]
                      | "ForEachReader" >> beam.FlatMap(held_out_by_source, build_readers(sources))
                      | "WriteSharedGround" >> WriteSharedGround(root))
        events.append(pipeline | "BuildsChecked" >> beam.Create([{"shared_ground|builds": len(dict(manifests))}]))
        events.append(records | "WriteMixPlaces" >> WriteMixPlaces(root, build_readers(sources)))
        events.append({"tiles": planned[TILES] | "ListTilesWithRows" >> ListTilesWithRows(sources),
                       "records": records}
                      | "WriteMixFootprints" >> WriteMixFootprints(root))
    if not config.embed_images or "jsonl" in config.formats:  # JSONL rows name their images: they must exist
        events.append({"locations": media["locations"], "index": media["index"]}
                      | "WriteMedia" >> WriteMedia(root, link=not config.copy_images, in_place=in_place))
    # Each writer's events (one per row or file) are summed per bundle in its own stage before they meet.
    all_events = ([part | f"SumEvents{i}" >> SumEvents() for i, part in enumerate(events)]
                  | "AllEvents" >> beam.Flatten())
    cleanup = all_events | "Done" >> RemoveSpool(root)
    rejects = [*rejected, planned[REJECTS]] | "AllRejects" >> beam.Flatten()
    rejects_written = rejects | "WriteRejects" >> WriteRejects(root)
    keyed = [(all_events, cleanup, planned[EVENTS] | "SumPlanned" >> SumEvents()) | "WithCleanup" >> beam.Flatten(),
             rejects | "RejectKeys" >> beam.Map(reject_key),
             rejects_written | "RejectFileKeys" >> beam.FlatMap(event_items)]
    cfg = config.as_dict()
    written_report = (keyed
                      | "AllCounts" >> beam.Flatten()
                      | "Sum" >> beam.CombinePerKey(sum)
                      | "Collect" >> beam.combiners.ToDict()
                      | "WriteReport" >> beam.Map(lambda c: write_mix_report(root, recipe.seed, recipe.sources, cfg,
                                                                             c)))
    if config.update:  # a step of the job, so that a job the launcher does not wait for (Dataflow) commits too
        _ = written_report | "CommitUpdate" >> beam.Map(_commit_mix, config.output, config.update_token,
                                                        config.max_removed_share)
    return pipeline


def kept_in_place_root(config) -> str:
    """Where an image the new mix shares with the mix in place may stay: that mix's folder, for an --update of
    a mix in a bucket (there each image staged is copied twice, once to the stage and once into place; locally
    both are a hard link and a rename); "" otherwise."""
    return config.output if config.update and config.output.startswith("gs://") else ""


def _commit_mix(_, output: str, token: str, max_removed_share: float) -> int:
    """The staged mix replaces the one in place (transforms.rebuild.commit); returns the files it moved."""
    journal = commit(output, token, max_removed_share, kind="mix")
    finish(output)
    return len(journal["moves"])
