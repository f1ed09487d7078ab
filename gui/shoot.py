"""A whole shoot at once: the folder's critiques gathered in the background, and sorting and filtering the photos by
them. The sort and the filter are plain functions over the daemon's result dicts, so a later `search` op of the
protocol can take the filter's place without touching the window.

    results = {path: result}                                   # the daemon's critiques, as they come in
    sort_paths(paths, results, "score")                        # best first; unscored last, by name
    keep = filter_paths(paths, results, parse_query("exposure >=6"))
    scores = ScorePass(link); scores.scored.connect(…); scores.start(paths)
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field

from ase_daemon.contract import BUSY, FORBIDDEN, NOT_READY
from PySide6.QtCore import QObject, Signal

__all__ = ["SORT_KEYS", "Query", "ScorePass", "filter_paths", "matches", "parse_query", "sort_paths"]

SORT_KEYS = ("name", "date", "score", "personal")


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def sort_paths(paths: list[str], results: dict[str, dict], key: str) -> list[str]:
    """The photos in a new order.

    Args:
        paths: the photos.
        results: critiques by path (the daemon's result dicts); photos without one sort last for "score".
        key: "name" (case-insensitive file name), "date" (file modification time, oldest first, as shot),
            "score" (best first) or "personal" (the personal profile's `personal_score`, best first).

    Returns:
        A new list; ties keep name order.
    """
    by_name = sorted(paths, key=lambda p: (os.path.basename(p).lower(), p))
    if key == "date":
        return sorted(by_name, key=_mtime)
    if key in ("score", "personal"):
        field = "personal_score" if key == "personal" else "score"

        def score(p: str) -> tuple:
            s = (results.get(p) or {}).get(field)
            return (0, -float(s)) if isinstance(s, (int, float)) else (1, 0.0)
        return sorted(by_name, key=score)
    return by_name


@dataclass
class Query:
    """What the filter box asks: every tag term must match one of the photo's tags, and the score must lie within
    the bounds.

    Args:
        tags: words, each matched (case-insensitive, as a substring) against the photo's hierarchical tags.
        min_score: the least score, or None.
        max_score: the highest score, or None.
        min_strict: the score must be above min_score (">"), not at least (">=").
        max_strict: the score must be below max_score ("<"), not at most ("<=").
    """

    tags: list[str] = field(default_factory=list)
    min_score: float | None = None
    max_score: float | None = None
    min_strict: bool = False
    max_strict: bool = False

    def __bool__(self) -> bool:
        return bool(self.tags) or self.min_score is not None or self.max_score is not None


_BOUND = re.compile(r"^(?:score)?(>=|<=|>|<)(\d+(?:\.\d+)?)$")


def parse_query(text: str) -> Query:
    """The filter box's words as a query: ">=7" or "score>=7" bounds the score, other words are tag terms.

    Args:
        text: e.g. "exposure|underexposed <5" or "portrait >=6.5".
    """
    q = Query()
    for word in (text or "").split():
        m = _BOUND.match(word.lower())
        if not m:
            q.tags.append(word.lower())
            continue
        op, value = m.group(1), float(m.group(2))
        if op.startswith(">"):
            q.min_score, q.min_strict = value, op == ">"
        else:
            q.max_score, q.max_strict = value, op == "<"
    return q


def matches(result: dict | None, query: Query) -> bool:
    """Whether a critique answers a query. A photo without a critique matches only the empty query.

    Args:
        result: the daemon's critique (score, tags), or None.
        query: what is asked.
    """
    if not query:
        return True
    if not result:
        return False
    score = result.get("score")
    if query.min_score is not None or query.max_score is not None:
        if not isinstance(score, (int, float)):
            return False
        if query.min_score is not None and (score <= query.min_score if query.min_strict else score < query.min_score):
            return False
        if query.max_score is not None and (score >= query.max_score if query.max_strict else score > query.max_score):
            return False
    tags = [str(t).lower() for t in result.get("tags") or []]
    return all(any(term in t for t in tags) for term in query.tags)


def filter_paths(paths: list[str], results: dict[str, dict], query: Query) -> list[str]:
    """The photos whose critiques answer a query, in their order.

    Args:
        paths: the photos.
        results: critiques by path.
        query: what is asked (see `parse_query`).
    """
    return [p for p in paths if matches(results.get(p), query)]


def _decode_map(png: bytes | None):
    """The daemon's 8-bit PNG saliency map as float32 0…1 (None if absent or unreadable)."""
    if not png:
        return None
    import io

    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(png)) as im:
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except Exception:
        return None


class ScorePass(QObject):
    """Asks the daemon for the critique of every photo of the folder, one at a time, in a thread with its own client
    (a ZeroMQ socket stays in its thread). Photos the daemon has critiqued come from its store at once; the others
    are generated. `scored(path, result)` arrives on the GUI thread.

    Args:
        make_client: builds a client for the thread (e.g. the link's `_client(timeout, retries)`).
        parent: the Qt parent object, if any.
    """

    scored = Signal(str, dict, object)  # path, the critique, its saliency map (float32 ndarray or None)
    finished = Signal()

    def __init__(self, make_client, parent=None):
        super().__init__(parent)
        self._make_client = make_client
        self.profile: str | None = None  # a personal profile: results then carry `personal_score`
        self._gen = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self, paths: list[str], done: set[str] | None = None) -> None:
        """Score these photos (a pass running for an earlier list stops).

        Args:
            paths: the photos.
            done: photos already scored (skipped).
        """
        with self._lock:
            self._gen += 1
            gen = self._gen
        todo = [p for p in paths if p not in (done or set())]
        threading.Thread(target=self._run, args=(gen, todo), name="ase-viewer-scores", daemon=True).start()

    def stop(self) -> None:
        """Stop the pass (after the photo being asked)."""
        self._stop.set()

    def _wanted(self, gen: int) -> bool:
        return gen == self._gen and not self._stop.is_set()

    def _run(self, gen: int, paths: list[str]) -> None:
        try:
            from ase_daemon.client import DaemonError, DaemonUnavailable
            client = self._make_client(600.0, 0)
        except Exception:  # no client: no scores, the viewer works without them
            return
        send_bytes = False
        try:
            tries: dict[str, int] = {}
            for path in paths:
                if not self._wanted(gen):
                    return
                try:
                    if send_bytes:
                        with open(path, "rb") as f:
                            result, png = client.critique(data=f.read(), name=os.path.basename(path),
                                                          profile=self.profile)
                    else:
                        result, png = client.critique(path=path, profile=self.profile)
                except DaemonError as e:
                    if e.code == FORBIDDEN and not send_bytes:  # a remote daemon: send the bytes from now on
                        send_bytes = True
                        paths.append(path)
                    elif e.code in (BUSY, NOT_READY) and tries.get(path, 0) < 20:  # the viewer's own comes first
                        tries[path] = tries.get(path, 0) + 1
                        self._stop.wait(min(max(e.retry_after or 1.0, 0.2), 5.0))
                        paths.append(path)
                    continue
                except (DaemonUnavailable, OSError):
                    return
                self._emit(self.scored, path, dict(result), _decode_map(png))
            self._emit(self.finished)
        finally:
            client.close()

    def _emit(self, signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the window is gone
            pass
