"""Culling photos with the store: what `ase-mllm cull` and the daemon's `cull` op share.

    files, problems = list_photos(["/shoot"], recursive=False)
    source = CullSource(store, model_id, critique=..., max_new_tokens=160)
    feats = source.features(files, progress=bar, errors=errors)        # store first, the model only for new photos
    decisions = cull(feats)                                              # ase_model.culling
    decisions = cull(feats, personal=personal_scores(feats, source.hashes, cached, compute))   # with a profile

Per photo, cheapest first: its CullFeatures stored under (content hash, model) (no decoding at all); else the
stored critique of that content by that model (decode + ~50 ms of measurements, no model); else a new critique
(`critique`, which stores it, so the daemon and the next cull reuse it). New features are stored too. The
`critique` callable is the only part that differs: the CLI runs a local Critic, the daemon its worker.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ase_model.folders import list_photos  # the folder walk every command shares (re-exported here)

__all__ = ["CritiqueLike", "CullSource", "critique_from_result", "list_photos", "personal_scores",
           "verdicts_from_tags"]

DECODE_SIDE = 1024  # the features are measured at 512 px and the model sees less: no need to decode more


@dataclass
class CritiqueLike:
    """What culling reads of a critique (ase_model.critic.Critique has these too).

    Args:
        score: the critic's score.
        saliency: the saliency map, float in [0, 1].
        verdicts: the attribute head's verdicts, when known.
    """

    score: float
    saliency: np.ndarray
    verdicts: dict = field(default_factory=dict)


def verdicts_from_tags(tags: Sequence[str]) -> dict[str, str]:
    """The defect verdicts culling names for a lone frame, read back from a stored critique's tags (the store keeps
    tags, not the head's verdicts): "aesthetics|focus|soft" -> sharpness soft, and so on."""
    leaves = {t.rsplit("|", 1)[-1].strip().lower() for t in tags or ()}
    out = {}
    for key, value, words in (("sharpness", "soft", ("soft", "blurry", "out of focus")),
                              ("exposure", "underexposed", ("underexposed",)),
                              ("exposure", "overexposed", ("overexposed",)), ("noise", "noisy", ("noisy",)),
                              ("highlights", "clipped", ("clipped highlights", "blown highlights"))):
        if key not in out and leaves & set(words):
            out[key] = value
    return out


def critique_from_result(result: dict, saliency_png: bytes | None) -> CritiqueLike | None:
    """A stored or answered critique (CritiqueResult dict + saliency PNG) as culling reads it; None without a map."""
    if not saliency_png:
        return None
    from ase_model.saliency import from_png

    return CritiqueLike(float(result["score"]), from_png(saliency_png), verdicts_from_tags(result.get("tags")))


