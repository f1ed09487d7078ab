"""The Critic's greedy decoding through the DecodeEngine: the tokens of `generate(do_sample=False)`, per image.

`Critic(..., engine=True)` uses `EngineDecoder` when `engine_unsupported(model)` finds nothing the engine would
compute differently; otherwise the Critic keeps `generate` and logs the reason (docs/engine.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import DecodeEngine, Request, unsupported_reason

__all__ = ["EngineDecoder", "engine_unsupported"]

# Generation-config options that change what greedy decoding picks (logits processors `generate` would apply
# and the engine does not). Options that only rescale logits without changing the argmax are not listed.
_PROCESSORS = (
    "repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "min_length", "min_new_tokens", "bad_words_ids", "suppress_tokens", "begin_suppress_tokens",
    "forced_bos_token_id", "forced_eos_token_id", "sequence_bias", "exponential_decay_length_penalty",
    "guidance_scale", "watermarking_config", "num_beams", "prompt_lookup_num_tokens",
)


def engine_unsupported(model) -> str | None:
    """Why the engine would not give `generate(do_sample=False)`'s tokens for this model (None: it would).

    Args:
        model: an ASEForConditionalGeneration.
    """
    reason = unsupported_reason(model)
    if reason:
        return reason
    from transformers import GenerationConfig

    config, default = model.generation_config, GenerationConfig()
    for name in _PROCESSORS:
        value = getattr(config, name, None)
        if value != getattr(default, name, None):
            return f"generation_config.{name}={value!r} changes greedy decoding and the engine does not apply it"
    return None


class EngineDecoder:
    """Greedy decoding of a batch of prompts through one DecodeEngine kept for the Critic's lifetime.

    The engine's KV cache is allocated once; a longer prompt + `max_new_tokens` than it holds builds a larger one.

    Args:
        model: an ASEForConditionalGeneration the engine supports (see `engine_unsupported`).
        eos_token_id: the stop token (the tokenizer's, as the Critic passes it to `generate`).
        slots: requests decoded at once; a larger batch waits for free slots (continuous batching).
        reserve_new_tokens: the first cache holds at least this many new tokens after the prompt (a short
            warm-up request must not size it below the usual critique).
    """

    def __init__(self, model, eos_token_id: int, slots: int = 8, reserve_new_tokens: int = 0):
        self.model, self.eos, self.slots, self.reserve = model, eos_token_id, slots, reserve_new_tokens
        self.engine: DecodeEngine | None = None

    def engine_for(self, max_len: int) -> DecodeEngine:
        """The Critic's DecodeEngine, rebuilt larger when it holds fewer than `max_len` tokens per slot (the old
        one must be idle then). The daemon's streaming worker submits to it directly.

        Args:
            max_len: longest prompt + new tokens the slots must hold.
        """
        if self.engine is None or self.engine.max_len < max_len:
            self.engine = None  # free the old cache before allocating the new one
            self.engine = DecodeEngine(self.model, slots=self.slots, max_len=-(-max_len // 64) * 64,
                                       eos_token_id=self.eos)
        return self.engine

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_features: torch.Tensor,
               max_new_tokens: int, stream: Callable[[int, int], None] | None = None) -> list[list[int]]:
        """New token ids per prompt (the stop token included when reached), as `generate` would pick them.

        Args:
            input_ids: [B, T] left-padded prompt ids (the processor's output).
            attention_mask: [B, T], 0 on the left padding.
            image_features: [B, n, hidden], the model's image features for each prompt.
            max_new_tokens: stop after this many new tokens.
            stream: called with (index in the batch, token id) for every new token, in order per prompt.
        """
        engine = self.engine_for(int(attention_mask.sum(1).max()) + max(max_new_tokens, self.reserve))
        handles = []
        try:
            for i in range(input_ids.shape[0]):
                ids = input_ids[i][attention_mask[i].bool()]  # the prompt without its left padding
                cb = None if stream is None else (lambda tok, i=i: stream(i, tok))
                handles.append(engine.submit(Request(ids, image_features[i:i + 1], max_new_tokens, stream=cb)))
            engine.run()
            return [engine.finished[h].tokens for h in handles]
        finally:  # an error mid-run (a raising stream) must not leave requests holding slots
            for h in handles:
                engine.cancel(h)
                engine.finished.pop(h, None)
