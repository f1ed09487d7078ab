"""The decode step over fixed batch buckets with static buffers, captured as CUDA graphs on CUDA.

A bucket of size b always decodes slots 0..b-1 (the engine admits into the lowest free slot): rows of free
slots inside the bucket are padding that write their K/V at position 0 of their own free slot (overwritten by
the next prefill there) and whose tokens are ignored. Attention covers the whole cache length with a mask, so
every input has a fixed shape and address, which is what a graph replay needs. On CPU the same body runs eagerly
(`capture=False`): the tests check its tokens there.
"""

from __future__ import annotations

import logging
import time

import torch

from .layers import LlamaStack

__all__ = ["StaticSteps", "buckets_for"]

log = logging.getLogger(__name__)


def buckets_for(slots: int) -> list[int]:
    """Batch buckets 1, 2, 4, 8, … up to `slots` (the slot count itself is the last bucket).

    Args:
        slots: the engine's slot count.
    """
    out, b = [], 1
    while b < slots:
        out.append(b)
        b *= 2
    return out + [slots]


class StaticSteps:
    """Static input/output buffers per bucket and, on CUDA with `capture`, one CUDA graph per bucket.

    Args:
        stack: the engine's LlamaStack.
        k_cache: the engine's K cache [layers, slots, kv_heads, max_len, head_dim]; v_cache the same.
        cos: rotary cosine table [max_len, head_dim]; sin the same.
        capture: capture CUDA graphs (needs CUDA tensors); False runs the same static body eagerly.
    """

    def __init__(self, stack: LlamaStack, k_cache, v_cache, cos, sin, capture: bool):
        self.stack, self.k, self.v, self.cos, self.sin = stack, k_cache, v_cache, cos, sin
        self.slots, self.max_len = k_cache.shape[1], k_cache.shape[3]
        self.buckets = buckets_for(self.slots)
        dev, dtype = k_cache.device, k_cache.dtype
        self.tokens = torch.zeros(self.slots, dtype=torch.long, device=dev)
        self.pos = torch.zeros(self.slots, dtype=torch.long, device=dev)
        self.rows = torch.arange(self.slots, device=dev)
        self.cols = torch.arange(self.max_len, device=dev)
        self.neg = torch.tensor(float("-inf"), dtype=dtype, device=dev)
        self.zero = torch.tensor(0.0, dtype=dtype, device=dev)
        self.capture = capture
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.out: dict[int, torch.Tensor] = {}
        self.capture_s = 0.0

    def bucket(self, top_slot: int) -> int:
        """The smallest bucket holding slots 0..top_slot."""
        return next(b for b in self.buckets if b > top_slot)

    def _body(self, b: int) -> torch.Tensor:
        pos = self.pos[:b]
        mask = torch.where(self.cols[None] <= pos[:, None], self.zero, self.neg)[:, None, None, :]
        x = self.stack.embed(self.tokens[:b])[:, None]
        idx = LlamaStack.write_index(self.rows[:b], pos[:, None], self.stack.kv_heads, self.max_len)
        cos, sin = self.cos[pos][:, None, None], self.sin[pos][:, None, None]
        h = self.stack.forward(x, self.k, self.v, idx, b, self.max_len, cos, sin, mask)
        return self.stack.logits(h[:, -1])

    def warmup(self) -> None:
        """Capture every bucket's graph now (CUDA with capture only), logging the time it took."""
        if not self.capture or self.graphs:
            return
        t0 = time.perf_counter()
        self.pos.zero_()
        # the eager warm-up runs write K/V at position 0 of every slot: keep what live requests have there
        saved = self.k[:, :, :, 0].clone(), self.v[:, :, :, 0].clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for b in self.buckets:
                for _ in range(2):  # eager runs first: lazy init and allocator growth stay out of the graph
                    self._body(b)
        torch.cuda.current_stream().wait_stream(stream)
        self.k[:, :, :, 0], self.v[:, :, :, 0] = saved
        with torch.inference_mode():
            for b in self.buckets:
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    self.out[b] = self._body(b)
                self.graphs[b] = g
        torch.cuda.synchronize()
        self.capture_s = time.perf_counter() - t0
        log.info("decode engine: captured CUDA graphs for buckets %s in %.1f s", self.buckets, self.capture_s)

    def run(self, last: torch.Tensor, positions: list[int], b: int) -> torch.Tensor:
        """Logits [b, vocab] of one decode step over slots 0..b-1.

        Args:
            last: the engine's last token per slot [slots] (device).
            positions: the new token's position per slot 0..b-1 (0 for free slots: padding).
            b: the bucket.
        """
        if self.capture:
            self.warmup()  # first: its warm-up runs use the buffers filled below
        self.tokens[:b].copy_(last[:b])
        self.pos[:b].copy_(torch.tensor(positions, dtype=torch.long), non_blocking=True)
        if self.capture:
            self.graphs[b].replay()
            return self.out[b]
        return self._body(b)
