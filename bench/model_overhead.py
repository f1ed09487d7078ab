"""ASE-MLLM's cost over the LLaVA it extends, and the RAW fast path — measured side by side in one run.

1. A critique (image encoding + greedy decoding of a fixed number of tokens) with ASE-MLLM (IASM, fusion
   blocks with open gates, score head) against transformers' own LlavaForConditionalGeneration of the same
   shape sharing the same weights (i.e. ASE with IASM and fusion switched off). Target: overhead <= 10%.
2. RAW decoding: the embedded preview against a full demosaic (bench/raw_decode.py). Target: >= 10x.

    .venv/bin/python bench/model_overhead.py [--repeats 7] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ase_model import ASEForConditionalGeneration  # noqa: E402

# A small CPU shape: a ViT-S-like tower at 224 px and a ~30M-parameter decoder.
VISION = dict(model_type="clip_vision_model", hidden_size=384, intermediate_size=1536, num_hidden_layers=8,
              num_attention_heads=6, image_size=224, patch_size=16, projection_dim=256)
TEXT = dict(model_type="llama", hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
            num_key_value_heads=2, vocab_size=4000, max_position_embeddings=1024)
IMAGE_TOKEN = 3999


def build_pair(seed: int = 0):
    torch.manual_seed(seed)
    llava = LlavaForConditionalGeneration(
        LlavaConfig(vision_config=VISION, text_config=TEXT, image_token_index=IMAGE_TOKEN, image_seq_length=196)
    ).eval()
    ase = ASEForConditionalGeneration.from_llava(llava).eval()
    with torch.no_grad():  # open the gates: no shortcut through an all-zero fusion
        for block in ase.model.vision_tower.fusion.values():
            block.gate.fill_(0.5)
    return llava, ase


def time_critique(model, batch, new_tokens: int) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       eos_token_id=None, pad_token_id=0)
    return time.perf_counter() - t0


def bench_models(repeats: int, new_tokens: int) -> dict:
    llava, ase = build_pair()
    g = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.tensor([[1, 10, 11]]), torch.full((1, 196), IMAGE_TOKEN), torch.tensor([[12, 13, 14]])], 1)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "pixel_values": torch.randn(1, 3, 224, 224, generator=g)}
    for model in (llava, ase):  # warm-up
        time_critique(model, batch, 4)
    t_llava, t_ase = [], []
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both alike
        t_llava.append(time_critique(llava, batch, new_tokens))
        t_ase.append(time_critique(ase, batch, new_tokens))
    ml, ma = statistics.median(t_llava), statistics.median(t_ase)
    # The image encoder alone: where IASM and the fusion blocks live.
    pv = batch["pixel_values"]
    v_llava, v_ase = [], []
    with torch.inference_mode():
        for _ in range(repeats * 3):
            t0 = time.perf_counter()
            llava.model.get_image_features(pv)
            v_llava.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ase.model.get_image_features(pv)
            v_ase.append(time.perf_counter() - t0)
    return {"llava_s": ml, "ase_s": ma, "overhead": ma / ml - 1,
            "llava_vision_s": statistics.median(v_llava), "ase_vision_s": statistics.median(v_ase)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    m = bench_models(args.repeats, args.new_tokens)
    import raw_decode

    r = raw_decode.run(repeats=3)
    preview_s, demosaic_s = r["preview_s"], r["demosaic_s"]

    print(f"\nModel overhead: one critique ({args.new_tokens} new tokens, batch 1, CPU, "
          f"{torch.get_num_threads()} threads), median of {args.repeats}")
    print(f"| {'path':34s} | {'time':>10s} | {'ratio':>14s} | target |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 16}|--------|")
    print(f"| {'LLaVA (transformers), same shape':34s} | {m['llava_s'] * 1000:8.1f}ms | {'1.00x':>14s} |        |")
    ok = "ok" if m["overhead"] <= 0.10 else "MISSED"
    print(f"| {'ASE-MLLM (IASM + fusion, gates on)':34s} | {m['ase_s'] * 1000:8.1f}ms | "
          f"{m['ase_s'] / m['llava_s']:13.3f}x | <=1.10 {ok}")
    print(f"| {'image encoder: LLaVA tower':34s} | {m['llava_vision_s'] * 1000:8.1f}ms | {'1.00x':>14s} |        |")
    print(f"| {'image encoder: IAS-ViT (+IASM)':34s} | {m['ase_vision_s'] * 1000:8.1f}ms | "
          f"{m['ase_vision_s'] / m['llava_vision_s']:13.3f}x |        |")
    ok = "ok" if demosaic_s / preview_s >= 10 else "MISSED"
    print(f"| {'RAW: full demosaic':34s} | {demosaic_s * 1000:8.1f}ms | {'1.00x':>14s} |        |")
    print(f"| {'RAW: embedded preview':34s} | {preview_s * 1000:8.1f}ms | "
          f"{demosaic_s / preview_s:12.1f}x faster | >=10x {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
