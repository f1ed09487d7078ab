"""ASEProcessor: tokenizer + PIL image processor (no torchvision), prompt building, training batches.

Images are padded to a square with the processor's mean colour before resizing (LLaVA-1.5's "pad" mode)
instead of centre-cropped: a critique must see the whole frame — cropping would change the composition it
judges — and the saliency map can then be cropped back to the photo's own aspect ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor, BatchFeature, ProcessorMixin
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from .configuration_ase import ASEConfig
from .saliency import spectral_residual

DEFAULT_PROMPT = (
    "Critique this photograph: composition, colour and lighting, exposure, focus, subject, "
    "depth of field and your overall impression."
)
IGNORE_INDEX = -100


def make_image_processor(size: int, mean: Sequence[float], std: Sequence[float]) -> LlavaImageProcessorPil:
    """The square, pad-to-square image processor every ASE model uses (PIL backend)."""
    return LlavaImageProcessorPil(
        do_pad=True,
        do_resize=True,
        size={"height": size, "width": size},
        do_center_crop=False,
        image_mean=list(mean),
        image_std=list(std),
    )


def num_image_tokens(config) -> int:
    """How many image tokens one image becomes: the tower's patches, plus CLIP's class token when the "full"
    selection strategy keeps it (SigLIP has none), plus IASM's photo-statistics token when there is one, plus one
    token per attribute the attribute head judges."""
    vc = config.vision_config
    cls_token = vc.model_type.startswith("clip") and config.vision_feature_select_strategy == "full"
    return ((vc.image_size // vc.patch_size) ** 2 + int(cls_token)
            + int(getattr(config, "iasm_photo_statistics", False))
            + len(getattr(config, "attribute_labels", None) or {}))


def pad_box(width: int, height: int) -> tuple[float, float, float, float]:
    """Where a width x height photo lies inside its padded square, as fractions (left, top, right, bottom)."""
    side = max(width, height)
    left, top = (side - width) // 2 / side, (side - height) // 2 / side
    return left, top, left + width / side, top + height / side


class ASEProcessor(ProcessorMixin):
    r"""
    Args:
        image_processor: a square, pad-to-square PIL image processor (see `make_image_processor`).
        tokenizer: the LLM's tokenizer, holding the image token.
        num_image_tokens (`int`): how many image tokens one image becomes (the vision tower's patch count,
            plus its class token with the "full" selection strategy).
        prompt (`str`): the default critique instruction.
        use_saliency_prior (`bool`): also return `saliency_prior` (spectral residual) for an IASM that takes it.
    """

    attributes = ["image_processor", "tokenizer"]

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        image_token: str = "<image>",
        num_image_tokens: int = 576,
        prompt: str = DEFAULT_PROMPT,
        use_saliency_prior: bool = False,
        **kwargs,
    ):
        self.image_token = image_token
        self.num_image_tokens = num_image_tokens
        self.prompt = prompt
        self.use_saliency_prior = use_saliency_prior
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)

    # ---- text -------------------------------------------------------------------------------------------
    def build_prompt(self, question: str | None = None) -> str:
        """The user turn with one image, in the LLM's chat template when it has one."""
        content = f"{self.image_token}\n{question or self.prompt}"
        template = self.chat_template or getattr(self.tokenizer, "chat_template", None)
        if template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], chat_template=template, tokenize=False,
                add_generation_prompt=True,
            )
        return f"USER: {content} ASSISTANT:"

    def _expand(self, text: str) -> str:
        return text.replace(self.image_token, self.image_token * self.num_image_tokens)

    # ---- images -----------------------------------------------------------------------------------------
    def image_size(self) -> int:
        return int(self.image_processor.size["height"])

    def process_images(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        pixels = self.image_processor([im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        out = {"pixel_values": pixels}
        if self.use_saliency_prior:
            out["saliency_prior"] = torch.stack([torch.from_numpy(self.saliency_prior(im)) for im in images])[:, None]
        return out

    def saliency_prior(self, image: Image.Image) -> np.ndarray:
        """Spectral-residual saliency of the padded square image at model resolution."""
        size = self.image_size()
        w, h = image.size
        side = max(w, h)
        square = Image.new("RGB", (side, side), (128, 128, 128))
        square.paste(image.convert("RGB"), ((side - w) // 2, (side - h) // 2))
        return spectral_residual(square.resize((size, size), Image.BILINEAR))

    # ---- batches ----------------------------------------------------------------------------------------
    def __call__(self, images=None, text=None, return_tensors="pt", padding_side: str = "left",
                 **kwargs) -> BatchFeature:
        """Prompts (each with one image token per image) and images -> model inputs, left-padded for generation."""
        if text is None:
            text = [self.build_prompt()] * (len(images) if images is not None else 1)
        if isinstance(text, str):
            text = [text]
        data = dict(
            self.tokenizer(
                [self._expand(t) for t in text],
                return_tensors=return_tensors,
                padding=True,
                padding_side=padding_side,
                add_special_tokens=kwargs.pop("add_special_tokens", True),
            )
        )
        if images is not None:
            data.update(self.process_images(images if isinstance(images, (list, tuple)) else [images]))
        return BatchFeature(data=data, tensor_type=return_tensors)

    def training_batch(self, images: Sequence[Image.Image], targets: Sequence[str],
                       prompts: Sequence[str] | None = None, max_length: int | None = None) -> BatchFeature:
        """Inputs and labels for teacher forcing: prompt tokens are masked, the target ends with EOS."""
        prompts = prompts or [self.build_prompt()] * len(targets)
        eos = self.tokenizer.eos_token or ""
        rows, labels = [], []
        for prompt, target in zip(prompts, targets):
            p = self.tokenizer(self._expand(prompt), add_special_tokens=True)["input_ids"]
            t = self.tokenizer(" " + target.strip() + eos, add_special_tokens=False)["input_ids"]
            ids = (p + t)[: max_length] if max_length else p + t
            rows.append(ids)
            labels.append(([IGNORE_INDEX] * len(p) + t)[: len(ids)])
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        label_ids = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for i, (r, lab) in enumerate(zip(rows, labels)):  # right padding: training needs no generation offsets
            input_ids[i, : len(r)] = torch.tensor(r)
            attention[i, : len(r)] = 1
            label_ids[i, : len(lab)] = torch.tensor(lab)
        data = {"input_ids": input_ids, "attention_mask": attention, "labels": label_ids, **self.process_images(images)}
        return BatchFeature(data=data)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


# registered on import (see ase_model/__init__.py)
AutoProcessor.register(ASEConfig, ASEProcessor, exist_ok=True)

__all__ = ["ASEProcessor", "DEFAULT_PROMPT", "IGNORE_INDEX", "make_image_processor", "num_image_tokens", "pad_box"]
