"""GPU check of the Critic's decode engine: the starter model on CUDA, `generate` vs `Critic(engine=True)`.

    python3 bench/gpu_engine_check.py                      # on a CUDA machine; batches 1, 8, 32
    python3 bench/gpu_engine_check.py --device cpu --batches 1 2 --repeats 1   # a dry run of the code path

Per batch size and path: one warm-up critique (compilation, allocator growth), then `--repeats` timed ones;
prints decode ms per image (the Critic's `generate_ms` / batch: vision excluded), decode tokens/s, whole-critique
images/s, and whether the two paths wrote the same texts. Without CUDA (and no --device) it says so and exits 0.
Imports only torch, transformers, numpy, Pillow and ase_model (no pyzmq, watchdog or PySide6).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

__all__ = []

STARTER = ROOT / "ase_model" / "starter_model"


def photos(n: int, size: int = 384) -> list[Image.Image]:
    """Smooth colour fields with a bright blob (critiqueable, varied; no download, no scikit-image)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        base = rng.uniform(0, 1, (3, 3))  # per channel: offset, x slope, y slope
        img = base[:, 0, None, None] + base[:, 1, None, None] * x + base[:, 2, None, None] * y
        cx, cy, r = rng.uniform(0.2, 0.8, 3)
        img = img + 0.8 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.05 * r))
        out.append(Image.fromarray((255 * np.clip(img / img.max(), 0, 1)).transpose(1, 2, 0).astype(np.uint8)))
    return out


def measure(critic, images, repeats: int, device) -> tuple[dict, list[str]]:
    critic.critique(images)  # warm-up: compilation, cache allocation
    decode, total, tokens, texts = [], [], [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = critic.critique(images)
        total.append(time.perf_counter() - t0)
        decode.append(out[0].timings["generate_ms"] / 1000)
        tokens.append(out[0].timings["new_tokens"])
        texts = [c.raw_text if c.raw_text is not None else c.text for c in out]
    d = statistics.median(decode)
    return {"decode_ms_per_image": 1000 * d / len(images), "tok_s": statistics.median(tokens) / d,
            "img_s": len(images) / statistics.median(total)}, texts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", help="default: cuda, when there is one")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.device is None and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (pass --device cpu for a dry run of the code path)")
        return 0
    from ase_model.critic import Critic

    device = torch.device(args.device or "cuda")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    t0 = time.perf_counter()
    critics = {
        "generate": Critic.from_pretrained(STARTER, device=device, engine=False),
        "engine": Critic.from_pretrained(STARTER, device=device, engine=True, engine_slots=max(args.batches)),
    }
    print(f"starter model on {name} ({critics['engine'].dtype}), loaded in {time.perf_counter() - t0:.1f} s; "
          f"engine in use: {critics['engine'].engine is not None}", flush=True)
    rows = []
    for b in args.batches:
        images = photos(b)
        res, texts = {}, {}
        for path, critic in critics.items():
            res[path], texts[path] = measure(critic, images, args.repeats, device)
            print(f"  batch {b} {path}: " + ", ".join(f"{k} {v:.1f}" for k, v in res[path].items()), flush=True)
        rows.append((b, res, texts["generate"] == texts["engine"]))
    print("\n| batch | generate decode ms/img | engine decode ms/img | generate tok/s | engine tok/s | "
          "generate img/s | engine img/s | engine speed-up | same texts |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b, res, same in rows:
        g, e = res["generate"], res["engine"]
        print(f"| {b} | {g['decode_ms_per_image']:.1f} | {e['decode_ms_per_image']:.1f} | {g['tok_s']:.0f} | "
              f"{e['tok_s']:.0f} | {g['img_s']:.1f} | {e['img_s']:.1f} | "
              f"{g['decode_ms_per_image'] / e['decode_ms_per_image']:.2f}x | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
