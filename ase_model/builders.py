"""Building an ASE-MLLM from existing checkpoints.

* `from_llava`: wrap a LLaVA-1.5-family model. Its tower, projector, LLM and LM head are reused as they are
  (the same module objects, no copy); only IASM, the fusion blocks and the score head are new, and with their
  gates at 0 the wrapped model computes exactly what the LLaVA model computes.
* `from_parts`: a vision checkpoint (CLIP/SigLIP, full or vision-only) + a causal LM, with a fresh projector.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    CLIPVisionModel,
    LlavaForConditionalGeneration,
    PreTrainedModel,
    SiglipVisionModel,
)

from .configuration_ase import ASEConfig

_VISION_CLASSES = {"clip": CLIPVisionModel, "clip_vision_model": CLIPVisionModel,
                   "siglip": SiglipVisionModel, "siglip_vision_model": SiglipVisionModel}

LLAVA_FIELDS = (
    "image_token_index",
    "image_seq_length",
    "projector_hidden_act",
    "vision_feature_select_strategy",
    "vision_feature_layer",
    "multimodal_projector_bias",
    "tie_word_embeddings",
)


def _materialize(model: PreTrainedModel, module: nn.Module, device, dtype) -> None:
    """Give a module built on the meta device real storage and the model's initialisation."""
    module.to_empty(device=device)
    for sub in module.modules():
        model._init_weights(sub)
    module.to(dtype)


def _assemble(cls, config: ASEConfig, vision_tower: nn.Module, language_model: nn.Module, lm_head: nn.Module,
              projector=None):
    """Build the ASE skeleton on the meta device and plug the given modules in (no weight copies)."""
    with torch.device("meta"):
        model = cls(config)
    ref = next(language_model.parameters())
    model.model.vision_tower.vision_model = vision_tower
    model.model.language_model = language_model
    model.lm_head = lm_head
    fresh = [model.model.vision_tower.iasm, model.model.vision_tower.fusion, model.model.score_head]
    if projector is not None:
        model.model.multi_modal_projector = projector
    else:
        fresh.append(model.model.multi_modal_projector)
    for module in fresh:
        _materialize(model, module, ref.device, ref.dtype)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def from_llava(cls, src, fusion_layers=None, torch_dtype=None, **ase_kwargs):
    if isinstance(src, LlavaForConditionalGeneration):
        llava = src
    else:
        llava = LlavaForConditionalGeneration.from_pretrained(src, dtype=torch_dtype or "auto")
    lc = llava.config
    config = ASEConfig(
        vision_config=lc.vision_config.to_dict(),
        text_config=lc.text_config.to_dict(),
        fusion_layers=fusion_layers,
        **{field: getattr(lc, field) for field in LLAVA_FIELDS},
        **ase_kwargs,
    )
    config._attn_implementation = lc._attn_implementation
    model = _assemble(
        cls,
        config,
        llava.model.vision_tower,
        llava.model.language_model,
        llava.lm_head,
        projector=llava.model.multi_modal_projector,
    )
    model.generation_config = llava.generation_config
    return model.eval() if not llava.training else model


def _load_vision(vision, torch_dtype):
    if isinstance(vision, PreTrainedModel):
        return getattr(vision, "vision_model", vision) if not hasattr(vision, "embeddings") else vision
    config = AutoConfig.from_pretrained(vision)
    model_class = _VISION_CLASSES.get(config.model_type)
    if model_class is None:
        raise ValueError(f"{vision}: unsupported vision model type {config.model_type!r} (CLIP or SigLIP)")
    return model_class.from_pretrained(vision, dtype=torch_dtype or "auto")


def from_parts(cls, vision, llm, torch_dtype=None, image_token_index=None, tokenizer=None, **ase_kwargs):
    """Compose an ASE-MLLM from a vision tower and a causal LM.

    The image token: `image_token_index` if given, else the tokenizer's `<image>` token (added when missing),
    else a new id past the LLM's vocabulary. The LLM's embeddings grow to hold it.
    """
    tower = _load_vision(vision, torch_dtype)
    if isinstance(llm, PreTrainedModel):
        lm = llm
    else:
        lm = AutoModelForCausalLM.from_pretrained(llm, dtype=torch_dtype or "auto")
    if image_token_index is None and tokenizer is not None:
        if "<image>" not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
        image_token_index = tokenizer.convert_tokens_to_ids("<image>")
    if image_token_index is None:
        image_token_index = lm.config.vocab_size
    if image_token_index >= lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(image_token_index + 1)
    vc = tower.config
    strategy = "default" if vc.model_type.startswith("clip") else "full"
    n_patches = (vc.image_size // vc.patch_size) ** 2
    ase_kwargs.setdefault("vision_feature_select_strategy", strategy)
    ase_kwargs.setdefault("vision_feature_layer", -2 if strategy == "default" else -1)
    config = ASEConfig(
        vision_config=vc.to_dict(),
        text_config=lm.config.to_dict(),
        image_token_index=image_token_index,
        image_seq_length=n_patches,
        tie_word_embeddings=bool(getattr(lm.config, "tie_word_embeddings", False)),
        **ase_kwargs,
    )
    base = getattr(lm, lm.base_model_prefix)
    model = _assemble(cls, config, tower, base, lm.get_output_embeddings())
    model.generation_config = lm.generation_config
    return model
