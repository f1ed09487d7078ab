"""Slot KV cache and a hand-written Llama-style forward over it, with a request API for continuous batching."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["DecodeEngine", "Request", "UnsupportedArchitecture", "unsupported_reason"]

SUPPORTED = {"llama"}


class UnsupportedArchitecture(ValueError):
    """The language model is not one this engine computes exactly."""


def unsupported_reason(model) -> str | None:
    """Why the engine cannot decode this model exactly (None: it can).

    Args:
        model: an ASEForConditionalGeneration.
    """
    cfg = model.config.text_config
    if cfg.model_type not in SUPPORTED:
        return f"decode engine supports {sorted(SUPPORTED)}, not {cfg.model_type!r}"
    if getattr(cfg, "rope_scaling", None) and (cfg.rope_scaling or {}).get("rope_type", "default") != "default":
        return f"rope scaling {cfg.rope_scaling} is not supported"
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        return "attention/MLP biases are not supported"
    return None


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


@dataclass
class Request:
    """One decode request.

    Args:
        input_ids: 1-D prompt ids (image tokens included).
        image_features: the model's image features for this prompt ([1, n, hidden]) or None.
        max_new_tokens: stop after this many new tokens.
        stream: called with each new token id, in order.
    """

    input_ids: torch.Tensor
    image_features: torch.Tensor | None = None
    max_new_tokens: int = 32
    stream: Callable[[int], None] | None = None
    tokens: list[int] = field(default_factory=list)
    done: bool = False
    handle: int = -1


class DecodeEngine:
    """A preallocated N-slot KV cache and one batched greedy decode step over the active slots.

    Args:
        model: an ASEForConditionalGeneration whose language model is Llama-style.
        slots: how many requests decode at once.
        max_len: longest prompt + new tokens per slot.
        eos_token_id: stop token (default: the model's generation config).
    """

    def __init__(self, model, slots: int = 8, max_len: int = 512, eos_token_id: int | None = None):
        reason = unsupported_reason(model)
        if reason:
            raise UnsupportedArchitecture(reason)
        cfg = model.config.text_config
        self.model, self.lm = model, model.model.language_model
        self.n_heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.slots, self.max_len = slots, max_len
        eos = model.generation_config.eos_token_id if eos_token_id is None else eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos])
        p = next(model.parameters())
        shape = (len(self.lm.layers), slots, self.kv_heads, max_len, self.head_dim)
        self.k = torch.zeros(shape, dtype=p.dtype, device=p.device)  # allocated once, for the engine's life
        self.v = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.lengths = torch.zeros(slots, dtype=torch.long, device=p.device)
        self.active: dict[int, Request] = {}  # slot -> request
        self.queue: list[Request] = []
        self.finished: dict[int, Request] = {}
        self.last = torch.zeros(slots, dtype=torch.long, device=p.device)
        self._ids = itertools.count()

    # ---- request API -----------------------------------------------------------------------------------
    def submit(self, request: Request) -> int:
        """Queue a request; it takes a free slot at the next step. Returns its handle."""
        request.handle = next(self._ids)
        self.queue.append(request)
        return request.handle

    def cancel(self, handle: int) -> None:
        """Drop a request, freeing its slot at once."""
        self.queue = [r for r in self.queue if r.handle != handle]
        for slot, r in list(self.active.items()):
            if r.handle == handle:
                del self.active[slot]
                self.lengths[slot] = 0

    def run(self) -> dict[int, Request]:
        """Step until every submitted request has finished; returns finished requests by handle."""
        while self.queue or self.active:
            self.step()
        return self.finished

    # ---- forward -----------------------------------------------------------------------------------------
    def _forward(self, x, slots, positions, mask):
        """x [B, T, H]; slots [B]; positions [B, T]; mask [B, 1, T, L] additive over the cache."""
        cos, sin = self.lm.rotary_emb(x, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        B, T, _ = x.shape
        L = mask.shape[-1]
        dense = bool((slots == torch.arange(B, device=slots.device)).all())
        for i, layer in enumerate(self.lm.layers):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = a.q_proj(h).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
            k = a.k_proj(h).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
            v = a.v_proj(h).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            # write the new K/V at each slot's own positions, in place (the cache is never reallocated)
            self.k[i][slots[:, None], :, positions] = k.transpose(1, 2)
            self.v[i][slots[:, None], :, positions] = v.transpose(1, 2)
            if dense:  # slots 0..B-1: a view, no gather copy
                kc, vc = self.k[i][:B, :, :L], self.v[i][:B, :, :L]
            else:
                kc, vc = self.k[i][slots, :, :L], self.v[i][slots, :, :L]
            o = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask, enable_gqa=self.n_heads != self.kv_heads)
            x = x + a.o_proj(o.transpose(1, 2).reshape(B, T, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.model.lm_head(self.lm.norm(x[:, -1]))

    @torch.inference_mode()
    def prefill(self, slot: int, request: Request) -> int:
        """Put a request's prompt (image features merged by the model's own code) into a slot; returns token 1."""
        ids = request.input_ids.to(self.k.device).view(1, -1)
        emb = self.model.get_input_embeddings()(ids)
        if request.image_features is not None:
            emb = self.model.model.merge_image_features(ids, emb, request.image_features)
        T = ids.shape[1]
        if T + request.max_new_tokens > self.max_len:
            raise ValueError(f"prompt {T} + {request.max_new_tokens} new tokens exceed max_len {self.max_len}")
        pos = torch.arange(T, device=ids.device)[None]
        mask = torch.full((T, T), float("-inf"), dtype=emb.dtype, device=ids.device).triu(1)[None, None]
        logits = self._forward(emb, torch.tensor([slot], device=ids.device), pos, mask)
        self.lengths[slot] = T
        self.active[slot] = request
        return int(logits.argmax(-1))

    def _emit(self, slot: int, token: int) -> None:
        r = self.active[slot]
        r.tokens.append(token)
        if r.stream is not None:
            r.stream(token)
        self.last[slot] = token
        if token in self.eos or len(r.tokens) >= r.max_new_tokens:
            r.done = True
            self.finished[r.handle] = r
            del self.active[slot]
            self.lengths[slot] = 0

    @torch.inference_mode()
    def step(self) -> None:
        """Admit queued requests into free slots, then ONE batched greedy decode step over active slots."""
        free = [s for s in range(self.slots) if s not in self.active]
        while self.queue and free:
            slot = free.pop(0)
            self._emit(slot, self.prefill(slot, self.queue.pop(0)))
        if not self.active:
            return
        slots = torch.tensor(sorted(self.active), device=self.k.device)
        pos = self.lengths[slots]  # the new token's position = the slot's length
        L = int(pos.max()) + 1
        mask = torch.where(torch.arange(L, device=pos.device)[None] <= pos[:, None], 0.0, float("-inf"))
        mask = mask.to(self.k.dtype)[:, None, None, :]
        x = self.model.get_input_embeddings()(self.last[slots])[:, None]
        logits = self._forward(x, slots, pos[:, None], mask)
        nxt = logits.argmax(-1).tolist()  # CPU: one sync per step; the CUDA path is not written yet
        self.lengths[slots] += 1
        for s, t in zip(slots.tolist(), nxt):
            self._emit(s, t)
