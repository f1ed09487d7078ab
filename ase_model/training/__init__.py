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

import logging
import os
import sys

from .adapters import (
    add_patch_dropout,
    iasm_map_size,
    lora_target_names,
    new_modules,
    param_groups,
    prepare_model,
    set_activation_checkpointing,
)
from .args import (
    CHECKPOINTS_DIR,
    DEFAULT_LORA_TARGETS,
    IGNORE_INDEX,
    STAGES,
    TrainArgs,
    build_parser,
    parse_args,
    resolve_lrs,
)
from .batches import (
    Collator,
    EpochShuffleSampler,
    TrainDataset,
    TrainExample,
    jsonl_saliency_labels,
    load_examples,
    saliency_target,
)
from .checkpoints import (
    TrainState,
    find_checkpoint,
)
from .loop import (
    train,
)
from .losses import (
    CaptionObjective,
    SaliencyObjective,
    saliency_loss,
)


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


__all__ = [
    "CHECKPOINTS_DIR",
    "CaptionObjective",
    "Collator",
    "DEFAULT_LORA_TARGETS",
    "EpochShuffleSampler",
    "IGNORE_INDEX",
    "STAGES",
    "SaliencyObjective",
    "TrainArgs",
    "TrainDataset",
    "TrainExample",
    "TrainState",
    "add_patch_dropout",
    "build_parser",
    "find_checkpoint",
    "iasm_map_size",
    "jsonl_saliency_labels",
    "load_examples",
    "lora_target_names",
    "new_modules",
    "param_groups",
    "parse_args",
    "prepare_model",
    "resolve_lrs",
    "saliency_loss",
    "saliency_target",
    "set_activation_checkpointing",
    "train",
    "main",
]
