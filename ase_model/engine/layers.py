"""The engine's Llama forward over the slot KV cache, on the model's own weights taken once (no module calls)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["LlamaStack"]


class _Layer(NamedTuple):
    ln1: torch.Tensor
    eps1: float
    qkv: tuple[torch.Tensor, ...]  # one fused [q;k;v] weight, or the three separate ones
    wo: torch.Tensor
    ln2: torch.Tensor
    eps2: float
    gate_up: tuple[torch.Tensor, ...]  # one fused [gate;up] weight, or the two separate ones
    down: torch.Tensor
    act: object


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm's exact arithmetic (float32 statistics, weight applied in the input dtype)."""
    if x.dtype == torch.float32:  # one fused op, bit-identical to the composite in float32
        return F.rms_norm(x, w.shape, w, eps)
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LlamaStack:
    """The language model's weights, read once, and a forward that writes K/V into the engine's cache.

    Fusing q/k/v and gate/up into one matmul each halves the op count, which is what a small model on CPU pays
    for; the fused copies cost memory, so large models (and CUDA, where graphs remove the launch cost) keep the
    separate weights. The copies are taken when the engine is built: weights changed later are not seen.

    Args:
        model: an ASEForConditionalGeneration with a Llama-style language model.
        fuse: concatenate q/k/v and gate/up weights (None: on CPU only).
    """

    def __init__(self, model, fuse: bool | None = None):
        lm = model.model.language_model
        cfg = model.config.text_config
        self.n_heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        p = next(model.parameters())
        fuse = p.device.type == "cpu" if fuse is None else fuse
        self.layers = []
        for layer in lm.layers:
            a, m = layer.self_attn, layer.mlp
            qkv = (a.q_proj.weight, a.k_proj.weight, a.v_proj.weight)
            gu = (m.gate_proj.weight, m.up_proj.weight)
            if fuse:
                qkv, gu = (torch.cat(qkv).detach(),), (torch.cat(gu).detach(),)
            self.layers.append(_Layer(layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon, qkv,
                                      a.o_proj.weight, layer.post_attention_layernorm.weight,
                                      layer.post_attention_layernorm.variance_epsilon, gu, m.down_proj.weight,
                                      m.act_fn))
        self.norm_w, self.norm_eps = lm.norm.weight, lm.norm.variance_epsilon
        self.embed = model.get_input_embeddings()
        self.lm_head = model.lm_head.weight
        self.rotary = lm.rotary_emb
        self.q_size, self.kv_size = self.n_heads * self.head_dim, self.kv_heads * self.head_dim
        self.gqa = self.n_heads != self.kv_heads

    def rotary_table(self, max_len: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [max_len, head_dim] from the model's own rotary embedding (per-position values: a lookup
        gives exactly what recomputing them per step would).

        Args:
            max_len: positions covered.
            device: where the tables live.
            dtype: the model's dtype.
        """
        pos = torch.arange(max_len, device=device)[None]
        cos, sin = self.rotary(torch.zeros(1, dtype=dtype, device=device), pos)
        return cos[0], sin[0]

    def forward(self, x, k_cache, v_cache, write_idx, rows, length, cos, sin, mask):
        """Run the layers; returns the last hidden states [B, T, H] (before the final norm).

        Args:
            x: input embeddings [B, T, H].
            k_cache: [layers, slots, kv_heads, max_len, head_dim]; v_cache the same.
            write_idx: [B * kv_heads * T] flat row indices into a layer's cache viewed as [-1, head_dim].
            rows: int B (the slots are 0..B-1: the cache is read as a view) or a [B] tensor of slots (gathered).
            length: cache columns attended (every slot's length fits).
            cos: [B, 1, T, head_dim] rotary cosines at the tokens' positions; sin the same.
            mask: additive [B, 1, T, length] or None (every column up to `length` visible).
        """
        B, T, _ = x.shape
        hd, kvh = self.head_dim, self.kv_heads
        sin_signed = torch.cat((-sin[..., : hd // 2], sin[..., hd // 2 :]), dim=-1)
        for i, ly in enumerate(self.layers):
            h = _rms(x, ly.ln1, ly.eps1)
            if len(ly.qkv) == 1:  # q and k side by side: rotate them in one pass (elementwise: same values)
                qkv = F.linear(h, ly.qkv[0])
                qk = qkv[..., : self.q_size + self.kv_size].view(B, T, -1, hd).transpose(1, 2)
                # rotate_half(x) * sin == roll(x, half) * sin_signed exactly (a sign flip is exact): 1 op, not 3
                qk = qk * cos + qk.roll(hd // 2, -1) * sin_signed
                q, k = qk[:, : self.n_heads], qk[:, self.n_heads :]
                v = qkv[..., self.q_size + self.kv_size :].view(B, T, kvh, hd).transpose(1, 2)
            else:
                q, k, v = (F.linear(h, w) for w in ly.qkv)
                q = q.view(B, T, self.n_heads, hd).transpose(1, 2)
                k = k.view(B, T, kvh, hd).transpose(1, 2)
                v = v.view(B, T, kvh, hd).transpose(1, 2)
                q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            # one index_copy_ per tensor writes every slot's new K/V at its own positions, in place
            kl, vl = k_cache[i], v_cache[i]
            kl.view(-1, hd).index_copy_(0, write_idx, k.reshape(-1, hd))
            vl.view(-1, hd).index_copy_(0, write_idx, v.reshape(-1, hd))
            if isinstance(rows, int):
                kc, vc = kl[:rows, :, :length], vl[:rows, :, :length]
            else:
                kc, vc = kl[rows, :, :length], vl[rows, :, :length]
            o = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask, enable_gqa=self.gqa)
            x = x + F.linear(o.transpose(1, 2).reshape(B, T, -1), ly.wo)
            h = _rms(x, ly.ln2, ly.eps2)
            if len(ly.gate_up) == 1:
                g, u = F.linear(h, ly.gate_up[0]).chunk(2, dim=-1)
            else:
                g, u = (F.linear(h, w) for w in ly.gate_up)
            x = x + F.linear(ly.act(g) * u, ly.down)
        return x

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm and lm_head over hidden states [B, H]."""
        return F.linear(_rms(h, self.norm_w, self.norm_eps), self.lm_head)

    @staticmethod
    def write_index(slots: torch.Tensor, positions: torch.Tensor, kv_heads: int, max_len: int) -> torch.Tensor:
        """Flat row indices of (slot, head, position) in a layer's cache viewed as [-1, head_dim].

        Args:
            slots: [B] slot of each row.
            positions: [B, T] cache position of each token.
            kv_heads: heads per slot.
            max_len: positions per slot.
        """
        heads = torch.arange(kv_heads, device=slots.device)
        return ((slots[:, None, None] * kv_heads + heads[None, :, None]) * max_len + positions[:, None, :]).reshape(-1)
