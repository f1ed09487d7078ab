"""GPU check: a LLaVA-1.5-7B-shaped ASE-MLLM served through the daemon's worker, against the decode floor and
transformers' own static-cache LLaVA generate on the same card. One self-contained run; prints a table last.

    python3 bench/gpu_check.py                 # on an H100/H200 (random bf16 weights: speed does not depend on them)
    python3 bench/gpu_check.py --tiny          # the same code path on CPU with a tiny shape (a dry run)

Measures
  * decode floor: bytes of the LLM's weights / measured device-to-device copy bandwidth (each decode step must
    read every weight once, so no batch-1 decoder can beat it);
  * ms per generated token at batch 1 and 8 through the worker (static KV cache, compiled decode = CUDA graphs);
  * images/s with 8 requests in flight through the worker (dynamic batching), and the same with transformers'
    LlavaForConditionalGeneration.generate(cache_implementation="static") at batch 8 on the same weights.
Targets: batch-1 decode <= 1.3x the floor; worker batch-8 images/s >= transformers' static-cache generate.
Needs torch, transformers (>= 5.24), Pillow, numpy; NOT pyzmq (the worker is transport-free).
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

IMAGE_TOKEN = 32000
VOCAB = 32064  # llava-1.5-7b-hf's padded vocabulary

CLIP_L_336 = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
LLAMA_7B = dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, vocab_size=VOCAB, max_position_embeddings=4096,
                rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)
TINY_VISION = dict(CLIP_L_336, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
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


@torch.no_grad()
def prefill_ms(critic, batch: int, size: int, device) -> float:
    """One uncompiled forward over the prompt (what generate's first step does), in ms."""
    images = [Image.open(io.BytesIO(jpeg(100 + i, size))).convert("RGB") for i in range(batch)]
    inputs = critic.processor(images=images, text=[critic.processor.build_prompt()] * batch).to(device)
    times = []
    for _ in range(3):
        sync(device)
        t0 = time.perf_counter()
        critic.model(**inputs, logits_to_keep=1)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), inputs


def llava_twin(critic):
    """transformers' own LlavaForConditionalGeneration around the very same modules (no copy)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    c = critic.model.config
    lc = LlavaConfig(vision_config=c.vision_config.to_dict(), text_config=c.text_config.to_dict(),
                     image_token_index=c.image_token_index, image_seq_length=c.image_seq_length)
    with torch.device("meta"):
        llava = LlavaForConditionalGeneration(lc)
    llava.model.vision_tower = critic.model.model.vision_tower.vision_model
    llava.model.multi_modal_projector = critic.model.model.multi_modal_projector
    llava.model.language_model = critic.model.model.language_model
    llava.lm_head = critic.model.lm_head
    llava.generation_config = critic.model.generation_config
    return llava.eval()


@torch.no_grad()
def llava_images_per_s(llava, inputs, new_tokens: int, device, repeats: int = 2) -> float:
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0,
              cache_implementation="static" if device.type == "cuda" else None)
    llava.generate(**inputs, **kw)  # compile + CUDA graph capture
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        llava.generate(**inputs, **kw)
        sync(device)
        times.append(time.perf_counter() - t0)
    return inputs["input_ids"].shape[0] / statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shape on CPU: checks the code path, not the speed")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    import transformers

    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device "
        f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    t_start = time.perf_counter()
    bw = copy_bandwidth(device, 0.25 if args.tiny else 2.0)
    log(f"device-to-device copy: {bw / 1e12:.2f} TB/s")

    critic = build_critic(device, dtype, args.tiny)
    llm_bytes = sum(p.numel() * p.element_size() for m in (critic.model.model.language_model, critic.model.lm_head)
                    for p in m.parameters())
    floor_ms = 1000 * llm_bytes / bw
    log(f"built the model: LLM {llm_bytes / 1e9:.2f} GB -> decode floor {floor_ms:.2f} ms/token")

    from ase_daemon.store import Store
    from ase_daemon.worker import Worker

    size = critic.processor.image_size()
    with tempfile.TemporaryDirectory() as tmp:
        worker = Worker(None, Store(Path(tmp) / "store.sqlite3"), critic_factory=lambda: critic,
                        max_batch=args.batch, batch_window_ms=30, max_new_tokens=args.new_tokens,
                        warmup_batch_sizes=[1, args.batch])
        t0 = time.perf_counter()
        worker.start()
        while worker.state != "ready":
            if worker.state == "error":
                raise RuntimeError(worker.load_error)
            time.sleep(0.2)
        warm_s = time.perf_counter() - t0
        log(f"worker ready (warm-up incl. compile for batch 1 and {args.batch}: {warm_s:.1f} s)")

        pre1, _ = prefill_ms(critic, 1, size, device)
        preN, inputsN = prefill_ms(critic, args.batch, size, device)
        rows = {}
        for n, pre in ((1, pre1), (args.batch, preN)):
            walls, per_token = [], []
            for rep in range(3):
                wall, results = run_worker(worker, n, seed=1000 * n + 10 * rep, size=size)
                walls.append(wall)
                t = results[0]["timings"]
                per_token.append((t["generate_ms"] - pre) / max(1, t["new_tokens"] / n - 1))
            rows[n] = {"wall_s": statistics.median(walls), "ms_per_token": statistics.median(per_token),
                       "new_tokens": results[0]["timings"]["new_tokens"] // n, "batch": results[0]["timings"]["batch"]}
            log(f"worker batch {n}: {rows[n]}")
        snap = worker.snapshot()
        worker.stop()

    llava = llava_twin(critic)
    llava_ips = llava_images_per_s(llava, inputsN, args.new_tokens, device)
    worker_ips = args.batch / rows[args.batch]["wall_s"]
    total_s = time.perf_counter() - t_start

    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (tiny shape: a dry run)"
    b1 = rows[1]["ms_per_token"]
    print(f"\nGPU check — {device_name}; ASE-MLLM, LLaVA-1.5-7B shape (CLIP ViT-L/14-336 + Llama-7B), bf16, "
          f"{args.new_tokens} new tokens, static cache + compiled decode; total {total_s:.0f} s")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| D2D copy bandwidth | {bw / 1e12:.2f} TB/s | |")
    print(f"| decode floor (LLM {llm_bytes / 1e9:.1f} GB / bandwidth) | {floor_ms:.2f} ms/token | |")
    print(f"| batch 1: ms per generated token (worker) | {b1:.2f} ms ({b1 / floor_ms:.2f}x floor) | <= 1.3x floor: "
          f"{'ok' if b1 <= 1.3 * floor_ms else 'MISSED'} |")
    print(f"| batch {args.batch}: ms per decode step (worker) | {rows[args.batch]['ms_per_token']:.2f} ms | |")
    print(f"| prefill (image + prompt) batch 1 / {args.batch} | {pre1:.1f} / {preN:.1f} ms | |")
    print(f"| images/s, 1 request (worker) | {1 / rows[1]['wall_s']:.2f} | |")
    print(f"| images/s, {args.batch} in flight (worker, batches of {rows[args.batch]['batch']}) | {worker_ips:.2f} | "
          f">= transformers: {'ok' if worker_ips >= llava_ips else 'MISSED'} |")
    print(f"| images/s, transformers LLaVA generate, static cache, batch {args.batch} | {llava_ips:.2f} | |")
    print(f"| worker warm-up (load + compile, batch 1 and {args.batch}) | {warm_s:.0f} s | |")
    print(f"| worker stats | batches {snap['batches']['count']}, max size {snap['batches']['max_size']} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
