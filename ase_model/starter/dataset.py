"""Grounded starter dataset: real photos, controlled augmentations, and critiques that are true of each image.

    python -m ase_model.starter.dataset OUT --n 3000 --seed 0 [--size 512] [--twins 0.5] [--workers 1]

For each item: a real photo that ships offline (`sources.py`: scikit-image, scikit-learn and Debian's wallpaper
collections; never the held-out source, opencv-doc) - for training items, a new view of it (mirrored, zoomed,
hue-turned: `new_view`) - goes through controlled augmentations (geometry at source resolution, then resize, then
photometric changes at the final size), is JPEG-encoded (quality 92) and decoded again, and the analytic critic
(ase_model.starter.analytic) measures THAT decoded image - the very pixels saved - so the critique written from
its verdicts describes the saved image, whatever the augmentation intended. The spectral-residual map of the
same image is saved as the IASM pseudo-label. A `twins` share of the photo items also get a defect twin: the
same image after one of edits.py's eight defect edits, `pair_of` the item, for the score's ranking loss.

Layout written under OUT:
    images/<id>.jpg, saliency/<id>.png (8-bit), train.jsonl, test.jsonl, summary.json
Each JSONL line: {"image", "critique", "attributes", "score", "verdicts", "tags", "source", "augment",
"saliency", "measurements"[, "pair_of"]} with paths relative to OUT. The photos in `holdout` (default:
sklearn's china - a landscape with architecture - and skimage's coffee - a close-up of an object) go only to
test.jsonl, a validation split the recipe logs; every other photo only to train.jsonl. The real held-out test is
another source altogether (bench/starter_quality.py).

Seeded per item (random.Random(f"...:{seed}:{index}")), so the output is byte-identical for a seed whatever
the number of workers.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

DEFAULT_HOLDOUT = ("sklearn:china", "skimage:coffee")  # the validation photos (test.jsonl)
JPEG_QUALITY = 92

SKIPPED_SOURCES: list[str] = []  # filled by generation_photos(): allow-listed photos not on this machine


def source_photos() -> dict[str, Image.Image]:
    """The classic sample photos of scikit-image and scikit-learn (astronaut, coffee, china, ...), keyed by their
    short names, as RGB PIL images: what the tests and the demo use."""
    from .sources import source_photos as photos_of

    return dict(sorted((name.split(":", 1)[1], im) for name, im in photos_of(("skimage", "sklearn")).items()))


def generation_photos() -> dict[str, Image.Image]:
    """Every photo the dataset may use, keyed "source:stem": all sources but the held-out one
    (`sources.HOLDOUT_SOURCE`, which never reaches the dataset in any form)."""
    from . import sources

    photos = sources.training_photos()
    SKIPPED_SOURCES[:] = list(sources.SKIPPED)
    return photos


# ---------------------------------------------------------------- augmentation primitives

_V = np.arange(256, dtype=np.float64) / 255.0
_TO_LINEAR = np.where(_V <= 0.04045, _V / 12.92, ((_V + 0.055) / 1.055) ** 2.4)


def _to_srgb8(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    return (srgb * 255.0 + 0.5).astype(np.uint8)


def channel_gains(image: Image.Image, gains: tuple[float, float, float]) -> Image.Image:
    """Multiply linear-light R, G, B by gains (exposure when all equal, a white-balance cast otherwise)."""
    lin = _TO_LINEAR[np.asarray(image.convert("RGB"))]
    return Image.fromarray(_to_srgb8(lin * np.asarray(gains, dtype=np.float64)))


def exposure(image: Image.Image, stops: float) -> Image.Image:
    g = 2.0 ** stops
    return channel_gains(image, (g, g, g))


def rotate_crop(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate counter-clockwise and crop the largest centred rectangle of the same aspect with no empty corners."""
    w, h = image.size
    a = math.radians(abs(degrees))
    scale = 1.0 / (math.cos(a) + max(w / h, h / w) * math.sin(a))
    cw, ch = w * scale, h * scale
    rotated = image.rotate(degrees, resample=Image.BICUBIC, expand=False)
    return rotated.crop((round((w - cw) / 2), round((h - ch) / 2), round((w + cw) / 2), round((h + ch) / 2)))


