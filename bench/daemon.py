"""ase-daemon benchmark: a warm daemon against a cold process per image, protocol overhead, batching.

    python bench/daemon.py [--size tiny|small] [--images 32] [--threads 1]     # the daemon over ZeroMQ (CPU)
    python bench/daemon.py --worker-only [--device cuda] [--size small]        # the worker alone (no pyzmq)
    python bench/daemon.py --serving [--slots 8] [--burst 500]                 # issue 17's figures (bench/_serving.py)

Daemon mode (needs pyzmq), measured side by side in one run on the same model and photos:
  1. per image: `ase-mllm critique` in a fresh process vs. a warm daemon (distinct photos, cache bypassed)
  2. protocol overhead: ping round trip over the ipc socket (median, p99)
  3. throughput: 8 concurrent clients vs. one client sending the same photos one after another
Worker-only mode drives `ase_daemon.worker.Worker` in-process, for the GPU machines, which have torch and
transformers but no pyzmq: warm-up (static-cache compile on CUDA), per-image latency, 8-concurrent vs
sequential throughput, and the CUDA memory an unload gives back.

Models are built from configs (no download): `tiny` is the test model (hidden 32, 2 layers, 32 px);
`small` is bigger so that compute, not Python overhead, dominates (hidden 256, 4 layers, 224 px, 6.7 M params;
the tiny one has 90 k). Both have random weights: what they write is noise, but their work per token is real.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _daemon_harness import SIZES, build_model, items_per_second, make_photos, start_daemon  # noqa: E402  (bench/ is sys.path[0])


def mean_batch(before: dict, after: dict) -> float:
    runs = after["count"] - before["count"]
    return (after["images"] - before["images"]) / runs if runs else 0.0


def median_ms(xs) -> float:
    return 1000 * statistics.median(xs)


# ---- daemon mode ----------------------------------------------------------------------------------------------
def cold_process(model: Path, photos: list[Path], max_new_tokens: int, env: dict) -> list[float]:
    times = []
    for p in photos:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ase_model.cli", "critique", "--model", str(model), "--max-new-tokens",
                        str(max_new_tokens), str(p)], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def throughput(endpoint: str, photos: list[Path], clients: int) -> float:
    """Images per second critiquing `photos` (cache bypassed) with `clients` concurrent clients."""
    from ase_daemon.client import Client

    def work(take):
        with Client(endpoint, timeout=60) as c:
            for p in iter(take, None):
                c.critique(path=p, force=True, saliency=True)

    return items_per_second(photos, clients, work)


def daemon_mode(args) -> None:
    from ase_daemon.client import Client

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or os.cpu_count())}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = build_model(tmp / "model", args.size)
        photos = make_photos(tmp, args.images)
        print(f"model: {args.size} ({model}), {args.images} photos 1600x1067 JPEG, max_new_tokens "
              f"{args.max_new_tokens}, torch threads {args.threads or 'all'}, {os.cpu_count()} CPUs", flush=True)

        cold = cold_process(model, photos[:args.cold], args.max_new_tokens, env)
        proc, endpoint = start_daemon(model, tmp, args, env)
        try:
            with Client(endpoint, timeout=60) as c:
                c.critique(path=photos[-1], force=True)  # first request after warm-up
                warm = []
                for p in photos[:args.images]:
                    t0 = time.perf_counter()
                    c.critique(path=p, force=True)
                    warm.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                c.critique(path=photos[0])
                cached = time.perf_counter() - t0
                pings = []
                for _ in range(args.pings):
                    t0 = time.perf_counter()
                    c.ping()
                    pings.append(time.perf_counter() - t0)
            seq = throughput(endpoint, photos, 1)
            with Client(endpoint) as c:
                before = c.status()["batches"]
            par = throughput(endpoint, photos, 8)
            with Client(endpoint) as c:
                after = c.status()["batches"]
                c.shutdown()
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()

    pings.sort()
    rows = [
        ("cold `ase-mllm critique` process, per image", f"{median_ms(cold):9.1f} ms", ""),
        ("warm daemon, per image (cache bypassed)", f"{median_ms(warm):9.1f} ms",
         f"{statistics.median(cold) / statistics.median(warm):6.1f}x faster  (target >= 20x)"),
        ("warm daemon, stored critique (cache hit)", f"{1000 * cached:9.1f} ms", ""),
        ("ping round trip, median", f"{median_ms(pings):9.3f} ms", "target < 1 ms"),
        ("ping round trip, p99", f"{1000 * pings[int(0.99 * len(pings))]:9.3f} ms", ""),
        ("throughput, 1 client sequential", f"{seq:9.2f} img/s", ""),
        ("throughput, 8 concurrent clients", f"{par:9.2f} img/s",
         f"{par / seq:6.2f}x  (target >= 2x; mean batch {mean_batch(before, after):.2f})"),
    ]
    table(rows)


# ---- worker-only mode (no pyzmq) ----------------------------------------------------------------------------------
def worker_mode(args) -> None:
    from ase_daemon.store import Store
    from ase_daemon.worker import Task, Worker

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = build_model(tmp / "model", args.size)
        photos = [p.read_bytes() for p in make_photos(tmp, args.images)]
        store = Store(tmp / "w.db")
        worker = Worker(model, store, device=args.device, threads=args.threads, max_new_tokens=args.max_new_tokens,
                        max_batch=8, batch_window_ms=20)
        t0 = time.perf_counter()
        worker.start()
        while worker.state not in ("ready", "error"):
            time.sleep(0.01)
        load_s = time.perf_counter() - t0
        if worker.state == "error":
            raise SystemExit(f"load failed: {worker.load_error}")
        device = str(worker.critic.device)
        print(f"model: {args.size} on {device}, {args.images} photos, max_new_tokens {args.max_new_tokens}", flush=True)

        def run(batch: list[bytes]) -> list:
            events = [threading.Event() for _ in batch]
            out = [None] * len(batch)
            for i, data in enumerate(batch):
                def done(o, i=i):
                    out[i] = o
                    events[i].set()
                worker.submit(Task(data=data, force=True, on_done=done))
            for e in events:
                e.wait(600)
            assert all(o is not None and o.ok for o in out), [o.error for o in out if o and not o.ok]
            return out

        run(photos[:1])
        singles = []
        for data in photos:
            t0 = time.perf_counter()
            run([data])
            singles.append(time.perf_counter() - t0)
        seq = len(photos) / sum(singles)
        before = worker.snapshot()["batches"]
        t0 = time.perf_counter()
        for i in range(0, len(photos), 8):
            run(photos[i:i + 8])
        par = len(photos) / (time.perf_counter() - t0)
        after = worker.snapshot()["batches"]
        mem = {}
        if device.startswith("cuda"):
            import torch

            mem["before"] = torch.cuda.memory_allocated() / 2**20
            worker.unload(wait=60)
            mem["after"] = torch.cuda.memory_allocated() / 2**20
        worker.stop()
        store.close()
    rows = [
        ("load + warm-up (static cache compile on CUDA)", f"{load_s:9.1f} s", ""),
        ("warm worker, per image", f"{median_ms(singles):9.1f} ms", ""),
        ("throughput, sequential", f"{seq:9.2f} img/s", ""),
        ("throughput, 8 at once", f"{par:9.2f} img/s",
         f"{par / seq:6.2f}x  (mean batch {mean_batch(before, after):.2f})"),
    ]
    if mem:
        rows.append(("CUDA allocated: loaded -> after unload", f"{mem['before']:7.0f} -> {mem['after']:.0f} MiB", ""))
    table(rows)


def table(rows) -> None:
    w = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{w}}  {value:>18}  {note}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--cold", type=int, default=3, help="cold processes to time")
    p.add_argument("--pings", type=int, default=2000)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = all cores)")
    p.add_argument("--worker-only", action="store_true", help="drive the worker in-process (no pyzmq)")
    p.add_argument("--device", default=None, help="worker-only: cpu | cuda")
    p.add_argument("--serving", action="store_true",
                   help="continuous batching figures on CPU with the starter model (bench/_serving.py)")
    p.add_argument("--slots", type=int, default=8, help="serving: the engine's slots")
    p.add_argument("--burst", type=int, default=500, help="serving: photos in the background job and the burst")
    args = p.parse_args()
    if args.serving:
        from _serving import serving_mode

        serving_mode(args)
    else:
        worker_mode(args) if args.worker_only else daemon_mode(args)


if __name__ == "__main__":
    main()
