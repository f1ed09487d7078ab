"""The trainer: it learns (overfit), resumes exactly, runs under `accelerate launch` with 2 processes, and each
stage trains what it should and nothing else."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ase_model.testing import TINY_CRITIQUES as CRITIQUES
from ase_model.testing import build_caption_model as build_model
from ase_model.testing import write_caption_set
from ase_model.training import TrainArgs, parse_args, saliency_loss, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def captions(tmp_path_factory) -> Path:
    return write_caption_set(tmp_path_factory.mktemp("captions"), with_saliency=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny"))


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def args(tiny: Path, data: Path | str, out: Path, **kw) -> dict:
    spec = data if isinstance(data, str) else f"jsonl:{data}"
    return dict(model=str(tiny), data=[spec], out=str(out), progress=False, **kw)


# ---------------------------------------------------------------------------------------------------------
# it learns


def test_overfit_reproduces_training_critiques(captions, tmp_path):
    from ase_model.critic import Critic

    model_dir = build_model(tmp_path / "base", hidden=64)
    t0 = time.perf_counter()
    result = train(args(model_dir, captions, tmp_path / "run", stage="finetune", full=True, max_steps=100,
                        batch_size=8, lr=5e-3, new_lr=5e-3, log_every=1, cache_images=True))
    elapsed = time.perf_counter() - t0
    lines = log_lines(tmp_path / "run")
    first, last = lines[0]["lm"], lines[-1]["lm"]
    print(f"overfit: LM loss {first:.3f} -> {last:.4f} ({100 * (1 - last / first):.1f}% lower) in {elapsed:.1f} s")
    assert last <= 0.2 * first
    assert result["model_dir"] == str(tmp_path / "run")
    assert (tmp_path / "run" / "training_args.json").exists()
    assert {"step", "loss", "lm", "score", "lr", "samples_per_s"} <= set(lines[-1])

    critic = Critic.from_pretrained(tmp_path / "run")
    outs = critic.critique([captions / "images" / f"{i}.png" for i in range(len(CRITIQUES))], max_new_tokens=40)
    exact = [o.text == ref for o, ref in zip(outs, CRITIQUES)]
    print(f"overfit: {sum(exact)}/{len(exact)} critiques reproduced word for word")
    assert sum(exact) >= 7, [o.text for o in outs]


# ---------------------------------------------------------------------------------------------------------
# checkpoints


def test_resume_matches_an_uninterrupted_run(tiny, captions, tmp_path):
    # LoRA with dropout and pseudo-saliency labels: the checkpoint must carry adapters, optimiser, scheduler, RNG
    # (dropout masks) and the data position (the stop falls mid-epoch, mid-way through the schedule).
    common = dict(stage="finetune", lora_r=4, lora_dropout=0.1, max_steps=6, batch_size=2, grad_accum=2, lr=1e-2,
                  warmup_ratio=0.2, log_every=1, seed=3, pseudo_saliency=True)
    train(args(tiny, captions, tmp_path / "straight", **common))
    stopped = train(args(tiny, captions, tmp_path / "resumed", save_every=2, stop_after_steps=3, **common))
    assert stopped["model_dir"] is None and stopped["steps"] == 3
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["step-2", "step-3"]
    resumed = train(args(tiny, captions, tmp_path / "resumed", save_every=2, resume="latest", **common))
    assert resumed["steps"] == 6 and resumed["model_dir"]

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and not any("lora" in k for k in a)
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"resume: max |w_straight - w_resumed| = {diff:.3g}")
    assert diff < 1e-6
    straight_log, resumed_log = log_lines(tmp_path / "straight"), log_lines(tmp_path / "resumed")
    assert [r["step"] for r in resumed_log] == list(range(1, 7))
    assert [r["ids"] for r in straight_log] == [r["ids"] for r in resumed_log]  # same data order
    assert [r["loss"] for r in straight_log] == pytest.approx([r["loss"] for r in resumed_log], abs=1e-6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(tiny, captions, tmp_path):
    from ase_model.critic import Critic

    out = tmp_path / "ddp"
    launcher = Path(sys.executable).with_name("accelerate")
    # `accelerate launch --cpu` starts ONE process unless MPI is set up (accelerate 1.x); --multi_gpu starts torchrun's
    # N processes, and on a machine without GPUs the trainer asks accelerate for a gloo CPU group.
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", "ase_model.training",
           "--model", str(tiny), "--data", f"jsonl:{captions}", "--out", str(out), "--stage", "finetune",
           "--max-steps", "3", "--batch-size", "2", "--lr", "1e-3", "--log-every", "1", "--save-every", "2",
           "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"2-process accelerate launch: {elapsed:.1f} s")
    result = json.loads((out / "train_result.json").read_text())
    assert result["steps"] == 3 and result["samples"] == 3 * 2 * 2  # 2 processes x batch 2 per step
    assert json.loads((out / "training_args.json").read_text())["num_processes"] == 2
    assert (out / "checkpoints" / "step-2" / "random_states_1.pkl").exists()  # each process's RNG state
    [c] = Critic.from_pretrained(out).critique([captions / "images" / "0.png"], max_new_tokens=5)
    assert isinstance(c.text, str) and 0 <= c.score <= 10


# ---------------------------------------------------------------------------------------------------------
# stages


def test_align_trains_new_modules_only(tiny, captions, tmp_path):
    train(args(tiny, captions, tmp_path / "align", stage="align", max_steps=4, batch_size=4, lr=1e-2,
               pseudo_saliency=True))
    before, after = weights(tiny), weights(tmp_path / "align")
    assert before.keys() == after.keys()
    frozen = [k for k in before
              if k.startswith(("model.language_model.", "lm_head.", "model.vision_tower.vision_model."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    gates = [k for k in before if k.endswith(".gate")]
    assert gates and all(not torch.equal(before[k], after[k]) for k in gates)
    for prefix in ("model.vision_tower.iasm.", "model.multi_modal_projector.", "model.score_head."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix


def test_finetune_lora_changes_the_merged_llm(tiny, captions, tmp_path):
    result = train(args(tiny, captions, tmp_path / "lora", stage="finetune", lora_r=4, max_steps=3, batch_size=4,
                        lr=1e-2, lora_targets="q_proj,v_proj"))
    before, after = weights(tiny), weights(tmp_path / "lora")
    assert before.keys() == after.keys()  # adapters merged away: a plain ASE-MLLM
    changed = lambda pred: {k for k in before if pred(k) and not torch.equal(before[k], after[k])}  # noqa: E731
    llm = changed(lambda k: k.startswith("model.language_model."))
    assert llm and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in llm)
    assert not changed(lambda k: k.startswith("model.vision_tower.vision_model."))
    # only adapters and the new modules were trained
    assert result["trainable_parameters"] < sum(v.numel() for v in before.values()) / 2


@pytest.mark.parametrize("flag,frozen,trained", [
    ("freeze_vision", ("model.vision_tower.vision_model.",),
     ("model.language_model.", "model.vision_tower.iasm.", "model.vision_tower.fusion.",
      "model.multi_modal_projector.")),
    ("freeze_tower", ("model.vision_tower.",), ("model.language_model.", "model.multi_modal_projector.")),
])
def test_full_finetune_with_a_frozen_encoder(tiny, captions, tmp_path, flag, frozen, trained):
    a = parse_args(["--model", "m", "--data", "jsonl:a", "--out", "o", "--full", "--" + flag.replace("_", "-")])
    assert a.full and getattr(a, flag)
    train(args(tiny, captions, tmp_path / flag, stage="finetune", full=True, max_steps=3, batch_size=4, lr=1e-2,
               **{flag: True}))
    before, after = weights(tiny), weights(tmp_path / flag)
    changed = lambda prefix: any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))  # noqa: E731
    for prefix in frozen:
        assert not changed(prefix), prefix
    for prefix in trained:
        assert changed(prefix), prefix


def blob_dataset(root: Path, n: int = 16, size: int = 32) -> str:
    """Dark images with one bright Gaussian blob; the fixation map is the blob itself."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "maps").mkdir()
    ys, xs = np.mgrid[0:size, 0:size]
    for i in range(n):
        cx, cy = rng.uniform(6, size - 6, 2)
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 3.0 ** 2))
        rgb = (20 + 220 * blob[..., None] * np.array([1.0, 0.9, 0.6])).astype(np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"{i}.png")
        Image.fromarray((255 * blob).astype(np.uint8)).save(root / "maps" / f"{i}.png")
    return f"folder:{root / 'images'},{root / 'maps'}"


