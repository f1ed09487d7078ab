"""GPU check of decode speed, honest per issue 17: a LLaVA-1.5-7B-shaped ASE-MLLM (random bf16 weights: speed does
not depend on them) on one card, in one run of under 8 minutes, compilation included. Prints a table last.

    python3 bench/gpu_check.py               # on an H100/H200; without CUDA it says so and exits 0
    python3 bench/gpu_check.py --cpu-smoke   # the same code paths with a tiny shape on CPU (< 60 s): a dry run

Rows (prompts of 40 text + 576 image tokens, 128 new tokens, EOS off, >= 5 timed repeats after a warm-up):
  * decode floor per batch size: (LLM weights streamed per step, the embedding table excluded, + the KV cache
    read per step at that batch size) / measured device-to-device copy bandwidth;
  * transformers' generate, eager, b1; static cache (compiled by transformers on CUDA), b1 and b8;
  * the decode engine (ase_model.engine, CUDA graphs per batch bucket) at b1, 2, 4, 8, 16, 32.
ms/token is from decode steps alone: generate(128 new) - generate(1 new) for transformers (the same prefill in
both), the steps after the admitting one for the engine. The worker's whole path (JPEG in, stored critique out,
images/s) is measured separately when ase_daemon imports without pyzmq; otherwise the row says why not.
Imports torch, transformers and ase_model (the worker row: ase_daemon, numpy, Pillow).
Targets on an H100/H200: engine b1 <= 1.4x the floor; b8 >= 1.4x transformers static b8 tok/s; b32 >= 3x it.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

__all__ = []

IMAGE_TOKEN = 32000
VOCAB = 32064  # llava-1.5-7b-hf's padded vocabulary
TEXT_TOKENS = 40

CLIP_L_336 = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
LLAMA_7B = dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, vocab_size=VOCAB, max_position_embeddings=4096,
                rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)
TINY_VISION = dict(CLIP_L_336, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                   image_size=56, patch_size=14)
TINY_LLM = dict(LLAMA_7B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device, gib: float = 2.0) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read and written."""
    n = int(gib * 2**30) // 2
    src = torch.empty(n, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    sync(device)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - t0)
    del src, dst
    return 2 * n * 2 / statistics.median(times)


def word_tokenizer():
    """A word-level tokenizer covering every id of the 7B vocabulary, so any generated id decodes."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({f"w{i}": i for i in range(4, VOCAB)})
    vocab["<image>"] = IMAGE_TOKEN
    del vocab[f"w{IMAGE_TOKEN}"]
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})


@torch.no_grad()
def build_critic(device, dtype, tiny: bool):
    """ASE-MLLM of the LLaVA-1.5-7B shape, random weights made on the device (no 14 GB host init)."""
    from ase_model import ASEConfig, ASEForConditionalGeneration
    from ase_model.critic import Critic
    from ase_model.processing_ase import ASEProcessor, make_image_processor

    vision, text = (TINY_VISION, TINY_LLM) if tiny else (CLIP_L_336, LLAMA_7B)
    config = ASEConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN,
                       image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2)
    with torch.device("meta"):
        model = ASEForConditionalGeneration(config)
    model = model.to(dtype).to_empty(device=device)
    for name, p in model.named_parameters():
        if name.endswith(".gate"):
            p.fill_(0.5)  # open: the fusion blocks do real work
        elif p.ndim == 1:
            p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
        else:
            p.normal_(0.0, 0.02)
    for name, module in list(model.named_modules()):  # non-persistent buffers: rebuild them on the device
        if "RotaryEmbedding" in type(module).__name__:
            parent, attr = name.rsplit(".", 1)
            setattr(model.get_submodule(parent), attr, type(module)(module.config).to(device))
    for name, b in model.named_buffers():
        if name.endswith("position_ids"):
            b.copy_(torch.arange(b.shape[-1], device=device).expand_as(b))
    model.lm_head.weight[2].zero_()  # EOS logit pinned at 0: random weights then never stop early
    model.eval()
    tokenizer = word_tokenizer()
    processor = ASEProcessor(
        image_processor=make_image_processor(vision["image_size"], [0.48145466, 0.4578275, 0.40821073],
                                             [0.26862954, 0.26130258, 0.27577711]),
        tokenizer=tokenizer,
        num_image_tokens=config.image_seq_length,
    )
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    return Critic(model, processor, "llava-1.5-7b-shape@random", static_cache=device.type == "cuda", engine=False)


def jpeg(seed: int, size: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def run_worker(worker, n: int, seed: int, size: int) -> tuple[float, list[dict]]:
    """n requests in flight at once through the worker; wall time and results."""
    from ase_daemon.worker import Task

    done = threading.Semaphore(0)
    results: list[dict] = []
    errors: list[str] = []

    def finished(outcome):
        (results.append(outcome.result.to_dict()) if outcome.ok else errors.append(str(outcome.error)))
        done.release()

    images = [jpeg(seed + i, size) for i in range(n)]
    t0 = time.perf_counter()
    for data in images:
        worker.submit(Task(data=data, force=True, on_done=finished))
    for _ in images:
        done.acquire()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"worker errors: {errors[:2]}")
    return wall, results



def timed(fn, device, repeats: int) -> float:
    """Median seconds of fn() over `repeats` runs after one untimed warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def prompt(critic, device, seed: int):
    """ids [T] (bos, image tokens, text) and image features [1, n, hidden] of one random image."""
    model = critic.model
    g = torch.Generator().manual_seed(seed)
    size = model.config.vision_config.image_size
    pixels = torch.rand(1, 3, size, size, generator=g).to(device, next(model.parameters()).dtype)
    with torch.inference_mode():
        feats = model.get_image_features(pixels).image_features
    text = torch.randint(4, IMAGE_TOKEN, (TEXT_TOKENS - 1,), generator=g)
    ids = torch.cat([torch.tensor([1]), torch.full((feats.shape[1],), IMAGE_TOKEN), text]).to(device)
    return ids, feats


