"""The serial parts of `ase-mllm critique --distributed` at archive scale: shard writes, shard reads, rank 0's merge.

    python bench/critique_merge.py [--frames 20000] [--ranks 8] [--batch 8] [--dir PATH]

No model runs: the lines are what the ranks write (daemon/critique_shards.py), with realistic records (a critique
of about 600 characters, attributes, tags, timings, a 24x24 saliency PNG), written by `--ranks` ShardWriters a
batch at a time (one write, flush and fsync per batch, as the ranks do). Then timed, as the command runs them:

* every rank's start: read_shards + ShardIndex over every line (what a resumed run reads before it starts);
* rank 0's merge (critique_distributed._merge): the index, the store's writes (save_batch, 256 a transaction,
  the daemon's schema and library index) and the records printed as jsonl (to /dev/null).

What it says: with G GPUs at R images/s each the critique phase takes frames / (G x R); the merge adds
frames / (merge rate) at the end on one process, whatever G is.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase_daemon.contract import encode_saliency
from ase_daemon.critique_distributed import _merge
from ase_daemon.critique_shards import KIND_CRITIQUE, ShardIndex, ShardWriter, encode_png, read_shards
from ase_daemon.store import Store

from ase_model.folders import Frame

MODEL, MNT = "bench@0000000000000000", 160
SENTENCES = ("The horizon sits on the upper third.", "The subject is sharp and well separated.",
             "The shadows are crushed and the frame reads too dark.", "Highlights in the sky are clipped.",
             "The colour is natural with a warm cast.", "The background is cluttered and pulls the eye.",
             "Soft side light models the face.", "Motion blur softens the subject.")
ATTRS = ("composition", "colour_and_lighting", "exposure", "focus", "subject", "depth_of_field",
         "general_impression")


def record(i: int, rng: random.Random) -> tuple[dict, float, str]:
    attributes = {a: " ".join(rng.sample(SENTENCES, 2)) for a in ATTRS}
    text = "\n".join(f"{a.replace('_', ' ').capitalize()}: {t}" for a, t in attributes.items())
    score = rng.gauss(5.5, 1.2)
    h = hashlib.sha256(f"photo {i}".encode()).hexdigest()
    png = encode_saliency(np.random.default_rng(i).random((24, 24)))
    return ({"image": f"/archive/{i // 500:04d}/IMG_{i:06d}.jpg", "text": text, "attributes": attributes,
             "score": round(score, 3), "tags": [f"aesthetics|exposure|{rng.choice(('under', 'over', 'good'))}"],
             "model": MODEL, "timings": {"total_ms": 180.0, "batch": 8}, "hash": h, "cached": False,
             "saliency_summary": {"centroid": [0.5, 0.5], "peak": [0.4, 0.3], "spread": 0.4}}, score, encode_png(png))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dir", help="where the shards and the store go (default: a temporary folder)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="critique-merge-"))
    shards, db = root / "shards", root / "store.db"
    rng = random.Random(0)
    lines = [record(i, rng) for i in range(args.frames)]
    frames = [Frame(Path(rec["image"])) for rec, _, _ in lines]

    t0 = time.perf_counter()
    writers = [ShardWriter(shards, r, "bench") for r in range(args.ranks)]
    for r, w in enumerate(writers):
        mine = lines[r::args.ranks]
        for b in range(0, len(mine), args.batch):
            for rec, score, png in mine[b:b + args.batch]:
                w.add({"model": MODEL, "max_new_tokens": MNT, "image": rec["image"], "hash": rec["hash"],
                       "kind": KIND_CRITIQUE, "record": rec, "score": score, "png": png})
            w.flush()
        w.close()
    t_write = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in shards.glob("rank-*.jsonl"))

    t0 = time.perf_counter()
    index = ShardIndex(read_shards(shards), MODEL, MNT)
    t_read = time.perf_counter() - t0
    assert len(index.by_hash) == args.frames

    store = Store(db)
    margs = argparse.Namespace(json=False, format="jsonl", saliency_dir=None)
    t0 = time.perf_counter()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        status = _merge(margs, shards, frames, {}, "bench", store, MODEL, MNT, None, "bench")
    t_merge = time.perf_counter() - t0
    assert status == 0 and store.count_critiques(MODEL) == args.frames
    store.close()

    n = args.frames
    print(f"{n} frames, {args.ranks} ranks, batch {args.batch}: shards {size / 2**20:.1f} MiB "
          f"({size / n / 1024:.2f} KiB a frame)")
    print("| step | time | per frame | frames/s |\n|---|---|---|---|")
    for name, t in (("ranks write their shards (fsync a batch; all ranks, serially here)", t_write),
                    ("a rank reads every shard line at its start", t_read),
                    ("rank 0 merges: index, store, jsonl out", t_merge)):
        print(f"| {name} | {t:.2f} s | {1000 * t / n:.3f} ms | {n / t:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
