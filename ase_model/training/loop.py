"""The training loop: loading the model under accelerate, the steps, evaluation and the final save."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from .adapters import (
    add_patch_dropout,
    iasm_map_size,
    param_groups,
    prepare_model,
    set_activation_checkpointing,
)
from .args import (
    CHECKPOINTS_DIR,
    TrainArgs,
    resolve_lrs,
)
from .batches import (
    Collator,
    EpochShuffleSampler,
    TrainDataset,
    load_examples,
)
from .checkpoints import (
    TrainState,
    _prune_checkpoints,
    _truncate_log,
    find_checkpoint,
)
from .losses import (
    CaptionObjective,
    SaliencyObjective,
)

# ----------------------------------------------------------------------------------------------------------
# the loop


def _default_mixed_precision() -> str:
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return os.environ["ACCELERATE_MIXED_PRECISION"]
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _load_model(args: TrainArgs, mixed_precision: str, sharded: bool = False):
    """(model, processor, the checkpoint's dtype). Trained weights are float32 (master weights); frozen ones stay
    in the checkpoint's 16-bit dtype under mixed precision (half the memory, and saved back bit for bit)."""
    from .. import ASEForConditionalGeneration, ASEProcessor  # noqa: F401  (registers the Auto classes)

    model = ASEForConditionalGeneration.from_pretrained(args.model, dtype="auto")
    source_dtype = model.dtype
    # FSDP flattens parameters of one dtype only: there everything is float32 and FSDP's mixed precision casts.
    keep_16bit = (mixed_precision in ("bf16", "fp16") and source_dtype in (torch.bfloat16, torch.float16)
                  and not (args.stage == "finetune" and args.full) and not sharded)
    if not keep_16bit:
        model.float()
    processor = ASEProcessor.from_pretrained(args.model)
    return model, processor, source_dtype


def train(args: TrainArgs | argparse.Namespace | dict) -> dict:
    """Run one training stage. Returns the final metrics and paths (also written to OUT/train_result.json)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    if not isinstance(args, TrainArgs):
        args = TrainArgs.from_namespace(args)
    if not (Path(args.model) / "config.json").is_file():
        raise FileNotFoundError(f"--model {args.model}: not an ASE-MLLM folder (no config.json)")
    mixed_precision = args.mixed_precision or _default_mixed_precision()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # Launched as several processes on a machine without GPUs: accelerate only forms a (gloo) process group when
    # asked for the CPU; otherwise every process would train alone and overwrite the others' output.
    cpu = world > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=args.grad_accum, cpu=cpu)
    if accelerator.num_processes != world:
        raise RuntimeError(
            f"launched as {world} processes but accelerate formed a group of {accelerator.num_processes}")
    threads = torch.get_num_threads()
    if args.cpu_threads and accelerator.device.type == "cpu":
        torch.set_num_threads(args.cpu_threads)
    try:
        return _train(accelerator, args, mixed_precision)
    finally:
        torch.set_num_threads(threads)
        if accelerator.num_processes == 1:  # so the Python API can train again in this process, other settings too
            accelerator.free_memory()
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()


def _train(accelerator, args: TrainArgs, mixed_precision: str) -> dict:
    from accelerate.utils import DistributedType, set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    main = accelerator.is_main_process
    out = Path(args.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "training_args.json").write_text(json.dumps(
            {**dataclasses.asdict(args), "mixed_precision": mixed_precision,
             "num_processes": accelerator.num_processes}, indent=2) + "\n")
    set_seed(args.seed)
    examples = load_examples(args.data, args.split, args.stage, args.pseudo_saliency, report=main)
    model, processor, source_dtype = _load_model(args, mixed_precision,
                                                 sharded=accelerator.distributed_type == DistributedType.FSDP)
    trained = prepare_model(model, args)
    with_text = args.stage != "saliency"
    needs_maps = args.stage == "saliency" or any(e.saliency_map or e.fixations or e.pseudo_saliency for e in examples)
    dataset = TrainDataset(examples, processor, iasm_map_size(model) if needs_maps else None, with_text,
                           args.max_length, args.cache_images)
    pad_id = processor.tokenizer.pad_token_id if processor.tokenizer.pad_token_id is not None else 0
    sampler = EpochShuffleSampler(len(dataset), args.seed)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=sampler,
        collate_fn=Collator(dataset.prompt_ids, pad_id, with_text, dataset.map_size),
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0 and args.cache_images,
        # Its own generator: starting an epoch must not draw from the global RNG, or a resumed run (which starts
        # its epoch after restoring the RNG) would see other dropout masks than an uninterrupted one.
        generator=torch.Generator().manual_seed(args.seed),
    )

    if args.stage == "saliency":
        objective = SaliencyObjective(model.model.vision_tower.iasm)
    else:
        objective = CaptionObjective(trained, args.score_loss_weight, args.saliency_loss_weight, model.config.score_max)
        if args.patch_dropout:
            add_patch_dropout(trained, args.patch_dropout)
    main_lr, new_lr = resolve_lrs(args)
    groups = param_groups(trained, main_lr, new_lr, args.weight_decay)
    n_trainable = sum(p.numel() for g in groups for p in g["params"])
    optimizer = torch.optim.AdamW(groups, lr=main_lr, betas=(0.9, 0.999), eps=1e-8)

    names = objective.part_names
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)
    trainable = [p for p in objective.parameters() if p.requires_grad]
    batches_per_epoch = len(loader)
    steps_per_epoch = math.ceil(batches_per_epoch / args.grad_accum)
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * steps_per_epoch))
    # Stepped once per optimizer step by us (not by accelerate, which would step it once per process).
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(args.warmup_ratio * total_steps), total_steps)
    state = TrainState()
    accelerator.register_for_checkpointing(scheduler, state)

    log_path = out / "train_log.jsonl"
    if args.resume:
        ckpt = find_checkpoint(out, args.resume)
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        accelerator.load_state(str(ckpt), strict=not tied)  # safetensors drop the tied copy
        if main:
            print(f"resumed from {ckpt} at step {state.step} (epoch {state.epoch}, batch {state.batches_in_epoch})",
                  flush=True)
            _truncate_log(log_path, state.step)
    elif main and log_path.exists():
        log_path.unlink()

    if main:
        print(f"stage {args.stage}: {len(examples)} examples, {n_trainable:,} trainable parameters, "
              f"{total_steps} steps ({steps_per_epoch}/epoch), batch {args.batch_size} x {args.grad_accum} accum x "
              f"{accelerator.num_processes} processes, lr {main_lr:g} (new modules {new_lr:g}), "
              f"mixed precision {mixed_precision}", flush=True)

    stop_at = min(total_steps, args.stop_after_steps or total_steps)
    bar = tqdm(total=total_steps, initial=state.step, disable=not (main and args.progress), desc=f"train[{args.stage}]",
               dynamic_ncols=True)
    objective.train()
    # loss parts (weighted by how many samples each covers) summed on the device since the last log line: no
    # host sync per step
    sums = torch.zeros(len(names), device=accelerator.device)
    counts = torch.zeros(len(names), device=accelerator.device)
    window_ids, step_samples, window_samples = [], 0, 0
    t_window = t_start = time.perf_counter()
    first_loss = last_loss = None
    log_file = open(log_path, "a") if main else None

    def save_checkpoint():
        path = out / CHECKPOINTS_DIR / f"step-{state.step}"
        accelerator.save_state(str(path))
        if main:
            _prune_checkpoints(out, args.keep_checkpoints)

    try:
        while state.step < stop_at:
            epoch_loader = loader
            if state.batches_in_epoch:
                epoch_loader = accelerator.skip_first_batches(loader, state.batches_in_epoch)
            epoch_loader.set_epoch(state.epoch)
            for batch in epoch_loader:
                state.batches_in_epoch += 1
                state.skipped += len(batch.pop("skipped"))
                ids = batch.pop("ids")
                with accelerator.accumulate(objective):
                    loss, parts, weights = objective(batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and args.max_grad_norm:
                        accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                sums += parts.float() * weights
                counts += weights
                window_ids += ids
                step_samples += len(ids) * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue
                if not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                state.step += 1
                state.samples += step_samples
                window_samples += step_samples
                step_samples = 0
                bar.update(1)
                if state.step % args.log_every == 0 or state.step == stop_at:
                    total, n = accelerator.reduce(torch.stack([sums, counts]), reduction="sum").tolist()
                    mean = {k: t / c for k, t, c in zip(names, total, n) if c > 0}
                    rate = window_samples / max(time.perf_counter() - t_window, 1e-9)
                    first_loss = mean["loss"] if first_loss is None else first_loss
                    last_loss = mean["loss"]
                    if main:
                        record = {"step": state.step, "epoch": state.epoch, **{k: round(v, 6) for k, v in mean.items()},
                                  "lr": scheduler.get_last_lr()[0], "samples_per_s": round(rate, 2),
                                  "skipped_images": state.skipped, "ids": window_ids}
                        log_file.write(json.dumps(record) + "\n")
                        log_file.flush()
                        bar.set_postfix(loss=f"{mean['loss']:.4f}", samples_s=f"{rate:.1f}")
                    sums.zero_()
                    counts.zero_()
                    window_ids, window_samples = [], 0
                    t_window = time.perf_counter()
                if args.save_every and state.step % args.save_every == 0 and state.step < total_steps:
                    save_checkpoint()
                if state.step >= stop_at:
                    break
            else:
                state.epoch += 1
                state.batches_in_epoch = 0
    finally:
        bar.close()
        if log_file:
            log_file.close()

    # unreadable images all processes met (a resumed run restarts from the main process's count)
    skipped = int(accelerator.reduce(torch.tensor(state.skipped, device=accelerator.device), reduction="sum"))
    result: dict[str, Any] = {
        "stage": args.stage,
        "steps": state.step,
        "total_steps": total_steps,
        "epochs": state.epoch + state.batches_in_epoch / max(batches_per_epoch, 1),
        "samples": state.samples,
        "skipped_images": skipped,
        "first_loss": first_loss,
        "final_loss": last_loss,
        "trainable_parameters": n_trainable,
        "train_time_s": round(time.perf_counter() - t_start, 2),
        "out": str(out),
        "log": str(log_path),
    }
    if state.step < total_steps:  # stopped early on purpose: leave a checkpoint to resume from
        if not (args.save_every and state.step % args.save_every == 0):
            save_checkpoint()
        result["checkpoint"] = str(out / CHECKPOINTS_DIR / f"step-{state.step}")
        result["model_dir"] = None
    else:
        accelerator.wait_for_everyone()
        _save_final(accelerator, objective, model, processor, args, out, source_dtype)
        result["model_dir"] = str(out)
    if skipped and main:
        print(f"skipped {skipped} unreadable image(s) during training", flush=True)
    if main:
        (out / "train_result.json").write_text(json.dumps(result, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return result


def _save_final(accelerator, objective, model, processor, args: TrainArgs, out: Path, dtype: torch.dtype) -> None:
    """A plain ASE-MLLM folder (LoRA merged into the LLM) + the processor: what `Critic.from_pretrained` loads."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        # Sharded weights: gather the full state (every rank takes part), then load it on the main process into
        # a fresh, unsharded copy with the same structure (LoRA included) and merge / save that.
        state = accelerator.get_state_dict(objective)
        if not accelerator.is_main_process:
            return
        model, _, _ = _load_model(args, "no")
        trained = prepare_model(model, args)
        module, prefix = (model.model.vision_tower.iasm, "iasm.") if args.stage == "saliency" else (trained, "model.")
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    elif not accelerator.is_main_process:
        return
    else:
        trained = accelerator.unwrap_model(objective).model if args.stage != "saliency" else model
    final = trained.merge_and_unload() if hasattr(trained, "merge_and_unload") else model
    if args.gradient_checkpointing:
        set_activation_checkpointing(final, False)
    final.to(dtype).eval()  # saved in the dtype it came in
    final.save_pretrained(out)
    processor.save_pretrained(out)
    print(f"saved the trained model to {out}", flush=True)


