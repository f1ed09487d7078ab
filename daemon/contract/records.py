"""Typed records of the wire: the critique result, built by one constructor wherever a result is made or read.

The worker builds a CritiqueResult from the model's output, the store rebuilds it from SQLite, the client reads it
back from a reply (`from_dict`); all three go through the dataclass's constructor, so a result has the same keys
and values whichever way it came, and `cached` says which way: False when the model ran for this request, True
when the stored critique answered it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

__all__ = ["CritiqueResult"]


@dataclass(frozen=True)
class CritiqueResult:
    """One image's critique, as a reply's `result` carries it (docs/protocol.md, "The critique result").

    Args:
        text: the critique, one "Aspect: sentence." line per aspect.
        attributes: aspect -> its sentence.
        score: the aesthetic score, 0..10 (kept to 4 decimals).
        tags: hierarchical tags, "root|a|b".
        saliency: the saliency map's summary (centroid, peak, spread), or None.
        timings: seconds per stage of the model run.
        model: the model's fingerprint.
        hash: sha256 of the image file's bytes (with model and length, the store's key).
        cached: True when the stored critique answered (the model did not run for this request).
        created: when the critique was made (Unix seconds).
        image: the image's name as the request gave it (its path or its name); None when not tied to a request.
        warnings: damage the decoder papered over in this file (not stored: a cache hit looks again).
        personal_score: 0..10 by the request's personal profile (only when the request named one; not stored).
        profile: that profile's name.
    """

    text: str
    attributes: dict
    score: float
    tags: list
    saliency: dict | None
    timings: dict
    model: str
    hash: str
    cached: bool
    created: float = field(default_factory=time.time)
    image: str | None = None
    warnings: list = field(default_factory=list)
    personal_score: float | None = None
    profile: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "score", round(float(self.score), 4))

    def for_request(self, image: str | None, warnings: list | None = None) -> CritiqueResult:
        """The same critique answering a request about `image` (a stored critique serves many files)."""
        return dataclasses.replace(self, image=image, warnings=list(warnings or []))

    def with_personal(self, profile: str | None, personal_score: float | None) -> CritiqueResult:
        """The same critique with a personal profile's score beside the generic one."""
        score = None if personal_score is None else round(float(personal_score), 4)
        return dataclasses.replace(self, profile=profile, personal_score=score)

    def to_dict(self) -> dict:
        """The wire form (the reply's `result` object)."""
        return {"image": self.image, "text": self.text, "attributes": dict(self.attributes), "score": self.score,
                "tags": list(self.tags), "saliency": self.saliency, "timings": dict(self.timings),
                "model": self.model, "hash": self.hash, "cached": self.cached, "created": self.created,
                "warnings": list(self.warnings),
                **({"personal_score": self.personal_score, "profile": self.profile}
                   if self.personal_score is not None else {})}

    @classmethod
    def from_dict(cls, result: dict) -> CritiqueResult:
        """A result object as it arrived in a reply (missing optional keys get their defaults).

        Args:
            result: a reply's `result` of `critique` (or the `result` of a finished `job`).
        """
        created = result.get("created")
        return cls(text=result.get("text", ""), attributes=dict(result.get("attributes") or {}),
                   score=result["score"], tags=list(result.get("tags") or []), saliency=result.get("saliency"),
                   timings=dict(result.get("timings") or {}), model=result.get("model", ""),
                   hash=result.get("hash", ""), cached=bool(result.get("cached", False)),
                   created=float(created) if isinstance(created, (int, float)) else time.time(),
                   image=result.get("image"), warnings=list(result.get("warnings") or []),
                   personal_score=result.get("personal_score"), profile=result.get("profile"))
