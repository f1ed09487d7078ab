"""The starter recipe end to end at toy scale: data, tokenizer, vision pretraining, the three training stages and
the export all run, the export is what the product loads, and an interrupted recipe reuses finished stages."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ase_model.configuration_ase import ASEConfig
from ase_model.critic import Critic
from ase_model.modeling_ase import attribute_input_size
from ase_model.starter import recipe

TOY = ["--n", "12", "--synthetic", "4", "--batch-size", "4", "--vision-epochs", "1", "--saliency-epochs", "0.5",
       "--measure-epochs", "1", "--verdict-epochs", "0.5", "--epochs", "0.5", "--attribute-epochs", "2",
       "--score-epochs", "2", "--size", "160", "--twins", "0.5"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    work, out = root / "work", root / "model"
    threads = torch.get_num_threads()
    try:
        assert recipe.main(["--work", str(work), "--out", str(out), *TOY]) == 0
    finally:
        torch.set_num_threads(threads)  # the recipe runs on one thread
    return work, out


def test_recipe_exports_what_the_product_loads(built):
    work, out = built
    summary = json.loads((work / "data" / "summary.json").read_text())
    assert summary["n_images"] == 12 and summary["n_synthetic"] == 4
    shards = list(out.glob("*.safetensors"))
    assert shards and max(p.stat().st_size for p in shards) <= 15 * 10**6
    assert (out / "README.md").read_text().startswith("# Model card")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "ase_mllm" and config["dtype"] == "float16"
    [critique] = Critic.from_pretrained(out, device="cpu").critique([Image.new("RGB", (64, 48), (90, 120, 160))],
                                                                    max_new_tokens=8)
    assert 0.0 <= critique.score <= 10.0 and critique.saliency.size > 0


def test_vision_pretraining_trains_the_tower_and_the_caption_stages_keep_it(built):
    work, _ = built
    initial, vision, saliency, measure, final = (
        load_file(str(work / stage / "model.safetensors"))
        for stage in ("init", "stage0-vision", "stage1-saliency", "stage1b-measure", "stage3-critiques"))
    tower = [k for k in vision if k.startswith("model.vision_tower.vision_model.")]
    assert tower and any(not (vision[k] == initial[k]).all() for k in tower)
    iasm = [k for k in vision if k.startswith("model.vision_tower.iasm.")]
    assert any(not (measure[k] == saliency[k]).all() for k in iasm)  # the second pretraining reaches IASM
    encoder = [k for k in measure if k.startswith("model.vision_tower.")]
    assert all((measure[k] == final[k]).all() for k in encoder)  # --freeze-tower in both caption stages
    attributes = load_file(str(work / "stage1c-attributes" / "model.safetensors"))
    classifier = [k for k in attributes if k.startswith("model.attribute_head.mlp.")]
    assert classifier and all((attributes[k] == final[k]).all() for k in classifier)  # trained once, then kept
    assert not (attributes["model.attribute_head.input_std"] == 1).all()  # standardised on the training data
    key = "model.attribute_head.embeddings.weight"
    assert not (attributes[key] == final[key]).all()  # the caption stages teach the LLM the verdict tokens
    captioned = [k for k in final if k.startswith(("model.attribute_head.mlp.", "model.score_head."))]
    assert all((attributes[k] == final[k]).all() for k in captioned)  # the caption stages leave both heads alone
    scored = load_file(str(work / "stage4-score" / "model.safetensors"))
    assert scored["model.score_head.mlp.0.weight"].shape[0] == 1  # linear: one layer to the score
    assert all((scored[k] == final[k]).all() for k in final if not k.startswith("model.score_head."))  # only it


def test_the_score_reads_the_attribute_inputs_and_is_calibrated(built):
    work, out = built
    config = json.loads((out / "config.json").read_text())
    assert config["score_from_attributes"] and config["attribute_scene_statistics"]
    knots = config["score_calibration"]
    assert knots[0] == [0.0, 0.0] and knots[-1] == [10.0, 10.0]  # the whole range, no flat ends
    assert all(b[0] > a[0] and b[1] > a[1] for a, b in zip(knots, knots[1:]))
    summary = json.loads((work / "data" / "summary.json").read_text())
    assert summary["n_pairs"] > 0 and summary["size"] == 160


def test_the_calibration_reads_scores_of_sources_each_head_never_saw():
    """Two sources whose measurements rank their twins in opposite directions: a record's out-of-source score
    comes from the head trained on the other source, so it ranks its own source's pairs the other way."""
    torch.manual_seed(0)
    n = 40
    x = torch.randn(n, 3).repeat_interleave(2, dim=0)  # a photo and its twin alike but for the second input
    x[:, 1] += torch.tensor([0.5, -0.5]).repeat(n)
    # (photo, twin): in source a the twin has the smaller second input, in source b the larger.
    pairs = torch.tensor([(i, i + 1) for i in range(0, n, 2)] + [(i + 1, i) for i in range(n, 2 * n, 2)])
    target = torch.full((2 * n,), 5.0)
    config = ASEConfig(attribute_labels={"a": ["x", "y"]}, score_from_attributes=True, score_head_hidden=0)
    head_inputs = x.new_zeros(2 * n, attribute_input_size(config))
    head_inputs[:, :3] = x
    raw = recipe.out_of_source_scores(config, head_inputs, target, pairs, ["a"] * n + ["b"] * n, seed=0, epochs=400)
    a, b = pairs[: n // 2], pairs[n // 2:]
    # Each source scored by the other's head: its twins rank above their photos (in-sample they would not).
    assert (raw[a[:, 1]] > raw[a[:, 0]]).all() and (raw[b[:, 1]] > raw[b[:, 0]]).all()


def test_an_interrupted_recipe_reuses_finished_stages(built, capsys):
    work, out = built
    capsys.readouterr()
    assert recipe.main(["--work", str(work), "--out", str(out), *TOY]) == 0
    log = capsys.readouterr().out
    assert "already generated" in log and log.count("reusing ") == 7
