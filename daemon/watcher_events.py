"""The watcher's events: what observers report (created, modified, closed, moved, deleted) becomes an arrival.

Observer threads only record paths here; every decision is made later on the watcher's thread by looking at the
file (watcher_queue.py). `_Events` is a part of `Watcher` (watcher.py), split out along this seam.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from dataclasses import dataclass

__all__ = ["ORIGIN_PREFIX", "IGNORED_SUFFIXES", "IGNORED_DIRS", "ignored_name", "is_photo", "origin_of", "Folder",
           "Arrival"]

log = logging.getLogger("ase_daemon.watcher")

ORIGIN_PREFIX = "watch:"

# Names that are never photos we should touch: partial downloads, editors' and sync tools' temp files, sidecars
# and our own outputs (ase-client / the darktable plugin write `<photo>.saliency.png` beside photos).
IGNORED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".opdownload", ".!sync",
                    ".!qb", ".!ut", ".filepart", ".swp", ".bak", ".xmp", ".saliency.png", ".icloud")
IGNORED_DIRS = {"@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN", "System Volume Information", "lost+found"}



def ignored_name(name: str) -> bool:
    low = name.lower()
    return (name.startswith((".", "~$", ".#")) or name.endswith("~") or (name.startswith("#") and name.endswith("#"))
            or low.endswith(IGNORED_SUFFIXES))


def is_photo(name: str) -> bool:
    from ase_model.imageio import is_supported

    return not ignored_name(name) and is_supported(name)


def origin_of(folder: str) -> str:
    return ORIGIN_PREFIX + folder



@dataclass
class Folder:
    path: str
    options: dict
    source: str  # config | cli | runtime
    observer: object = None
    kind: str = ""  # native | polling (what is running; a native one falls back to polling if inotify refuses)
    error: str | None = None
    next_scan: float = 0.0  # monotonic; 0 = scan now (the catch-up at start)
    cleaned: bool = False  # our stale sidecar temp files removed (once, before the first scan)
    profile: str | None = None  # a personal profile: its jobs carry it, so results get its personal_score

    @property
    def recursive(self) -> bool:
        return self.options["recursive"]

    def covers(self, path: str) -> bool:
        parent = os.path.dirname(path)
        if parent == self.path:
            return True
        return self.recursive and path.startswith(self.path.rstrip("/") + "/")

    def sidecar_options(self, tag_root: str):
        from .xmp import SidecarOptions

        o = self.options
        return SidecarOptions(write_description=o["write_description"], write_tags=o["write_tags"],
                              write_rating=o["write_rating"], overwrite_description=o["overwrite_description"],
                              overwrite_rating=o["overwrite_rating"], tag_root=tag_root,
                              flat_keywords=o.get("flat_keywords", False),
                              personal_rating=bool(self.profile and o.get("personal_rating", False)))

    def to_dict(self) -> dict:
        alive = bool(self.observer is not None and self.observer.is_alive())
        state = "watching" if alive else ("missing" if not os.path.isdir(self.path) else "stopped")
        return {"path": self.path, "source": self.source, **self.options, "profile": self.profile,
                "observer": self.kind or None, "state": state, "error": self.error}


@dataclass(eq=False)
class Arrival:
    """A path that an event or a scan says may hold a new or changed photo."""

    path: str
    first: float  # monotonic time it first showed up
    last_write: float  # the last modified event (the open-wait clock; scans must not reset it)
    due: float  # when to look at it next
    closed: bool = False  # the writer closed it (inotify IN_CLOSE_WRITE) and nothing wrote since
    written: bool = False  # a modified event said someone writes it: wait for its close on native observers
    sig: tuple[int, int] | None = None  # (size, mtime_ns) at the last look
    stable_since: float = 0.0
    force: bool = False  # queue it even if its content was done before (`watch retry`, or it changed under a job)
    decode_failures: int = 0
    seq: int = -1  # its current entry in the watcher's heap (older entries are stale)



class _Events:
    """Watcher's event side: which paths count, and arrivals scheduled on a heap."""

    # ---- events (observer threads: only record the path) -------------------------------------------------------
    def accepts(self, folder: Folder, path: str) -> bool:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # a name that is not UTF-8 (old FAT cards): the store and XMP cannot name it
            if path not in self._bad_names:  # once, not at every event and rescan
                self._bad_names.add(path)
                log.warning("ignoring %r: its name is not valid UTF-8", path)
            return False
        rel = os.path.relpath(path, folder.path)
        if rel.startswith(".."):
            return False
        parts = rel.split(os.sep)
        if any(p.startswith(".") or p in IGNORED_DIRS for p in parts[:-1]):  # hidden folders: caches, trash, .git
            return False
        return is_photo(parts[-1])

    def _event(self, folder: Folder, event) -> None:
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        if event.is_directory:
            if kind in ("created", "moved") and folder.recursive:
                # a folder moved or copied in: its files may never get events of their own
                target = os.fsdecode(event.dest_path) if kind == "moved" else src
                self._scan_soon(target)
            return
        if kind == "created":
            # not "being written": a file moved in from elsewhere on the disk is created too, and is never closed
            self._arrive(src)
        elif kind == "modified":
            self._arrive(src, written=True)
        elif kind == "closed":
            self._arrive(src, closed=True)
        elif kind == "moved":
            self._gone(src)
            # renamed into place = complete (IMG.tmp -> IMG.jpg)
            self._arrive(os.fsdecode(event.dest_path), closed=True)
        elif kind == "deleted":
            self._gone(src)

    def _arrive(self, path: str, *, closed: bool = False, written: bool = False, force: bool = False,
                delay: float | None = None) -> None:
        with self._cv:
            folder = self._folder_for(path)
            if folder is None or not self.accepts(folder, path):
                return
            now = time.monotonic()
            a = self._pending.get(path)
            new = a is None
            if new:
                a = self._pending[path] = Arrival(path, now, now, now)
            a.force = a.force or force
            if closed:
                a.closed = True
                self._schedule(a, now)
            elif written:
                a.closed, a.written, a.last_write = False, True, now  # written after a close: not complete any more
                if new or a.sig is None:
                    # take its first size (the stability clock starts there): with inotify a closed event usually
                    # comes first and makes this look unnecessary; a poller's event may come late, so look now
                    self._schedule(a, now + (self.settings.settle_s if folder.kind == "native" else 0.0))
            elif new or a.due <= now or (not a.closed and a.due > now + (delay or 0.0)):
                self._schedule(a, now + (delay or 0.0))  # a scan: look now, decide after settle_s

    def _schedule(self, a: Arrival, due: float) -> None:
        with self._cv:
            a.due, a.seq = due, next(self._seq)
            heapq.heappush(self._heap, (due, a.seq, a))
            self._cv.notify_all()

    def _next_due(self) -> float | None:
        """Due time of the next live arrival (stale heap entries are dropped on the way). Hold the lock."""
        heap = self._heap
        while heap:
            due, seq, a = heap[0]
            if seq == a.seq and self._pending.get(a.path) is a:
                return due
            heapq.heappop(heap)
        return None

    def _gone(self, path: str) -> None:
        with self._cv:
            self._pending.pop(path, None)
            folder = self._folder_for(path)
            if folder is not None and self.accepts(folder, path):  # not our sidecars' temp files
                self._deleted.append(path)
                self._cv.notify_all()

    def _scan_soon(self, path: str) -> None:
        with self._cv:
            self._subscans.append(path)
            self._cv.notify_all()

    def _on_job_done(self, job, outcome) -> None:
        """Worker thread: hand the job to the watcher's thread (sidecars are written there, never here)."""
        if not (job.origin or "").startswith(ORIGIN_PREFIX):
            return
        with self._cv:
            self._done.append((job.id, outcome.result.to_dict() if outcome.ok else None))
            self._cv.notify_all()


class _Handler:
    """watchdog event handler: passes every event to the watcher (runs on the observer's thread; must be quick)."""

    def __init__(self, watcher, folder: Folder):
        self.watcher, self.folder = watcher, folder

    def dispatch(self, event) -> None:
        try:
            self.watcher._event(self.folder, event)
        except Exception:  # an exception would kill the observer thread
            log.exception("handling %s failed", event)
