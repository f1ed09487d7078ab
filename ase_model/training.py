"""Training ASE-MLLM: `ase-mllm train …`, `accelerate launch -m ase_model.training …`, or `train(args)`.

Stages (docs/training.md has the commands):

* ``saliency``  IASM alone on fixation maps (or spectral-residual pseudo-labels): KL(target || softmax(logits))
                plus (1 - CC). Only IASM's map branch is trained; the rest of the model is not even run.
* ``align``     projector, IASM, fusion blocks (gates included) and score head; the LLM and the vision tower
                stay frozen. LM loss + score loss where scores exist + saliency loss where labels exist.
* ``finetune``  align's modules plus LoRA adapters on the LLM (merged into it when saving), or with ``--full``
                every weight, vision tower and LLM included (how a small model is trained from scratch).

Distribution, mixed precision and multi-node come from `accelerate launch` / `accelerate config`: this module
only uses the Accelerator. Checkpoints (`--save-every`) hold the model (LoRA included), optimiser, scheduler,
RNG states and the data position, so `--resume` continues exactly where the run stopped. The data order
depends only on (seed, epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)

STAGES = ("saliency", "align", "finetune")
DEFAULT_LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
CHECKPOINTS_DIR = "checkpoints"
IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------------------------------
# arguments


@dataclass
class TrainArgs:
    """Everything a run needs; the CLI flags are these fields with dashes (`--grad-accum` -> grad_accum)."""

    model: str
    data: list[str]
    out: str
    stage: str = "finetune"
    split: str = "train"
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float | None = None  # None: the stage's default (see resolve_lrs)
    new_lr: float | None = None
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str | None = None  # None: accelerate launch's setting, else bf16 where supported, else no
    gradient_checkpointing: bool = False
    full: bool = False
    freeze_vision: bool = False
    freeze_tower: bool = False
    patch_dropout: float = 0.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = DEFAULT_LORA_TARGETS
    score_loss_weight: float = 1.0
    saliency_loss_weight: float = 1.0
    pseudo_saliency: bool = False
    save_every: int | None = None
    keep_checkpoints: int = 2
    resume: str | None = None
    stop_after_steps: int | None = None
    seed: int = 0
    max_length: int | None = None
    num_workers: int = 0
    cache_images: bool = False
    log_every: int = 10
    progress: bool = True
    cpu_threads: int | None = None  # torch threads on CPU runs (1 is fastest for tiny models on a busy machine)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {', '.join(STAGES)}, not {self.stage!r}")
        if isinstance(self.data, str):
            self.data = [self.data]
        if not self.data:
            raise ValueError("give at least one --data FORMAT:PATH")
        if self.mixed_precision not in (None, "no", "bf16", "fp16"):
            raise ValueError(f"--mixed-precision must be no, bf16 or fp16, not {self.mixed_precision!r}")
        if self.grad_accum < 1 or self.batch_size < 1:
            raise ValueError("--batch-size and --grad-accum must be >= 1")

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace | dict) -> TrainArgs:
        values = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ase-mllm train",
        description="Train an ASE-MLLM (stages saliency, align, finetune). Runs on one device as is; under "
        "`accelerate launch` on many GPUs / nodes (DDP or FSDP from `accelerate config`).",
    )
    a = p.add_argument
    a("--model", required=True, metavar="DIR", help="ASE-MLLM folder (with its processor) to start from")
    a("--data", required=True, action="append", metavar="FORMAT:PATH",
      help="caption data (pccd, ava, dpc, dpc2022, rpcd, jsonl) or, for --stage saliency, fixation data "
           "(salicon, mit1003, folder:IMAGES,MAPS[,FIXATIONS]); repeat to mix datasets")
    a("--out", required=True, metavar="DIR", help="output folder: the trained model, logs, checkpoints/")
    a("--stage", choices=STAGES, default="finetune")
    a("--split", default="train", help="dataset split to train on (default: train)")
    a("--epochs", type=float, default=1.0)
    a("--max-steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    a("--batch-size", type=int, default=8, help="per device")
    a("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    a("--lr", type=float, default=None,
      help="peak learning rate of the stage's main weights (default: saliency/align 1e-3, finetune 2e-4 with "
           "LoRA, 2e-5 with --full)")
    a("--new-lr", type=float, default=None,
      help="peak learning rate of the new modules (IASM, fusion, projector, score head) in the finetune stage "
           "(default: 5 x --lr)")
    a("--warmup-ratio", type=float, default=0.03)
    a("--weight-decay", type=float, default=0.0, help="AdamW weight decay (never on biases, norms, gates)")
    a("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0: off)")
    a("--mixed-precision", choices=("no", "bf16", "fp16"), default=None,
      help="default: accelerate's setting, else bf16 where the device supports it, else no")
    a("--gradient-checkpointing", action="store_true")
    a("--full", action="store_true", help="finetune: train every weight (vision tower and LLM too), no LoRA")
    a("--freeze-vision", action="store_true",
      help="finetune --full: keep the pretrained vision tower's own weights fixed, as LLaVA does (IASM, fusion "
           "blocks, projector, score head and LLM still train)")
    a("--freeze-tower", action="store_true",
      help="finetune --full: keep the whole image encoder fixed (vision tower, IASM, fusion blocks); projector, "
           "score head and LLM train")
    a("--patch-dropout", type=float, default=0.0, metavar="P",
      help="align/finetune with IASM's photo-statistics token or an attribute head: hide a sample's patch tokens "
           "from the LLM with probability P, so that it learns to read the statistics or attribute tokens (which "
           "carry over to new photos) rather than recognising the training photos")
    a("--lora-r", type=int, default=16)
    a("--lora-alpha", type=int, default=32)
    a("--lora-dropout", type=float, default=0.05)
    a("--lora-targets", default=DEFAULT_LORA_TARGETS,
      help="comma-separated LLM linear layer names for LoRA, or all-linear")
    a("--score-loss-weight", type=float, default=1.0)
    a("--saliency-loss-weight", type=float, default=1.0)
    a("--pseudo-saliency", action="store_true",
      help="use spectral-residual maps of the caption images as saliency labels (where no label exists)")
    a("--save-every", type=int, default=None, metavar="N", help="checkpoint every N optimizer steps")
    a("--keep-checkpoints", type=int, default=2, metavar="K", help="keep the last K checkpoints")
    a("--resume", nargs="?", const="latest", default=None, metavar="latest|PATH",
      help="continue from the latest checkpoint in OUT/checkpoints, or from PATH")
    a("--stop-after-steps", type=int, default=None, metavar="N",
      help="checkpoint and stop at step N (the schedule still spans the whole run): for time-limited jobs")
    a("--seed", type=int, default=0)
    a("--max-length", type=int, default=None, help="truncate prompt + critique to this many tokens")
    a("--num-workers", type=int, default=0, help="DataLoader workers (decode images in parallel)")
    a("--cache-images", action="store_true", help="keep decoded, processed images in memory (small datasets)")
    a("--log-every", type=int, default=10, metavar="N")
    a("--cpu-threads", type=int, default=None, metavar="N",
      help="torch threads for CPU training (tiny models train fastest with 1 on a busy machine)")
    a("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def parse_args(argv: list[str] | None = None) -> TrainArgs:
    return TrainArgs.from_namespace(build_parser().parse_args(argv))


def resolve_lrs(args: TrainArgs) -> tuple[float, float]:
    """(main lr, new-module lr). In saliency/align every trained module is new, so both are --lr."""
    if args.stage in ("saliency", "align"):
        lr = args.lr if args.lr is not None else 1e-3
        return lr, args.new_lr if args.new_lr is not None else lr
    lr = args.lr if args.lr is not None else (2e-5 if args.full else 2e-4)
    return lr, args.new_lr if args.new_lr is not None else 5 * lr


# ----------------------------------------------------------------------------------------------------------
# data


@dataclass
class TrainExample:
    id: str
    image: Path
    target: str | None = None
    score: float | None = None
    saliency_map: Path | None = None  # a continuous map (SALICON/MIT1003 map, or a JSONL pseudo-label PNG)
    fixations: Path | None = None  # binary fixation points, blurred into a map when there is no map
    pseudo_saliency: bool = False  # compute a spectral-residual label from the image itself


def jsonl_saliency_labels(path: Path) -> dict[str, Path]:
    """id -> saliency map file, from the `saliency` keys of a JSONL dataset (data.py's samples don't carry it)."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    labels: dict[str, Path] = {}
    for file in files:
        with open(file, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # data.py reports malformed lines
                if not isinstance(rec, dict) or not isinstance(rec.get("saliency"), str) or not isinstance(rec.get("image"), str):
                    continue
                sid = rec.get("id")
                sid = str(sid) if isinstance(sid, (str, int)) and str(sid) else rec["image"].strip()
                sal = Path(rec["saliency"])
                labels[sid] = sal if sal.is_absolute() else file.parent / sal
    return labels


def load_examples(specs: list[str], split: str, stage: str, pseudo_saliency: bool = False,
                  report: bool = True) -> list[TrainExample]:
    """Every dataset of `specs` loaded and mixed; each loader's report summary is printed."""
    from .data import FORMATS, SALIENCY_FORMATS, load_captions, load_saliency

    examples: list[TrainExample] = []
    for spec in specs:
        fmt = spec.partition(":")[0].strip().lower()
        if fmt in SALIENCY_FORMATS:
            if stage != "saliency":
                raise ValueError(f"{spec}: fixation data trains the saliency stage only (--stage saliency)")
            samples, rep = load_saliency(spec, split)
            examples += [TrainExample(s.id, Path(s.image), saliency_map=s.saliency_map, fixations=s.fixations)
                         for s in samples if s.saliency_map is not None or s.fixations is not None]
        elif fmt in FORMATS:
            samples, rep = load_captions(spec, split)
            labels = jsonl_saliency_labels(Path(os.path.expanduser(spec.partition(":")[2]))) if fmt == "jsonl" else {}
            for s in samples:
                sal = labels.get(s.id)
                if sal is not None and not sal.is_file():
                    sal = None
                examples.append(TrainExample(s.id, Path(s.image), target=s.target, score=s.score, saliency_map=sal,
                                             pseudo_saliency=pseudo_saliency and sal is None))
        else:
            raise ValueError(f"--data {spec!r}: unknown format {fmt!r} (captions: {', '.join(FORMATS)}; "
                             f"fixations: {', '.join(SALIENCY_FORMATS)})")
        if report:
            print(f"data: {rep.summary()}", flush=True)
    if not examples:
        raise ValueError(f"no usable training examples in {', '.join(specs)} (split {split})")
    if stage == "saliency":  # only labelled examples can teach the map
        examples = [e for e in examples if e.saliency_map is not None or e.fixations is not None or e.pseudo_saliency]
        if not examples:
            raise ValueError("the saliency stage needs fixation data (salicon:, mit1003:, folder:), JSONL saliency "
                             "labels, or --pseudo-saliency")
    return examples


def saliency_target(sal: np.ndarray, map_size: tuple[int, int]) -> np.ndarray | None:
    """A photo-frame saliency map -> the model's target: padded to a square like the image (the padding holds
    no saliency), area-resized to IASM's map size, normalised to a probability. None for an all-zero map."""
    import cv2

    sal = np.clip(np.nan_to_num(np.asarray(sal, dtype=np.float32)), 0, None)
    h, w = sal.shape
    side = max(h, w)
    square = np.zeros((side, side), np.float32)
    top, left = (side - h) // 2, (side - w) // 2  # the same placement as the image processor's padding
    square[top: top + h, left: left + w] = sal
    small = cv2.resize(square, (map_size[1], map_size[0]), interpolation=cv2.INTER_AREA)
    total = float(small.sum())
    return small / total if total > 0 else None


def _fixations_to_map(fix: np.ndarray) -> np.ndarray:
    """Binary fixation points -> a density map (Gaussian blur, sigma 2% of the long side: about a degree)."""
    import cv2

    fix = np.asarray(fix, dtype=np.float32)
    return cv2.GaussianBlur(fix, (0, 0), sigmaX=max(1.0, 0.02 * max(fix.shape)))


class EpochShuffleSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch), so a resumed run replays the same order.

    accelerate's DataLoaderShard calls `set_epoch` with its own epoch counter before iterating; the trainer sets
    that counter to the true epoch (`loader.set_epoch`) first.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())


