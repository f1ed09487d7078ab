"""The Critic (the daemon's API) and the `ase-mllm` CLI, on a tiny model saved and loaded like a real one."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ase_model.critic import Critic, crop_saliency, fingerprint
from ase_model.imageio import ImageLoadError
from ase_model.saliency import from_png


@pytest.fixture(scope="module")
def critic(tiny_model_dir):
    return Critic.from_pretrained(tiny_model_dir, device="cpu")


def test_critique_fields(critic, photos, tiny_model_dir):
    [c] = critic.critique([photos["astronaut"]], max_new_tokens=12)
    assert isinstance(c.text, str) and c.text == c.text.strip()
    assert 0.0 <= c.score <= 10.0
    assert c.model == critic.model_id == fingerprint(tiny_model_dir)
    assert isinstance(c.attributes, dict) and isinstance(c.tags, list)
    assert all(t.startswith("aesthetics|") for t in c.tags)
    assert c.saliency.dtype == np.float32
    assert c.saliency.min() >= 0.0 and c.saliency.max() == pytest.approx(1.0)
    assert c.timings["new_tokens"] > 0


def test_saliency_follows_photo_aspect(critic, photos):
    wide = photos["astronaut"].resize((300, 100))
    tall = photos["astronaut"].resize((100, 300))
    square = photos["astronaut"].resize((200, 200))
    cw, ct, cs = critic.critique([wide, tall, square], max_new_tokens=2)
    for c, ratio in ((cw, 3.0), (ct, 1 / 3), (cs, 1.0)):
        h, w = c.saliency.shape
        assert w / h == pytest.approx(ratio, rel=0.05), (w, h)


def test_crop_saliency_cuts_the_padding():
    sal = np.zeros((8, 8), np.float32)
    sal[2:6, :] = 1.0  # the photo occupies the middle half of a 2:1 landscape padded square
    out = crop_saliency(sal, (200, 100), long_side=64)
    assert out.shape == (32, 64)
    assert out[8:-8].min() > 0.99, "only the photo's region of the square is kept"


def test_batch_equals_single(critic, photos):
    images = [photos["coffee"], photos["chelsea"].resize((120, 80)), photos["rocket"]]
    batched = critic.critique(images, max_new_tokens=10)
    for image, b in zip(images, batched):
        [s] = critic.critique([image], max_new_tokens=10)
        assert s.text == b.text
        assert s.score == pytest.approx(b.score, abs=1e-4)
        np.testing.assert_allclose(s.saliency, b.saliency, atol=1e-4)
        assert s.tags == b.tags


def test_stream_callback_receives_the_text(critic, photos):
    got: dict[int, str] = {}
    results = critic.critique([photos["coffee"], photos["china"]], max_new_tokens=10,
                              stream=lambda i, delta: got.__setitem__(i, got.get(i, "") + delta))
    for i, c in enumerate(results):
        assert got.get(i, "").strip() == c.text


def test_critique_from_path_and_bytes(critic, photo_files):
    path = photo_files["chelsea"]
    a = critic.critique([path], max_new_tokens=6)[0]
    b = critic.critique([path.read_bytes()], max_new_tokens=6)[0]
    assert a.image == str(path)
    assert a.text == b.text and a.score == pytest.approx(b.score)


def test_bad_image_raises_clear_error(critic, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    with pytest.raises(ImageLoadError, match="notes.jpg"):
        critic.critique([bad])


def test_default_model_dir_missing_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("ASE_MODEL", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no ASE-MLLM model"):
        Critic.from_pretrained()


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ase_model.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_end_to_end(tmp_path, photo_files):
    model = tmp_path / "model"
    r = run_cli("build", "--tiny", "--out", model)
    assert r.returncode == 0, r.stderr
    r = run_cli("info", model, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["flops"]["iasm_ratio"] > 0 and info["fusion_layers"]

    bad = tmp_path / "broken.png"
    bad.write_bytes(photo_files["coffee"].read_bytes()[:200])
    sal_dir = tmp_path / "sal"
    r = run_cli("critique", "--model", model, "--json", "--max-new-tokens", "6", "--saliency-dir", sal_dir,
                photo_files["coffee"], bad, photo_files["rocket"])
    assert r.returncode == 1, "a failed image must make the exit status non-zero"
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    by_image = {rec["image"]: rec for rec in lines}
    assert set(by_image) == {str(photo_files["coffee"]), str(bad), str(photo_files["rocket"])}
    assert by_image[str(bad)]["error"]["code"] == "bad_image"
    good = by_image[str(photo_files["coffee"])]
    assert {"text", "attributes", "score", "tags", "model", "saliency"} <= set(good)
    sal = from_png(open(good["saliency"], "rb").read())
    w, h = Image.open(photo_files["coffee"]).size
    assert sal.shape[1] / sal.shape[0] == pytest.approx(w / h, rel=0.2)


def test_cli_build_from_llava_folder(tmp_path):
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from ase_model.processing_ase import make_image_processor
    from ase_model.testing import tiny_config, train_tokenizer

    cfg = tiny_config()
    llava = LlavaForConditionalGeneration(LlavaConfig(vision_config=cfg.vision_config.to_dict(),
                                                      text_config=cfg.text_config.to_dict(),
                                                      image_token_index=4, image_seq_length=16))
    llava.save_pretrained(tmp_path / "llava")
    tok = train_tokenizer()
    LlavaProcessor(image_processor=make_image_processor(32, [0.5] * 3, [0.5] * 3), tokenizer=tok, patch_size=8,
                   vision_feature_select_strategy="default").save_pretrained(tmp_path / "llava")
    r = run_cli("build", "--from-llava", tmp_path / "llava", "--out", tmp_path / "ase", "--fusion-layers", "0,1")
    assert r.returncode == 0, r.stderr
    critic = Critic.from_pretrained(tmp_path / "ase", device="cpu")
    assert critic.model.config.fusion_layers == [0, 1]
    assert critic.processor.num_image_tokens == 16
    [c] = critic.critique([Image.new("RGB", (40, 30), (200, 10, 10))], max_new_tokens=3)
    assert c.model.startswith("ase@")