def mean_kl(model_dir: Path, spec: str) -> float:
    from ase_model.data import load_saliency, read_fixation_map
    from ase_model.imageio import load_image
    from ase_model.modeling_ase import ASEForConditionalGeneration
    from ase_model.processing_ase import ASEProcessor
    from ase_model.training import saliency_target

    model = ASEForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = ASEProcessor.from_pretrained(model_dir)
    samples, _ = load_saliency(spec, "train")
    pixels = processor.process_images([load_image(s.image) for s in samples])["pixel_values"]
    with torch.no_grad():
        _, logits, _ = model.model.vision_tower.iasm(pixels)
    targets = torch.stack([torch.from_numpy(saliency_target(read_fixation_map(s.saliency_map), logits.shape[-2:]))
                           for s in samples])
    return saliency_loss(logits, targets)["kl"].item()


def test_saliency_stage_learns_fixation_maps(tiny, tmp_path):
    spec = blob_dataset(tmp_path / "blobs")
    result = train(args(tiny, spec, tmp_path / "sal", stage="saliency", max_steps=60, batch_size=8, lr=1e-2))
    before, after = mean_kl(tiny, spec), mean_kl(tmp_path / "sal", spec)
    print(f"saliency stage: KL {before:.3f} -> {after:.3f}")
    assert after < 0.5 * before
    w0, w1 = weights(tiny), weights(tmp_path / "sal")
    assert all(torch.equal(w0[k], w1[k]) for k in w0 if not k.startswith("model.vision_tower.iasm."))
    assert result["model_dir"]