class TrainDataset(Dataset):
    """Decodes and processes one example (in a DataLoader worker when num_workers > 0).

    Text is tokenised once up front: the prompt (identical for every example, image tokens expanded) and each
    target, exactly as `ASEProcessor.training_batch` would. An image that cannot be read is skipped: the next
    readable example takes its place (batches keep their size, so DDP processes stay in step) and the item
    carries the count for the trainer's report.
    """

    MAX_FALLBACKS = 16

    def __init__(self, examples: list[TrainExample], processor, map_size: tuple[int, int] | None, with_text: bool,
                 max_length: int | None = None, cache_images: bool = False):
        self.examples = examples
        self.processor = processor
        self.map_size = map_size
        self.with_text = with_text
        self.cache: dict[int, dict] | None = {} if cache_images else None
        self.prompt_ids: list[int] = []
        self.target_ids: list[list[int]] = []
        if with_text:
            tok = processor.tokenizer
            self.prompt_ids = tok(processor._expand(processor.build_prompt()), add_special_tokens=True)["input_ids"]
            eos = tok.eos_token or ""
            texts = [" " + (e.target or "").strip() + eos for e in examples]
            self.target_ids = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
            if max_length is not None:
                if max_length <= len(self.prompt_ids):
                    raise ValueError(f"--max-length {max_length} leaves no room for the critique: the prompt alone "
                                     f"is {len(self.prompt_ids)} tokens (image tokens included)")
                keep = max_length - len(self.prompt_ids)
                self.target_ids = [t[:keep] for t in self.target_ids]

    def __len__(self) -> int:
        return len(self.examples)

    def _load(self, i: int) -> dict:
        from PIL import Image

        from .imageio import load_image

        if self.cache is not None and i in self.cache:
            return self.cache[i]
        ex = self.examples[i]
        image = load_image(ex.image)
        item: dict[str, Any] = {k: v[0] for k, v in self.processor.process_images([image]).items()}
        if self.map_size is not None:
            sal = None
            if ex.saliency_map is not None:
                from .data import read_fixation_map

                sal = read_fixation_map(ex.saliency_map)
            elif ex.fixations is not None:
                from .data import read_fixations

                sal = _fixations_to_map(read_fixations(ex.fixations))
            elif ex.pseudo_saliency:
                from .saliency import spectral_residual

                sal = spectral_residual(image)
            if sal is not None and sal.shape != (image.height, image.width):
                # maps are stored at the image's size in every layout we read; a stray size is stretched to it
                sal = np.asarray(Image.fromarray(sal.astype(np.float32)).resize((image.width, image.height), Image.BILINEAR))
            target = None if sal is None else saliency_target(sal, self.map_size)
            item["saliency_target"] = torch.from_numpy(target) if target is not None else None
        if self.cache is not None:
            self.cache[i] = item
        return item

    def __getitem__(self, index: int) -> dict:
        skipped = []
        for k in range(self.MAX_FALLBACKS):
            i = (index + k) % len(self.examples)
            try:
                item = dict(self._load(i))
                break
            except (OSError, ValueError) as e:  # ImageLoadError is a ValueError; a broken map file an OSError
                skipped.append(str(self.examples[i].image))
                log.warning("skipping unreadable example %s: %s", self.examples[i].id, e)
        else:
            raise RuntimeError(f"{self.MAX_FALLBACKS} unreadable examples in a row (from {self.examples[index].image}): "
                               "check the dataset")
        ex = self.examples[i]
        item["id"] = ex.id
        item["skipped"] = skipped
        item["score"] = ex.score
        if self.with_text:
            item["target_ids"] = self.target_ids[i]
        return item


