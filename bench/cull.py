"""Does culling pick the right frame? The "Done when" bench of issue 19 (core: grouping, ranking, reasons).

    nice -n 15 .venv/bin/python bench/cull.py [--work DIR] [--limit N] [--seed S] [--json]

A synthetic shoot is built from the real photos the package ships (ase_model.starter.sources: the training
sources and the held-out opencv-doc photos), each brought to <= 1024 px. Per source photo a burst of 4-8 frames,
all cut from the photo with a 94 % window: the clean frame (centred window), 1-2 small shifts of the window
(clean too), a frame focused on the background (the spectral-residual salient region blurred, the rest sharp),
and 1-4 of: motion blur (a line kernel 1.5-2.5 % of the long side, any angle), -1.5..-2 stops, +1.5..+2 stops,
heavy Gaussian noise. Every third photo also gives a singleton (a flipped 70 % corner crop, shot minutes later).
Bursts and singletons follow each other in a shuffled order, frames 0.1-0.4 s apart inside a burst, events
1-3 s apart (so only similarity separates them) or 5-120 s apart; capture times are written into EXIF
(DateTimeOriginal + SubSecTimeOriginal) and files are named in shuffled order. JPEG q92.

Every file is critiqued once through ase_model.critic.Critic (the shipped starter model, CPU, one torch
thread) and its CullFeatures computed; both are cached in the work folder, so reruns are quick. Printed, for
ours (ase_model.culling.cull), a baseline ranking by the critic's score alone and one ranking by whole-frame
Laplacian variance (both on our groups), per source set (training, held out):
  * pairwise grouping F1 (target >= 0.95);
  * best-pick accuracy: the pick of the group holding a burst's clean frame is a clean frame of that burst
    (target >= 90 %), and strictly the centred clean frame;
  * clean frames wrongly rejected (target 0; the baselines reject nothing);
  * focus on the background: share of those frames ranked below their burst's clean frame (and rejected);
  * per defect kind, the share ours rejects.
And speed: cull() over 1,000 photos whose features are known (target < 5 s), and the features' cost per new
photo against the critique's (target < 10 %).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ase_model.culling import CullConfig, CullFeatures, cull, features_from  # noqa: E402

CLEAN_KINDS = ("clean", "shift")
DEFECT_KINDS = ("motion", "under", "over", "noise")
WINDOW = 0.94


# ---- the synthetic shoot -----------------------------------------------------------------------------------
def _window(im: Image.Image, dx: float, dy: float) -> Image.Image:
    w, h = im.size
    cw, ch = round(w * WINDOW), round(h * WINDOW)
    x0 = round((w - cw) / 2 + dx * w)
    y0 = round((h - ch) / 2 + dy * h)
    x0, y0 = min(max(x0, 0), w - cw), min(max(y0, 0), h - ch)
    return im.crop((x0, y0, x0 + cw, y0 + ch))


def _motion(im: Image.Image, rng: random.Random) -> Image.Image:
    import cv2

    length = max(3, round(rng.uniform(0.015, 0.025) * max(im.size)))
    k = np.zeros((length, length), np.float32)
    angle = rng.uniform(0, np.pi)
    c = (length - 1) / 2
    dx, dy = np.cos(angle) * c, np.sin(angle) * c
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    k /= k.sum()
    return Image.fromarray(cv2.filter2D(np.asarray(im), -1, k, borderType=cv2.BORDER_REFLECT))


def _background_focus(im: Image.Image) -> Image.Image:
    """The salient region (spectral residual's top quarter, feathered) blurred, the rest left sharp."""
    import cv2

    from ase_model.saliency import spectral_residual

    sal = spectral_residual(im, size=128)
    mask = (sal >= np.percentile(sal, 75)).astype(np.float32)
    feather = 0.02 * max(im.size)
    mask = np.clip(cv2.GaussianBlur(mask, (0, 0), feather) * 1.5, 0, 1)[..., None]
    sharp = np.asarray(im, np.float32)
    soft = cv2.GaussianBlur(sharp, (0, 0), 0.008 * max(im.size))
    return Image.fromarray(np.clip(mask * soft + (1 - mask) * sharp + 0.5, 0, 255).astype(np.uint8))


def burst(photo: Image.Image, rng: random.Random) -> list[tuple[str, Image.Image]]:
    """(kind, frame) of one burst from a source photo."""
    from ase_model.starter.dataset import exposure, gaussian_noise

    clean = _window(photo, 0, 0)
    n = rng.randint(4, 8)
    frames = [("clean", clean)]
    for _ in range(rng.randint(1, 2)):
        frames.append(("shift", _window(photo, rng.uniform(-0.025, 0.025), rng.uniform(-0.025, 0.025))))
    frames.append(("background", _background_focus(clean)))
    kinds = list(DEFECT_KINDS)
    rng.shuffle(kinds)
    for kind in kinds[:max(1, n - len(frames))]:
        if kind == "motion":
            frames.append((kind, _motion(clean, rng)))
        elif kind in ("under", "over"):
            stops = rng.uniform(1.5, 2.0) * (-1 if kind == "under" else 1)
            frames.append((kind, exposure(clean, stops)))
        else:
            sigma = rng.uniform(0.06, 0.10) * max(1.0, max(clean.size) / 512)
            frames.append((kind, gaussian_noise(clean, sigma, rng.getrandbits(63))))
    return frames


def _save(im: Image.Image, path: Path, t: float) -> None:
    exif = Image.Exif()
    stamp = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(int(t)))
    exif[0x0132] = stamp
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = stamp
    sub[0x9291] = f"{int(round((t % 1) * 1000)):03d}"
    im.save(path, "JPEG", quality=92, exif=exif)


