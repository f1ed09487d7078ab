"""Shared fixtures: offline Hugging Face, tiny real models built from configs, real sample photos."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PIL import Image

try:
    from transformers.utils import logging as _hf_logging

    _hf_logging.disable_progress_bar()
    _hf_logging.set_verbosity_error()
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random ASE-MLLM (CLIP + Llama) saved the way real checkpoints are; gates slightly open."""
    from ase_model.testing import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-model"), open_gates=0.5)


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    """Real photographs shipped with scikit-image and scikit-learn (no download)."""
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    out = {name: Image.fromarray(getattr(data, name)()) for name in ("astronaut", "coffee", "chelsea", "rocket")}
    sample = load_sample_images()
    for name, arr in zip(("china", "flower"), sample.images):
        out[name] = Image.fromarray(arr)
    return {k: v.convert("RGB") for k, v in out.items()}


@pytest.fixture()
def photo_files(tmp_path, photos):
    """The sample photos as JPEG files in a temp folder: {name: path}."""
    paths = {}
    for name, im in photos.items():
        path = tmp_path / f"{name}.jpg"
        im.save(path, quality=90)
        paths[name] = path
    return paths


def random_image(seed: int, size=(48, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
