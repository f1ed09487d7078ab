"""Next-token choice inside the engine's step: greedy, or per-request temperature / top-k / top-p sampling."""

from __future__ import annotations

import torch

__all__ = ["choose", "is_sampling", "sample_row"]


def is_sampling(request) -> bool:
    """True when a request samples (a temperature above 0); otherwise it decodes greedily."""
    return bool(request.temperature)


def sample_row(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
               generator: torch.Generator | None) -> torch.Tensor:
    """One token id ([1] tensor, on the logits' device) sampled as transformers' warpers would filter it
    (temperature, then top-k, then top-p, at least one token kept).

    Args:
        logits: [vocab] scores of one request.
        temperature: divides the logits (> 0).
        top_k: keep the k highest (None or 0: all).
        top_p: keep the smallest set whose probability reaches top_p (None or >= 1: all).
        generator: the request's random generator (same seed, same tokens).
    """
    x = logits.float() / temperature
    if top_k and top_k < x.shape[-1]:
        kth = torch.topk(x, top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_x, order = torch.sort(x)  # ascending, as transformers' TopPLogitsWarper
        cum = sorted_x.softmax(-1).cumsum(-1)
        drop = cum <= 1 - top_p
        drop[-1] = False  # the most likely token always stays
        x = x.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return torch.multinomial(x.softmax(-1), 1, generator=generator)


def choose(logits: torch.Tensor, requests) -> torch.Tensor:
    """The next token of every row [B] (long, on the logits' device, no host sync for greedy rows).

    Args:
        logits: [B, vocab].
        requests: the Request of each row (its sampling options and generator).
    """
    out = logits.argmax(-1)
    for i, r in enumerate(requests):
        if is_sampling(r):
            out[i : i + 1] = sample_row(logits[i], r.temperature, r.top_k, r.top_p, r.generator)
    return out