def build_shoot(folder: Path, limit: int | None, seed: int) -> list[dict]:
    """Write the shoot's files into `folder`; the truth per file (manifest.json), built once per folder."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    from ase_model.starter.sources import HOLDOUT_SOURCE, source_photos

    photos = source_photos(max_side=1024)
    if limit:
        photos = dict(list(photos.items())[:limit])
    rng = random.Random(seed)
    events = []
    for k, (name, photo) in enumerate(photos.items()):
        prng = random.Random(f"{seed}:{name}")
        held = name.startswith(HOLDOUT_SOURCE + ":")
        events.append([dict(kind=kind, image=im, burst=name, held_out=held) for kind, im in burst(photo, prng)])
        if k % 3 == 0:  # a singleton: a recomposed, mirrored shot of a corner of the scene
            w, h = photo.size
            corner = photo.crop((0, 0, round(0.7 * w), round(0.7 * h))) if prng.random() < 0.5 else \
                photo.crop((round(0.3 * w), round(0.3 * h), w, h))
            events.append([dict(kind="single", image=ImageOps.mirror(corner), burst=name + "#single", held_out=held)])
    rng.shuffle(events)
    t = 1_777_000_000.0  # 2026-04-24
    items = []
    for ev in events:
        t += rng.uniform(1.0, 3.0) if rng.random() < 0.4 else rng.uniform(5.0, 120.0)
        rng.shuffle(ev)
        for fr in ev:
            fr["time"] = t
            items.append(fr)
            t += rng.uniform(0.1, 0.4)
    order = list(range(len(items)))
    rng.shuffle(order)  # file names do not follow capture order
    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    for number, i in enumerate(order):
        fr = items[i]
        path = folder / f"IMG_{number:04d}.JPG"
        _save(fr["image"], path, fr["time"])
        truth.append({"path": str(path), "kind": fr["kind"], "burst": fr["burst"], "held_out": fr["held_out"]})
    truth.sort(key=lambda r: r["path"])
    manifest.write_text(json.dumps(truth, indent=1))
    return truth


# ---- features, cached ---------------------------------------------------------------------------------------
def features(truth: list[dict], cache: Path, batch: int) -> tuple[list[CullFeatures], dict[str, float]]:
    """Every file's CullFeatures (through the shipped Critic) and the timings per photo, cached."""
    from ase_model.imageio import load_image

    cache_file = cache / "features.json"
    if cache_file.exists():
        data = json.loads(cache_file.read_text())
        if [d["path"] for d in data["features"]] == [r["path"] for r in truth]:
            return [CullFeatures.from_dict(d) for d in data["features"]], data["timings"]
    import torch

    from ase_model.critic import Critic

    torch.set_num_threads(1)
    critic = Critic.from_pretrained(device="cpu")
    critic.warmup()
    feats, t_crit, t_feat, t_load = [], [], [], []
    for start in range(0, len(truth), batch):
        paths = [r["path"] for r in truth[start:start + batch]]
        t0 = time.perf_counter()
        images = [load_image(p) for p in paths]
        t1 = time.perf_counter()
        crits = critic.critique(images, names=paths)
        t2 = time.perf_counter()
        for p, im, c in zip(paths, images, crits):
            feats.append(features_from(p, im, c))
        t3 = time.perf_counter()
        t_load.append((t1 - t0) / len(paths))
        t_crit.append((t2 - t1) / len(paths))
        t_feat.append((t3 - t2) / len(paths))
        print(f"\r  critiqued {start + len(paths)}/{len(truth)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    timings = {"decode_ms": 1000 * statistics.median(t_load), "critique_ms": 1000 * statistics.median(t_crit),
               "features_ms": 1000 * statistics.median(t_feat), "batch": batch}
    cache.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps({"features": [f.to_dict() for f in feats], "timings": timings}))
    return feats, timings


