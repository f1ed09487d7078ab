"""The decode engine gives transformers' greedy generate's tokens (tiny and starter models)."""

from pathlib import Path

import pytest
import torch

from ase_model.engine import DecodeEngine, Request, UnsupportedArchitecture
from ase_model.modeling_ase import ASEForConditionalGeneration
from ase_model.testing import build_tiny

STARTER = Path(__file__).resolve().parents[1] / "ase_model" / "starter_model"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = build_tiny(tmp_path_factory.mktemp("tiny"), seed=3)
    return ASEForConditionalGeneration.from_pretrained(out, torch_dtype=torch.float32).eval()


def _prompt(model, n_text, seed):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    size = cfg.vision_config.image_size
    pixels = torch.rand(1, 3, size, size, generator=g)
    with torch.inference_mode():
        feats = model.get_image_features(pixels).image_features
    # image tokens = the features the model emits (patches, statistics token, attribute tokens)
    text = torch.randint(5, cfg.text_config.vocab_size, (n_text,), generator=g)
    text[text == cfg.image_token_index] = 5
    ids = torch.cat([torch.tensor([1]), torch.full((feats.shape[1],), cfg.image_token_index), text])
    return ids, feats


def _generate(model, ids, feats, n):
    from ase_model.modeling_ase import ASEImageOutput

    with torch.inference_mode():
        out = model.generate(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None],
                             mm_encoder_outputs={"image": ASEImageOutput(image_features=feats)},
                             max_new_tokens=n, do_sample=False, min_new_tokens=0)
    return out[0, ids.shape[0]:].tolist()


def _check(model, prompts, n, stagger=0):
    engine = DecodeEngine(model, slots=8, max_len=256)
    handles = []
    for ids, feats in prompts:
        handles.append(engine.submit(Request(ids, feats, max_new_tokens=n)))
        for _ in range(stagger):
            engine.step()
    done = engine.run()
    for h, (ids, feats) in zip(handles, prompts):
        want = _generate(model, ids, feats, n)
        assert done[h].tokens == want


def test_b1_and_b8(tiny):
    _check(tiny, [_prompt(tiny, 5, 0)], 12)
    _check(tiny, [_prompt(tiny, 3 + i, i) for i in range(8)], 12)


def test_staggered(tiny):
    _check(tiny, [_prompt(tiny, 3 + i, 10 + i) for i in range(6)], 10, stagger=2)


def test_cancel_frees_slot_and_reuse_is_clean(tiny):
    a, b = _prompt(tiny, 9, 20), _prompt(tiny, 4, 21)
    engine = DecodeEngine(tiny, slots=1, max_len=256)
    h = engine.submit(Request(*a, max_new_tokens=30))
    engine.step()
    engine.step()
    engine.cancel(h)
    assert not engine.active
    h2 = engine.submit(Request(*b, max_new_tokens=8))
    fresh = DecodeEngine(tiny, slots=1, max_len=256)
    h3 = fresh.submit(Request(*b, max_new_tokens=8))
    assert engine.run()[h2].tokens == fresh.run()[h3].tokens


def test_stream_order_and_max_new_tokens(tiny):
    seen = []
    engine = DecodeEngine(tiny, slots=2, max_len=256)
    h = engine.submit(Request(*_prompt(tiny, 4, 30), max_new_tokens=5, stream=seen.append))
    r = engine.run()[h]
    assert seen == r.tokens and len(r.tokens) <= 5


def test_eos_stops(tiny):
    ids, feats = _prompt(tiny, 4, 40)
    e = DecodeEngine(tiny, slots=1, max_len=256)
    h = e.submit(Request(ids, feats, max_new_tokens=6))
    toks = e.run()[h].tokens
    e2 = DecodeEngine(tiny, slots=1, max_len=256, eos_token_id=toks[2])
    h2 = e2.submit(Request(ids, feats, max_new_tokens=6))
    assert e2.run()[h2].tokens == toks[: toks.index(toks[2]) + 1]


def test_unsupported_architecture(tmp_path):
    model = ASEForConditionalGeneration.from_pretrained(build_tiny(tmp_path, seed=1), torch_dtype=torch.float32)
    model.config.text_config.model_type = "mistral-ish"
    with pytest.raises(UnsupportedArchitecture):
        DecodeEngine(model)


@pytest.mark.skipif(not STARTER.exists(), reason="no starter model")
def test_starter(tmp_path):
    model = ASEForConditionalGeneration.from_pretrained(STARTER, torch_dtype=torch.float32).eval()
    _check(model, [_prompt(model, 6 + i, 50 + i) for i in range(2)], 16)