def gaussian_noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    """Add zero-mean Gaussian noise of `sigma` (0..1 scale) to every channel."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    arr = arr + np.random.default_rng(seed).normal(0.0, sigma * 255.0, arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def resize_long(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    s = size / max(w, h)
    return image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)


def _r(x: float) -> float:
    return round(float(x), 4)


def rotate_hue(image: Image.Image, degrees: float) -> Image.Image:
    """Turn every colour around the neutral axis in YCbCr: same luminance, same chroma, another hue."""
    ycc = np.asarray(image.convert("YCbCr"), dtype=np.float32)
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    cb, cr = ycc[..., 1] - 128.0, ycc[..., 2] - 128.0
    ycc[..., 1], ycc[..., 2] = 128.0 + c * cb - s * cr, 128.0 + s * cb + c * cr
    return Image.fromarray(np.clip(ycc + 0.5, 0, 255).astype(np.uint8), "YCbCr").convert("RGB")


def new_view(image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
    """A new scene from a training photo: mirrored, zoomed into a region, its colours turned to other hues.

    Eight training photos (three of them grey) are too few scenes: a model learns each photo's own colours and
    detail and then misjudges a new one. Views multiply the scenes; the teacher still judges the final pixels,
    so every label stays true. Test photos are never viewed this way: they stay as their photographer made them.
    """
    params: dict = {}
    img = image.convert("RGB")
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        params["flip"] = True
    if rng.random() < 0.4:
        s = rng.uniform(0.35, 0.6)
        fx, fy = rng.uniform(0.0, 1.0 - s), rng.uniform(0.0, 1.0 - s)
        w, h = img.size
        img = img.crop((round(fx * w), round(fy * h), round((fx + s) * w), round((fy + s) * h)))
        params["zoom"] = [_r(fx), _r(fy), _r(s)]
    if rng.random() < 0.6:
        deg = rng.uniform(30.0, 330.0)
        img = rotate_hue(img, deg)
        params["hue_deg"] = _r(deg)
    return img, params


def synthetic_scene(rng: random.Random, long_side: int = 448) -> Image.Image:
    """A "dead leaves" scene: overlapping discs and rectangles of random size (a power law, as objects in real
    scenes), colour and texture, under a smooth illumination gradient.

    It has no subject to recognise, only what the teacher measures - brightness, contrast, colour, edges,
    texture - so a vision tower pretrained on such scenes learns to measure rather than to recall the eight
    training photos (cf. Baradad et al., "Learning to See by Looking at Noise", NeurIPS 2021).
    """
    g = np.random.default_rng(rng.getrandbits(63))
    w, h = long_side, int(long_side * g.choice([0.667, 0.75, 1.0]))
    if g.random() < 0.3:
        w, h = h, w
    chroma_scale = 70.0 * g.random() ** 0.7  # from nearly grey scenes to vivid ones
    hues = g.uniform(0.0, 2 * math.pi, size=int(g.integers(1, 5)))
    lum_mu, lum_sd = g.uniform(60.0, 200.0), g.uniform(15.0, 70.0)

    def colour() -> np.ndarray:
        hue, c = g.choice(hues) + g.normal(0.0, 0.35), chroma_scale * g.uniform(0.1, 1.2)
        return np.array([np.clip(g.normal(lum_mu, lum_sd), 5, 250), c * math.cos(hue), c * math.sin(hue)])

    ycc = np.empty((h, w, 3), np.float32)
    ycc[:] = colour()
    for _ in range(int(g.integers(250, 500))):
        r = min(long_side / 50 * (1.0 - g.random()) ** -0.6, long_side / 3)  # a power law, as in dead leaves
        cx, cy = g.uniform(-r, w + r), g.uniform(-r, h + r)
        x0, x1, y0, y1 = (int(max(0, cx - r)), int(min(w, cx + r + 1)), int(max(0, cy - r)), int(min(h, cy + r + 1)))
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r) if g.random() < 0.6 else np.ones_like(xx, bool)
        patch = np.broadcast_to(colour(), mask.shape + (3,)).copy()
        if g.random() < 0.3:  # a grating: fine detail for sharpness and noise to be judged on
            f, th = g.uniform(0.05, 0.6), g.uniform(0, math.pi)
            patch[..., 0] += g.uniform(10, 50) * np.sin(f * (xx * math.cos(th) + yy * math.sin(th)))
        ycc[y0:y1, x0:x1][mask] = patch[mask]
    yy, xx = np.mgrid[0:h, 0:w]
    ycc[..., 0] *= 1.0 + g.uniform(-0.35, 0.35) * (xx / w - 0.5) + g.uniform(-0.35, 0.35) * (yy / h - 0.5)
    ycc[..., 1:] += 128.0
    return Image.fromarray(np.clip(ycc + 0.5, 0, 255).astype(np.uint8), "YCbCr").convert("RGB")


def augment(image: Image.Image, rng: random.Random, size: int = 224) -> tuple[Image.Image, dict]:
    """Controlled augmentations, each with some probability, parameters recorded.

    Geometry first at source resolution (rotation with crop, a crop that moves the subject), then a resize to
    `size` px on the long side, then photometric changes at the final size (so a blur sigma or noise sigma
    means the same thing in the saved image). About 30% of items skip the photometric stage entirely, so clean,
    well exposed, sharp images are common. Blur and noise are never combined (blur under noise would read as
    sharp to any edge measure).
    """
    params: dict = {}
    img = image.convert("RGB")
    if rng.random() < 0.25:  # up to 13 degrees: a crooked horizon, not only a slight lean
        deg = rng.choice((-1, 1)) * rng.uniform(1.0, 13.0)
        img = rotate_crop(img, deg)
        params["rotate_deg"] = _r(deg)
    if rng.random() < 0.12:  # the main interest cut by the frame's edge
        from .edits import apply_edit

        img, cut = apply_edit(img, "cut_crop", rng)
        params["cut_crop"] = cut
    elif rng.random() < 0.5:
        s = rng.uniform(0.55, 0.9)  # side fraction kept; the offset moves the subject around the frame
        fx, fy = rng.uniform(0.0, 1.0 - s), rng.uniform(0.0, 1.0 - s)
        w, h = img.size
        box = (round(fx * w), round(fy * h), round((fx + s) * w), round((fy + s) * h))
        img = img.crop(box)
        params["crop"] = [_r(fx), _r(fy), _r(s)]
    img = resize_long(img, size)
    if rng.random() < 0.3:
        params["clean"] = True
        return img, params
    if rng.random() < 0.3:
        stops = rng.choice((-1, 1)) * rng.uniform(1.0, 2.5)
    elif rng.random() < 0.15:
        stops = rng.uniform(-0.6, 0.6)
    else:
        stops = 0.0
    if stops:
        img = exposure(img, stops)
        params["exposure_stops"] = _r(stops)
    if rng.random() < 0.2:
        f = rng.uniform(0.4, 0.7) if rng.random() < 0.5 else rng.uniform(1.3, 1.7)
        img = ImageEnhance.Contrast(img).enhance(f)
        params["contrast"] = _r(f)
    # Colour changes are frequent and span the whole scale, down to none at all: otherwise "monochrome" is
    # only ever seen on the grey source photos and a model learns the subject instead of the colour.
    if rng.random() < 0.45:
        u = rng.random()
        f = 0.0 if u < 0.3 else rng.uniform(0.05, 0.4) if u < 0.65 else rng.uniform(1.5, 2.2)
        img = ImageEnhance.Color(img).enhance(f)
        params["saturation"] = _r(f)
    if rng.random() < 0.4:
        kind = rng.choice(("warm", "cool", "green", "magenta"))
        # log-ratio strength: warm/cool 0.6-1.0 is (1.35, 1, 0.74) to (1.65, 1, 0.61), a clearly visible cast;
        # weaker casts sit in the range where scene colour and cast cannot be told apart.
        s = rng.uniform(0.6, 1.0) if kind in ("warm", "cool") else rng.uniform(0.4, 0.7)
        e = math.exp
        gains = {"warm": (e(s / 2), 1.0, e(-s / 2)), "cool": (e(-s / 2), 1.0, e(s / 2)),
                 "green": (e(-s / 4), e(s / 2), e(-s / 4)), "magenta": (e(s / 4), e(-s / 2), e(s / 4))}[kind]
        img = channel_gains(img, gains)
        params["white_balance"] = {"kind": kind, "gains": [_r(g) for g in gains]}
    u = rng.random()
    if u < 0.2:
        sigma = rng.uniform(1.0, 2.5) * size / 224  # as much blur, relative to the frame, at any stored size
        img = img.filter(ImageFilter.GaussianBlur(sigma))
        params["blur_sigma"] = _r(sigma)
    elif u < 0.4:
        sigma = rng.uniform(8.0, 20.0) / 255.0
        img = gaussian_noise(img, sigma, rng.getrandbits(63))
        params["noise_sigma"] = _r(sigma * 255.0)
    return img, params


# ---------------------------------------------------------------- generation

_WORKER: dict = {}


def _init_worker(out_dir: str, seed: int, size: int, names: list[str], holdout: tuple[str, ...],
                 n_photos: int, twins: float = 0.0) -> None:
    try:
        import cv2

        cv2.setNumThreads(1)  # one item per process; OpenCV's own threads would only contend
    except Exception:  # pragma: no cover
        pass
    _WORKER.update(out=Path(out_dir), seed=seed, size=size, names=names, holdout=set(holdout),
                   photos=generation_photos(),
                   n_photos=n_photos, twins=twins)


def _round_measurements(m: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in m.items()}


def _save_item(img: Image.Image, item_id: str, name: str, params: dict, rng: random.Random) -> dict:
    """JPEG-encode, judge the pixels as saved (the decoded bytes that go to disk), write the image and its
    saliency pseudo-label, and return the record."""
    from ase_model.saliency import spectral_residual
    from ase_model.tags import suggest_tags

    from .analytic import analyze
    from .known import relabel
    from .phrasing import write_critique

    w = _WORKER
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    data = buf.getvalue()
    saved = Image.open(io.BytesIO(data)).convert("RGB")
    analysis = analyze(saved)
    critique, attributes = write_critique(analysis, rng)
    (w["out"] / "images" / f"{item_id}.jpg").write_bytes(data)
    sal = (spectral_residual(saved) * 255.0 + 0.5).astype(np.uint8)
    Image.fromarray(sal).save(w["out"] / "saliency" / f"{item_id}.png", optimize=False)
    record = {
        "image": f"images/{item_id}.jpg",
        "critique": critique,
        "attributes": attributes,
        "score": analysis.score,
        "verdicts": analysis.verdicts,
        "tags": suggest_tags(critique),
        "source": name,
        "augment": params,
        "saliency": f"saliency/{item_id}.png",
        "measurements": _round_measurements(analysis.measurements),
    }
    return relabel(record, w["seed"])  # what the edits made known outranks the teacher's reading (known.py)


def _make(index: int) -> tuple[str, list[dict]]:
    """One item (a real photo under augmentation, or a synthetic scene), and for a share of the photo items its
    *defect twin*: the same image after one of edits.py's eight defect edits, marked `pair_of` the item, for the
    score's ranking loss (the twin must score lower)."""
    from .edits import EDIT_KINDS, apply_edit

    w = _WORKER
    rng = random.Random(f"ase-starter:{w['seed']}:{index}")
    name = w["names"][index % len(w["names"])]
    if index >= w["n_photos"]:  # synthetic scenes for the vision tower's pretraining only
        name, split = "synthetic", "pretrain"
        photo, view = synthetic_scene(rng), {}
    else:
        split = "test" if name in w["holdout"] else "train"
        photo, view = (w["photos"][name], {}) if split == "test" else new_view(w["photos"][name], rng)
    img, params = augment(photo, rng, w["size"])
    if view:
        params["view"] = view
    item_id = f"{index:06d}-{_safe(name)}"
    records = [_save_item(img, item_id, name, params, rng)]
    if split != "pretrain" and rng.random() < w["twins"]:
        kind = rng.choice(EDIT_KINDS)
        twin, edit = apply_edit(img, kind, rng)
        twin = resize_long(twin, w["size"]) if max(twin.size) != w["size"] else twin
        record = _save_item(twin, f"{item_id}-{kind}", name, {**params, "edit": {"kind": kind, **edit}}, rng)
        record["pair_of"] = records[0]["image"]
        records.append(record)
    return split, records


