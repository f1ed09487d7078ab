"""The folder watcher: photos that land in watched folders are critiqued in the background and get an XMP sidecar.

    watchdog observer (inotify / PollingObserver) ──events──> arrivals (per path, debounced)
    catch-up scan at start + rescan every rescan_s ─────────>      │ complete? closed event, or size+mtime stable
                                                                   │ for settle_s; then read, sha256, trial decode
                                                                   v
                                           store: job + watched_files row, ONE transaction (kill -9 safe)
                                                                   │ worker (background lane, priority -1)
                                                                   v
                       worker.on_job_done ──job id──> watcher thread: write_sidecar per file, record the outcome

Why it looks like this (docs/watcher.md has the long version):
* A created event comes before a copy has finished, events get lost (network shares, inotify overflows) and other
  platforms coalesce them: events only say "look at this path"; the decision is made by looking at the file
  (stat, read, decode), and periodic rescans find what no event announced.
* One thread does all the work (reading, hashing, trial decoding, store writes, sidecars): observers and the
  worker only hand it paths and job ids, so no callback ever blocks a watchdog or model thread.
* The per-file table `watched_files` (path, size, mtime, hash, job, state, error, sidecar) is what makes
  "nothing twice" hold across restarts: a file whose size and mtime match its row is not looked at again.
* Files with the same content share one job (the critique is keyed by content hash); every file still gets its
  own sidecar.
The Watcher is split along these seams: watcher_events.py (observer events -> arrivals), watcher_scan.py (catch-up
scans and rescans), watcher_queue.py (arrivals -> jobs: is the file complete and new?), watcher_sidecars.py (jobs ->
sidecars), watcher_ops.py (the watch_* ops and folder management). This module holds the thread and the folders'
observers.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque

from .config import WATCH_FOLDER_OPTIONS, WatchSettings
from .store import Store
from .watcher_events import (
    IGNORED_DIRS,
    IGNORED_SUFFIXES,
    ORIGIN_PREFIX,
    Arrival,
    Folder,
    _Events,
    _Handler,
    ignored_name,
    is_photo,
    origin_of,
)
from .watcher_ops import _FolderOps
from .watcher_queue import _Queueing
from .watcher_scan import _Scanning
from .watcher_sidecars import _Sidecars

__all__ = ["Watcher", "Folder", "Arrival", "ORIGIN_PREFIX", "IGNORED_SUFFIXES", "IGNORED_DIRS", "ignored_name",
           "is_photo", "origin_of"]

log = logging.getLogger("ase_daemon.watcher")


class Watcher(_Events, _Scanning, _Queueing, _Sidecars, _FolderOps):
    """The folder watcher (module docstring).

    Args:
        settings: the daemon's [watch] settings and folders.
        store: the store (job queue and the watched_files table).
        worker: the model worker (its job listeners, decode budget and file cap).
        tag_root: the root of the tags written into sidecars.
        max_queued: the job table's limit (watched files wait while it is full).
    """

    def __init__(self, settings: WatchSettings, store: Store, worker, *, tag_root: str = "aesthetics",
                 max_queued: int | None = None):
        self.settings, self.store, self.worker = settings, store, worker
        self.tag_root = tag_root
        self.max_queued = max_queued
        self._folders: dict[str, Folder] = {}
        self._pending: dict[str, Arrival] = {}
        self._heap: list = []  # (due, seq, Arrival): the next arrival to look at, without scanning all of them
        self._seq = itertools.count()
        self._deleted: list[str] = []  # photos deleted from disk: their records go (on the watcher's thread)
        self._done: deque = deque()  # (job id, result or None) from the worker
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._subscans: list[str] = []  # folders that appeared inside recursive watched folders
        self._bad_names: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # incomplete: trial decodes that failed and were tried again later (a copy still arriving)
        self.stats = {"queued": 0, "sidecars": 0, "sidecar_errors": 0, "bad_images": 0, "incomplete": 0, "scans": 0}
        worker.on_job_done(self._on_job_done)
        # watchdog logs every inotify event at DEBUG: far too much for the daemon's log even at --log-level debug
        logging.getLogger("watchdog").setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> Watcher:
        """Start the watcher's thread; it starts the observers of the configured, command-line and persisted
        folders and scans each one (the catch-up): a big tree must not hold up the daemon's start."""
        self._thread = threading.Thread(target=self._run, name="ase-watcher", daemon=True)
        self._thread.start()
        return self

    def _start_folders(self) -> None:
        persisted = self.store.watch_folders()
        for f in self.settings.folders:
            options = {k: f[k] for k in WATCH_FOLDER_OPTIONS}
            profile = f.get("profile")
            if f["path"] in persisted and f["source"] == "config":  # changed at run time: that one is newer
                options.update({k: v for k, v in persisted[f["path"]].items() if k in WATCH_FOLDER_OPTIONS})
                profile = persisted[f["path"]].get("profile")
            self._register(f["path"], options, f["source"], profile)
        for path, options in persisted.items():
            if path not in self._folders:
                flags = {k: v for k, v in options.items() if k in WATCH_FOLDER_OPTIONS}
                self._register(path, {**WATCH_FOLDER_OPTIONS, **flags}, "runtime", options.get("profile"))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the observers, write the sidecars of jobs that already finished, end the thread."""
        with self._lock:
            folders = list(self._folders.values())
        for f in folders:
            self._stop_observer(f, timeout)
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)


    # ---- folders --------------------------------------------------------------------------------------------
    def _register(self, path: str, options: dict, source: str, profile: str | None = None) -> Folder:
        folder = Folder(path, options, source, profile=profile)
        with self._lock:
            self._folders[path] = folder
        if os.path.isdir(path):
            self._start_observer(folder)
        else:  # e.g. a network share that is not mounted yet: retried at every rescan
            folder.error = "no such folder (yet); retried at every rescan"
            log.warning("watched folder %s does not exist; will look again at every rescan", path)
        return folder

    def _start_observer(self, folder: Folder) -> None:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        handler = _Handler(self, folder)
        polling = folder.options["polling"]
        for attempt in ("polling",) if polling else ("native", "polling"):
            obs = PollingObserver(timeout=self.settings.poll_interval_s) if attempt == "polling" else Observer()
            try:
                obs.schedule(handler, folder.path, recursive=folder.recursive)
                obs.start()
            except OSError as e:
                # inotify's watch or instance limit (ENOSPC/EMFILE): polling still works, only slower
                log.warning("cannot watch %s with %s events (%s); falling back to polling", folder.path, attempt, e)
                folder.error = f"{attempt} observer failed: {e.strerror or e}"
                continue
            folder.observer, folder.kind = obs, attempt
            if attempt == "native" or polling:
                folder.error = None
            log.info("watching %s (%s%s)", folder.path, attempt, ", recursive" if folder.recursive else "")
            return

    @staticmethod
    def _stop_observer(folder: Folder, timeout: float = 5.0) -> None:
        obs, folder.observer = folder.observer, None
        if obs is not None:
            try:
                obs.stop()
                obs.join(timeout)
            except Exception:  # an observer whose folder vanished may already be dead
                log.debug("stopping the observer of %s failed", folder.path, exc_info=True)


    def _folder_for(self, path: str) -> Folder | None:
        """The most specific watched folder that covers `path` (nested folders: the inner one's options win)."""
        best = None
        for f in self._folders.values():
            if f.covers(path) and (best is None or len(f.path) > len(best.path)):
                best = f
        return best


    # ---- the watcher thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            import ase_model.imageio  # noqa: F401  (seconds on first import: here, not inside an observer's event)

            self._start_folders()
            self._reconcile()
        except Exception:
            log.exception("reconciling the watcher's records failed")
        while True:
            with self._cv:
                while not self._stopping and not self._has_work():
                    self._cv.wait(self._wait_time())
                if self._stopping:
                    break
            try:
                self._work()
            except Exception:  # the watcher must outlive any one bad file
                log.exception("watcher round failed")
                time.sleep(0.5)
        try:  # jobs that finished during the shutdown still get their sidecars
            self._drain_done()
        except Exception:
            log.exception("writing the last sidecars failed")
        log.debug("watcher thread exits")

    def _has_work(self) -> bool:
        now = time.monotonic()
        if self._done or self._subscans or self._deleted:
            return True
        due = self._next_due()
        if due is not None and due <= now:
            return True
        return any(f.next_scan <= now for f in self._folders.values())

    def _wait_time(self) -> float:
        now = time.monotonic()
        times = [f.next_scan for f in self._folders.values()]
        due = self._next_due()
        if due is not None:
            times.append(due)
        return max(0.01, min([1.0, *(t - now for t in times)]))

    def _work(self) -> None:
        self._drain_done()
        with self._lock:
            deleted, self._deleted[:] = list(self._deleted), []
        if deleted:
            self.store.delete_watched(deleted)
        self._process_arrivals()
        now = time.monotonic()
        with self._lock:
            subscans, self._subscans[:] = list(self._subscans), []
            due = [f for f in self._folders.values() if f.next_scan <= now]
        for path in subscans:
            self._scan_tree(path)
        if due:
            self._reconcile()
        for f in due:
            self._rescan(f)
