"""production_analysis: one analytical summary per profile from the chip, still, analysis image and TiM JSON."""

from __future__ import annotations

import orjson

from transforms.analysis.render import make_spec
from transforms.analysis.tim import Analytics, build_analytics, dominant
from transforms.classes import CLASS_IDS, CLASS_NAMES, class_fields, display_name
from transforms.prompts import counted, pick
from transforms.rows import (
    PreparedTile,
    Row,
    format_percent,
    join_words,
    make_row,
    normalise_box,
    sentinel_sidecar,
)

TASK = "production_analysis"
PROFILE_TITLES = {
    "brief_only": "land-cover overview",
    "land_use_change": "land-use change monitoring",
    "wildfire": "wildfire burn-change monitoring",
    "flood_pulse": "flood-pulse monitoring",
    "oceanscout_ship_detection": "maritime vessel monitoring",
}


def _answer(pt: PreparedTile, a: Analytics, sid: str) -> str:
    t = pt.ctx.templates
    top = dominant(a.sentinel, 3)
    parts = [pick(t, TASK, "observed", sid, dominant=join_words(
        [f"{display_name(CLASS_NAMES[c])} ({format_percent(v)})" for c, v in top]))]
    if a.signal is not None:
        name = display_name(CLASS_NAMES[a.signal])
        fields = {**class_fields("signal", name),
                  "before": format_percent(a.sentinel.get(a.signal, 0.0)),
                  "after": format_percent(a.tim.get(a.signal, 0.0)), "delta_pp": f"{a.delta * 100:+.1f}"}
        parts.append(pick(t, TASK, f"change_{'none' if a.direction == 'no_change' else a.direction}", sid, **fields))
    if a.profile == "brief_only":
        parts.append(pick(t, TASK, "finding_brief_only", sid, top=display_name(CLASS_NAMES[top[0][0]]),
                          region_count=len(pt.tile.regions),
                          regions=counted(len(pt.tile.regions), "labelled region")))
        cloud = pt.tile.cloud_cover
        confidence = "medium" if cloud is None else ("high" if cloud < 10 else "medium" if cloud < 30 else "low")
    elif a.profile == "oceanscout_ship_detection":
        if a.vessel_count == 0:
            why = "as no water is predicted in this tile" if a.tim.get(CLASS_IDS["water"], 0.0) == 0 else \
                "as no candidate was detected on the water"
            parts.append(pick(t, TASK, "finding_vessels_none", sid, why=why))
        else:
            strong = a.payload["profile_analytics"]["detection_score_summary"]["above_score_min"]
            parts.append(pick(t, TASK, "finding_vessels_some", sid, count=a.vessel_count, strong=strong,
                              vessels=counted(a.vessel_count, "vessel candidate")))
        confidence = a.confidence
    else:
        parts.append(pick(t, TASK, f"finding_{a.profile}_{a.direction}", sid))
        confidence = a.confidence
    parts.append(pick(t, TASK, "confidence", sid, confidence=confidence))
    parts.append(pick(t, TASK, "limitations", sid))
    return " ".join(parts)


def rows(pt: PreparedTile) -> list[Row]:
    if not pt.fractions:
        return []
    ctx, tile = pt.ctx, pt.tile
    water_boxes = [tuple(normalise_box(r.bbox, tile.size)) for r in tile.regions if r.class_id == CLASS_IDS["water"]]
    sidecar = sentinel_sidecar(pt)
    out = []
    for profile in ctx.profiles:
        sid = f"{pt.stem}__analysis_{profile}"
        a = build_analytics(tile.tile_stem, pt.fractions, profile, ctx.shift_mode, size=tile.size,
                            water_boxes=water_boxes, latitude=tile.latitude, longitude=tile.longitude,
                            cloud_cover=tile.cloud_cover, region_count=len(tile.regions),
                            redact_location=ctx.redact_location)
        analysis_path = pt.analysis_path(profile)
        images = [pt.chip_path] + ([pt.still_path] if pt.still_path else []) + [analysis_path]
        names = ["the Sentinel-2 chip"] + (["an overhead still"] if pt.still_path else []) + \
            ["the rendered land-cover analysis map"]
        prompt = pick(ctx.templates, TASK, "prompt", sid, profile_title=PROFILE_TITLES[profile],
                      image_list=join_words(names), analytics_json=orjson.dumps(a.payload).decode())
        spec = make_spec(tile.tile_stem, profile, tile.size, a.tim,
                         [(r.class_id, r.bbox, r.area_px) for r in tile.regions], a.signal, pt.fractions,
                         pt.chip_path, pt.chip_sha256)
        extra = {"analysis_profile": profile, "analysis_image_path": analysis_path, "analysis_image_spec": spec,
                 "sentinel_sidecar": sidecar}
        out.append(make_row(pt, TASK, sid, images, prompt, _answer(pt, a, sid),
                            system=pick(ctx.templates, TASK, "system", sid), profile=profile,
                            analysis_path=analysis_path, sidecar_extra=extra, render_spec=spec))
    return out
