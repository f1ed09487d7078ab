"""Loaders for aesthetic-captioning and saliency datasets, in their published on-disk layouts.

`load_captions("FORMAT:PATH", split)` returns `CaptionSample`s and a `LoadReport` that lists every missing
image and malformed record; `load_saliency` does the same for saliency sets. One module per dataset family
(pccd, ava, dpc, rpcd, jsonl, saliency) on the shared `base`. The formats, split rules, score scales and
comment clean-up are described in docs/training.md ("The loaders in detail").
"""

from .base import (
    FORMATS,
    IMAGE_EXTS,
    SALIENCY_FORMATS,
    SPLITS,
    CaptionSample,
    LoadReport,
    SaliencySample,
    clean_comment,
    hash_split,
    normalise_split,
)
from .captions import load_captions
from .saliency import load_saliency, read_fixation_map, read_fixations

__all__ = [
    "FORMATS",
    "SALIENCY_FORMATS",
    "SPLITS",
    "IMAGE_EXTS",
    "CaptionSample",
    "LoadReport",
    "SaliencySample",
    "load_captions",
    "load_saliency",
    "read_fixation_map",
    "read_fixations",
    "clean_comment",
    "hash_split",
    "normalise_split",
]
