"""Edited prompt templates tried before a build starts. A phrasing that names a field its task does not fill
(a misspelt {placeholder}) failed the job deep in GenerateRows with a KeyError, after tiles were drawn; here
every selected task makes the rows of a few made-up tiles (several classes, small and large regions, a trace
class, with and without a still and fractions, twelve stems so that every kind of analytics shift comes up) with every
phrasing of every slot it uses filled. A slot these tiles never reach still fails cleanly at run time
(``transforms.prompts.TemplateError``). No Beam here.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from transforms import prompts
from transforms.input.sidecars import parse_sidecar
from transforms.rows import PreparedTile, TaskContext
from transforms.tasks import TASKS

_REGIONS = [
    {"bbox": [0, 0, 223, 140], "label": "crops", "class_id": 4, "area_px": 21000},
    {"bbox": [10, 150, 99, 223], "label": "water", "class_id": 0, "area_px": 4200},
    {"bbox": [120, 160, 140, 175], "label": "trees", "class_id": 1, "area_px": 250},
    {"bbox": [180, 190, 187, 197], "label": "trees", "class_id": 1, "area_px": 40},
    {"bbox": [200, 150, 215, 170], "label": "built", "class_id": 6, "area_px": 180},
    {"bbox": [60, 40, 64, 46], "label": "bare_ground", "class_id": 7, "area_px": 25},
]


def _fractions(trees: float) -> dict[str, float]:
    """Shares summing to 1 (they are normalised); ``trees``: exactly what its two regions hold, or more."""
    others = {"0": 0.09, "1": trees, "6": 0.12, "7": 0.0695, "2": 0.0005}
    return {"4": 1 - sum(others.values()), **others}


def _tiles(ctx: TaskContext) -> list[PreparedTile]:
    out = []
    for i in range(12):
        stem = f"probe_{i:06d}_g001_t{i:04d}"
        side = {"tile_stem": stem, "poi_id": stem.rsplit("_", 1)[0], "split": "train", "output_size": 224,
                "caption": "Farmland with a lake in the south.",
                "class_fractions": _fractions(290 / 50176 if i % 4 < 2 else 0.03),
                "regions": _REGIONS[: 6 - i % 3], "latitude": 45.5, "longitude": 7.25,
                "stac_item_id": "S2A_MSIL2A_20230101", "stac_datetime": "2023-01-01T10:00:00Z",
                "eo_cloud_cover": 5.0}
        if i == 5:  # one class over the whole chip
            side.update(class_fractions={"4": 1.0}, regions=[{"bbox": [0, 0, 223, 223], "label": "crops",
                                                              "class_id": 4, "area_px": 50176}])
        elif i == 6:  # regions but no class fractions
            side.update(class_fractions={})
        tile = parse_sidecar(orjson.dumps(side), f"metadata/{stem}.json").tile
        if tile is None:  # the made-up sidecars are valid; a parser that refuses them is a bug to see here
            raise AssertionError(f"probe sidecar {stem} refused")
        tile = tile.with_fields(chip_src=f"/probe/images/{stem}.png", chip_px=224, split="train")
        if i % 2 == 0:
            tile = tile.with_fields(still_src=f"/probe/mapbox_stills/{stem}.png", still_stem=side["poi_id"],
                                    still_index=i)
        out.append(PreparedTile(tile, i, ctx))
    return out


def templates_problem(ctx: TaskContext, tasks: Iterable[str]) -> str:
    """The first phrasing of the selected tasks' templates that their rows cannot fill ("" when none)."""
    tiles = _tiles(ctx)
    prompts._check_every_phrasing[0] = True
    try:
        for task in tasks:
            for pt in tiles:
                TASKS[task].rows(pt)
    except prompts.TemplateError as err:
        return str(err)
    finally:
        prompts._check_every_phrasing[0] = False
    return ""
