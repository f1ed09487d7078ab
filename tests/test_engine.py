"""The decode engine gives transformers' greedy generate's tokens (tiny and starter models); its sampling options,
stop checks every few steps and static batch buckets (the CUDA-graph path, run eagerly on CPU)."""

from pathlib import Path

import pytest
import torch

from ase_model.engine import DecodeEngine, Request, UnsupportedArchitecture
from ase_model.engine.graphs import buckets_for
from ase_model.engine.sampling import sample_row
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


def _check(model, prompts, n, stagger=0, want=None, **engine_kw):
    engine = DecodeEngine(model, slots=8, max_len=256, **engine_kw)
    handles = []
    for ids, feats in prompts:
        handles.append(engine.submit(Request(ids, feats, max_new_tokens=n)))
        for _ in range(stagger):
            engine.step()
    done = engine.run()
    want = want or [_generate(model, ids, feats, n) for ids, feats in prompts]
    assert [done[h].tokens for h in handles] == want
    return want


def test_b1_and_b8(tiny):
    _check(tiny, [_prompt(tiny, 5, 0)], 12)
    _check(tiny, [_prompt(tiny, 3 + i, i) for i in range(8)], 12)


def test_staggered(tiny):
    _check(tiny, [_prompt(tiny, 3 + i, 10 + i) for i in range(6)], 10, stagger=2)


def test_sync_every_and_static_buckets(tiny):
    """Tokens read back every 4 steps, and the bucketed static step (slots 0..b-1, padded rows), give generate's
    tokens with requests joining at staggered steps."""
    prompts = [_prompt(tiny, 3 + i, 60 + i) for i in range(3)]
    want = _check(tiny, prompts, 8, stagger=3, sync_every=4)
    _check(tiny, prompts, 8, stagger=1, want=want, cuda_graphs=True, sync_every=3)
    assert buckets_for(8) == [1, 2, 4, 8] and buckets_for(6) == [1, 2, 4, 6]


def _streams(model, prompts, n, **kw):
    engine = DecodeEngine(model, slots=3, max_len=256, **kw)
    seen: dict[int, list[int]] = {}
    hs = [engine.submit(Request(*p, max_new_tokens=n, stream=lambda t, i=i: seen.setdefault(i, []).append(t)))
          for i, p in enumerate(prompts)]
    engine.step()
    engine.cancel(hs[1])  # a hole in the slots: the other requests keep their tokens and order
    done = engine.run()
    return [done[h].tokens if h in done else None for h in hs], seen, engine


def test_sync_every_streams_in_order_and_trims_past_eos(tiny):
    prompts = [_prompt(tiny, 4 + i, 70 + i) for i in range(5)]
    want, seen1, _ = _streams(tiny, prompts, 11)
    eos = want[0][3]  # a stop token that lands mid-chunk for request 0
    want_eos, seen_eos1, _ = _streams(tiny, prompts, 11, eos_token_id=eos)
    cancelled = seen1.pop(1)  # what the cancelled request streamed before its cancel (read back every step)
    seen_eos1.pop(1)
    for kw in ({"sync_every": 4}, {"sync_every": 4, "cuda_graphs": True}):
        got, seen, engine = _streams(tiny, prompts, 11, **kw)
        part = seen.pop(1, [])  # chunked read-back: its tokens still pending at the cancel are dropped
        assert part == cancelled[: len(part)]
        assert got == want and seen == seen1 and not engine.active and not engine._pending
        got, seen, _ = _streams(tiny, prompts, 11, eos_token_id=eos, **kw)
        seen.pop(1, None)
        assert got == want_eos and seen == seen_eos1
    assert want_eos[0] == want[0][: want[0].index(eos) + 1] and want[1] is None


def test_sampling_options(tiny):
    ids, feats = _prompt(tiny, 6, 80)
    greedy = _generate(tiny, ids, feats, 10)

    def run(**kw):
        e = DecodeEngine(tiny, slots=4, max_len=256)
        hs = [e.submit(Request(ids, feats, max_new_tokens=10, **kw)) for _ in range(2)]
        done = e.run()
        return [done[h].tokens for h in hs]

    assert run(temperature=0) == [greedy, greedy] and run(temperature=1.0, top_k=1, seed=1) == [greedy, greedy]
    a, b = run(temperature=1.5, seed=7)
    assert a == b and run(temperature=1.5, seed=7)[0] == a  # same seed, same tokens (in one batch too)
    assert run(temperature=1.5, seed=8)[0] != a
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        logits = torch.randn(50, generator=g) * 3
        tok = int(sample_row(logits, 0.7, 5, None, g))
        assert tok in logits.topk(5).indices.tolist()
        probs = (logits / 0.7).softmax(-1)
        order = probs.argsort(descending=True)
        nucleus = order[: int((probs[order].cumsum(0) < 0.8).sum()) + 1].tolist()  # smallest set reaching 0.8
        assert int(sample_row(logits, 0.7, None, 0.8, g)) in nucleus


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


def test_paused_request_sits_out_the_steps_and_resumes_exactly(tiny):
    a, b = _prompt(tiny, 9, 22), _prompt(tiny, 5, 23)
    engine = DecodeEngine(tiny, slots=2, max_len=256, eos_token_id=-1)  # no stop token: lengths are exact
    ha = engine.submit(Request(*a, max_new_tokens=12))
    engine.step()
    engine.paused = {ha}  # a background request, while an interactive one decodes
    hb = engine.submit(Request(*b, max_new_tokens=6))
    held = list(engine.active[0].tokens)
    while hb not in engine.finished:
        engine.step()
    assert engine.active[0].tokens == held  # it did not advance
    engine.paused = set()
    while ha not in engine.finished:
        engine.step()
    want = _check(tiny, [a], 12, eos_token_id=-1)[0]
    assert engine.finished[ha].tokens == want


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


def test_too_long_is_refused_at_submit(tiny):
    ids, feats = _prompt(tiny, 4, 90)
    engine = DecodeEngine(tiny, slots=1, max_len=ids.numel() + 4)
    with pytest.raises(ValueError, match="exceed max_len"):
        engine.submit(Request(ids, feats, max_new_tokens=5))
    assert not engine.queue
    h = engine.submit(Request(ids, feats, max_new_tokens=4))  # what fits still runs
    assert 1 <= len(engine.run()[h].tokens) <= 4


def test_unsupported_architecture(tmp_path):
    model = ASEForConditionalGeneration.from_pretrained(build_tiny(tmp_path, seed=1), torch_dtype=torch.float32)
    model.config.text_config.model_type = "mistral-ish"
    with pytest.raises(UnsupportedArchitecture):
        DecodeEngine(model)


@pytest.mark.skipif(not STARTER.exists(), reason="no starter model")
def test_starter(tmp_path):
    model = ASEForConditionalGeneration.from_pretrained(STARTER, torch_dtype=torch.float32).eval()
    _check(model, [_prompt(model, 6 + i, 50 + i) for i in range(2)], 16)