class CullSource:
    """CullFeatures for photo files, from the store where it knows them (module docstring).

    Args:
        store: the daemon's Store (ase_daemon.store), or None to keep nothing.
        model_id: the model's fingerprint (the store's key; known before the model loads).
        critique: critique(items) for photos the store does not know, items of (path, image, data); returns one
            CritiqueLike or Exception per item and stores the critiques it makes.
        max_new_tokens: the critique length the store is asked for first.
        batch_size: photos per critique batch.
        budget: the decoder-memory budget (ase_model.imagesafety.MemoryBudget) decodes reserve from; the daemon
            passes its worker's, so a cull's decodes share the daemon's limit.
    """

    def __init__(self, store, model_id: str, critique: Callable[[list[tuple]], list], max_new_tokens: int = 160,
                 batch_size: int = 4, budget=None):
        self.store, self.model_id, self.critique = store, model_id, critique
        self.max_new_tokens, self.batch_size, self.budget = max_new_tokens, batch_size, budget
        self.counts = {"known": 0, "from_critique": 0, "critiqued": 0, "unreadable": 0}
        self.hashes: dict[str, str] = {}  # path (as given) -> content hash, for every photo read

    def features(self, paths: Sequence[str | os.PathLike], progress: Callable[[int, int], None] | None = None,
                 errors: dict | None = None, cancelled: Callable[[], bool] | None = None) -> list:
        """CullFeatures of the readable photos, in the order given; unreadable ones go to `errors` {path: message}.

        Args:
            paths: the photo files.
            progress: progress(done, total) after each photo that needed no model and after each model batch.
            errors: where unreadable files are reported (a dict); the rest go on.
            cancelled: polled between photos; when it returns True the photos done so far are returned.
        """
        from ase_model.culling import CullFeatures, capture_time, features_from

        errors = {} if errors is None else errors
        out: dict[int, CullFeatures] = {}
        pending: list[tuple[int, Path, object, bytes, str]] = []
        total, done = len(paths), 0

        def flush() -> None:
            nonlocal done
            if not pending:
                return
            answers = self.critique([(p, im, data) for _, p, im, data, _ in pending])
            for (i, p, im, _, h), c in zip(pending, answers):
                if isinstance(c, Exception) or c is None:
                    errors[str(p)] = str(c) if c is not None else f"{p}: the critique has no saliency map"
                    self.counts["unreadable"] += 1
                    continue
                out[i] = self._remember(features_from(p, im, c), h)
                self.counts["critiqued"] += 1
            done += len(pending)
            pending.clear()
            if progress is not None:
                progress(done, total)

        for i, path in enumerate(Path(p) for p in paths):
            if cancelled is not None and cancelled():
                break
            try:
                data = _read(path)
            except (OSError, ValueError) as e:  # ImageLoadError is a ValueError
                errors[str(path)] = _message(path, e)
                self.counts["unreadable"] += 1
                done += 1
                if progress is not None:
                    progress(done, total)
                continue
            h = hashlib.sha256(data).hexdigest()
            self.hashes[str(path)] = h
            known = self.store.get_cull_features(h, self.model_id) if self.store is not None else None
            if known is not None:
                f = CullFeatures.from_dict(known)
                f.path = str(path)
                if f.time_source != "exif":  # the file's time is not part of its content
                    f.capture_time, f.time_source = capture_time(path)
                out[i] = f
                self.counts["known"] += 1
                done += 1
                if progress is not None:
                    progress(done, total)
                continue
            try:
                from ase_model.imageio import load_image

                image = load_image(data, name=str(path), max_side=DECODE_SIDE, budget=self.budget)
            except (OSError, ValueError) as e:
                errors[str(path)] = _message(path, e)
                self.counts["unreadable"] += 1
                done += 1
                if progress is not None:
                    progress(done, total)
                continue
            stored = self.store.any_critique(h, self.model_id, self.max_new_tokens) if self.store is not None else None
            c = critique_from_result(stored.result.to_dict(), stored.saliency_png) if stored is not None else None
            if c is not None:
                out[i] = self._remember(features_from(path, image, c), h)
                self.counts["from_critique"] += 1
                done += 1
                if progress is not None:
                    progress(done, total)
                continue
            pending.append((i, path, image, data, h))
            if len(pending) >= self.batch_size:
                flush()
        if not (cancelled is not None and cancelled()):
            flush()
        return [out[i] for i in sorted(out)]

    def _remember(self, f, h: str):
        if self.store is not None:
            self.store.put_cull_features(h, self.model_id, f.to_dict())
        return f


def personal_scores(feats: Sequence, hashes: dict[str, str], cached: Callable[[str], float | None],
                    compute: Callable[[list[tuple[str, str]]], list], errors: dict | None = None) -> list:
    """Each culled photo's personal score (what `cull(..., personal=...)` takes): from the cached feature vector
    where there is one, the rest by `compute` in one call (it runs the model's image side and caches the vectors).

    Args:
        feats: the photos' CullFeatures (`CullSource.features`).
        hashes: path -> content hash (`CullSource.hashes`).
        cached: cached(hash) -> the score, or None when the photo's features are not cached.
        compute: compute([(path, hash)]) -> a score or an Exception per photo.
        errors: where a photo whose score could not be computed is reported ({path: message}); it is culled
            with the critic's score (its group too: one scale per group).
    """
    out: list = [cached(hashes[f.path]) for f in feats]
    todo = [i for i, s in enumerate(out) if s is None]
    if todo:
        for i, s in zip(todo, compute([(feats[i].path, hashes[feats[i].path]) for i in todo])):
            if isinstance(s, Exception):
                if errors is not None:
                    errors[feats[i].path] = f"{feats[i].path}: no personal score ({s})"
                continue
            out[i] = float(s)
    return out


def _read(path: Path) -> bytes:
    """The file's bytes, as a regular file only (a FIFO is refused, never waited on)."""
    from ase_model.imagesafety import read_regular

    return read_regular(path)


def _message(path: Path, e: Exception) -> str:
    text = str(e)
    return text if str(path) in text or path.name in text else f"{path}: {text}"
