"""Shared parts of the daemon benchmarks (bench/daemon.py, bench/watcher.py): models, photos, a daemon process.

A module of its own, with a name that cannot shadow the `ase_daemon` sources' folder `daemon/` (bench/watcher.py
used to import `daemon`, which resolved to bench/daemon.py only because this folder is sys.path[0]).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["SIZES", "build_model", "items_per_second", "make_photos", "start_daemon"]

SIZES = {
    "tiny": {},
    "small": dict(hidden=256, layers=4, image_size=224, patch_size=16, iasm_channels=[16, 32, 64],
                  iasm_num_tokens=8, score_head_hidden=64),
}


def build_model(out: Path, size: str) -> Path:
    from ase_model.testing import build_tiny

    return build_tiny(out, open_gates=0.5, **SIZES[size])


def make_photos(folder: Path, n: int) -> list[Path]:
    """n distinct camera-sized JPEGs (1600 x 1067): real photos, shifted and tinted so every hash differs."""
    import numpy as np
    from PIL import Image

    try:
        import skimage.data as data

        base = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]
    except ImportError:  # the GPU machines have no scikit-image: smooth synthetic scenes
        yy, xx = np.mgrid[0:512, 0:768]
        base = [np.stack([(xx * (k + 1)) % 256, (yy * (k + 2)) % 256, (xx + yy) % 256], -1).astype(np.uint8)
                for k in range(4)]
    paths = []
    for i in range(n):
        im = Image.fromarray(base[i % len(base)]).convert("RGB").resize((1600, 1067))
        arr = np.asarray(im).astype(np.int16)
        arr = np.clip(np.roll(arr, 7 * i, axis=1) + (i % 5) - 2, 0, 255).astype(np.uint8)
        path = folder / f"photo{i:03d}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        paths.append(path)
    return paths


def start_daemon(model: Path, tmp: Path, args, env: dict, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """An ase-daemon process with everything (socket, store) under tmp; returns once its model is ready."""
    from ase_daemon import contract as P
    from ase_daemon.client import Client, DaemonUnavailable

    endpoint = f"ipc://{tmp}/bench.sock"
    cmd = [sys.executable, "-m", "ase_daemon.cli", "--model", str(model), "--endpoint", endpoint, "--db",
           str(tmp / "bench.db"), "--threads", str(args.threads), "--max-new-tokens", str(args.max_new_tokens),
           "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "daemon.log", "wb"))
    with Client(endpoint, timeout=1.0, retries=0) as c:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if c.ping()["state"] == P.READY:
                    return proc, endpoint
            except DaemonUnavailable:
                pass
            assert proc.poll() is None, (tmp / "daemon.log").read_text()
            time.sleep(0.1)
    raise RuntimeError("daemon not ready")


def items_per_second(items: list, clients: int, work: Callable[[Callable[[], object]], None]) -> float:
    """Items per second when `clients` threads share `items`: each runs work(take), where take() hands out the next
    item (None when all are taken), so a client sends its next request only once its last one is answered."""
    queue, lock = list(items), threading.Lock()

    def take():
        with lock:
            return queue.pop() if queue else None

    threads = [threading.Thread(target=work, args=(take,)) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(items) / (time.perf_counter() - t0)
