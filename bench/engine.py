"""The decode engine vs transformers' greedy generate on CPU, starter model, critique-sized requests, b1 and b8.

Run: nice -n 15 .venv/bin/python bench/engine.py
"""

from __future__ import annotations

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


def main() -> None:
    torch.set_num_threads(1)
    model = ASEForConditionalGeneration.from_pretrained(STARTER, torch_dtype=torch.float32).eval()
    n = DEFAULT_MAX_NEW_TOKENS
    prompts = [_prompt(model, 12 + i, 100 + i) for i in range(8)]
    _generate(model, *prompts[0], 4)  # warm both paths once
    DecodeEngine(model, slots=1, max_len=256).submit(Request(*prompts[0], max_new_tokens=4))
    print(f"starter model, CPU, 1 thread, max_new_tokens={n}")
    print(f"{'batch':>5} {'generate ms/req':>16} {'engine ms/req':>14} {'engine ms/token':>16} {'ratio':>6} same")
    for b in (1, 8):
        t0 = time.perf_counter()
        want = [_generate(model, ids, feats, n) for ids, feats in prompts[:b]]  # generate one by one (b1 path)
        if b > 1:  # transformers at b8: a batch of equal-length prompts (left padding would change nothing here)
            t0 = time.perf_counter()
            _batch_generate(model, prompts[:b], n)
        t_gen = time.perf_counter() - t0
        engine = DecodeEngine(model, slots=8, max_len=1024)
        t1 = time.perf_counter()
        handles = [engine.submit(Request(ids, feats, max_new_tokens=n)) for ids, feats in prompts[:b]]
        steps, t_steps = 0, 0.0
        while engine.queue or engine.active:
            s0 = time.perf_counter()
            engine.step()
            t_steps += time.perf_counter() - s0 if steps else 0.0  # step 0 holds the prefills
            steps += 1
        t_eng = time.perf_counter() - t1
        got = [engine.finished[h].tokens for h in handles]
        same = got == want
        per_req_gen, per_req_eng = 1000 * t_gen / b, 1000 * t_eng / b
        print(f"{b:>5} {per_req_gen:>16.1f} {per_req_eng:>14.1f} {1000 * t_steps / max(steps - 1, 1):>16.2f} "
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
