"""The heat overlay's scale on real saliency maps (the starter model's, of real photos): a log scale spreads the
map's structure over the colour ramp where the old linear one showed only the peak; and its legend."""

from __future__ import annotations

import numpy as np
import pytest

from ase_model.model_id import default_model_dir
from ase_model.overlay import CONTOUR_LEVELS, HEAT_CLEAR, colormap, heat_legend, heat_scale, overlay_layer, upsample

needs_starter = pytest.mark.skipif(not (default_model_dir() / "config.json").exists(),
                                   reason="the starter model is not in the package")


def linear_alpha(m: np.ndarray) -> np.ndarray:
    """The heat weight before the log scale: the same curve on the map's linear value (the old overlay)."""
    return np.clip((m - HEAT_CLEAR) / (1 - HEAT_CLEAR), 0, 1) ** 1.5


@pytest.fixture(scope="module")
def real_maps(photos):
    """The starter model's saliency maps of three real photos, upsampled to the photos' sizes."""
    from ase_model.critic import Critic

    critic = Critic.from_pretrained(device="cpu")
    names = ["coffee", "chelsea", "china"]
    critiques = critic.critique([photos[n] for n in names], max_new_tokens=4)  # the map needs no text
    return {n: upsample(c.saliency, *photos[n].size) for n, c in zip(names, critiques)}


@needs_starter
@pytest.mark.slow  # the starter model on three photos: ~1 min on 2 busy cores
def test_heat_scale_spreads_real_maps(real_maps, photos):
    for name, m in real_maps.items():
        w, h = photos[name].size
        above_old = float((m > 0.5).mean())  # linear: the share of the frame above the ramp's middle
        above_new = float((heat_scale(m) > 0.5).mean())
        # measured on these photos: 0.3-1 % of the frame before, 10-18 % now
        assert above_old < 0.03 and above_new > max(0.05, 5 * above_old), (name, above_old, above_new)
        alpha = overlay_layer(m, w, h, "heat")[..., 3] / 255.0
        shown_old, shown_new = float((linear_alpha(m) > 0.1).mean()), float((alpha > 0.1).mean())
        assert shown_new > 3 * shown_old, (name, shown_old, shown_new)  # visibly coloured: more than a blob
        assert shown_new < 0.6, (name, shown_new)  # still an overlay on the photo, not a veil over all of it
        # the frame's values spread over the ramp (measured: 2-2.8x the linear map's spread), not one peak on a
        # field that all sits at the ramp's bottom
        assert heat_scale(m).std() > 1.5 * m.std(), (name, float(m.std()), float(heat_scale(m).std()))


def test_heat_scale_and_legend_agree():
    assert heat_scale(np.array([0.0, 0.001, 0.01, 0.1, 1.0])).tolist() == pytest.approx([0, 0, 0, 0.5, 1])
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    assert (np.diff(heat_scale(x)) >= 0).all()  # monotonic: more weight is never a darker colour
    lg = heat_legend()
    assert [t for _, t in lg["ticks"]] == ["1 %", "10 %", "peak"]
    for pos, label in lg["ticks"]:  # each tick sits where heat_scale puts that fraction of the peak
        frac = 1.0 if label == "peak" else float(label.rstrip(" %")) / 100
        assert heat_scale(np.float32(frac)) == pytest.approx(pos, abs=1e-3)
    for pos, colour in lg["stops"]:
        assert colour == "#%02x%02x%02x" % tuple(int(c) for c in colormap(pos))
    assert lg["clear"] == HEAT_CLEAR and "2 %" in lg["low"]
    # under the clear point the photo stays untouched; contours keep the linear levels
    m = np.linspace(0, 1, 64, dtype=np.float32)[None].repeat(8, 0)
    layer = overlay_layer(m, 64, 8, "heat")
    assert (layer[..., 3][heat_scale(m) < HEAT_CLEAR - 0.005] == 0).all()
    assert CONTOUR_LEVELS == (0.2, 0.4, 0.6, 0.8)