class Collator:
    """Right-padded input_ids / labels (prompt masked), stacked images, score and saliency targets with masks."""

    def __init__(self, prompt_ids: list[int], pad_id: int, with_text: bool, map_size: tuple[int, int] | None = None):
        self.prompt_ids, self.pad_id, self.with_text, self.map_size = prompt_ids, pad_id, with_text, map_size

    def __call__(self, items: list[dict]) -> dict:
        batch: dict[str, Any] = {
            "ids": [it["id"] for it in items],
            "skipped": [p for it in items for p in it["skipped"]],
            "pixel_values": torch.stack([it["pixel_values"] for it in items]),
        }
        if "saliency_prior" in items[0]:
            batch["saliency_prior"] = torch.stack([it["saliency_prior"] for it in items])
        scores = [it["score"] for it in items]
        batch["score"] = torch.tensor([s if s is not None else 0.0 for s in scores], dtype=torch.float32)
        batch["score_mask"] = torch.tensor([s is not None for s in scores], dtype=torch.bool)
        if self.map_size is not None:  # always present (zeros, masked out, where unlabelled): same graph everywhere
            targets = [it.get("saliency_target") for it in items]
            empty = torch.zeros(self.map_size)
            batch["saliency_target"] = torch.stack([t if t is not None else empty for t in targets])
            batch["saliency_mask"] = torch.tensor([t is not None for t in targets], dtype=torch.bool)
        if self.with_text:
            rows = [self.prompt_ids + it["target_ids"] for it in items]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
            n_prompt = len(self.prompt_ids)
            for i, (row, it) in enumerate(zip(rows, items)):
                input_ids[i, : len(row)] = torch.tensor(row)
                attention[i, : len(row)] = 1
                labels[i, n_prompt: len(row)] = torch.tensor(it["target_ids"], dtype=torch.long)
            batch.update(input_ids=input_ids, attention_mask=attention, labels=labels)
        return batch


