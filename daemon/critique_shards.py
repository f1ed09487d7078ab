"""The per-rank shard files of `ase-mllm critique --distributed` (critique_distributed.py): JSONL, one line a frame.

Every rank appends to its own file, `rank-00003.jsonl` in the shards folder, a batch at a time (one write, flushed
and fsync'ed), so a killed run loses at most the batch it was in. A line is one of:

* `"kind": "made"`: critiqued by the model; `record` is the output record (the normal CLI's), `score` the
  unrounded score the store keeps, `png` the saliency map (base64 PNG);
* `"kind": "stored"`: answered by the rank's store, carried whole (record, score, png) so that rank 0 can merge it
  even when it does not see that store (another machine's);
* `"kind": "same"`: the content (`hash`) is already in a shard line under another name (a copy, a moved file);
* `"kind": "error"`: `record` is the error record; not done, a rerun tries the frame again;
* `"kind": "personal"`: the `personal_score` of the content (`hash`) under `profile` (its name and a digest of
  its profile.json: a profile learnt again scores afresh), for `--profile`.

Every line carries the frame's `image`, its content `hash` (not for some errors), the `model` fingerprint and
`max_new_tokens` (lines of another model or length are ignored), the `rank`, the `run` id and a time `t` (the
latest line of an image wins). Torch-free.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DONE_KINDS", "KIND_CRITIQUE", "KIND_ERROR", "KIND_PERSONAL", "KIND_SAME", "KIND_STORED", "ShardIndex",
           "ShardWriter", "decode_png", "encode_png", "read_shards", "shard_path"]

KIND_CRITIQUE, KIND_STORED, KIND_SAME, KIND_ERROR = "made", "stored", "same", "error"
KIND_PERSONAL = "personal"
DONE_KINDS = (KIND_CRITIQUE, KIND_STORED)  # lines that hold a critique a rerun need not make again
_GLOB = "rank-*.jsonl"


def shard_path(folder: str | os.PathLike, rank: int) -> Path:
    """The shard file of a rank.

    Args:
        folder: the shards folder.
        rank: the process index.
    """
    return Path(folder) / f"rank-{rank:05d}.jsonl"


def encode_png(png: bytes | None) -> str | None:
    """A PNG as the line's text (base64), or None.

    Args:
        png: the PNG's bytes.
    """
    return base64.b64encode(png).decode("ascii") if png else None


def decode_png(text: str | None) -> bytes | None:
    """Inverse of encode_png.

    Args:
        text: the base64 text, or None.
    """
    return base64.b64decode(text) if text else None


class ShardWriter:
    """Appends one rank's lines: `add` buffers, `flush` writes the buffer in one write, flushed and fsync'ed.

    A line cut short by a kill (the file does not end in a newline) is cut off on open, so the next line starts
    clean; the frame it stood for is done again.

    Args:
        folder: the shards folder (created if missing).
        rank: the process index.
        run: this run's id, put on every line.
    """

    def __init__(self, folder: str | os.PathLike, rank: int, run: str):
        self.path, self.run, self.rank = shard_path(folder, rank), run, rank
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a+b")  # noqa: SIM115 -- kept open for the run; close() ends it
        self._cut_partial_line()
        self._pending: list[bytes] = []
        self.written = 0

    def _cut_partial_line(self) -> None:
        size = self._f.seek(0, os.SEEK_END)
        if size == 0:
            return
        # the tail is short (a line is a few KiB): read back until the last newline
        back = min(size, 1 << 20)
        self._f.seek(size - back)
        tail = self._f.read(back)
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        if cut >= 0 or back == size:
            self._f.truncate(size - back + cut + 1)  # cut == -1 with the whole file read: empties it
        else:  # a line over 1 MiB without its end: end it, the reader skips it
            self._f.write(b"\n")
        self._f.seek(0, os.SEEK_END)

    def add(self, line: dict) -> None:
        """Buffers a line (rank, run id and time added).

        Args:
            line: the line's fields (kind, image, hash, model, max_new_tokens, record, ...).
        """
        line = {**line, "rank": self.rank, "run": self.run, "t": time.time()}
        self._pending.append((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))

    def flush(self) -> None:
        """Writes what is buffered and makes it durable (and visible to other machines on a shared filesystem)."""
        if not self._pending:
            return
        self._f.write(b"".join(self._pending))
        self._f.flush()
        os.fsync(self._f.fileno())
        self.written += len(self._pending)
        self._pending.clear()

    def close(self) -> None:
        """Flushes and closes."""
        self.flush()
        self._f.close()


def read_shards(folder: str | os.PathLike) -> list[dict]:
    """Every line of every shard file in the folder, oldest file order aside (lines carry their time).

    A line that does not parse (being written by another rank right now, or cut by a kill) is skipped.

    Args:
        folder: the shards folder (missing: no lines).
    """
    out = []
    folder = Path(folder)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob(_GLOB)):
        with open(path, "rb") as f:
            for raw in f:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(line, dict) and "image" in line and "kind" in line:
                    out.append(line)
    return out


class ShardIndex:
    """What the shards know for one model and critique length.

    Args:
        lines: the lines (read_shards).
        model: the model fingerprint; lines of other models are left out.
        max_new_tokens: the critique length; lines of other lengths are left out.
    """

    def __init__(self, lines: Iterable[dict], model: str, max_new_tokens: int):
        self.by_hash: dict[str, dict] = {}  # content hash -> the latest line that holds its critique
        self.by_image: dict[str, dict] = {}  # image -> its latest line, of any kind but personal
        self.personal: dict[tuple[str, str], float] = {}  # (content hash, profile key) -> personal score
        for line in lines:
            if line.get("model") != model or line.get("max_new_tokens") != max_new_tokens:
                continue
            if line["kind"] == KIND_PERSONAL:
                self.personal[(line["hash"], line["profile"])] = line["personal_score"]
                continue
            if line["kind"] in DONE_KINDS and _later(line, self.by_hash.get(line.get("hash"))):
                self.by_hash[line["hash"]] = line
            if _later(line, self.by_image.get(line["image"])):
                self.by_image[line["image"]] = line

    def done(self, hash: str) -> dict | None:
        """The line that holds the critique of this content, or None.

        Args:
            hash: the content hash.
        """
        return self.by_hash.get(hash)

    def resolve(self, image: str) -> dict | None:
        """The line that answers an image: its critique (or stored) line, the line its content's `same` line
        points to, its error line; None when no shard names it.

        Args:
            image: the frame's master, as str(path).
        """
        line = self.by_image.get(image)
        if line is not None and line["kind"] == KIND_SAME:
            return self.by_hash.get(line.get("hash"))
        return line


def _later(line: dict, than: dict | None) -> bool:
    return than is None or line.get("t", 0) >= than.get("t", 0)