def generate_s(model, prompts, new_tokens: int, static: bool):
    """A closure running transformers' generate over the batch (EOS off, exactly new_tokens)."""
    from ase_model.modeling_ase import ASEImageOutput

    ids = torch.stack([p[0] for p in prompts])  # equal lengths: no padding
    feats = torch.cat([p[1] for p in prompts])
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
              pad_token_id=0, cache_implementation="static" if static else None)

    def run():
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                           mm_encoder_outputs={"image": ASEImageOutput(image_features=feats)}, **kw)
    return run


def transformers_row(model, prompts, new_tokens, static, device, repeats):
    """ms per decode step (generate(new) - generate(1), over new-1 steps) and tok/s."""
    full = timed(generate_s(model, prompts, new_tokens, static), device, repeats)
    one = timed(generate_s(model, prompts, 1, static), device, repeats)
    ms = 1000 * (full - one) / (new_tokens - 1)
    return ms, len(prompts) * 1000 / ms


def engine_row(engine, prompts, new_tokens, device, repeats):
    """ms per decode step of the engine at len(prompts) requests, from the steps after the admitting one."""
    from ase_model.engine import Request

    def once():
        for ids, feats in prompts:
            engine.submit(Request(ids, feats, max_new_tokens=new_tokens))
        engine.step()  # admits (one batched prefill) and runs the first decode step
        sync(device)
        t0 = time.perf_counter()
        steps = 0
        while engine.active or engine.queue:
            engine.step()
            steps += 1
        sync(device)
        engine.finished.clear()
        return (time.perf_counter() - t0) / steps

    once()
    ms = 1000 * statistics.median(once() for _ in range(repeats))
    return ms, len(prompts) * 1000 / ms