# ----------------------------------------------------------------------------------------------------------
# losses and the objective


def saliency_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """KL(target || softmax(logits)) and 1 - CC(softmax(logits), target), averaged over the masked samples.

    logits, target: (B, h, w); target rows sum to 1. Without any labelled sample both are 0 but stay in the
    graph, so every trained parameter gets a (zero) gradient and DDP stays in step.
    """
    logp = logits.float().flatten(1).log_softmax(-1)
    t = target.float().flatten(1)
    kl = (t * (torch.log(t.clamp_min(1e-12)) - logp)).sum(-1)
    p = logp.exp()
    pc, tc = p - p.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True)
    cc = (pc * tc).sum(-1) / (pc.norm(dim=-1) * tc.norm(dim=-1)).clamp_min(1e-12)
    m = torch.ones_like(kl) if mask is None else mask.to(kl.dtype)
    n = m.sum().clamp_min(1.0)
    return {"kl": (kl * m).sum() / n, "cc_loss": ((1 - cc) * m).sum() / n}


class SaliencyObjective(nn.Module):
    """The saliency stage: IASM on its own (the tower and the LLM are never run).

    Like CaptionObjective, forward returns (loss, parts, counts): `parts` holds the mean of each of `part_names`
    over the samples it applies to and `counts` how many those were, so logs average them correctly across
    micro-batches and processes (every process reports the same parts, as collectives need).
    """

    part_names = ("loss", "kl", "cc_loss")

    def __init__(self, iasm: nn.Module):
        super().__init__()
        self.iasm = iasm

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, logits, _ = self.iasm(batch["pixel_values"], batch.get("saliency_prior"))
        sal = saliency_loss(logits, batch["saliency_target"], batch["saliency_mask"])
        loss = sal["kl"] + sal["cc_loss"]
        n = batch["saliency_mask"].sum().float()
        return loss, torch.stack([loss, sal["kl"], sal["cc_loss"]]).detach(), torch.stack([n, n, n])


