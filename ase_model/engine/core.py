"""Slot KV cache, batched prefill and decode step over it, with a request API for continuous batching."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .graphs import StaticSteps
from .layers import LlamaStack
from .sampling import choose

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


@dataclass
class Request:
    """One decode request.

    Args:
        input_ids: 1-D prompt ids (image tokens included).
        image_features: the model's image features for this prompt ([1, n, hidden]) or None.
        max_new_tokens: stop after this many new tokens.
        stream: called with each new token id, in order (in chunks of up to the engine's `sync_every` steps).
        temperature: sample at this temperature (None or 0: greedy, the tokens of `generate(do_sample=False)`).
        top_k: sample among the k most likely tokens only (None or 0: all).
        top_p: sample among the smallest set of tokens whose probability reaches top_p (None: all).
        seed: seeds the request's own generator (same seed, same tokens; None: a random seed).
    """

    input_ids: torch.Tensor
    image_features: torch.Tensor | None = None
    max_new_tokens: int = 32
    stream: Callable[[int], None] | None = None
    tokens: list[int] = field(default_factory=list)
    done: bool = False
    handle: int = -1
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    cancelled: bool = False
    slot: int = -1
    generator: torch.Generator | None = field(default=None, repr=False)




class DecodeEngine:
    """A preallocated N-slot KV cache, batched prefill, and one batched decode step over the active slots.

    Args:
        model: an ASEForConditionalGeneration whose language model is Llama-style.
        slots: how many requests decode at once.
        max_len: longest prompt + new tokens per slot.
        eos_token_id: stop token (default: the model's generation config).
        sync_every: read the new tokens back to the host (stop checks, streaming) every this many steps; steps in
            between stay on the device and tokens past a stop are dropped (default: 1 on CPU, 8 on CUDA).
        cuda_graphs: decode through static batch buckets (slots 0..b-1), captured as CUDA graphs on CUDA
            (None: on CUDA only). On CPU, True runs the same bucketed body eagerly.
        fuse: fuse q/k/v and gate/up weights (None: on CPU only; see LlamaStack).
    """

    def __init__(self, model, slots: int = 8, max_len: int = 512, eos_token_id: int | None = None,
                 sync_every: int | None = None, cuda_graphs: bool | None = None, fuse: bool | None = None):
        reason = unsupported_reason(model)
        if reason:
            raise UnsupportedArchitecture(reason)
        self.model = model
        self.stack = LlamaStack(model, fuse=fuse)
        self.slots, self.max_len = slots, max_len
        eos = model.generation_config.eos_token_id if eos_token_id is None else eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos])
        p = next(model.parameters())
        self.device, cuda = p.device, p.device.type == "cuda"
        self.sync_every = max(1, sync_every if sync_every is not None else (8 if cuda else 1))
        shape = (len(self.stack.layers), slots, self.stack.kv_heads, max_len, self.stack.head_dim)
        self.k = torch.zeros(shape, dtype=p.dtype, device=p.device)  # allocated once, for the engine's life
        self.v = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.cos, self.sin = self.stack.rotary_table(max_len, p.device, p.dtype)
        self.lengths = [0] * slots  # host-side: the cache length of each slot (no device read needed)
        self._count = [0] * slots  # tokens produced per slot, pending ones included
        self.active: dict[int, Request] = {}  # slot -> request
        self.queue: list[Request] = []
        self.finished: dict[int, Request] = {}
        # handles whose requests keep their slot but sit out the decode steps (a worker puts its background
        # critiques here while an interactive one decodes: the step is then as short as the interactive alone)
        self.paused: set[int] = set()
        self.last = torch.zeros(slots, dtype=torch.long, device=p.device)
        self._arange = torch.arange(max(slots, max_len), device=p.device)
        self._pending: list[tuple[list[Request], torch.Tensor]] = []  # tokens not yet read back, in step order
        use_graphs = cuda if cuda_graphs is None else cuda_graphs
        self.static = StaticSteps(self.stack, self.k, self.v, self.cos, self.sin, capture=cuda) if use_graphs else None
        self._ids = itertools.count()

    # ---- request API -----------------------------------------------------------------------------------
    def submit(self, request: Request) -> int:
        """Queue a request; it takes a free slot at the next step. Returns its handle; raises ValueError when
        its prompt + max_new_tokens exceed max_len.

        Args:
            request: the prompt, its image features and its decoding options.
        """
        self._check_len(request)  # refused here, before it holds a place in the queue
        request.handle = next(self._ids)
        if request.temperature and request.generator is None:
            request.generator = torch.Generator(device=self.device)
            if request.seed is None:
                request.generator.seed()
            else:
                request.generator.manual_seed(request.seed)
        self.queue.append(request)
        return request.handle

    def cancel(self, handle: int) -> None:
        """Drop a request, freeing its slot at once (its tokens not yet read back are discarded).

        Args:
            handle: what `submit` returned.
        """
        for r in self.queue:
            if r.handle == handle:
                r.cancelled = True
        self.queue = [r for r in self.queue if r.handle != handle]
        for slot, r in list(self.active.items()):
            if r.handle == handle:
                r.cancelled = True
                self._free(slot)

    def run(self) -> dict[int, Request]:
        """Step until every submitted request has finished (paused ones resumed); returns them by handle."""
        self.paused.clear()
        while self.queue or self.active:
            self.step()
        return self.finished

    def warmup(self) -> None:
        """Capture the CUDA graphs of every batch bucket now (CUDA only; otherwise nothing to do)."""
        if self.static is not None:
            self.static.warmup()

    # ---- prefill ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _prefill(self, batch: list[tuple[int, Request]]) -> torch.Tensor:
        """Put several prompts (right-padded to one length) into their slots in ONE forward; first tokens [n]."""
        embs = []
        for _, r in batch:
            ids = r.input_ids.to(self.device).view(1, -1)
            emb = self.stack.embed(ids)
            if r.image_features is not None:
                emb = self.model.model.merge_image_features(ids, emb, r.image_features)
            embs.append(emb[0])
        lens = [e.shape[0] for e in embs]
        n, T = len(batch), max(lens)
        x = torch.nn.utils.rnn.pad_sequence(embs, batch_first=True) if n > 1 else embs[0][None]
        causal = self._arange[:T][None] <= self._arange[:T][:, None]  # [T(query), T(key)]
        if n > 1:  # a padded key is hidden from every real query (pad rows see real keys: no empty row)
            keys = self._arange[:T][None] < torch.tensor(lens, device=self.device)[:, None]
            causal = causal[None] & keys[:, None, :]
        zero = torch.zeros((), dtype=x.dtype, device=self.device)
        mask = torch.where(causal, zero, float("-inf")).to(x.dtype).view(n, 1, T, T) if n > 1 else \
            torch.where(causal, zero, float("-inf")).to(x.dtype)[None, None]
        slots = torch.tensor([s for s, _ in batch], device=self.device)
        pos = self._arange[:T][None].expand(n, T)
        idx = LlamaStack.write_index(slots, pos, self.stack.kv_heads, self.max_len)
        cos, sin = self.cos[:T][None, None], self.sin[:T][None, None]
        h = self.stack.forward(x, self.k, self.v, idx, slots, T, cos, sin, mask)
        last = h[torch.arange(n, device=self.device), torch.tensor(lens, device=self.device) - 1]
        return choose(self.stack.logits(last), [r for _, r in batch])

    def prefill(self, slot: int, request: Request) -> int:
        """Put one request's prompt into a slot and make it active; returns its first token (reads it back).

        Args:
            slot: a free slot.
            request: the request (already submitted or not).
        """
        self._check_len(request)
        tok = self._prefill([(slot, request)])
        self._activate(slot, request, tok)
        return int(tok[0])

    def _check_len(self, r: Request) -> None:
        T = r.input_ids.numel()
        if T + r.max_new_tokens > self.max_len:
            raise ValueError(f"prompt {T} + {r.max_new_tokens} new tokens exceed max_len {self.max_len}")

    def _activate(self, slot: int, r: Request, first: torch.Tensor) -> None:
        r.slot = slot
        self.active[slot] = r
        self.lengths[slot] = r.input_ids.numel()
        self._count[slot] = 1
        self.last[slot] = first[0]

    def _admit(self) -> None:
        free = [s for s in range(self.slots) if s not in self.active]
        batch = []
        while self.queue and free:
            r = self.queue.pop(0)
            self._check_len(r)  # changed since submit: dropped with the error, the queue moves on
            batch.append((free.pop(0), r))
        if not batch:
            return
        toks = self._prefill(batch)
        for i, (slot, r) in enumerate(batch):
            self._activate(slot, r, toks[i : i + 1])
        self._pending.append(([r for _, r in batch], toks))

    # ---- stop checks -------------------------------------------------------------------------------------
    def _free(self, slot: int) -> None:
        del self.active[slot]
        self.lengths[slot] = 0
        self._count[slot] = 0

    def _flush_due(self) -> bool:
        if not self._pending:
            return False
        return len(self._pending) >= self.sync_every or any(
            self._count[s] >= r.max_new_tokens for s, r in self.active.items())

    def _flush(self) -> None:
        """Read the pending tokens back (one host sync), emit them in step order, stop at EOS / max_new_tokens."""
        pending, self._pending = self._pending, []
        flat = torch.cat([t for _, t in pending]).tolist()
        i = 0
        for reqs, _ in pending:
            for r in reqs:
                tok, i = flat[i], i + 1
                if not (r.done or r.cancelled):  # tokens past a stop (decoded before the check) are dropped
                    self._emit(r, tok)

    def _emit(self, r: Request, token: int) -> None:
        r.tokens.append(token)
        if r.stream is not None:
            r.stream(token)
        if token in self.eos or len(r.tokens) >= r.max_new_tokens:
            r.done = True
            self.finished[r.handle] = r
            if self.active.get(r.slot) is r:
                self._free(r.slot)

    # ---- decode ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _decode(self, slots: list[int], reqs: list[Request]) -> torch.Tensor:
        """One decode step over the given active slots; their next tokens [B] (on the device)."""
        B = len(slots)
        pos = [self.lengths[s] for s in slots]
        if self.static is not None:
            b = self.static.bucket(slots[-1])
            full = [0] * b
            for s, p in zip(slots, pos):
                full[s] = p
            logits = self.static.run(self.last, full, b)
            return choose(logits[slots] if B < b else logits, reqs)
        dense = slots[-1] == B - 1  # sorted and unique: slots 0..B-1, read the cache as a view
        rows = B if dense else torch.tensor(slots, device=self.device)
        slot_t = self._arange[:B] if dense else rows
        L = max(pos) + 1
        pos_t = torch.tensor(pos, device=self.device)
        mask = None  # every slot at the same length: all L columns visible to every row
        if min(pos) != L - 1:
            mask = torch.where(self._arange[:L][None] <= pos_t[:, None], 0.0, float("-inf"))
            mask = mask.to(self.k.dtype)[:, None, None, :]
        x = self.stack.embed(self.last[:B] if dense else self.last[rows])[:, None]
        idx = LlamaStack.write_index(slot_t, pos_t[:, None], self.stack.kv_heads, self.max_len)
        cos, sin = self.cos[pos_t][:, None, None], self.sin[pos_t][:, None, None]
        h = self.stack.forward(x, self.k, self.v, idx, rows, L, cos, sin, mask)
        return choose(self.stack.logits(h[:, -1]), reqs)

    def step(self) -> None:
        """Admit queued requests into free slots (one batched prefill), then ONE batched decode step over the
        active slots; tokens are read back every `sync_every` steps (or when a request reaches its limit)."""
        self._admit()
        if self._flush_due():
            self._flush()
        slots = sorted(s for s, r in self.active.items() if r.handle not in self.paused)
        if not slots:
            return
        reqs = [self.active[s] for s in slots]
        nxt = self._decode(slots, reqs)
        if self.static is not None or slots[-1] != len(slots) - 1:
            self.last[torch.tensor(slots, device=self.device)] = nxt
        else:
            self.last[: len(slots)] = nxt
        for s in slots:
            self.lengths[s] += 1
            self._count[s] += 1
        self._pending.append((reqs, nxt))
        if self._flush_due():
            self._flush()
