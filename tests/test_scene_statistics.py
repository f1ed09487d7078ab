"""Scene statistics (the attribute head's inputs for tilt, framing, composition and subject sharpness): each moves
the way its definition says on images whose truth is known."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from ase_model.processing_ase import make_image_processor
from ase_model.scene_statistics import NAMES, NUM_SCENE_STATISTICS, TILT_BINS, scene_statistics
from ase_model.starter.dataset import rotate_crop
from ase_model.starter.edits import apply_edit

MEAN, STD = list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)


def stats(*images: Image.Image) -> list[dict[str, float]]:
    pixels = make_image_processor(224, MEAN, STD)(images=list(images), return_tensors="pt")["pixel_values"]
    return [dict(zip(NAMES, row.tolist())) for row in scene_statistics(pixels, MEAN, STD)]


def hist(row: dict[str, float]) -> np.ndarray:
    return np.array([row[f"tilt_hist_{i:02d}"] for i in range(TILT_BINS)])


@pytest.fixture(scope="module")
def horizon() -> Image.Image:
    """A landscape-shaped scene of straight lines: a horizon and three posts (padding above and below, so the
    photo's own border rows must not read as a horizon)."""
    im = Image.new("RGB", (600, 400), (90, 120, 200))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 250, 600, 400), fill=(60, 110, 50))
    for x in (100, 300, 450):
        draw.rectangle((x, 100, x + 20, 250), fill=(200, 200, 190))
    return im


def test_the_tilt_histogram_peaks_at_the_rotation(horizon):
    level, eight, twelve = stats(horizon, rotate_crop(horizon, 8), rotate_crop(horizon, -12))
    assert hist(level).argmax() == 0 and hist(level)[0] > 0.6
    assert 6 <= hist(eight).argmax() <= 9 and hist(eight)[:3].sum() < 0.1
    assert 10 <= hist(twelve).argmax() <= 13
    for row in (level, eight, twelve):
        assert row["coherent_share"] > 0.5  # straight edges only


def test_texture_has_little_coherent_line_weight(horizon):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    [lines], [texture] = stats(horizon), stats(noise)
    assert texture["coherent_share"] < 0.2 < lines["coherent_share"]


def test_a_subject_cut_by_the_frame_weighs_on_the_border():
    im = Image.new("RGB", (600, 400), (120, 140, 160))
    ImageDraw.Draw(im).ellipse((240, 140, 360, 260), fill=(230, 60, 40))
    whole, = stats(im)
    cut, params = apply_edit(im, "cut_crop", random.Random(0))
    edge, = stats(cut)
    assert abs(whole["sr_x"] - 0.5) < 0.1 and abs(whole["sr_y"] - 0.5) < 0.1
    assert whole["border_max"] < 0.05 < 0.2 < edge["border_max"]
    side = {"left": "border_left", "right": "border_right", "top": "border_top", "bottom": "border_bottom"}
    assert edge[side[params["side"]]] == edge["border_max"]


def test_subject_sharpness_falls_when_only_the_subject_is_blurred():
    rng = np.random.default_rng(1)
    base = Image.fromarray((rng.random((400, 600)) > 0.5).astype(np.uint8) * 120 + 60).convert("RGB")
    base = base.filter(ImageFilter.GaussianBlur(3))  # a soft background
    detail = Image.fromarray(((np.indices((120, 120)).sum(0) // 6) % 2 * 200 + 30).astype(np.uint8)).convert("RGB")
    sharp = base.copy()
    sharp.paste(detail, (240, 140))
    soft = base.copy()
    soft.paste(detail.filter(ImageFilter.GaussianBlur(3)), (240, 140))
    a, b = stats(sharp, soft)
    assert a["subject_sharpness"] > 1.5 * b["subject_sharpness"]


@pytest.mark.parametrize("size", [(8, 2000), (2000, 8), (1, 10000), (10000, 1)])
def test_slivers_of_photos_give_finite_zeros(size):
    im = Image.fromarray(np.random.default_rng(2).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    [row] = stats(im)
    values = torch.tensor(list(row.values()))
    assert len(values) == NUM_SCENE_STATISTICS and torch.isfinite(values).all()