class CaptionObjective(nn.Module):
    """The align and finetune stages: the whole model, so that DDP/FSDP see every forward.

    loss = LM loss + score weight * MSE(score / max) where scores exist + saliency weight * (KL + 1 - CC) where
    labels exist. Absent parts still enter the graph with weight 0 (DDP needs every trained parameter used).
    """

    part_names = ("loss", "lm", "score", "kl", "cc_loss")

    def __init__(self, model: nn.Module, score_weight: float, saliency_weight: float, score_max: float):
        super().__init__()
        self.model = model
        self.score_weight, self.saliency_weight, self.score_max = score_weight, saliency_weight, score_max

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
            labels=batch["labels"],
            saliency_prior=batch.get("saliency_prior"),
            use_cache=False,
        )
        scored = batch["score_mask"].float()
        err = ((out.score.float() - batch["score"].float()) / self.score_max) ** 2
        score = (err * scored).sum() / scored.sum().clamp_min(1.0)
        if "saliency_target" in batch:
            sal = saliency_loss(out.saliency_logits, batch["saliency_target"], batch["saliency_mask"])
            kl, cc_loss, labelled = sal["kl"], sal["cc_loss"], batch["saliency_mask"].sum().float()
        else:  # zero, but IASM's map head stays in the graph
            kl = cc_loss = 0.0 * out.saliency_logits.float().sum()
            labelled = torch.zeros((), device=kl.device)
        loss = out.loss + self.score_weight * score + self.saliency_weight * (kl + cc_loss)
        one = torch.ones((), device=loss.device)
        parts = torch.stack([loss, out.loss.float(), score, kl, cc_loss]).detach()
        return loss, parts, torch.stack([one, one, scored.sum(), labelled, labelled])