# ---- scoring ------------------------------------------------------------------------------------------------
def grouping_f1(truth: list[dict], groups: list[int]) -> float:
    tp = fp = fn = 0
    n = len(truth)
    for i in range(n):
        for j in range(i + 1, n):
            same_t = truth[i]["burst"] == truth[j]["burst"]
            same_p = groups[i] == groups[j]
            tp += same_t and same_p
            fp += same_p and not same_t
            fn += same_t and not same_p
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def evaluate(truth: list[dict], feats: list[CullFeatures], config: CullConfig) -> dict[str, dict]:
    """The figures for ours and the two baselines over the given files."""
    decisions = cull(feats, config)
    groups = [d.group for d in decisions]
    members = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    rankers = {
        "ours": lambda i: -decisions[i].rank,
        "score": lambda i: feats[i].score,
        "laplacian": lambda i: feats[i].measurements["laplacian_variance"],
    }
    bursts = defaultdict(list)
    for i, r in enumerate(truth):
        bursts[r["burst"]].append(i)
    real = {b: ix for b, ix in bursts.items() if len(ix) > 1}
    f1 = grouping_f1(truth, groups)
    out = {}
    for name, key in rankers.items():
        ok = strict = 0
        bg_below = bg_total = 0
        for b, ix in real.items():
            clean = next(i for i in ix if truth[i]["kind"] == "clean")
            pick = max(members[groups[clean]], key=key)
            ok += truth[pick]["burst"] == b and truth[pick]["kind"] in CLEAN_KINDS
            strict += pick == clean
            for i in ix:
                if truth[i]["kind"] == "background":
                    bg_total += 1
                    bg_below += key(i) < key(clean)
        row = {"bursts": len(real), "files": len(truth), "grouping_f1": f1, "best_pick": ok / max(1, len(real)),
               "strict_pick": strict / max(1, len(real)), "background_below_clean": bg_below / max(1, bg_total)}
        if name == "ours":
            row["clean_rejected"] = sum(1 for i, r in enumerate(truth)
                                        if r["kind"] in CLEAN_KINDS + ("single",) and decisions[i].decision == "reject")
            per_kind = {}
            for kind in ("background",) + DEFECT_KINDS:
                ix = [i for i, r in enumerate(truth) if r["kind"] == kind]
                per_kind[kind] = sum(decisions[i].decision == "reject" for i in ix) / max(1, len(ix))
            row["rejected_by_kind"] = per_kind
        out[name] = row
    return out


def speed(feats: list[CullFeatures], config: CullConfig, n: int = 1000) -> float:
    """Seconds cull() takes over n photos with known features (the shoot's features repeated, later in time)."""
    span = max(f.capture_time for f in feats) - min(f.capture_time for f in feats) + 1000
    many = []
    for k in range(n):
        f = feats[k % len(feats)]
        many.append(CullFeatures(path=f"/shoot/{k:05d}.jpg", capture_time=f.capture_time + span * (k // len(feats)),
                                 time_source=f.time_source, descriptor=f.descriptor, score=f.score,
                                 verdicts=f.verdicts, measurements=f.measurements))
    t0 = time.perf_counter()
    cull(many, config)
    return time.perf_counter() - t0


def _table(results: dict[str, dict[str, dict]]) -> str:
    lines = []
    for part, res in results.items():
        o = res["ours"]
        lines.append(f"\n{part}: {o['bursts']} bursts, {o['files']} files")
        lines.append(f"  {'':34s} {'ours':>8s} {'score':>8s} {'laplacian':>10s}  target")
        lines.append(f"  {'pairwise grouping F1':34s} {o['grouping_f1']:8.3f} {'(same)':>8s} {'(same)':>10s}  >= 0.95")
        for key, label, target in (("best_pick", "best pick: a clean frame", ">= 90 %"),
                                   ("strict_pick", "best pick: the centred clean frame", ""),
                                   ("background_below_clean", "background focus ranked below clean", "")):
            vals = [res[m][key] for m in ("ours", "score", "laplacian")]
            lines.append(f"  {label:34s} {vals[0]:8.1%} {vals[1]:8.1%} {vals[2]:10.1%}  {target}")
        lines.append(f"  {'clean frames wrongly rejected':34s} {o['clean_rejected']:8d} {'-':>8s} {'-':>10s}  0")
        kinds = ", ".join(f"{k} {v:.0%}" for k, v in o["rejected_by_kind"].items())
        lines.append(f"  ours rejects, per defect kind: {kinds}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/ase-cull-bench", help="the shoot and the cached critiques")
    ap.add_argument("--limit", type=int, default=None, help="only the first N source photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4, help="critiques per batched pass")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)
    work = Path(args.work) / f"seed{args.seed}-limit{args.limit or 'all'}"
    truth = build_shoot(work / "shoot", args.limit, args.seed)
    feats, timings = features(truth, work / "cache", args.batch)
    config = CullConfig()
    results = {}
    for part, held in (("training sources", False), ("held-out opencv-doc", True)):
        ix = [i for i, r in enumerate(truth) if r["held_out"] == held]
        if ix:
            results[part] = evaluate([truth[i] for i in ix], [feats[i] for i in ix], config)
    results["all"] = evaluate(truth, feats, config)
    print(_table(results))
    seconds = speed(feats, config)
    print(f"\nspeed: cull() over 1,000 photos with known features: {seconds:.2f} s (target < 5 s)")
    print(f"new photos (median per photo, batch {timings['batch']}, one torch thread): decode "
          f"{timings['decode_ms']:.0f} ms, critique {timings['critique_ms']:.0f} ms, features "
          f"{timings['features_ms']:.1f} ms = {timings['features_ms'] / timings['critique_ms']:.1%} of a critique "
          f"(target < 10 %)")
    if args.json:
        print(json.dumps({"results": results, "cull_1000_s": seconds, "timings": timings}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