def test_saliency_loss_is_zero_for_a_perfect_prediction():
    target = torch.rand(2, 4, 4)
    target = target / target.sum((1, 2), keepdim=True)
    parts = saliency_loss(target.log(), target)
    assert parts["kl"].item() == pytest.approx(0, abs=1e-6) and parts["cc_loss"].item() == pytest.approx(0, abs=1e-6)
    masked = saliency_loss(torch.zeros(2, 4, 4), target, mask=torch.tensor([False, False]))
    assert masked["kl"].item() == 0


# ---------------------------------------------------------------------------------------------------------
# robustness and the command line


def test_unreadable_images_are_skipped_and_counted(tiny, captions, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(captions, data)
    (data / "images" / "3.png").write_bytes(b"not a png at all")
    (data / "images" / "5.png").unlink()  # missing: reported by the loader, never trained on
    result = train(args(tiny, data, tmp_path / "run", stage="align", max_steps=2, batch_size=8))
    assert result["skipped_images"] >= 1 and result["model_dir"]
    out = capsys.readouterr().out
    assert "7 loaded, 1 missing image" in out and "skipped" in out


def test_cli_flags(tmp_path):
    a = parse_args(["--model", "m", "--data", "jsonl:a", "--data", "pccd:b", "--out", "o", "--stage", "align",
                    "--grad-accum", "4", "--mixed-precision", "bf16", "--gradient-checkpointing", "--resume",
                    "--save-every", "100", "--lora-targets", "all-linear"])
    assert isinstance(a, TrainArgs)
    assert a.data == ["jsonl:a", "pccd:b"] and a.stage == "align" and a.grad_accum == 4 and a.resume == "latest"
    assert a.mixed_precision == "bf16" and a.gradient_checkpointing and a.save_every == 100
    from ase_model.cli import main as cli_main

    assert cli_main(["train", "--model", str(tmp_path), "--data", "jsonl:" + str(tmp_path / "none.jsonl"),
                     "--out", str(tmp_path / "o")]) == 2  # a clear error, not a traceback


def test_bf16_checkpoint_aligns_in_bf16_with_gradient_checkpointing(tiny, captions, tmp_path):
    # A bf16 checkpoint under bf16 autocast: frozen LLM/tower stay bf16 (and come back bit for bit), the trained
    # modules are float32 master weights, checkpointing runs through the frozen parts; saved as bf16 again.
    from ase_model.modeling_ase import ASEForConditionalGeneration
    from ase_model.processing_ase import ASEProcessor

    ASEForConditionalGeneration.from_pretrained(tiny).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    ASEProcessor.from_pretrained(tiny).save_pretrained(tmp_path / "bf16")
    result = train(args(tmp_path / "bf16", captions, tmp_path / "run", stage="align", max_steps=2, batch_size=4,
                        lr=1e-2, mixed_precision="bf16", gradient_checkpointing=True))
    assert result["final_loss"] is not None and np.isfinite(result["final_loss"])
    before, after = weights(tmp_path / "bf16"), weights(tmp_path / "run")
    assert all(v.dtype == torch.bfloat16 for v in after.values())
    frozen = [k for k in before
              if k.startswith(("model.language_model.", "lm_head.", "model.vision_tower.vision_model."))]
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith(".gate"))


