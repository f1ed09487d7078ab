"""Per-image text streaming for the Critic and the daemon's streaming worker: token ids in, text pieces out.

transformers' TextStreamer handles batch 1; `BatchStreamer` keeps one text per image and hands each image's new
text to a callback as tokens arrive, holding back incomplete UTF-8 sequences until the next token.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers.generation.streamers import BaseStreamer

__all__ = ["BatchStreamer", "StreamCallback"]

StreamCallback = Callable[[int, str], None]  # (index of the image in the batch, new text)


class BatchStreamer(BaseStreamer):
    """Hands each image's new text to a callback as tokens arrive.

    Args:
        tokenizer: the processor's tokenizer (decodes the ids, knows the stop token).
        batch: how many images (indices 0..batch-1).
        callback: called with (index, new text) for every piece of text, in order per index.
    """

    def __init__(self, tokenizer, batch: int, callback: StreamCallback):
        self.tokenizer, self.callback = tokenizer, callback
        self.ids: list[list[int]] = [[] for _ in range(batch)]
        self.sent = [""] * batch
        self.done = [False] * batch
        self.prompt_seen = False

    def put(self, value: torch.Tensor):
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        for i, tok in enumerate(value.reshape(len(self.ids), -1)[:, -1].tolist()):
            self.token(i, tok)

    def token(self, i: int, tok: int):
        """One new token of image i (the decode engine's per-request stream calls this directly)."""
        if self.done[i]:
            return
        if tok == self.tokenizer.eos_token_id:
            self.done[i] = True
            return
        self.ids[i].append(tok)
        self._emit(i, final=False)

    def _emit(self, i: int, final: bool):
        text = self.tokenizer.decode(self.ids[i], skip_special_tokens=True)
        if text.endswith("\ufffd") and not final:  # an incomplete UTF-8 sequence: wait for the next token
            return
        if len(text) > len(self.sent[i]) and text.startswith(self.sent[i]):
            delta, self.sent[i] = text[len(self.sent[i]):], text
            self.callback(i, delta)

    def end_one(self, i: int):
        """Image i is done: send whatever was held back waiting for more bytes."""
        self._emit(i, final=True)

    def end(self):
        for i in range(len(self.ids)):
            self.end_one(i)
