"""The attribute head: verdicts from the photo statistics and the saliency map's geometry, one LLM token per
attribute (the embedding of the predicted label), saved and loaded like any weight, trained by the recipe and
not by the caption loss."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from ase_model import ASEForConditionalGeneration
from ase_model.photo_statistics import GEOMETRY_NAMES, NUM_STATISTICS, saliency_geometry
from ase_model.starter.dataset import source_photos
from ase_model.testing import build_processor, tiny_config
from ase_model.training import TrainArgs, add_patch_dropout, new_modules, prepare_model

# Not in name order: the head lays attributes out in name order, as config.json is written with sorted keys.
LABELS = {"saturation": ["muted", "natural"], "exposure": ["underexposed", "well exposed", "overexposed"]}


@pytest.fixture(scope="module")
def photos():
    src = source_photos()
    return [src["astronaut"].resize((64, 64)), src["coffee"].resize((80, 60))]


def test_attribute_tokens_follow_the_predicted_labels(photos, tmp_path):
    config = tiny_config(attribute_labels=LABELS)
    plain = tiny_config()
    torch.manual_seed(0)
    model = ASEForConditionalGeneration(config).eval()
    processor = build_processor(config)
    assert processor.num_image_tokens == build_processor(plain).num_image_tokens + len(LABELS)
    head = model.model.attribute_head
    assert head.mlp[0].in_features == NUM_STATISTICS + len(GEOMETRY_NAMES)
    with torch.no_grad():  # make "overexposed" and "natural" win whatever the photo
        head.mlp[-1].bias.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0, 50.0]))
    inputs = processor(images=photos, text=["USER: <image>\nCritique. ASSISTANT:"] * 2, return_tensors="pt")
    with torch.no_grad():
        image = model.model.get_image_features(inputs["pixel_values"])
        assert image.attribute_logits.shape == (2, 5)
        assert head.predict(image.attribute_logits) == [{"exposure": "overexposed", "saturation": "natural"}] * 2
        want = head.embeddings.weight[[2, 3 + 1]]  # each attribute's label rows, one attribute after the other
        assert torch.equal(image.image_features[:, -2:], want.expand(2, -1, -1))
        assert image.image_features.shape[1] == processor.num_image_tokens
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert generated.shape[0] == 2
        assert model(**inputs).attribute_logits.shape == (2, 5)
        head.mlp[-1].bias.copy_(torch.tensor([50.0, 0.0, 0.0, 50.0, 0.0]))
        flipped = model.model.get_image_features(inputs["pixel_values"])
    assert head.predict(flipped.attribute_logits)[0] == {"exposure": "underexposed", "saturation": "muted"}
    assert torch.equal(flipped.image_features[:, -2:], head.embeddings.weight[[0, 3]].expand(2, -1, -1))
    # the standardisation buffers are weights like any other: saved and loaded
    with torch.no_grad():
        head.input_mean.fill_(0.25)
        head.input_std.fill_(2.0)
    model.save_pretrained(tmp_path / "m")
    again = ASEForConditionalGeneration.from_pretrained(tmp_path / "m").eval()
    assert list(again.model.attribute_head.labels) == list(head.labels) == ["exposure", "saturation"]
    assert torch.equal(again.model.attribute_head.input_std, head.input_std)
    with torch.no_grad():
        assert torch.equal(again.model.get_image_features(inputs["pixel_values"]).attribute_logits,
                           model.model.get_image_features(inputs["pixel_values"]).attribute_logits)


def test_attribute_labels_are_validated():
    with pytest.raises(ValueError, match="at least two labels"):
        tiny_config(attribute_labels={"exposure": ["fine"]})


def test_saliency_geometry_is_measured_in_the_photo_not_the_padding():
    """A 2:1 photo padded to a square: a saliency peak at the photo's right third reads x = 2/3 of the photo,
    y = its middle, although the map covers the padding too."""
    mean, std = list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
    processor = build_processor(tiny_config()).image_processor
    photo = Image.effect_noise((96, 48), 40).convert("RGB")
    pixels = processor(images=[photo], return_tensors="pt")["pixel_values"]
    side = pixels.shape[-1] // 4  # a map at 1/4 resolution: 8 x 8 over a 32 px input, the photo in rows 2..5
    sal = torch.zeros(1, side, side)
    sal[0, 3:5, 5] = 1.0  # the column centred at 5.5 / 8 of the width, the photo's middle rows
    x, y, centre, thirds = saliency_geometry(sal, pixels, mean, std)[0].tolist()
    assert x == pytest.approx(5.5 / 8, abs=1e-4) and y == pytest.approx(0.5, abs=1e-4)
    assert centre == pytest.approx(5.5 / 8 - 0.5, abs=1e-4)
    assert thirds == pytest.approx(((5.5 / 8 - 2 / 3) ** 2 + (0.5 - 1 / 3) ** 2) ** 0.5, abs=1e-4)


def test_caption_stages_train_the_label_embeddings_not_the_classifier():
    model = ASEForConditionalGeneration(tiny_config(attribute_labels=LABELS))
    head = model.model.attribute_head
    assert new_modules(model)["attribute_embeddings"] is head.embeddings
    prepare_model(model, TrainArgs(model="m", data=["jsonl:x"], out="o", stage="finetune", full=True,
                                   freeze_tower=True))
    assert head.embeddings.weight.requires_grad
    assert not any(p.requires_grad for p in head.mlp.parameters())


def test_patch_dropout_keeps_the_attribute_tokens():
    model = ASEForConditionalGeneration(tiny_config(attribute_labels=LABELS))
    add_patch_dropout(model, 1.0)
    pixels = torch.randn(2, 3, model.config.vision_config.image_size, model.config.vision_config.image_size)
    model.train()
    features = model.model.get_image_features(pixels).image_features
    bias = model.model.multi_modal_projector(torch.zeros(1, 1, model.config.vision_config.hidden_size))
    assert torch.allclose(features[:, :-2], bias.expand_as(features[:, :-2]))  # every patch hidden
    assert not torch.allclose(features[:, -2:], bias.expand_as(features[:, -2:]))


def test_the_score_can_read_the_attribute_inputs_and_is_calibrated(photos, tmp_path):
    from ase_model.modeling_ase import calibrate_score
    from ase_model.scene_statistics import NUM_SCENE_STATISTICS

    knots = [[2.0, 1.0], [5.0, 4.0], [6.0, 8.0]]
    config = tiny_config(attribute_labels=LABELS, attribute_scene_statistics=True, score_from_attributes=True,
                         score_calibration=knots)
    torch.manual_seed(0)
    model = ASEForConditionalGeneration(config).eval()
    n_in = NUM_STATISTICS + len(GEOMETRY_NAMES) + NUM_SCENE_STATISTICS
    assert model.model.attribute_head.mlp[0].in_features == model.model.score_head.mlp[0].in_features == n_in
    processor = build_processor(config)
    pixels = processor.process_images(photos)["pixel_values"]
    with torch.no_grad():
        model.model.score_head.mlp[-1].bias.fill_(-100.0)  # raw score 0: below the first knot -> flat
        assert torch.allclose(model.model.get_image_features(pixels).score, torch.tensor([1.0, 1.0]))
        model.model.score_head.mlp[-1].bias.fill_(0.0)
        model.model.score_head.mlp[-1].weight.fill_(0.0)  # raw score 5 (sigmoid 0.5 of 10) -> 4.0
        assert torch.allclose(model.model.get_image_features(pixels).score, torch.tensor([4.0, 4.0]))
    raw = torch.tensor([0.0, 2.0, 3.5, 5.0, 5.5, 6.0, 9.0])
    assert torch.allclose(calibrate_score(raw, knots), torch.tensor([1.0, 1.0, 2.5, 4.0, 6.0, 8.0, 8.0]))
    assert torch.equal(calibrate_score(raw, None), raw)
    model.save_pretrained(tmp_path / "m")
    again = ASEForConditionalGeneration.from_pretrained(tmp_path / "m").eval()
    assert again.config.score_calibration == knots
    with torch.no_grad():
        assert torch.allclose(again.model.get_image_features(pixels).score, torch.tensor([4.0, 4.0]))


@pytest.mark.parametrize("bad", [{"score_from_attributes": True},
                                 {"attribute_labels": LABELS, "score_calibration": [[1.0, 2.0]]},
                                 {"attribute_labels": LABELS, "score_calibration": [[1.0, 2.0], [1.0, 3.0]]},
                                 {"attribute_labels": LABELS, "score_calibration": [[1.0, 3.0], [2.0, 2.0]]}])
def test_score_options_are_validated(bad):
    with pytest.raises(ValueError, match="score_from_attributes|score_calibration"):
        tiny_config(**bad)


def test_the_caption_stages_leave_an_attribute_score_head_alone():
    config = tiny_config(attribute_labels=LABELS, score_from_attributes=True)
    model = ASEForConditionalGeneration(config)
    prepare_model(model, TrainArgs(model="x", out="y", data=["jsonl:none"], stage="finetune", full=True,
                                   freeze_tower=True))
    assert not any(p.requires_grad for p in model.model.score_head.parameters())
    assert any(p.requires_grad for p in model.model.language_model.parameters())
