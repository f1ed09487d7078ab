"""The client's calls about a whole shoot: `cull` and `search` (a part of `Client`, client.py).

`_ShootCalls` is split out of `Client` along this seam; it uses the Client's `request` and `_call`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from . import contract as P

__all__: list[str] = []


class _ShootCalls:
    """`Client.cull` and `Client.search` (need `request` and `_call`)."""

    def cull(self, paths, recursive: bool = False, apply: bool = False, pick_rating: int | None = None,
             overwrite_rating: bool = False, on_progress: Callable[[dict], None] | None = None, wait: bool = True,
             request_id: str | None = None, profile: str | None = None, **thresholds) -> dict:
        """Cull photos on the daemon's machine (local endpoints): files and folders, as a background job.

        Returns {"job", "state", "decisions", "errors", "counts"} (docs/culling.md); with wait=False only the job's
        id and state (`job(id)` gives the decisions once it is done, `cancel(id)` stops it). `on_progress(data)`
        gets the progress events; `profile`: rank by this personal profile's score (decisions get
        personal_score); `thresholds`: max_gap_s, min_similarity.
        """
        args = {"paths": [os.path.abspath(os.fspath(p)) for p in paths], "progress": on_progress is not None,
                "wait": wait, **{k: v for k, v in thresholds.items() if v is not None}}
        if profile:
            args["profile"] = profile
        for key, value in (("recursive", recursive), ("apply", apply), ("overwrite_rating", overwrite_rating)):
            if value:
                args[key] = True
        if pick_rating is not None:
            args["pick_rating"] = int(pick_rating)

        def on_event(ev: P.Reply) -> None:
            if ev.event == P.PROGRESS and on_progress is not None:
                on_progress(ev.data)

        return self.request(P.OP_CULL, args, on_event=on_event, request_id=request_id).result

    def search(self, tags=(), min_score: float | None = None, max_score: float | None = None,
               folder: str | os.PathLike | None = None, text: str | None = None, limit: int | None = None,
               details: bool = False) -> dict:
        """Photos of the daemon's library matching every filter, best score first (the `search` op).

        Args:
            tags: tags every match carries, e.g. ["exposure|underexposed"] (with or without the tag root).
            min_score, max_score: inclusive score bounds.
            folder: only photos in this folder or below (made absolute here; matched as text by the daemon).
            text: words that must all occur in the critique.
            limit: at most this many photos (the daemon's default when None).
            details: add each critique's tags, text, model and content hash.

        Returns: {"photos": [{"path", "score", ...}], "count", "truncated", "ms"}.
        """
        args: dict = {}
        if tags:
            args["tags"] = [str(t) for t in tags]
        for key, value in (("min_score", min_score), ("max_score", max_score)):
            if value is not None:
                args[key] = float(value)
        if folder is not None:
            args["folder"] = os.path.abspath(os.fspath(folder))
        if text:
            args["text"] = str(text)
        if limit is not None:
            args["limit"] = int(limit)
        if details:
            args["details"] = True
        return self._call(P.OP_SEARCH, args)
