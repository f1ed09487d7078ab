"""The shipped starter model is right about photos it never saw in training.

The photos come from the dataset generator's held-out sources (never in the training split); each is
degraded in a way the starter model was taught to recognise, and its critique must say so (through the
deterministic tagger, the same path the daemon, the plugin and the viewer use).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from ase_model.critic import Critic, default_model_dir
from ase_model.starter.dataset import source_photos
from ase_model.tags import tag_for_verdict

pytestmark = pytest.mark.skipif(not (default_model_dir() / "config.json").exists(),
                                reason="the starter model is not built (python -m ase_model.starter.recipe)")


def _stops(im: Image.Image, stops: float) -> Image.Image:
    lin = (np.asarray(im, dtype=np.float32) / 255.0) ** 2.2 * 2.0**stops
    return Image.fromarray(np.clip(np.clip(lin, 0, 1) ** (1 / 2.2) * 255 + 0.5, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def starter():
    return Critic.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def held_out():
    from ase_model.starter import dataset

    photos = source_photos()
    names = [n.split(":", 1)[1] for n in dataset.DEFAULT_HOLDOUT if n.split(":", 1)[1] in photos]
    assert names, "the held-out source photos must be available offline"
    return [photos[n].convert("RGB").resize((336, round(336 * photos[n].height / photos[n].width))) for n in names]


@pytest.mark.parametrize("fault,attribute,verdict", [
    (lambda im: _stops(im, -2.0), "exposure", "underexposed"),
    (lambda im: im.filter(ImageFilter.GaussianBlur(3)), "sharpness", "soft"),
    (lambda im: ImageEnhance.Color(im).enhance(0.2), "saturation", "muted"),
])
def test_starter_names_the_fault(starter, held_out, fault, attribute, verdict):
    expected = tag_for_verdict(attribute, verdict)
    results = starter.critique([fault(im) for im in held_out])
    for c in results:
        assert expected in c.tags, f"expected {expected} in {c.tags}: {c.text!r}"
        assert c.attributes, "the critique comes in labelled attribute sections"


def test_starter_scores_faults_lower(starter, held_out):
    clean = starter.critique(held_out)
    dark = starter.critique([_stops(im, -2.0) for im in held_out])
    for a, b in zip(clean, dark):
        assert b.score < a.score, (a.score, b.score)