def _safe(name: str) -> str:
    """A source photo's name ("source:stem") as a file-name part."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def generate(out_dir: str | Path, n_images: int, seed: int = 0, size: int = 224,
             holdout: tuple[str, ...] = DEFAULT_HOLDOUT, workers: int = 1, progress: bool = True,
             synthetic: int = 0, twins: float = 0.0) -> dict:
    """Write the dataset under out_dir and return a summary (also saved as summary.json). `synthetic` more items
    are dead-leaves scenes (`synthetic_scene`) written to pretrain.jsonl, for the vision tower's pretraining;
    a `twins` share of the photo items also get a defect twin (`_make`)."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "saliency").mkdir(parents=True, exist_ok=True)
    photos = generation_photos()
    if not photos:
        raise RuntimeError("no source photos available offline (scikit-image / scikit-learn missing?)")
    unknown = sorted(set(holdout) - set(photos))
    holdout = tuple(h for h in holdout if h in photos)
    names = list(holdout) + [n for n in sorted(photos) if n not in holdout]  # a small dataset still validates
    args = (str(out), seed, size, names, holdout, n_images, twins)
    total = n_images + synthetic
    t0 = time.perf_counter()
    splits: dict[str, list[str]] = {"train": [], "test": [], **({"pretrain": []} if synthetic else {})}
    verdict_counts: dict[str, Counter] = {}
    sources: Counter = Counter()
    step = max(1, total // 20)

    def consume(i: int, split: str, records: list[dict]) -> None:
        for record in records:
            splits[split].append(json.dumps(record, ensure_ascii=True))
            sources[record["source"]] += 1
            for k, v in record["verdicts"].items():
                verdict_counts.setdefault(k, Counter())[v] += 1
        done = i + 1
        if progress and (done % step == 0 or done == total):
            rate = done / max(1e-9, time.perf_counter() - t0)
            print(f"[starter-dataset] {done}/{total} images  {rate:.1f} img/s", flush=True)

    if workers <= 1:
        import cv2

        threads = cv2.getNumThreads()
        try:
            _init_worker(*args)
            for i in range(total):
                consume(i, *_make(i))
        finally:
            cv2.setNumThreads(threads)  # leave the caller's OpenCV as it was
    else:
        import multiprocessing as mp

        # Not "fork": OpenCV's thread pool (used by the teacher) is not fork-safe, and a child forked from a
        # process that already ran OpenCV can hang in its first cv2 call. forkserver forks from a clean process.
        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=args) as pool:
            for i, result in enumerate(pool.imap(_make, range(total), chunksize=4)):
                consume(i, *result)
    for split, lines in splits.items():
        (out / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    seconds = time.perf_counter() - t0
    summary = {
        "out_dir": str(out),
        "n_images": n_images,
        "n_train": len(splits["train"]),
        "n_test": len(splits["test"]),
        "n_synthetic": synthetic,
        "twins": twins,
        "known_verdicts": True,
        "n_pairs": sum('"pair_of"' in line for lines in splits.values() for line in lines),
        "seed": seed,
        "size": size,
        "holdout": list(holdout),
        "unknown_holdout": unknown,
        "sources": dict(sorted(sources.items())),
        "skipped_sources": list(SKIPPED_SOURCES),
        "verdicts": {k: dict(sorted(c.items())) for k, c in sorted(verdict_counts.items())},
        "seconds": round(seconds, 2),
        "images_per_second": round(total / max(seconds, 1e-9), 2),
        "workers": workers,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ase_model.starter.dataset", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder")
    p.add_argument("--n", type=int, default=3000, help="number of images (default 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=224, help="long side of the saved images in px (default 224)")
    p.add_argument("--holdout", default=",".join(DEFAULT_HOLDOUT),
                   help="comma-separated photos (source:stem) kept for test")
    p.add_argument("--synthetic", type=int, default=0,
                   help="extra dead-leaves scenes for the vision tower's pretraining (pretrain.jsonl)")
    p.add_argument("--twins", type=float, default=0.0, help="share of photo items that also get a defect twin")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    holdout = tuple(h.strip() for h in a.holdout.split(",") if h.strip())
    summary = generate(a.out, a.n, seed=a.seed, size=a.size, holdout=holdout, workers=a.workers, progress=not a.quiet,
                       synthetic=a.synthetic, twins=a.twins)
    print(json.dumps({k: summary[k] for k in ("n_train", "n_test", "seconds", "images_per_second", "skipped_sources")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
