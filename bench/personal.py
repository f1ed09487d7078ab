"""Does the personal critic learn a photographer's taste? The bench of issue 20.

    .venv/bin/python bench/personal.py [--work DIR] [--photos 300] [--train 100] [--pool 1000] [--json]

Photos: every real photo the package ships (ase_model.starter.sources, all sources) at 512 px, each turned into
variants the way a photographer's shoot varies: a random crop (60..100 % of each side, anywhere in the frame),
an exposure change (-2..+1 stops, linear light), a colour change (saturation x0.15..x1.9) and, for a third of
them, one of the package's defect edits (ase_model.starter.edits). Seeded: the same photos on every run.

Photographers (each rates the same `--photos` photos; a taste value per photo, plus noise, cut into ratings
by fixed shares: 5 % rejects, then 1..5 stars 10/20/30/25/10 %):

* low-key:   loves dark frames: taste = share of pixels with L* < 30 minus median L* / 100 (CIE L*, full frame);
* colour:    loves saturated colour: taste = mean CIE C* (chroma) of the 25 % most colourful pixels;
* off-centre: dislikes centred subjects: taste = distance of the subject's centre (the centroid of the top
  tenth of the spectral-residual saliency map, ase_model.starter.edits.salient_centroid) from the frame's centre;
* generic:   rates like the generic critic: taste = the starter model's score.

The tastes are measured on the 512 px photo with analytic tools (skimage's Lab, spectral-residual saliency); the
learner sees the model's features of the 224 px padded input (pooled image features, its own learned IASM
saliency and statistics, attribute probabilities, score) and must find which combination the ratings follow.
Noise: N(0, 0.5) on the standardised taste before the cut (a photographer is not consistent).

Each photographer learns (ase_model.personal.learning) from `--train` of their ratings and is tested on the rest:
SRCC of the personal score and of the generic score with the held-out ratings, side by side. Targets: personal
>= generic + 0.3 and >= 0.6 for the three distinct tastes; generic-taste: personal >= generic - 0.02. Then
learning from 1,000 ratings (the generic-taste photographer over the `--pool` photos) with cached features, timed:
target < 30 s on CPU. Features are cached in the work folder (FeatureCache): a second run only learns.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARES = (0.05, 0.10, 0.20, 0.30, 0.25, 0.10)  # -1, 1, 2, 3, 4, 5
NOISE = 0.5
TASTES = ("low-key", "colour", "off-centre", "generic")


def _variant(photo, rng: random.Random):
    """One variant of a photo: crop, exposure, colour, sometimes a defect edit."""
    from PIL import ImageEnhance

    from ase_model.starter.dataset import exposure
    from ase_model.starter.edits import EDIT_KINDS, apply_edit

    w, h = photo.size
    kw, kh = rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)
    x0, y0 = rng.uniform(0, 1 - kw) * w, rng.uniform(0, 1 - kh) * h
    img = photo.crop((round(x0), round(y0), round(x0 + kw * w), round(y0 + kh * h)))
    img = exposure(img, rng.uniform(-2.0, 1.0))
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.15, 1.9))
    if rng.random() < 1 / 3:
        img, _ = apply_edit(img, rng.choice(EDIT_KINDS), rng)
    return img.convert("RGB")


def build_pool(work: Path, n: int) -> list[Path]:
    """`n` variants of the package's photos as JPEG files in work/photos (made once)."""
    from ase_model.starter.sources import source_photos

    folder = work / "photos"
    paths = [folder / f"p{i:04d}.jpg" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    photos = list(source_photos(max_side=512).items())
    for i, path in enumerate(paths):
        if path.exists():
            continue
        name, photo = photos[i % len(photos)]
        rng = random.Random(f"{name}-{i}")
        img = photo.convert("RGB") if i < len(photos) else _variant(photo, rng)  # every original once
        img.save(path, quality=92)
    return paths


def properties(path: Path) -> dict[str, float]:
    """The measured properties the simulated tastes are defined from."""
    from PIL import Image
    from skimage.color import rgb2lab

    from ase_model.starter.edits import salient_centroid

    img = Image.open(path).convert("RGB")
    lab = rgb2lab(np.asarray(img, np.float64) / 255.0)
    light = lab[..., 0]
    chroma = np.hypot(lab[..., 1], lab[..., 2]).ravel()
    cx, cy = salient_centroid(img)
    return {
        "low-key": float(np.mean(light < 30) - np.median(light) / 100),
        "colour": float(np.mean(np.sort(chroma)[-max(1, len(chroma) // 4):])),
        "off-centre": float(np.hypot(cx - 0.5, cy - 0.5)),
    }


def rate(taste: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ratings -1, 1..5 from taste values: standardised, noised, cut by SHARES."""
    z = (taste - taste.mean()) / (taste.std() or 1.0) + rng.normal(0, NOISE, len(taste))
    edges = np.quantile(z, np.cumsum(SHARES)[:-1])
    return np.array([-1, 1, 2, 3, 4, 5])[np.searchsorted(edges, z, side="right")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "work" / "bench-personal")
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--pool", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from ase_model.critic import Critic
    from ase_model.personal import FeatureCache, learn, photo_features, srcc

    t0 = time.perf_counter()
    paths = build_pool(args.work, max(args.pool, args.photos))
    critic = Critic.from_pretrained(device="cpu", dtype="float32")
    feats = photo_features(critic, paths, cache=FeatureCache(args.work / "features", critic.model_id), batch_size=16)
    t_feat = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(paths))[: args.photos]
    props = [properties(paths[i]) for i in idx]
    x, s = feats.vectors[idx], feats.scores[idx]
    train, test = np.arange(args.train), np.arange(args.train, args.photos)
    rows = []
    for name in TASTES:
        taste = s.astype(np.float64) if name == "generic" else np.array([p[name] for p in props])
        ratings = rate(taste, np.random.default_rng([args.seed, TASTES.index(name)]))
        result = learn(x[train], s[train], ratings[train], image_dims=feats.image_dims)
        personal = result.model.predict(x[test], s[test])
        rows.append({"photographer": name, "personal": srcc(personal, ratings[test]),
                     "generic": srcc(s[test], ratings[test]), "cv_personal": result.personal_srcc,
                     "cv_generic": result.generic_srcc, "lambda": result.model.lam,
                     "image_features": result.image_features})
    # 1,000 ratings with cached features (the generic-taste photographer over the whole pool).
    big = rate(feats.scores.astype(np.float64), np.random.default_rng([args.seed, 99]))
    t1 = time.perf_counter()
    big_result = learn(feats.vectors, feats.scores, big, image_dims=feats.image_dims)
    t_learn = time.perf_counter() - t1

    ok_all = True
    lines = [f"{len(paths)} photos ({len(set(p.name for p in paths))} files) in {args.work}; features "
             f"{feats.vectors.shape[1]}-d from {critic.model_id} ({t_feat:.0f} s incl. cache)",
             f"each photographer learns from {args.train} ratings, tested on {args.photos - args.train}",
             "", f"{'photographer':<13} {'personal':>9} {'generic':>8} {'gain':>7}  {'penalty':>8}  target"]
    for r in rows:
        gain = r["personal"] - r["generic"]
        if r["photographer"] == "generic":
            ok, target = gain >= -0.02, "personal >= generic - 0.02"
        else:
            ok, target = gain >= 0.3 and r["personal"] >= 0.6, "personal >= generic + 0.3 and >= 0.6"
        ok_all &= ok
        r["ok"] = ok
        lam = "generic" if np.isinf(r["lambda"]) else f"{r['lambda']:g}" + ("" if r["image_features"] else "*")
        lines.append(f"{r['photographer']:<13} {r['personal']:>9.3f} {r['generic']:>8.3f} {gain:>+7.3f}  {lam:>8}  "
                     f"{target}: {'ok' if ok else 'MISSED'}")
    ok_time = t_learn < 30
    ok_all &= ok_time
    lines += ["(penalty*: the model chosen without the pooled image features)", "",
              f"learning from {big_result.n_ratings} ratings with cached features: {t_learn:.2f} s on CPU "
              f"(target < 30 s: {'ok' if ok_time else 'MISSED'}); {big_result.summary()}"]
    if args.json:
        print(json.dumps({"rows": rows, "learn_1000_s": t_learn, "ok": bool(ok_all)}, indent=2))
    else:
        print("\n".join(lines))
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
