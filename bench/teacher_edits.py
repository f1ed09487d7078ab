"""Does the analytic teacher name each known defect, and does its score fall? Every real photo on the machine.

    .venv/bin/python bench/teacher_edits.py [--size 512] [--strengths 3] [--seed 0] [--only NAME ...] [--json OUT]

Photos: the real photos of every training source (ase_model.starter.sources: scikit-image, scikit-learn,
Debian's wallpaper collections); `--holdout` adds the held-out source (opencv-doc). Each is resized to 512 px
on the long side (--size; 224 is the size the starter dataset stores) and JPEG (quality 92) round-tripped: that
is the original. Each of edits.py's eight defect edits is applied to it at
`--strengths` random strengths (seeded per photo, edit and draw) and JPEG round-tripped again. Edits that leave
the photo as it was (desaturating a black and white photo) are left out.

Printed per edit kind: how often the teacher names the defect (the right verdict), how often its score is lower
than the original's; and over the originals, how often each attribute reports a defect (false alarms on clean
photos, though some originals do have a defect: rocket is a night scene, moon is dark).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from ase_model.starter.known import EDIT_VERDICTS  # noqa: E402

# Real photographs among the installed Debian packages' images (the rest there is digital art, logos, renders,
# calibration charts, documents), by package; each package's licence is in /usr/share/doc/<package>/copyright.
PHOTO_EXTS = (".jpg", ".jpeg", ".png", ".webp")
SIZE = 512

# edit kind -> (attribute, the verdicts that name the defect): the map the training labels are corrected by
NAMED = EDIT_VERDICTS
TARGETS = {"tilt": 0.90, "cut_crop": 0.90}  # the rest: 0.95
# The verdicts that are defects (what a false alarm on an original looks like).
DEFECTS = {
    "exposure": ("underexposed", "overexposed"), "highlights": ("clipped",), "sharpness": ("soft",),
    "saturation": ("monochrome", "muted", "oversaturated"), "white_balance": ("warm cast", "cool cast", "green cast",
                                                                              "magenta cast"),
    "contrast": ("flat", "harsh"), "noise": ("noisy",), "tilt": ("tilted",), "framing": ("cut off",),
    "composition": ("off balance",),
}


def jpeg(img: Image.Image, quality: int = 92) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def fit(img: Image.Image, size: int = SIZE) -> Image.Image:
    w, h = img.size
    s = size / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS) if s < 1 else img.copy()


def all_photos(size: int = SIZE, holdout: bool = False) -> dict[str, Image.Image]:
    """The training sources' real photos (ase_model.starter.sources), with the held-out source too only when
    asked: the held-out photos are the students' test, not the teacher's tuning set."""
    from ase_model.starter import sources

    photos = sources.source_photos([s for s in sources.SOURCES if holdout or s != sources.HOLDOUT_SOURCE])
    return {n: fit(im, size) for n, im in photos.items()}


def _seed(*parts) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


def _max_diff(a: Image.Image, b: Image.Image) -> int:
    import numpy as np

    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())


def run(photos: dict[str, Image.Image], strengths: int = 3, seed: int = 0) -> list[dict]:
    """One record per original and per edit: name, kind ('original' or an edit), params, verdicts, score."""
    from ase_model.starter.analytic import analyze
    from ase_model.starter.edits import EDIT_KINDS, apply_edit

    records = []
    for name, photo in photos.items():
        orig = jpeg(photo)
        a = analyze(orig)
        records.append({"name": name, "kind": "original", "params": {}, "verdicts": a.verdicts, "score": a.score,
                        "measurements": a.measurements, "notes": a.notes})
        for kind in EDIT_KINDS:
            for k in range(strengths):
                edited, params = apply_edit(orig, kind, random.Random(_seed(seed, name, kind, k)))
                if edited.size == orig.size and _max_diff(edited, orig) <= 2:
                    continue  # a no-op (desaturating a black and white photo): nothing to name, nothing to lose
                e = analyze(jpeg(edited))
                records.append({"name": name, "kind": kind, "params": params, "verdicts": e.verdicts,
                                "score": e.score, "original_score": a.score, "measurements": e.measurements,
                                "notes": e.notes})
    return records


def table(records: list[dict]) -> str:
    lines = [f"{'edit':<12} {'n':>4} {'named':>7} {'lower':>7}  target  misses (photo: verdict, score vs original)"]
    by_kind = defaultdict(list)
    for r in records:
        by_kind[r["kind"]].append(r)
    all_lower = []
    for kind, (attr, labels) in NAMED.items():
        rs = by_kind.get(kind, [])
        if not rs:
            continue
        named = [r["verdicts"].get(attr) in labels for r in rs]
        lower = [r["score"] < r["original_score"] for r in rs]
        all_lower += lower
        misses = [f"{r['name']}: {r['verdicts'].get(attr)}" for r, ok in zip(rs, named) if not ok][:4]
        misses += [f"{r['name']}: {r['score']} vs {r['original_score']}" for r, ok in zip(rs, lower) if not ok][:3]
        lines.append(f"{kind:<12} {len(rs):>4} {100 * sum(named) / len(rs):>6.1f}% {100 * sum(lower) / len(rs):>6.1f}%"
                     f"  {100 * TARGETS.get(kind, 0.95):>4.0f}%   {'; '.join(misses)}")
    if all_lower:
        lines.append(f"{'all edits':<12} {len(all_lower):>4} {'':>7} {100 * sum(all_lower) / len(all_lower):>6.1f}%"
                     f"  target 98% lower")
    origs = by_kind.get("original", [])
    if origs:
        lines.append("")
        lines.append(f"originals ({len(origs)}): share reporting a defect, per attribute")
        for attr, bad in DEFECTS.items():
            hit = [r for r in origs if r["verdicts"].get(attr) in bad]
            who = ", ".join(f"{r['name']}={r['verdicts'][attr]}" for r in hit[:5])
            lines.append(f"  {attr:<14} {100 * len(hit) / len(origs):>5.1f}%  {who}")
        scores = sorted(r["score"] for r in origs)
        lines.append(f"  scores: min {scores[0]} median {scores[len(scores) // 2]} max {scores[-1]}")
        named = [r for r in by_kind.get("original", [])]
        comp = defaultdict(int)
        for r in named:
            comp[r["verdicts"].get("composition")] += 1
        lines.append(f"  composition: {dict(comp)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=SIZE, help="long side of the originals, px")
    ap.add_argument("--strengths", type=int, default=3, help="random strengths per edit kind and photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="photo names to keep (default: all)")
    ap.add_argument("--json", help="write every record here")
    ap.add_argument("--originals", action="store_true", help="only the originals (no edits)")
    ap.add_argument("--holdout", action="store_true", help="also the held-out source (the students' test set)")
    args = ap.parse_args(argv)
    photos = all_photos(args.size, holdout=args.holdout)
    if args.only:
        photos = {n: im for n, im in photos.items() if n in args.only}
    if not photos:
        print("no photos found", file=sys.stderr)
        return 1
    t = time.perf_counter()
    records = run(photos, 0 if args.originals else args.strengths, args.seed)
    print(f"{len(photos)} photos, {len(records)} analyses in {time.perf_counter() - t:.1f} s")
    print(table(records))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
