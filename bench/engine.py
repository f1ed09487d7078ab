"""The decode engine vs transformers' greedy generate on CPU, starter model, critique-sized requests, b1 and b8.

Run: nice -n 15 .venv/bin/python bench/engine.py [--repeats 3]

Each figure is the best of `--repeats` interleaved runs (the cores are shared: the minimum is the least disturbed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_engine import STARTER, _generate, _prompt  # noqa: E402

from ase_model.critic import DEFAULT_MAX_NEW_TOKENS  # noqa: E402
from ase_model.engine import DecodeEngine, Request  # noqa: E402
from ase_model.modeling_ase import ASEForConditionalGeneration  # noqa: E402

__all__ = []


def _engine_run(model, prompts, n):
    engine = DecodeEngine(model, slots=8, max_len=1024)
    t1 = time.perf_counter()
    handles = [engine.submit(Request(ids, feats, max_new_tokens=n)) for ids, feats in prompts]
    steps, t_steps = 0, 0.0
    while engine.queue or engine.active:
        s0 = time.perf_counter()
        engine.step()
        t_steps += time.perf_counter() - s0 if steps else 0.0  # step 0 holds the prefills
        steps += 1
    return time.perf_counter() - t1, t_steps / max(steps - 1, 1), [engine.finished[h].tokens for h in handles]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = ASEForConditionalGeneration.from_pretrained(STARTER, torch_dtype=torch.float32).eval()
    n = DEFAULT_MAX_NEW_TOKENS
    prompts = [_prompt(model, 12 + i, 100 + i) for i in range(8)]
    _generate(model, *prompts[0], 4)  # warm both paths once
    _engine_run(model, prompts[:1], 4)
    print(f"starter model, CPU, 1 thread, max_new_tokens={n}, best of {args.repeats}")
    print(f"{'batch':>5} {'generate ms/req':>16} {'engine ms/req':>14} {'engine ms/token':>16} {'ratio':>6} same")
    for b in (1, 8):
        t_gen, t_eng, t_tok, same = float("inf"), float("inf"), float("inf"), True
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            if b == 1:
                want = [_generate(model, *prompts[0], n)]
            else:  # transformers at b8: one batch (left-padded)
                want = [_generate(model, ids, feats, n) for ids, feats in prompts[:b]] if _ == 0 else want
                t0 = time.perf_counter()
                _batch_generate(model, prompts[:b], n)
            t_gen = min(t_gen, time.perf_counter() - t0)
            total, per_step, got = _engine_run(model, prompts[:b], n)
            t_eng, t_tok, same = min(t_eng, total), min(t_tok, per_step), same and got == want
        per_req_gen, per_req_eng = 1000 * t_gen / b, 1000 * t_eng / b
        print(f"{b:>5} {per_req_gen:>16.1f} {per_req_eng:>14.1f} {1000 * t_tok:>16.2f} "
              f"{per_req_gen / per_req_eng:>6.2f} {same}")


def _batch_generate(model, prompts, n):
    from ase_model.modeling_ase import ASEImageOutput

    ids = torch.nn.utils.rnn.pad_sequence([p[0].flip(0) for p in prompts], batch_first=True).flip(1)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(p[0]).flip(0) for p in prompts], batch_first=True).flip(1)
    feats = torch.cat([p[1] for p in prompts])
    with torch.inference_mode():
        image = {"image": ASEImageOutput(image_features=feats)}
        model.generate(input_ids=ids, attention_mask=mask, mm_encoder_outputs=image,
                       max_new_tokens=n, do_sample=False, pad_token_id=0)


if __name__ == "__main__":
    main()
