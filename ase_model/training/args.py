"""The training command line: TrainArgs, its parser, and the learning-rate defaults."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

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


