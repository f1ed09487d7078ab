"""ASE-MLLM model: equality with LLaVA at init, fusion/IASM learning signal, round trip, saliency, generate."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForImageTextToText,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

import ase_model
from ase_model import ASEConfig, ASEForConditionalGeneration
from ase_model.testing import LLM, VISION, build_tiny, tiny_config, train_tokenizer

IMAGE_TOKEN = 4


def tiny_llava(vision="clip", llm="llama", seed=0) -> LlavaForConditionalGeneration:
    """A tiny LLaVA built by transformers itself: the reference the wrapped ASE model must match."""
    torch.manual_seed(seed)
    cfg = tiny_config(vision, llm, image_token_index=IMAGE_TOKEN)
    llava_cfg = LlavaConfig(
        vision_config=cfg.vision_config.to_dict(),
        text_config=cfg.text_config.to_dict(),
        image_token_index=IMAGE_TOKEN,
        image_seq_length=cfg.image_seq_length,
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
    )
    return LlavaForConditionalGeneration(llava_cfg).eval()


def inputs_for(config, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    n = config.image_seq_length + (0 if config.vision_feature_select_strategy == "default" else 0)
    prefix = torch.randint(5, 100, (batch, 3), generator=g)
    suffix = torch.randint(5, 100, (batch, 4), generator=g)
    ids = torch.cat([prefix, torch.full((batch, n), IMAGE_TOKEN), suffix], dim=1)
    size = config.vision_config.image_size
    return {"input_ids": ids, "pixel_values": torch.randn(batch, 3, size, size, generator=g)}


@pytest.mark.parametrize("vision,llm", [("clip", "llama"), ("siglip", "qwen2"), ("clip", "mistral")])
def test_equals_llava_at_init(vision, llm, tmp_path):
    llava = tiny_llava(vision, llm)
    # both a model object and a saved LLaVA folder (loaded through transformers' own loader)
    llava.save_pretrained(tmp_path / "llava")
    for src in (llava, tmp_path / "llava"):
        ase = ASEForConditionalGeneration.from_llava(src).eval()
        assert ase.config.fusion_layers, "fusion blocks must exist"
        assert all(g == 0.0 for g in ase.model.vision_tower.gates().values())
        batch = inputs_for(ase.config)
        with torch.no_grad():
            ref = llava(**batch).logits
            out = ase(**batch)
        assert out.logits.dtype == torch.float32
        assert (ref - out.logits).abs().max().item() <= 1e-5
        assert out.saliency is not None and out.score is not None
    # generation too, token for token
    with torch.no_grad():
        a = llava.generate(**batch, max_new_tokens=6, do_sample=False)
        b = ase.generate(**batch, max_new_tokens=6, do_sample=False)
    assert torch.equal(a, b)


def test_open_gates_change_outputs_and_train_iasm():
    llava = tiny_llava()
    ase = ASEForConditionalGeneration.from_llava(llava)
    batch = inputs_for(ase.config)
    labels = batch["input_ids"].clone()
    labels[labels == IMAGE_TOKEN] = -100

    # At init (gates 0) the gates still get a gradient, so training can open them.
    ase.train()
    out = ase(**batch, labels=labels)
    out.loss.backward()
    gate_grads = [b.gate.grad for b in ase.model.vision_tower.fusion.values()]
    assert all(g is not None and g.abs().item() > 0 for g in gate_grads)
    ase.zero_grad()

    with torch.no_grad():
        before = ase(**batch).logits
        for block in ase.model.vision_tower.fusion.values():
            block.gate.fill_(0.7)
        after = ase(**batch).logits
    assert (before - after).abs().max().item() > 1e-4, "open gates must change the logits"

    out = ase(**batch, labels=labels)
    out.loss.backward()
    iasm_grad = sum(p.grad.abs().sum().item() for p in ase.model.vision_tower.iasm.parameters() if p.grad is not None)
    assert iasm_grad > 0, "the caption loss must reach IASM through the open fusion gates"
    fusion_grad = sum(p.grad.abs().sum().item() for p in ase.model.vision_tower.fusion.parameters()
                      if p.grad is not None)
    assert fusion_grad > 0


def test_saliency_and_score_outputs():
    ase = ASEForConditionalGeneration(tiny_config()).eval()
    batch = inputs_for(ase.config, batch=3)
    with torch.no_grad():
        out = ase(**batch)
    size = ase.config.vision_config.image_size
    assert out.saliency.shape == (3, size // 8, size // 8)
    assert (out.saliency >= 0).all()
    assert torch.allclose(out.saliency.sum(dim=(1, 2)), torch.ones(3), atol=1e-5)
    assert out.score.shape == (3,)
    assert ((out.score >= 0) & (out.score <= ase.config.score_max)).all()


def test_round_trip_identical(tmp_path):
    path = build_tiny(tmp_path / "m", open_gates=0.3)
    a = ASEForConditionalGeneration.from_pretrained(path).eval()
    assert (path / "model.safetensors").exists()
    b = AutoModelForImageTextToText.from_pretrained(path).eval()  # registered Auto class
    assert isinstance(b, ASEForConditionalGeneration)
    batch = inputs_for(a.config)
    with torch.no_grad():
        oa, ob = a(**batch), b(**batch)
    assert torch.equal(oa.logits, ob.logits)
    assert torch.equal(oa.saliency, ob.saliency) and torch.equal(oa.score, ob.score)
    a.save_pretrained(tmp_path / "again")
    c = ASEForConditionalGeneration.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert torch.equal(c(**batch).logits, oa.logits)
    assert c.model.vision_tower.gates() == a.model.vision_tower.gates()
    assert c.config.fusion_layers == a.config.fusion_layers


def test_static_cache_generation_matches_dynamic(tmp_path):
    path = build_tiny(tmp_path / "m", open_gates=0.5)
    model = ASEForConditionalGeneration.from_pretrained(path).eval()
    batch = inputs_for(model.config, batch=2)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    with torch.no_grad():
        dynamic = model.generate(**batch, max_new_tokens=8, do_sample=False)
        static = model.generate(**batch, max_new_tokens=8, do_sample=False, cache_implementation="static")
    assert torch.equal(dynamic, static)


def test_from_parts_keeps_both_checkpoints(tmp_path):
    torch.manual_seed(0)
    clip_keys = CLIPVisionConfig().to_dict()
    vc = CLIPVisionConfig(**{k: v for k, v in tiny_config().vision_config.to_dict().items() if k in clip_keys})
    vision = CLIPVisionModel(vc).eval()
    vision.save_pretrained(tmp_path / "vision")
    tc = tiny_config().text_config
    llama_keys = LlamaConfig().to_dict()
    llm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in tc.to_dict().items() if k in llama_keys})).eval()
    llm.save_pretrained(tmp_path / "llm")
    tokenizer = train_tokenizer(vocab_size=tc.vocab_size)

    ase = ASEForConditionalGeneration.from_parts(tmp_path / "vision", tmp_path / "llm", tokenizer=tokenizer).eval()
    assert ase.config.image_token_index == tokenizer.convert_tokens_to_ids("<image>")
    ids = torch.randint(5, 100, (1, 9))
    with torch.no_grad():
        # text-only: exactly the LLM it was built from
        assert (ase(input_ids=ids).logits - llm(input_ids=ids).logits).abs().max().item() <= 1e-5
        # vision: exactly the CLIP tower it was built from (gates closed)
        pixels = torch.randn(1, 3, vc.image_size, vc.image_size)
        ref = vision(pixels, output_hidden_states=True).hidden_states
        mine, _, _, _ = ase.model.vision_tower(pixels)
        for a, b in zip(ref, mine):
            assert torch.equal(a, b)
        batch = inputs_for(ase.config, batch=1)
        batch["input_ids"][batch["input_ids"] == IMAGE_TOKEN] = ase.config.image_token_index
        out = ase(**batch)
    assert torch.isfinite(out.logits).all()
    # projector, IASM and score head are fresh and trainable; the round trip keeps them
    ase.save_pretrained(tmp_path / "ase")
    again = ASEForConditionalGeneration.from_pretrained(tmp_path / "ase").eval()
    with torch.no_grad():
        assert torch.equal(again(**batch).logits, out.logits)


def test_fusion_layers_are_validated():
    with pytest.raises(Exception, match="fusion_layers"):  # strict config validation wraps the ValueError
        ASEForConditionalGeneration(tiny_config(fusion_layers=[7]))


def test_iasm_within_flops_budget():
    """IASM costs at most 10% of the vision tower, for the LLaVA-1.5 shape and the tiny test shape."""
    from ase_model.flops import vision_flops

    llava15 = ASEConfig(text_config=dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=100))
    flops = vision_flops(llava15)
    assert flops["vit_gflops"] > 300  # CLIP ViT-L/14-336 through layer 23
    assert flops["iasm_ratio"] <= 0.10


def test_tiny_configs_cover_families():
    for vision in VISION:
        for llm in LLM:
            config = tiny_config(vision, llm)
            assert ASEConfig.from_dict(config.to_dict()).fusion_layers == config.fusion_layers
    assert "ase_mllm" == ase_model.ASEConfig.model_type
