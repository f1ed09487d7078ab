"""IASM's photo-statistics token: the tone, colour and detail statistics match the analytic critic's measurements on
real photos (square padding excluded), move the right way under controlled edits, and the token is part of the
model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from ase_model import ASEForConditionalGeneration
from ase_model.photo_statistics import NAMES, NUM_STATISTICS, photo_statistics, rgb_to_lab
from ase_model.processing_ase import make_image_processor
from ase_model.starter.analytic import measure
from ase_model.starter.dataset import source_photos
from ase_model.testing import build_processor, tiny_config

CLIP_MEAN, CLIP_STD = list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
# statistic -> (analytic measurement, scale of the statistic, tolerance in the measurement's units)
AGREES_WITH_TEACHER = {
    "luma_mean": ("mean_luminance", 1, 0.003),
    "luma_p99": ("p99_luminance", 1, 0.01),
    "highlight_clip": ("highlight_clip", 1, 0.01),
    "luma_spread": ("contrast_spread", 1, 0.01),
    "colorfulness": ("colorfulness", 100, 0.6),
    "chroma_p99": ("chroma_p99", 100, 1.0),
    "hsv_saturation_mean": ("mean_saturation", 1, 0.005),
    "neutral_b": ("neutral_b", 100, 0.6),
    "gray_edge_warm": ("wb_warm", 1, 0.02),
    "gray_edge_green": ("wb_green", 1, 0.01),
    "edge_sharpness": ("sharpness", 1, 0.05),
    "noise_sigma": ("noise_sigma", 10, 0.15),
}


def fit(img: Image.Image, size: int = 224) -> Image.Image:
    w, h = img.size
    s = size / max(w, h)
    return img.convert("RGB").resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)


@pytest.fixture(scope="module")
def image_processor():
    return make_image_processor(224, CLIP_MEAN, CLIP_STD)


def stats_of(images, image_processor) -> dict[str, np.ndarray]:
    pixels = image_processor(images=images, return_tensors="pt")["pixel_values"]
    s = photo_statistics(pixels, CLIP_MEAN, CLIP_STD).numpy()
    return {name: s[:, i] for i, name in enumerate(NAMES)}


@pytest.mark.parametrize("name", ["coffee", "china", "astronaut", "camera"])
def test_statistics_match_the_analytic_critic(name, image_processor):
    """coffee and china are not square: a statistic that counted the padding would miss the teacher's value."""
    img = fit(source_photos()[name])
    want = measure(img)
    got = stats_of([img], image_processor)
    for stat, (key, scale, tol) in AGREES_WITH_TEACHER.items():
        assert abs(got[stat][0] * scale - want[key]) <= tol, (name, stat, got[stat][0] * scale, want[key])


def test_statistics_follow_controlled_edits(image_processor):
    img = fit(source_photos()["astronaut"])
    a = np.asarray(img, np.float32)
    darker = Image.fromarray((a * 0.5).astype(np.uint8))
    grey = np.asarray(img.convert("L"), np.float32)[..., None]
    muted = Image.fromarray((grey + 0.3 * (a - grey)).astype(np.uint8))
    warm = Image.fromarray(np.clip(a * [1.15, 1.0, 0.8], 0, 255).astype(np.uint8))
    soft = img.filter(ImageFilter.GaussianBlur(2))
    noisy = Image.fromarray(np.clip(a + np.random.default_rng(0).normal(0, 12, a.shape), 0, 255).astype(np.uint8))
    s = stats_of([img, darker, muted, warm, soft, noisy], image_processor)
    assert s["luma_mean"][1] < 0.6 * s["luma_mean"][0]
    assert s["chroma_p99"][2] < 0.5 * s["chroma_p99"][0] and s["colorfulness"][2] < 0.5 * s["colorfulness"][0]
    assert s["gray_edge_warm"][3] > s["gray_edge_warm"][0] + 0.25  # log(1.15 / 0.8) on linear light is larger still
    assert s["gray_world_warm"][3] > s["gray_world_warm"][0] + 0.25
    assert s["edge_sharpness"][4] < 0.7 * s["edge_sharpness"][0]
    assert s["noise_sigma"][5] > 2 * s["noise_sigma"][0]


def test_lab_matches_opencv():
    import cv2

    rgb = np.random.default_rng(0).random((8, 9, 3)).astype(np.float32)
    want = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    got = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(got - want).max() < 0.5  # OpenCV interpolates tables; 0.5 of ~100 units


def test_statistics_token_in_the_model(tmp_path):
    """The token is one more IASM token (for the fusion blocks) and one more image token (for the LLM), depends
    on the photo, is batch-independent and survives a save/load; without the option IASM is unchanged."""
    config = tiny_config(iasm_photo_statistics=True)
    model = ASEForConditionalGeneration(config).eval()
    plain = ASEForConditionalGeneration(tiny_config()).eval()
    processor = build_processor(config)
    src = source_photos()
    size = config.vision_config.image_size
    images = [fit(src["astronaut"], size), fit(src["coffee"], size)]
    pixels = processor.process_images(images)["pixel_values"]
    with torch.no_grad():
        tokens = model.model.vision_tower.iasm(pixels)[2]
        assert tokens.shape[1] == plain.model.vision_tower.iasm(pixels)[2].shape[1] + 1 == config.iasm_num_tokens + 2
        assert not torch.allclose(tokens[0, -1], tokens[1, -1])
        single = model.model.vision_tower.iasm(pixels[1:])[2]
        assert torch.allclose(single[0], tokens[1], atol=1e-5)
    assert model.model.vision_tower.iasm.statistics.mlp[0].in_features == NUM_STATISTICS
    # ... and reaches the LLM directly as one more image token after the patches
    inputs = processor(images=images, text=["USER: <image>\nCritique. ASSISTANT:"] * 2, return_tensors="pt")
    with torch.no_grad():
        feats = model.model.get_image_features(inputs["pixel_values"]).image_features
        assert feats.shape[1] == config.image_seq_length == plain.config.image_seq_length + 1
        assert torch.isfinite(model(**inputs).logits).all()
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[0] == 2
    model.save_pretrained(tmp_path / "m")
    again = ASEForConditionalGeneration.from_pretrained(tmp_path / "m").eval()
    assert again.config.iasm_photo_statistics
    with torch.no_grad():
        assert torch.equal(again.model.vision_tower.iasm(pixels)[2], tokens)
