"""Critic(engine=True): the decode engine behind the Critic gives the same critiques as `generate`; what it cannot
decode falls back to `generate` with a logged reason; the daemon's `engine` config key reaches the Critic."""

import logging
from pathlib import Path

import pytest

from ase_model.critic import Critic
from ase_model.testing import build_tiny

STARTER = Path(__file__).resolve().parents[1] / "ase_model" / "starter_model"
NAMES = ("astronaut", "coffee", "china")


def _same(a, b):
    """Everything generation decides: the text (repaired and raw), attributes, tags, score, token count."""
    assert [c.text for c in a] == [c.text for c in b]
    assert [c.raw_text for c in a] == [c.raw_text for c in b]
    assert [c.attributes for c in a] == [c.attributes for c in b]
    assert [c.tags for c in a] == [c.tags for c in b]
    assert [c.score for c in a] == [c.score for c in b]
    assert [c.repairs for c in a] == [c.repairs for c in b]
    assert [c.timings["new_tokens"] for c in a] == [c.timings["new_tokens"] for c in b]


def _streamed(critic, images, **kw):
    parts: dict[int, str] = {}
    out = critic.critique(images, stream=lambda i, text: parts.__setitem__(i, parts.get(i, "") + text), **kw)
    return out, [parts.get(i, "") for i in range(len(images))]


def _compare(plain, fast, photos, max_new_tokens=None):
    images = [photos[n] for n in NAMES]
    for im in images:  # batch 1
        _same(plain.critique([im], max_new_tokens=max_new_tokens), fast.critique([im], max_new_tokens=max_new_tokens))
    a, sa = _streamed(plain, images, max_new_tokens=max_new_tokens)  # batch 3, streaming
    b, sb = _streamed(fast, images, max_new_tokens=max_new_tokens)
    _same(a, b)
    assert sa == sb
    assert all(s.strip() for s in sb)
    assert [s.strip() for s in sb] == [(c.raw_text if c.raw_text is not None else c.text) for c in b]


def test_tiny_engine_equals_generate(tiny_model_dir, photos):
    plain = Critic.from_pretrained(tiny_model_dir, device="cpu", engine=False)
    fast = Critic.from_pretrained(tiny_model_dir, device="cpu", engine=True)
    assert plain.engine is None and fast.engine is not None and fast.info()["engine"]
    _compare(plain, fast, photos, max_new_tokens=12)
    # a longer request than the engine's cache holds grows it; a 4-image batch over 2 slots queues
    small = Critic.from_pretrained(tiny_model_dir, device="cpu", engine=True, engine_slots=2)
    images = [photos[n] for n in (*NAMES, "rocket")]
    _same(plain.critique(images, max_new_tokens=20), small.critique(images, max_new_tokens=20))
    first = small.engine.engine.max_len  # sized for the default critique length (160) even for 20 tokens
    assert first >= 160
    _same(plain.critique(images[:1], max_new_tokens=300), small.critique(images[:1], max_new_tokens=300))
    assert small.engine.engine.max_len > first
    assert not small.engine.engine.active and not small.engine.engine.finished  # nothing left behind


@pytest.mark.skipif(not STARTER.exists(), reason="no starter model")
def test_starter_engine_equals_generate(photos):
    plain = Critic.from_pretrained(STARTER, device="cpu", engine=False)
    fast = Critic.from_pretrained(STARTER, device="cpu", engine=True)
    assert fast.engine is not None
    _compare(plain, fast, photos)  # full-length critiques: EOS, repair, tags


def test_stream_error_frees_the_slots(tiny_model_dir, photos):
    fast = Critic.from_pretrained(tiny_model_dir, device="cpu", engine=True)

    def boom(i, text):
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        fast.critique([photos["coffee"], photos["china"]], max_new_tokens=8, stream=boom)
    assert not fast.engine.engine.active and not fast.engine.engine.queue
    plain = Critic.from_pretrained(tiny_model_dir, device="cpu", engine=False)
    _same(plain.critique([photos["coffee"]], max_new_tokens=8), fast.critique([photos["coffee"]], max_new_tokens=8))


def test_non_llama_decoder_falls_back(tmp_path, photos, caplog):
    path = build_tiny(tmp_path / "qwen", llm="qwen2", open_gates=0.5)
    plain = Critic.from_pretrained(path, device="cpu", engine=False)
    with caplog.at_level(logging.WARNING, logger="ase_model.critic"):
        fast = Critic.from_pretrained(path, device="cpu", engine=True)
    assert fast.engine is None and "qwen2" in fast.engine_fallback
    assert any("falling back to generate" in r.getMessage() for r in caplog.records)
    a, sa = _streamed(plain, [photos["coffee"], photos["china"]], max_new_tokens=8)
    b, sb = _streamed(fast, [photos["coffee"], photos["china"]], max_new_tokens=8)
    _same(a, b)
    assert sa == sb


def test_generation_config_processor_falls_back(tiny_model_dir, photos, caplog):
    plain = Critic.from_pretrained(tiny_model_dir, device="cpu", engine=False)
    plain.model.generation_config.repetition_penalty = 1.5  # generate applies it; the engine would not
    with caplog.at_level(logging.WARNING, logger="ase_model.critic"):
        fast = Critic(plain.model, plain.processor, plain.model_id, engine=True)
    assert fast.engine is None and "repetition_penalty" in fast.engine_fallback
    assert any("repetition_penalty" in r.getMessage() for r in caplog.records)
    _same(plain.critique([photos["rocket"]], max_new_tokens=10), fast.critique([photos["rocket"]], max_new_tokens=10))


def test_daemon_config_engine_reaches_the_critic(tiny_model_dir, tmp_path):
    from ase_daemon.cli import make_worker
    from ase_daemon.config import ConfigError, load_config
    from ase_daemon.store import Store

    conf = tmp_path / "config.toml"
    conf.write_text(f'model = "{tiny_model_dir}"\ndevice = "cpu"\nengine = true\n\n[limits]\nmax_batch = 3\n')
    cfg = load_config(conf)
    assert cfg.engine is True
    worker = make_worker(cfg, Store(tmp_path / "w.db"))
    worker._load()  # the model thread's loading step, without starting the worker
    assert worker.state == "ready", worker.load_error
    assert worker.critic.engine is not None and worker.critic.engine.slots == 3
    conf.write_text(f'model = "{tiny_model_dir}"\ndevice = "cpu"\nengine = false\n')
    worker = make_worker(load_config(conf), Store(tmp_path / "w2.db"))
    worker._load()
    assert worker.critic.engine is None  # turned off
    conf.write_text(f'model = "{tiny_model_dir}"\ndevice = "cpu"\n')
    assert load_config(conf).engine == "auto"  # the default: on CPU, the engine
    worker = make_worker(load_config(conf), Store(tmp_path / "w3.db"))
    worker._load()
    assert worker.critic.engine is not None
    conf.write_text('engine = "yes"\n')
    with pytest.raises(ConfigError, match="engine"):
        load_config(conf)
