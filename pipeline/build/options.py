"""Beam PipelineOptions for satsft build: the only place build flags are declared."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.build.config import BuildConfig
from transforms.output.tree import MAX_FILES_PER_DIR
from transforms.rebuild.commit import DEFAULT_MAX_REMOVED_SHARE, DEFAULT_TAKE_OVER_HOURS
from transforms.rows import DEFAULT_MAX_BOXES, DEFAULT_MIN_BOX_PX


def parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r} (use true or false)")


def _flag(parser, name: str, **kwargs) -> None:
    """Accept both --max-files-per-dir and Beam's usual --max_files_per_dir spelling. Switches also take a
    value (--overlays=true), because Flex Templates pass every parameter as --name=value."""
    dest = name.replace("-", "_")
    names = [f"--{name}"] + ([f"--{dest}"] if dest != name else [])
    if kwargs.pop("action", None) == "store_true":
        kwargs.update(nargs="?", const=True, type=parse_bool, metavar="BOOL")
    parser.add_argument(*names, dest=dest, **kwargs)


def our_update_flag(argv: list[str]) -> list[str]:
    """satsft's --update is Beam's name for replacing a running streaming job (a Dataflow option a batch build
    never needs), so it reaches Beam as --in-place instead."""
    out = []
    for arg in argv:
        if arg == "--update" or arg.startswith("--update="):
            arg = "--in-place" + arg[len("--update"):]
        out.append(arg)
    return out


class BuildOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        _flag(parser, "input", default="", help="root of the sat-bbox tree: a folder or gs:// URL")
        _flag(parser, "output", default="", help="where the dataset is written: a folder or gs:// URL")
        _flag(parser, "tasks", default="all",
              help="comma list of tasks, 'all' (the training tasks) or 'all+eval' (with the benchmark tasks)")
        _flag(parser, "profiles", default="all", help="comma list of production-analysis profiles, or 'all'")
        _flag(parser, "leakage", default="reassign", help="reassign|drop: bases whose tiles span splits")
        _flag(parser, "split-unit", default="base",
              help="base|ground: what goes whole to one split: a base POI, or (ground) also every base whose "
                   "tiles' footprints overlap its tiles' by a tenth or more (chips cut with overlapping windows), "
                   "joined through each other")
        _flag(parser, "shared-ground", default="report",
              help="report|drop: count tiles of two splits whose footprints overlap by a tenth or more, or also "
                   "reject the new ones that would make such a pair (of two new tiles the train one, then the "
                   "validation one; a tile a rebuild keeps stays), so no held-out tile shows ground another split "
                   "shows")
        _flag(parser, "tim-shift", default="varied", help="varied|fixed: how the signal class shifts per tile")
        _flag(parser, "redact-location", action="store_true", default=False,
              help="leave coordinates out of prompts")
        _flag(parser, "max-files-per-dir", type=int, default=MAX_FILES_PER_DIR, help="entries per folder, files and "
              "sub-folders alike (at least 16; Hub limit 10000)")
        _flag(parser, "max-prompt-chars", type=int, default=16000, help="longest row text the gate lets through")
        _flag(parser, "prompts-dir", default="", help="folder of prompt templates (default: the bundled ones)")
        _flag(parser, "formats", default="", help="comma list of jsonl, parquet, llava, sharegpt (default "
              "jsonl,parquet; parquet with --layout hub)")
        _flag(parser, "embed-images", action="store_true", default=False,
              help="store the images inside the Parquet rows (Hugging Face Image structs)")
        _flag(parser, "overlays", action="store_true", default=False,
              help="also write region boxes drawn on each chip under overlays/")
        _flag(parser, "copy-images", action="store_true", default=False,
              help="copy the chips and stills into the output instead of hard-linking them (local folders on one "
                   "device): a chip rewritten in place in the tree then leaves the output as it was built")
        _flag(parser, "rows-per-shard", type=int, default=0,
              help="rows per output file (0: 20000, or 500 with --embed-images); a rebuild keeps the earlier "
                   "shard count while shards hold half to 1.25 times this")
        _flag(parser, "row-sidecars", default="",
              help="files|parquet|none: one JSON per row under metadata/sft_metadata_rows/, Parquet shards of them "
                   "there, or none (default files; parquet with --layout hub)")
        _flag(parser, "layout", default="default",
              help="default|hub: images as files, or (hub) Parquet rows with their images inside, each chip stored "
                   "once per row group: under 1.5 files per tile, for the Hugging Face Hub")
        _flag(parser, "max-boxes", type=int, default=DEFAULT_MAX_BOXES,
              help="a grounding answer lists at most this many regions, the largest first (the row sidecar keeps "
                   "every region)")
        _flag(parser, "min-box-px", type=int, default=DEFAULT_MIN_BOX_PX,
              help="grounding answers leave out regions smaller than this many pixels first (0: none)")
        _flag(parser, "previous", default="",
              help="an earlier satsft build of the same tree (folder or gs:// URL): every tile and base it has "
                   "keeps its split, every unchanged tile its paths and (drawn once) its analysis images; new "
                   "bases are placed as a first build would place them")
        _flag(parser, "in-place", action="store_true", default=False,
              help="rebuild the build already in --output in place, as --previous would into a new folder (the "
                   "template parameter in_place); readers see the old build until the new one is whole, never a "
                   "gap; into an empty folder it makes the first build")
        _flag(parser, "max-removed-share", type=float, default=DEFAULT_MAX_REMOVED_SHARE,
              help="with --update: refuse to replace the build in --output when the new build would remove more tha"
                   "n this share of its tiles or of its rows (a broken input on a scheduled run); 1 allows any")
        _flag(parser, "take-over-after", type=int, default=DEFAULT_TAKE_OVER_HOURS,
              help="an unfinished build or update of --output begun on another machine, or submitted to Dataflow "
                   "(whose job runs on after its launcher exits), or a check-in another run left on a gs:// "
                   "output, counts as running, and this one exits untouched, "
                   "until it has neither begun nor written to the output (its workers' progress files) for this many "
                   "hours; 0 takes it over at once (a run waited for on this machine is known to run or not)")
        _flag(parser, "no-reuse", action="store_true", default=False,
              help="with --previous or --update: read every chip whole and draw every tile again instead of "
                   "knowing unchanged chips by their PNG chunk CRCs and taking unchanged tiles' rows, analysis "
                   "images, overlays and row sidecars from the earlier build (same bytes, more work)")
        _flag(parser, "tile-share", type=float, default=1.0,
              help="a try-out: build only this share of the tree's base POIs (0.01: about one place in a hundred), "
                   "chosen by a hash of each base, the same on every run; only their sidecars, chips and stills are "
                   "read")
        _flag(parser, "overwrite", action="store_true", default=False,
              help="replace an existing output folder instead of refusing")

    def to_config(self, check_paths: bool = True) -> BuildConfig:
        return BuildConfig.create(
            input=self.input, output=self.output, tasks=self.tasks, profiles=self.profiles, leakage=self.leakage,
            split_unit=self.split_unit, shared_ground=self.shared_ground, tim_shift=self.tim_shift,
            redact_location=self.redact_location,
            max_files_per_dir=self.max_files_per_dir, max_prompt_chars=self.max_prompt_chars,
            prompts_dir=self.prompts_dir, overwrite=self.overwrite, formats=self.formats,
            embed_images=self.embed_images, overlays=self.overlays, copy_images=self.copy_images,
            rows_per_shard=self.rows_per_shard,
            layout=self.layout, max_boxes=self.max_boxes, min_box_px=self.min_box_px, previous=self.previous,
            row_sidecars=self.row_sidecars, update=self.in_place, reuse=not self.no_reuse,
            max_removed_share=self.max_removed_share, tile_share=self.tile_share,
            check_paths=check_paths)
