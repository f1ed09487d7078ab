"""`ase-mllm demo`: the whole product on sample photos, through the daemon, into sidecars and an HTML report.

1. sample photos: real photographs shipped with scikit-image / scikit-learn, plus copies with a known fault
   (darkened, blurred, desaturated, a colour cast) so you can check the critic is right about them (coffee and
   china are the starter model's held-out photos: it never saw them in training);
2. starts the daemon with the default (starter) model, or reuses the one already running;
3. critiques every photo through it (a progress bar), writes an XMP sidecar beside each photo;
4. writes `report.html` (daemon/report.py): a summary table first (thumbnail with the saliency overlay, score,
   stars, main remark; click a header to sort), then each photo with its overlay, critique, score and tags;
   prints a summary.

It lives in the daemon package because it drives the product (daemon, client, XMP writer); `ase-mllm demo`
forwards here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# (output name, source photo, what was done to it, function)
VARIANTS = [
    ("coffee.jpg", "coffee", "untouched", None),
    ("coffee-dark.jpg", "coffee", "darkened by 2 stops", lambda im: _exposure(im, -2.0)),
    ("coffee-muted.jpg", "coffee", "saturation cut to 20 %", lambda im: ImageEnhance.Color(im).enhance(0.2)),
    ("china.jpg", "china", "untouched", None),
    ("china-blurred.jpg", "china", "Gaussian blur, 3 px", lambda im: im.filter(ImageFilter.GaussianBlur(3))),
    ("china-cool.jpg", "china", "cool white-balance cast", lambda im: _gains(im, (0.7, 1.0, 1.4))),
    ("astronaut-bright.jpg", "astronaut", "brightened by 2 stops", lambda im: _exposure(im, 2.0)),
    ("chelsea.jpg", "chelsea", "untouched", None),
]


def _exposure(im: Image.Image, stops: float) -> Image.Image:
    lin = (np.asarray(im, dtype=np.float32) / 255.0) ** 2.2 * (2.0 ** stops)
    return Image.fromarray(np.clip(np.clip(lin, 0, 1) ** (1 / 2.2) * 255 + 0.5, 0, 255).astype(np.uint8))


def _gains(im: Image.Image, gains) -> Image.Image:
    arr = np.asarray(im, dtype=np.float32) * np.asarray(gains, dtype=np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def prepare_photos(folder: Path) -> list[tuple[Path, str]]:
    """Write the sample photos (JPEG, quality 92); returns (path, what was done) pairs."""
    from ase_model.starter.dataset import source_photos

    folder.mkdir(parents=True, exist_ok=True)
    sources = source_photos()
    out = []
    for name, source, note, fn in VARIANTS:
        if source not in sources:
            continue
        im = sources[source].convert("RGB")
        im = fn(im) if fn else im
        path = folder / name
        im.save(path, quality=92)
        out.append((path, note))
    return out


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from .client import Client, DaemonError, DaemonUnavailable, ensure_daemon
    from .report import THUMB_SIDE, overlay_jpeg, write_report
    from .xmp import SidecarOptions, rating_from_score, write_sidecar

    ap = argparse.ArgumentParser(prog="ase-mllm demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    ap.add_argument("--endpoint", default=None, help="daemon endpoint (default: the local one)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the daemon's model")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    photos_dir, overlays_dir, thumbs_dir = out / "photos", out / "overlays", out / "thumbs"
    overlays_dir.mkdir(parents=True, exist_ok=True)
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    print(f"ASE-MLLM demo -> {out}")
    photos = prepare_photos(photos_dir)
    print(f"  {len(photos)} sample photos in {photos_dir}")
    try:
        info = ensure_daemon(args.endpoint, timeout=args.timeout, say=lambda m: print(f"  {m}"))
    except (DaemonUnavailable, DaemonError, TimeoutError) as e:
        print(f"ase-mllm demo: {e}", file=sys.stderr)
        return 3
    print(f"  daemon ready at {info['endpoint']} with model {info.get('model')}")

    rows, t0 = [], time.perf_counter()
    options = SidecarOptions(write_description=True, write_tags=True, write_rating=True)
    with Client(info["endpoint"], timeout=60.0) as client:
        for path, note in tqdm(photos, desc="critiquing", unit="photo"):
            row = {"name": path.name, "note": note, "photo": f"photos/{path.name}"}
            try:
                result, png = client.critique(path=str(path), saliency=True)
            except DaemonError as e:
                rows.append({**row, "error": str(e)})
                continue
            overlay = overlays_dir / (path.stem + "-saliency.jpg")
            overlay_jpeg(path, png, overlay)
            thumb = thumbs_dir / (path.stem + "-saliency.jpg")
            overlay_jpeg(path, png, thumb, max_side=THUMB_SIDE)  # drawn at its own size: smooth, not shrunk
            sidecar = write_sidecar(path, result, options)
            rows.append({**row, "result": result, "overlay": f"overlays/{overlay.name}",
                         "thumb": f"thumbs/{thumb.name}", "sidecar": str(sidecar.relative_to(out)),
                         "rating": rating_from_score(result["score"])})
    seconds = time.perf_counter() - t0
    model = next((r["result"]["model"] for r in rows if "result" in r), info.get("model") or "?")
    report = write_report(out, rows, model, seconds)
    (out / "results.json").write_text(json.dumps([{k: v for k, v in r.items()} for r in rows], indent=1))

    print(f"\n{'photo':26s} {'score':>5s}  tags")
    for r in rows:
        if "result" in r:
            tags = ", ".join(t.split("|", 1)[-1] for t in r["result"]["tags"][:4])
            print(f"{r['name']:26s} {r['result']['score']:5.1f}  {tags}")
        else:
            print(f"{r['name']:26s} error: {r['error']}")
    ok = sum("result" in r for r in rows)
    print(f"\n{ok}/{len(rows)} photos critiqued in {seconds:.1f} s; XMP sidecars beside the photos in {photos_dir}")
    print(f"Open the report:   xdg-open {report}    (or file://{report})")
    print(f"Browse with the viewer:   .venv/bin/ase-viewer {photos_dir}")
    print("The daemon keeps running for the viewer and the darktable plugin; stop it with `ase-client shutdown`.")
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
