"""Folder watcher benchmark: what watching a folder costs on top of the daemon's own critique throughput.

    python bench/watcher.py [--size tiny|small] [--images 48] [--latency 12] [--threads 1]

One daemon (a model built from a config, no download), one watched folder, measured side by side in one run:
  1. burst throughput: N distinct camera-sized JPEGs copied into the watched folder at once -> all N sidecars
     written, against the same daemon's plain throughput for N other distinct photos of the same kind submitted
     directly as background jobs (`submit`, the lane the watcher uses) -> all N jobs done. Rounds alternate
     (direct, watcher, direct, watcher) so that drift in a shared machine's load hits both.
  2. latency: single photos copied in one at a time into an idle daemon: time from the copy's close to its sidecar
     on disk (median, p90), and a direct `critique` of one photo for reference (the model's part of it).
Every photo is distinct (no store hits). Prints a table with the ratio; the watcher should cost < 10 %.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _daemon_harness import SIZES, start_daemon  # bench/ is sys.path[0]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_photos(folder: Path, n: int, start: int) -> list[Path]:
    """n distinct camera-sized JPEGs (1600 x 1067): real photos, shifted and tinted so every hash differs."""
    import numpy as np
    import skimage.data as data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    base = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]
    paths = []
    for i in range(start, start + n):
        im = Image.fromarray(base[i % len(base)]).convert("RGB").resize((1600, 1067))
        arr = np.clip(np.roll(np.asarray(im).astype(np.int16), 7 * i, axis=1) + (i % 11) - 5, 0, 255)
        path = folder / f"DSC_{i:04d}.jpg"
        Image.fromarray(arr.astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def wait_until(cond, timeout: float = 600.0, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(every)


def direct_round(c, photos: list[Path]) -> float:
    """Seconds from the first `submit` to the last job done."""
    before = c.status()["jobs"]["done"]
    t0 = time.perf_counter()
    for p in photos:
        c.submit(path=p)
    wait_until(lambda: c.status()["jobs"]["done"] - before >= len(photos))
    return time.perf_counter() - t0


def watcher_round(c, photos: list[Path], watched: Path) -> float:
    """Seconds from the first copy into the watched folder to the last sidecar written."""
    before = c.status()["watch"]["done"]
    t0 = time.perf_counter()
    for p in photos:
        shutil.copyfile(p, watched / p.name)
    wait_until(lambda: c.status()["watch"]["done"] - before >= len(photos))
    return time.perf_counter() - t0


def latency(c, photos: list[Path], watched: Path) -> list[float]:
    """Arrival (the copy's close) -> sidecar on disk, one photo at a time into an idle daemon."""
    out = []
    for p in photos:
        target = watched / p.name
        side = target.with_name(target.name + ".xmp")
        shutil.copyfile(p, target)
        t0 = time.perf_counter()
        wait_until(side.exists, every=0.002)
        out.append(time.perf_counter() - t0)
        time.sleep(0.3)  # idle between arrivals
    return out


def pct(xs, q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--images", type=int, default=48, help="photos per burst round (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each kind, alternating (default %(default)s)")
    p.add_argument("--latency", type=int, default=12, help="single arrivals timed (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the daemon (default %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    args = p.parse_args(argv)

    from ase_daemon.client import Client

    from ase_model.testing import build_tiny

    n = args.images
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = build_tiny(tmp / "model", open_gates=0.5, **SIZES[args.size])
        sets = [make_photos(tmp / f"set{k}", n, k * n) for k in range(2 * args.rounds)]
        single = make_photos(tmp / "single", args.latency + 3, 10_000)
        watched = tmp / "watched"
        watched.mkdir()
        print(f"model {args.size}, {n} photos per round (1600x1067 JPEG, distinct), {args.rounds} rounds each, "
              f"max_new_tokens {args.max_new_tokens}, torch threads {args.threads}, {os.cpu_count()} CPUs", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or os.cpu_count()), "XDG_RUNTIME_DIR": str(tmp),
               "XDG_CONFIG_HOME": str(tmp / "config"), "XDG_DATA_HOME": str(tmp / "data")}
        proc, endpoint = start_daemon(model, tmp, args, env, extra=("--watch", str(watched)))
        try:
            with Client(endpoint, timeout=60) as c:
                c.critique(path=single[-1])  # warm the decode path and the model
                c.critique(path=single[-2])
                direct, watch = [], []
                for r in range(args.rounds):
                    direct.append(direct_round(c, sets[2 * r]))
                    watch.append(watcher_round(c, sets[2 * r + 1], watched))
                    print(f"  round {r + 1}: direct {direct[-1]:.2f} s, watcher {watch[-1]:.2f} s", flush=True)
                lat = latency(c, single[:args.latency], watched)
                one = []
                for q in single[args.latency:args.latency + 1] * 5:
                    t0 = time.perf_counter()
                    c.critique(path=q, force=True)
                    one.append(time.perf_counter() - t0)
                st = c.status()
                c.shutdown()
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert st["watch"]["failed"] == 0, st["watch"]
    d_rate = n * len(direct) / sum(direct)
    w_rate = n * len(watch) / sum(watch)
    cost = 1 - w_rate / d_rate
    rows = [
        (f"direct: {n} jobs submitted -> all done", f"{statistics.median(direct):8.2f} s", f"{d_rate:7.2f} img/s"),
        (f"watcher: {n} files dropped -> all sidecars", f"{statistics.median(watch):8.2f} s", f"{w_rate:7.2f} img/s"),
        ("throughput ratio watcher / direct", f"{w_rate / d_rate:8.3f}",
         f"cost {100 * cost:5.1f} %  (target < 10 %)"),
        ("arrival -> sidecar, median", f"{1000 * statistics.median(lat):8.1f} ms", "one photo into an idle daemon"),
        ("arrival -> sidecar, p90", f"{1000 * pct(lat, 0.9):8.1f} ms", ""),
        ("direct critique of one photo, median", f"{1000 * statistics.median(one):8.1f} ms", "the model's part"),
    ]
    w = max(len(r[0]) for r in rows)
    print()
    print(f"{'':{w}}  {'value':>11}  note")
    for name, value, note in rows:
        print(f"{name:{w}}  {value:>11}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