def test_batches_match_the_processor(tiny, captions):
    """The trainer tokenises once up front; its batches must equal ASEProcessor.training_batch's."""
    from ase_model.imageio import load_image
    from ase_model.processing_ase import ASEProcessor
    from ase_model.training import Collator, TrainDataset, load_examples

    processor = ASEProcessor.from_pretrained(tiny)
    examples = load_examples([f"jsonl:{captions}"], "train", "finetune", report=False)[:3]
    dataset = TrainDataset(examples, processor, map_size=None, with_text=True)
    batch = Collator(dataset.prompt_ids, processor.tokenizer.pad_token_id, True)([dataset[i] for i in range(3)])
    ref = processor.training_batch([load_image(e.image) for e in examples], [e.target for e in examples])
    for key in ("input_ids", "attention_mask", "labels", "pixel_values"):
        assert torch.equal(batch[key], ref[key]), key
    assert batch["score"].tolist() == [e.score for e in examples] and batch["score_mask"].all()


def test_patch_dropout_hides_patches_but_keeps_the_statistics_token():
    from ase_model import ASEForConditionalGeneration
    from ase_model.testing import tiny_config
    from ase_model.training import add_patch_dropout

    model = ASEForConditionalGeneration(tiny_config(iasm_photo_statistics=True))
    handle = add_patch_dropout(model, 1.0)
    seen = []  # registered after it, this hook sees what the projector gets
    model.model.multi_modal_projector.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    pixels = torch.randn(2, 3, model.config.vision_config.image_size, model.config.vision_config.image_size)
    model.train()
    model.model.get_image_features(pixels)
    model.eval()
    model.model.get_image_features(pixels)
    hidden, shown = seen
    assert (hidden[:, :-1] == 0).all() and (hidden[:, -1] != 0).any()
    assert (shown[:, :-1] != 0).any()  # never at inference
    handle.remove()
    with pytest.raises(ValueError, match="photo-statistics"):
        add_patch_dropout(ASEForConditionalGeneration(tiny_config()), 0.5)
    args = parse_args(["--model", "m", "--data", "jsonl:a", "--out", "o", "--patch-dropout", "0.5"])
    assert args.patch_dropout == 0.5