def worker_row(critic, device, new_tokens: int, n: int = 8):
    """images/s of the daemon worker's whole path with n requests in flight, or the reason it was not measured."""
    try:
        from ase_daemon.store import Store
        from ase_daemon.worker import Worker
    except ImportError as e:  # e.g. pyzmq missing
        return f"not measured: {e}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            worker = Worker(None, Store(Path(tmp) / "store.sqlite3"), critic_factory=lambda: critic, max_batch=n,
                            max_new_tokens=new_tokens)
            worker.start()
            while worker.state != "ready":
                if worker.state == "error":
                    raise RuntimeError(worker.load_error)
                time.sleep(0.2)
            run_worker(worker, n, seed=7, size=critic.processor.image_size())  # warm
            wall, _ = run_worker(worker, n, seed=8, size=critic.processor.image_size())
            worker.stop()
        return f"{n / wall:.2f} images/s ({n} in flight)"
    except Exception as e:  # the worker's API is not this check's subject: report, do not fail the run
        return f"not measured: {type(e).__name__}: {e}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shape on CPU: checks the code paths, not speed")
    ap.add_argument("--new-tokens", type=int, default=None, help="default 128 (8 with --cpu-smoke)")
    ap.add_argument("--repeats", type=int, default=None, help="default 5 (2 with --cpu-smoke)")
    args = ap.parse_args(argv)
    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing measured (use --cpu-smoke for a dry run of the code paths)")
        return 0
    device = torch.device("cpu" if smoke else "cuda")
    if smoke:
        torch.set_num_threads(1)  # a shared CPU: threads only add contention to a dry run
    dtype = torch.float32 if smoke else torch.bfloat16
    new_tokens = args.new_tokens or (8 if smoke else 128)
    repeats = args.repeats or (2 if smoke else 5)
    batches = [b for b in (1, 2, 4, 8, 16, 32) if not smoke or b <= 4]
    import transformers

    from ase_model.engine import DecodeEngine

    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (tiny shape: a dry run, not a speed)"
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, {name}")
    t_start = time.perf_counter()
    bw = copy_bandwidth(device, 0.25 if smoke else 2.0)
    critic = build_critic(device, dtype, smoke)
    model = critic.model
    lm = model.model.language_model
    # streamed per step: every LLM weight but the embedding table (one row of it is read), plus lm_head
    weights = sum(p.numel() * p.element_size() for n_, p in lm.named_parameters() if "embed_tokens" not in n_)
    weights += model.lm_head.weight.numel() * model.lm_head.weight.element_size()
    prompts = [prompt(critic, device, 100 + i) for i in range(max(batches))]
    T = prompts[0][0].numel()
    cfg = model.config.text_config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_per_seq = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * (T + new_tokens // 2) * 2
    floor = {b: 1000 * (weights + b * kv_per_seq) / bw for b in batches}
    log(f"copy {bw / 1e12:.2f} TB/s; LLM weights/step {weights / 1e9:.2f} GB; prompt {T} tokens; "
        f"floor b1 {floor[1]:.2f} ms")

    rows = []
    t0 = time.perf_counter()
    eager = transformers_row(model, prompts[:1], new_tokens, False, device, max(2, repeats // 2))
    rows.append(("transformers eager b1", eager, 1, False))
    log(f"transformers eager b1: {eager[0]:.2f} ms/token ({time.perf_counter() - t0:.0f} s)")
    for b in (1, 8) if not smoke else (1, 2):
        t0 = time.perf_counter()
        r = transformers_row(model, prompts[:b], new_tokens, True, device, repeats)
        rows.append((f"transformers static cache{' + compile' if not smoke else ''} b{b}", r, b, False))
        log(f"transformers static b{b}: {r[0]:.2f} ms/step, {r[1]:.0f} tok/s ({time.perf_counter() - t0:.0f} s)")
    static8 = rows[-1][1][1]

    t0 = time.perf_counter()
    engine = DecodeEngine(model, slots=max(batches), max_len=-(-(T + new_tokens) // 64) * 64, eos_token_id=-1)
    engine.warmup()
    capture_s = time.perf_counter() - t0
    log(f"engine built and warmed (CUDA graphs: {engine.static is not None and engine.static.capture}) "
        f"in {capture_s:.1f} s")
    for b in batches:
        t0 = time.perf_counter()
        r = engine_row(engine, prompts[:b], new_tokens, device, repeats)
        rows.append((f"engine b{b}", r, b, True))
        log(f"engine b{b}: {r[0]:.2f} ms/step, {r[1]:.0f} tok/s ({time.perf_counter() - t0:.0f} s)")
    del engine
    whole = worker_row(critic, device, new_tokens)
    total = time.perf_counter() - t_start

    print(f"\nGPU check - {name}; LLaVA-1.5-7B shape{' (tiny)' if smoke else ''}, {dtype}, prompt {T} tokens "
          f"({TEXT_TOKENS} text), {new_tokens} new, {repeats} repeats; total {total:.0f} s (target < 480 s)")
    print(f"copy bandwidth {bw / 1e12:.2f} TB/s; weights streamed per step {weights / 1e9:.2f} GB; "
          f"engine warm-up (graph capture) {capture_s:.1f} s")
    print("| path | ms/token (decode step) | tok/s | x floor | target |")
    print("|---|---|---|---|---|")
    for b, ms in floor.items():
        print(f"| decode floor b{b} (weights + KV) | {ms:.2f} | {b * 1000 / ms:.0f} | 1.00 | |")
    for label, (ms, tps), b, ours in rows:
        fl = 1000 * (weights + b * kv_per_seq) / bw
        target = ""
        if not ours:
            pass
        elif b == 1:
            target = f"<= 1.4x floor: {'ok' if ms <= 1.4 * fl else 'MISSED'}"
        elif b in (8, 32) and not smoke:
            k = 1.4 if b == 8 else 3.0
            target = f">= {k}x transformers static b8 tok/s: {'ok' if tps >= k * static8 else 'MISSED'}"
        print(f"| {label} | {ms:.2f} | {tps:.0f} | {ms / fl:.2f} | {target} |")
    print(f"| worker whole path | {whole} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
