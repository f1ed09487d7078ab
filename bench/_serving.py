"""The serving figures of issue 17 (bench/daemon.py --serving): the worker in-process on CPU with the starter model.

    1. per critique: the Critic with the decode engine vs transformers' generate (same photos, batch 1, same texts)
    2. 8 clients each sending one request at a time vs 1 client, over 5 runs (each run's ratio)
    3. interactive p95 latency while a background job of N photos runs vs idle p95
    4. a burst of N submitted photos (the job table, as `submit` fills it): images per second

Clients are threads submitting Tasks to one Worker (the daemon's model side, no sockets): what the worker's batching
does, without the protocol's ~0.1 ms per request (bench/daemon.py measures that).
"""

from __future__ import annotations

import io
import statistics
import threading
import time
from pathlib import Path

__all__ = ["serving_mode"]


def photos(n: int, seed: int = 0, size=(640, 427)) -> list[bytes]:
    """n distinct camera-like JPEGs (real photos, shifted and tinted: every hash differs)."""
    import numpy as np
    from PIL import Image

    try:
        import skimage.data as data

        base = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]
    except ImportError:
        yy, xx = np.mgrid[0:512, 0:768]
        base = [np.stack([(xx * (k + 1)) % 256, (yy * (k + 2)) % 256, (xx + yy) % 256], -1).astype(np.uint8)
                for k in range(4)]
    base = [np.asarray(Image.fromarray(b).convert("RGB").resize(size)).astype(np.int16) for b in base]
    out = []
    for i in range(n):
        arr = np.clip(np.roll(base[i % len(base)], 7 * i + seed, axis=1) + (i % 5) - 2 + seed % 3, 0, 255)
        buf = io.BytesIO()
        Image.fromarray(arr.astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def critique_one(worker, data: bytes) -> float:
    """Seconds for one interactive critique (cache bypassed)."""
    from ase_daemon.worker import Task

    done, out = threading.Event(), []
    t0 = time.perf_counter()
    worker.submit(Task(data=data, force=True, on_done=lambda o: (out.append(o), done.set())))
    assert done.wait(600) and out[0].ok, out and out[0].error
    return time.perf_counter() - t0


def clients(worker, data: list[bytes], n: int) -> float:
    """Images per second with n clients, each sending its next photo when the last one is answered."""
    from _daemon_harness import items_per_second  # bench/ is sys.path[0] (run through bench/daemon.py)

    def work(take):
        for item in iter(take, None):
            critique_one(worker, item)

    return items_per_second(data, n, work)


def burst(worker, store, data: list[bytes], tag: str) -> tuple[list[str], threading.Event, list[float]]:
    """Queue len(data) background jobs; returns their ids, an event set when all are done, the end times."""
    ids = {store.add_job(data=d, name=f"{tag}{i}.jpg", max_queued=None)[0].id for i, d in enumerate(data)}
    ended, all_done = [], threading.Event()

    def on_done(job, outcome):
        if job.id in ids:
            ended.append(time.perf_counter())
            if len(ended) == len(ids):
                all_done.set()

    worker.on_job_done(on_done)
    worker.notify_jobs()
    return sorted(ids), all_done, ended


def engine_vs_generate(model_dir: Path, data: list[bytes]) -> tuple[float, float, bool]:
    from ase_model.critic import Critic
    from ase_model.imageio import load_image

    images = [load_image(d, max_side=1024) for d in data]
    out = {}
    for name, engine in (("generate", False), ("engine", True)):
        critic = Critic.from_pretrained(model_dir, device="cpu", engine=engine)
        critic.critique(images[:1])  # warm
        times, texts = [], []
        for im in images:
            t0 = time.perf_counter()
            [c] = critic.critique([im])
            times.append(time.perf_counter() - t0)
            texts.append(c.text)
        out[name] = (statistics.median(times), texts)
    return out["generate"][0], out["engine"][0], out["generate"][1] == out["engine"][1]


class Rows(list):
    """The table's rows, each also printed as it is measured (a long run shows its progress)."""

    def append(self, row):
        super().append(row)
        print("  ".join(row), flush=True)


def serving_mode(args) -> None:
    import tempfile

    import torch
    from ase_daemon.store import Store
    from ase_daemon.worker import Worker

    from ase_model.model_id import default_model_dir

    torch.set_num_threads(args.threads or 1)
    model_dir = default_model_dir()
    n_bg = args.burst
    print(f"starter model on CPU, torch threads {torch.get_num_threads()}, slots {args.slots}, "
          f"{n_bg}-photo background job and burst, photos 640x427 JPEG", flush=True)
    gen_ms, eng_ms, same = engine_vs_generate(model_dir, photos(8, seed=1))
    rows = Rows()
    rows.append(("per critique: generate (median, batch 1)", f"{1000 * gen_ms:9.1f} ms", ""))
    rows.append(("per critique: decode engine", f"{1000 * eng_ms:9.1f} ms",
                 f"{gen_ms / eng_ms:6.2f}x  (target >= 1.5x; same texts: {same})"))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.db")
        worker = Worker(model_dir, store, device="cpu", threads=args.threads or 1, max_batch=args.slots,
                        slots=args.slots, max_queue=256).start()
        while worker.state not in ("ready", "error"):
            time.sleep(0.05)
        if worker.state == "error":
            raise SystemExit(f"load failed: {worker.load_error}")
        critique_one(worker, photos(1, seed=2)[0])
        for run in range(5):
            one = clients(worker, photos(8, seed=10 + run), 1)
            eight = clients(worker, photos(32, seed=20 + run), 8)
            rows.append((f"run {run + 1}: 1 client vs 8 clients", f"{one:6.2f} / {eight:6.2f} img/s",
                         f"{eight / one:6.2f}x  (target >= 3x, each run >= 2.5x)"))
        idle = [critique_one(worker, d) for d in photos(20, seed=40)]
        _, bg_done, _ = burst(worker, store, photos(n_bg, seed=50), "bg")
        busy = [critique_one(worker, d) for d in photos(20, seed=41)]
        running = not bg_done.is_set()
        rows.append(("interactive p95: idle", f"{1000 * p95(idle):9.1f} ms", ""))
        rows.append((f"interactive p95: {n_bg}-photo background job running", f"{1000 * p95(busy):9.1f} ms",
                     f"{p95(busy) / p95(idle):6.2f}x  (target <= 2x; job still running at the end: {running})"))
        bg_done.wait(3600)
        t0 = time.perf_counter()
        _, all_done, _ = burst(worker, store, photos(n_bg, seed=60), "burst")
        all_done.wait(3600)
        rows.append((f"burst of {n_bg} submitted photos", f"{n_bg / (time.perf_counter() - t0):9.2f} img/s", ""))
        b = worker.snapshot()["batches"]
        rows.append(("worker: engine steps, mean active slots", f"{b['count']}, {b['mean_size']:.2f}",
                     f"slots {b['slots']}, image-side groups {b['groups']} of {b['mean_group']:.2f}"))
        worker.stop()
        store.close()
    w = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{w}}  {value:>24}  {note}")