# ----------------------------------------------------------------------------------------------------------
# model preparation


def _ase(model: nn.Module) -> nn.Module:
    """The ASEForConditionalGeneration inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def add_patch_dropout(model: nn.Module, p: float):
    """While training, zero all patch features of a sample with probability p, at the projector's input, so
    that the LLM learns to read what stays: IASM's photo-statistics token (the projector's last input, when the
    model has one) and the attribute tokens (added after the projector). Returns the hook handle."""
    ase = _ase(model)
    if not 0 <= p <= 1:
        raise ValueError(f"--patch-dropout is a probability, not {p}")
    statistics = bool(getattr(ase.config, "iasm_photo_statistics", False))
    if not statistics and not getattr(ase.config, "attribute_labels", None):
        raise ValueError("--patch-dropout needs a model with IASM's photo-statistics token (iasm_photo_statistics) "
                         "or an attribute head (attribute_labels)")

    def hide_patches(module, args):
        (features,) = args
        if not module.training:
            return None
        hidden = torch.rand(features.shape[0], device=features.device) < p
        keep = torch.ones_like(features[:, :, :1])
        keep[hidden, : features.shape[1] - int(statistics)] = 0
        return (features * keep,)

    return ase.model.multi_modal_projector.register_forward_pre_hook(hide_patches)


def new_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The modules ASE-MLLM adds to its LLaVA base: trained from the align stage on."""
    m = _ase(model).model
    modules = {"iasm": m.vision_tower.iasm, "fusion": m.vision_tower.fusion, "projector": m.multi_modal_projector,
               "score_head": m.score_head}
    if getattr(m, "attribute_head", None) is not None:  # its embeddings; the classifier gets no caption gradient
        modules["attribute_embeddings"] = m.attribute_head.embeddings
    return modules


def lora_target_names(language_model: nn.Module, targets: str, prefix: str) -> list[str]:
    """Full module names (under `prefix`) of the LLM's linear layers that LoRA adapts."""
    wanted = {t.strip() for t in targets.split(",") if t.strip()}
    names = [f"{prefix}.{name}" for name, mod in language_model.named_modules()
             if isinstance(mod, nn.Linear) and ("all-linear" in wanted or name.rsplit(".", 1)[-1] in wanted)]
    if not names:
        raise ValueError(f"--lora-targets {targets!r} matches no linear layer of the LLM")
    return names


def prepare_model(model: nn.Module, args: TrainArgs) -> nn.Module:
    """Freeze / unfreeze for the stage and add LoRA; returns the module to train (a PeftModel with LoRA)."""
    for p in model.parameters():
        p.requires_grad_(False)
    if args.stage == "saliency":
        iasm = model.model.vision_tower.iasm.float()  # trained weights in float32 even if the rest is bf16
        # The token branch gets no signal from the map loss; training it here would only leave DDP waiting.
        for name, p in iasm.named_parameters():
            p.requires_grad_(not name.startswith("token_"))
        return model
    if args.gradient_checkpointing:
        set_activation_checkpointing(model, True)
    if args.stage == "finetune" and args.full:
        for p in model.parameters():
            p.requires_grad_(True)
        if args.freeze_vision or args.freeze_tower:
            tower = model.model.vision_tower
            for p in (tower if args.freeze_tower else tower.vision_model).parameters():
                p.requires_grad_(False)
        if model.model.attribute_head is not None:  # the argmax passes no gradient to the classifier
            model.model.attribute_head.mlp.requires_grad_(False)
        if model.config.score_from_attributes:  # trained in a stage of its own (ranking loss, calibration)
            model.model.score_head.requires_grad_(False)
        return model
    for module in new_modules(model).values():
        module.float()  # trainable weights stay in float32 (master weights) when frozen parts are bf16
        for p in module.parameters():
            p.requires_grad_(True)
    if args.stage == "align":
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=lora_target_names(model.model.language_model, args.lora_targets, "model.language_model"),
        bias="none",
    )
    with warnings.catch_warnings():  # peft asks the model a deprecated transformers question
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    for module in new_modules(peft_model).values():  # peft froze everything but the adapters
        for p in module.parameters():
            p.requires_grad_(True)
    return peft_model


