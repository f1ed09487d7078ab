"""FLOP counts of IAS-ViT's parts, measured with torch's FlopCounterMode (no estimates by hand).

Counted on the meta device: no weights, no compute, and every op is seen (on CPU tensors the fused
scaled-dot-product attention kernel escapes the counter, which would understate the ViT).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@torch.no_grad()
def vision_flops(config) -> dict[str, float]:
    """FLOPs for one image: the vision tower as LLaVA runs it, IASM, and the fusion blocks."""
    from .modeling_ase import IASViT

    with torch.device("meta"):
        tower = IASViT(config)
        size = config.vision_config.image_size
        pixels = torch.zeros(1, 3, size, size)
        total = _count(lambda: tower(pixels))
        iasm = _count(lambda: tower.iasm(pixels))
        _, _, tokens = tower.iasm(pixels)
        n_patches = (size // config.vision_config.patch_size) ** 2
        x = torch.zeros(1, n_patches, config.vision_config.hidden_size)
        fusion = sum(_count(lambda b=b: b(x, tokens)) for b in tower.fusion.values())
    vit = total - iasm - fusion
    return {
        "vit_gflops": vit / 1e9,
        "iasm_gflops": iasm / 1e9,
        "fusion_gflops": fusion / 1e9,
        "iasm_ratio": iasm / vit,
        "fusion_ratio": fusion / vit,
    }
