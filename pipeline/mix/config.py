"""The mix's flags, checked once into a frozen MixConfig (the build's counterpart is pipeline/build/config.py);
limits are the output's shared constants, so a mix and a build shard and fan out alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import UsageError, refuse_past_64_bits
from pipeline.mix.recipe import Recipe, footprint_lists
from transforms import fileio
from transforms.fileio import public_location
from transforms.output.tree import EMBEDDED_ROWS_PER_SHARD, MAX_FILES_PER_DIR, MIN_FILES_PER_DIR, ROWS_PER_SHARD
from transforms.rebuild.commit import DEFAULT_MAX_REMOVED_SHARE, stage_root
from transforms.splits.plan import SHARED_GROUND_POLICIES

MIX_FORMATS = ("parquet", "jsonl")


@dataclass(frozen=True)
class MixConfig:
    output: str
    formats: tuple[str, ...] = ("parquet",)
    embed_images: bool = False
    rows_per_shard: int = ROWS_PER_SHARD
    max_files_per_dir: int = MAX_FILES_PER_DIR
    overwrite: bool = False
    copy_images: bool = False  # media copied, not hard-linked to the sources' files
    shared_ground: str = "report"  # drop: rows of tiles on another split's ground go (train ones first)
    update: bool = False  # the new mix is staged, then replaces the one in --output (transforms.rebuild.commit)
    max_removed_share: float = DEFAULT_MAX_REMOVED_SHARE  # with update: refuse to remove more of its rows
    update_token: str = ""  # names this update (commit.begin); the commit checks no other began since

    @classmethod
    def create(cls, *, output: str, formats: str = "parquet", embed_images: bool = False, rows_per_shard: int = 0,
               max_files_per_dir: int = MAX_FILES_PER_DIR, overwrite: bool = False,
               copy_images: bool = False, shared_ground: str = "report", update: bool = False,
               max_removed_share: float = DEFAULT_MAX_REMOVED_SHARE) -> MixConfig:
        """Every flag checked before the recipe is read or any graph is built."""
        asked = {x.strip() for x in formats.split(",")}
        picked = tuple(f for f in MIX_FORMATS if f in asked)
        bad = sorted(asked - set(MIX_FORMATS))
        if bad or not picked:
            raise UsageError(f"--formats takes parquet and/or jsonl, not {', '.join(bad) or formats!r}")
        if embed_images and "parquet" not in picked:
            raise UsageError("--embed-images puts images into the Parquet files; add parquet to --formats")
        refuse_past_64_bits(("--max-files-per-dir", max_files_per_dir), ("--rows-per-shard", rows_per_shard))
        if max_files_per_dir < MIN_FILES_PER_DIR or rows_per_shard < 0:
            raise UsageError(f"--max-files-per-dir must be at least {MIN_FILES_PER_DIR} and --rows-per-shard 0 "
                             "or more")
        if shared_ground not in SHARED_GROUND_POLICIES:
            raise UsageError(f"--shared-ground takes {' or '.join(SHARED_GROUND_POLICIES)}, not {shared_ground!r}")
        if update and overwrite:
            raise UsageError("--update replaces the mix in --output once the new one is whole, and --overwrite "
                             "removes it first: give one of them")
        if not 0 <= max_removed_share <= 1:
            raise UsageError(f"--max-removed-share takes a share from 0 to 1, not {max_removed_share:g}")
        out = fileio.clean_root(output)
        rows = rows_per_shard or (EMBEDDED_ROWS_PER_SHARD if embed_images else ROWS_PER_SHARD)
        return cls(out, picked, embed_images, rows, max_files_per_dir, overwrite, copy_images, shared_ground, update,
                   max_removed_share)

    @property
    def root(self) -> str:
        """Where the graph writes: the output, or with --update its stage."""
        return stage_root(self.output) if self.update else self.output

    def check_sources(self, recipe: Recipe) -> None:
        """The output may not lie inside a source (a rerun would read its own rows) nor hold one."""
        for s in recipe.sources:
            if fileio.overlapping(s.folder, self.output):
                raise UsageError(f"--output must not be inside source {s.name!r} (or the other way round), links "
                                 "followed")
        if self.shared_ground == "drop" and not footprint_lists(recipe):
            raise UsageError("--shared-ground drop compares where tiles lie, which only satsft outputs record (a "
                             "build in its manifest, a mix in metadata/footprints/; older mixes record none): add a "
                             "build among the sources, or leave the option out")

    def as_dict(self) -> dict[str, Any]:
        return {"output": public_location(self.output), "formats": list(self.formats),
                "embed_images": self.embed_images, "rows_per_shard": self.rows_per_shard,
                "max_files_per_dir": self.max_files_per_dir, "row_sidecars": "none", "copy_images": self.copy_images,
                **({"shared_ground": self.shared_ground} if self.shared_ground != "report" else {})}