def set_activation_checkpointing(model: nn.Module, enable: bool) -> None:
    """Gradient (activation) checkpointing on or off, under transformers' new name where it exists (5.24+)."""
    if enable:
        # Non-reentrant checkpointing gives gradients to trainable parts fed by frozen ones (no input-grad hack).
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def param_groups(model: nn.Module, main_lr: float, new_lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: {new modules, the rest} x {decay, no decay (biases, norms, gates: 1-D tensors)}."""
    new_ids = {id(p) for m in new_modules(model).values() for p in m.parameters()}
    groups: dict[tuple[str, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            key = ("new" if id(p) in new_ids else "main", p.ndim >= 2)
            groups.setdefault(key, []).append(p)
    out = []
    for (kind, decay), params in sorted(groups.items()):
        out.append({"params": params, "lr": new_lr if kind == "new" else main_lr,
                    "weight_decay": weight_decay if decay else 0.0, "name": f"{kind}{'' if decay else '/no_decay'}"})
    return out


def iasm_map_size(model: nn.Module) -> tuple[int, int]:
    """(h, w) of IASM's map for the model's input size (asked of IASM itself, whatever its strides)."""
    config = _ase(model).config
    size = config.vision_config.image_size
    iasm = _ase(model).model.vision_tower.iasm
    p = next(iasm.parameters())
    with torch.no_grad():
        _, logits, _ = iasm(torch.zeros(1, 3, size, size, device=p.device, dtype=p.dtype))
    return tuple(logits.shape[-2:])


# ----------------------------------------------------------------------------------------------------------
# checkpoints


class TrainState:
    """Where the run is (saved with each checkpoint through accelerate's register_for_checkpointing)."""

    def __init__(self):
        self.step = 0  # optimizer steps done
        self.epoch = 0
        self.batches_in_epoch = 0  # micro-batches of `epoch` already consumed (per process)
        self.samples = 0  # samples seen, all processes
        self.skipped = 0  # unreadable images skipped (main process's count)

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def find_checkpoint(out: Path, resume: str) -> Path:
    if resume != "latest":
        path = Path(resume)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume {resume}: no checkpoint folder there")
        return path
    found = sorted((int(m.group(1)), p) for p in (out / CHECKPOINTS_DIR).glob("step-*")
                   if (m := re.fullmatch(r"step-(\d+)", p.name)) and p.is_dir())
    if not found:
        raise FileNotFoundError(f"--resume latest: no checkpoint in {out / CHECKPOINTS_DIR}")
    return found[-1][1]


def _prune_checkpoints(out: Path, keep: int) -> None:
    found = sorted((int(m.group(1)), p) for p in (out / CHECKPOINTS_DIR).glob("step-*")
                   if (m := re.fullmatch(r"step-(\d+)", p.name)))
    for _, path in found[: max(0, len(found) - keep)]:
        shutil.rmtree(path, ignore_errors=True)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the step a resumed run restarts from (they will be logged again)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            pass
    path.write_text("".join(line + "\n" for line in keep))


# ----------------------------------------------------------------------------------------------------------
# the loop


def _default_mixed_precision() -> str:
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return os.environ["ACCELERATE_MIXED_PRECISION"]
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _load_model(args: TrainArgs, mixed_precision: str, sharded: bool = False):
    """(model, processor, the checkpoint's dtype). Trained weights are float32 (master weights); frozen ones stay
    in the checkpoint's 16-bit dtype under mixed precision (half the memory, and saved back bit for bit)."""
    from . import ASEForConditionalGeneration, ASEProcessor  # noqa: F401  (registers the Auto classes)

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
        raise RuntimeError(f"launched as {world} processes but accelerate formed a group of {accelerator.num_processes}")
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
            print(f"resumed from {ckpt} at step {state.step} (epoch {state.epoch}, batch {state.batches_in_epoch})", flush=True)
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


def main(argv: list[str] | None = None) -> int:
    from transformers.utils import logging as hf_logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # weight-loading bars; the training bar is ours
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = parse_args(argv)
        result = train(args)
    except (OSError, ValueError) as e:  # bad paths, specs, flags: one clear line, not a traceback
        print(f"ase-mllm train: {e}", file=sys.stderr)
        return 2
    if result.get("model_dir") is None:
        print(f"stopped at step {result['steps']}/{result['total_steps']}; resume with --resume", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
