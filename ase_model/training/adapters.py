"""Preparing the model for a stage: what trains, LoRA, patch dropout, activation checkpointing, parameter groups."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .args import (
    TrainArgs,
)

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


