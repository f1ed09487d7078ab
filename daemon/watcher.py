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
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import stat as stat_mod
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

from . import protocol as P
from .config import WATCH_FOLDER_OPTIONS, WatchSettings
from .store import QueueFull, Store, content_hash

log = logging.getLogger("ase_daemon.watcher")

ORIGIN_PREFIX = "watch:"
TRIAL_SIDE = 64  # trial decode size: JPEG draft mode (1/8 scale) and RAW previews make it cheap; it still reads every byte
SCAN_CHUNK = 64  # arrivals handled per round before completed jobs get their sidecars
ENQUEUE_GROUP = 8  # files per store transaction: the model starts on the first ones while the rest are read
CLOSED_RETRIES = 2  # a file that was closed after writing and still does not decode is broken, not incomplete

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
                              overwrite_rating=o["overwrite_rating"], tag_root=tag_root)

    def to_dict(self) -> dict:
        alive = bool(self.observer is not None and self.observer.is_alive())
        state = "watching" if alive else ("missing" if not os.path.isdir(self.path) else "stopped")
        return {"path": self.path, "source": self.source, **self.options, "observer": self.kind or None,
                "state": state, "error": self.error}


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


class Watcher:
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
            if f["path"] in persisted and f["source"] == "config":  # changed at run time: that one is newer
                options.update({k: v for k, v in persisted[f["path"]].items() if k in WATCH_FOLDER_OPTIONS})
            self._register(f["path"], options, f["source"])
        for path, options in persisted.items():
            if path not in self._folders:
                self._register(path, {**WATCH_FOLDER_OPTIONS, **options}, "runtime")

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
    def _register(self, path: str, options: dict, source: str) -> Folder:
        folder = Folder(path, options, source)
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

    def add(self, path: str, options: dict | None = None) -> dict:
        """`watch_add`: start watching a folder now and remember it across restarts."""
        path = os.path.abspath(path)
        if not os.path.exists(path):
            raise P.ProtocolError(P.NOT_FOUND, f"{path}: no such folder")
        if not os.path.isdir(path):
            raise P.ProtocolError(P.BAD_REQUEST, f"{path} is not a folder (watch the folder that holds it)")
        if not os.access(path, os.R_OK | os.X_OK):
            raise P.ProtocolError(P.BAD_REQUEST, f"{path}: the daemon cannot read this folder (permission denied)")
        with self._lock:
            existing = self._folders.get(path)
            merged = {**(existing.options if existing else self.settings.defaults), **(options or {})}
            merged = {k: bool(merged[k]) for k in WATCH_FOLDER_OPTIONS}
            if existing is not None and existing.options == merged and existing.observer is not None:
                self.store.save_watch_folder(path, merged)
                return {**existing.to_dict(), "added": False, "changed": False}
        if existing is not None:  # new options (recursive/polling need a new observer)
            self._stop_observer(existing)
            with self._lock:
                self._folders.pop(path, None)
        self.store.save_watch_folder(path, merged)
        folder = self._register(path, merged, existing.source if existing else "runtime")
        with self._cv:
            folder.next_scan = 0.0
            self._cv.notify_all()
        return {**folder.to_dict(), "added": existing is None, "changed": existing is not None}

    def remove(self, path: str) -> dict:
        """`watch_remove`: stop watching; queued critiques of its files are cancelled. Done/failed records stay, so
        adding the folder again does not redo finished photos."""
        path = os.path.abspath(path)
        with self._lock:
            folder = self._folders.pop(path, None)
            if folder is None:
                raise P.ProtocolError(P.NOT_FOUND, f"{path} is not a watched folder")
            for p in [p for p in self._pending if folder.covers(p)]:
                del self._pending[p]
        self._stop_observer(folder)
        self.store.delete_watch_folder(path)
        rows = self.store.watched_files(folder=path, state=P.QUEUED)
        cancelled = 0
        for job_id in {r.job_id for r in rows if r.job_id}:
            job = self.worker.cancel_job(job_id)
            cancelled += bool(job is not None and job.state == P.CANCELLED)
        self.store.delete_watched([r.path for r in rows], only_states=(P.QUEUED,))
        out = {"path": path, "removed": True, "cancelled": cancelled}
        if folder.source != "runtime":
            out["note"] = (f"{path} comes from the {folder.source}; it is watched again at the next start unless "
                           "you take it out there")
        return out

    def list(self) -> list[dict]:
        counts = self.store.watched_counts()
        with self._lock:
            folders = list(self._folders.values())
            arriving = {f.path: 0 for f in folders}
            for p in self._pending:
                f = self._folder_for(p)
                if f is not None:
                    arriving[f.path] += 1
        out = []
        for f in folders:
            c = counts.get(f.path, {})
            queued, done, failed = c.get(P.QUEUED, 0), c.get(P.DONE, 0), c.get(P.FAILED, 0)
            out.append({**f.to_dict(), "arriving": arriving[f.path], "queued": queued,
                        "pending": arriving[f.path] + queued, "done": done, "failed": failed})
        return out

    def status(self) -> dict:
        folders = self.list()
        totals = {k: sum(f[k] for f in folders) for k in ("pending", "done", "failed")}
        return {"folders": [{k: f[k] for k in ("path", "state", "observer", "recursive", "arriving", "queued",
                                                "pending", "done", "failed")} for f in folders],
                **totals, "sidecars_written": self.stats["sidecars"]}

    def retry(self, path: str | None = None) -> dict:
        """`watch_retry`: failed files (a folder, one file, or all) go through again. A file whose critique is
        stored (the sidecar failed) does not run the model again: its new job completes from the store."""
        if path is not None:
            path = os.path.abspath(path)
        rows = self.store.watched_files(state=P.FAILED, under=path)
        n = 0
        now = time.monotonic()
        with self._cv:
            for r in rows:
                if self._folder_for(r.path) is None:
                    continue
                a = self._pending.get(r.path) or Arrival(r.path, now, now, now)
                a.force, a.closed = True, True
                self._pending[r.path] = a
                self._schedule(a, now)
                n += 1
            self._cv.notify_all()
        return {"retried": n, "files": [r.path for r in rows][:100]}

    def files(self, path: str | None = None, state: str | None = None) -> list[dict]:
        return [r.to_dict() for r in self.store.watched_files(state=state, under=os.path.abspath(path) if path else None)]

    def _folder_for(self, path: str) -> Folder | None:
        """The most specific watched folder that covers `path` (nested folders: the inner one's options win)."""
        best = None
        for f in self._folders.values():
            if f.covers(path) and (best is None or len(f.path) > len(best.path)):
                best = f
        return best

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
            self._arrive(os.fsdecode(event.dest_path), closed=True)  # renamed into place = complete (IMG.tmp -> IMG.jpg)
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
            self._done.append((job.id, outcome.result if outcome.ok else None))
            self._cv.notify_all()

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

    # ---- scanning ----------------------------------------------------------------------------------------------
    def _rescan(self, folder: Folder) -> None:
        period = self.settings.rescan_s
        folder.next_scan = time.monotonic() + period if period > 0 else float("inf")
        if not os.path.isdir(folder.path):
            if folder.observer is not None:
                log.warning("watched folder %s has gone; will look again at every rescan", folder.path)
                self._stop_observer(folder)
            folder.error = "no such folder (yet); retried at every rescan"
            if period <= 0:
                folder.next_scan = time.monotonic() + 60.0
            return
        if folder.observer is None or not folder.observer.is_alive():
            self._stop_observer(folder)
            self._start_observer(folder)
        if not folder.cleaned:
            # temp files a killed daemon left (`.IMG.jpg.xmp.asecritic-*.tmp`): on this thread, the only one that
            # writes sidecars, so none of them can be a write in progress
            from .xmp import remove_stale_temp_files

            removed = remove_stale_temp_files(folder.path, recursive=folder.recursive)
            folder.cleaned = True
            if removed:
                log.info("removed %d stale sidecar temp file(s) in %s", len(removed), folder.path)
        self._scan_tree(folder.path, folder)
        self.stats["scans"] += 1

    def _walk(self, top: str, folder: Folder):
        if folder.recursive:
            for dirpath, dirnames, filenames in os.walk(top, onerror=lambda e: log.debug("scan: %s", e)):
                dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in IGNORED_DIRS]
                for name in filenames:
                    yield os.path.join(dirpath, name)
        else:
            try:
                with os.scandir(top) as it:
                    for entry in it:
                        yield entry.path
            except OSError as e:
                log.debug("scan of %s: %s", top, e)

    def _scan_tree(self, top: str, folder: Folder | None = None) -> None:
        """Find files no event announced: new ones, changed ones (size/mtime differ from their record), and files
        added while the daemon was down. A full scan (of a folder) also forgets records of deleted files."""
        with self._lock:
            folder = folder or self._folder_for(os.path.join(top, "x"))
        if folder is None:
            return
        records = self.store.watched_signatures(folder.path)
        seen = set()
        for path in self._walk(top, folder):
            if self._stopping:
                return
            with self._lock:
                if self._folder_for(path) is not folder or not self.accepts(folder, path):
                    continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            seen.add(path)
            rec = records.get(path)
            if rec is None or (rec[0], rec[1]) != (st.st_size, st.st_mtime_ns):
                self._arrive(path)
        if top == folder.path:
            gone = [p for p in records if p not in seen and not os.path.lexists(p)]
            if gone:
                self.store.delete_watched(gone)

    def _reconcile(self) -> None:
        """Files still marked queued whose job has ended (the daemon died between the job and the sidecar, or the
        worker's notice came while we were stopping): finish them now, from the store."""
        for job_id in self.store.watched_jobs_ended():
            with self._cv:
                self._done.append((job_id, None))
        self._drain_done()

    # ---- arrivals -> jobs ----------------------------------------------------------------------------------------
    def _process_arrivals(self) -> None:
        now = time.monotonic()
        due = []
        with self._lock:
            while len(due) < SCAN_CHUNK:
                t = self._next_due()
                if t is None or t > now:
                    break
                due.append(heapq.heappop(self._heap)[2])
        batch: list[tuple[Arrival, dict]] = []
        for a in due:
            if self._stopping:
                return
            try:
                item = self._examine(a)
            except Exception:  # one odd file must not stop the others; look at it again later
                log.exception("examining %s failed", a.path)
                self._schedule(a, time.monotonic() + 30.0)
                item = None
            if item is not None:
                batch.append((a, item))
            if len(batch) >= ENQUEUE_GROUP:
                self._enqueue(batch, now)
                batch = []
        if batch:
            self._enqueue(batch, now)

    def _enqueue(self, batch: list[tuple[Arrival, dict]], now: float) -> None:
        items = [it for _, it in batch]
        try:
            queued = self.store.enqueue_watched(items, origin_of=origin_of, priority=self.settings.priority,
                                                max_queued=self.max_queued)
        except QueueFull:
            queued = []
        got = {path for path, _, _ in queued}
        with self._lock:
            for a, it in batch:
                if it["path"] in got:
                    if self._pending.get(a.path) is a and a.sig == (it["size"], it["mtime_ns"]) and a.due <= now:
                        del self._pending[a.path]
                else:  # the job table is full: try again later
                    self._schedule(a, time.monotonic() + 5.0)
        self.stats["queued"] += len(queued)
        if queued:
            self.worker.notify_jobs()
            log.debug("queued %d file(s) (%d new jobs)", len(queued), sum(c for _, _, c in queued))

    def _drop(self, a: Arrival) -> None:
        with self._lock:
            if self._pending.get(a.path) is a:
                del self._pending[a.path]

    def _examine(self, a: Arrival) -> dict | None:
        """Is this file complete and new? Returns the job item, or None (dropped, or looked at again later)."""
        now = time.monotonic()
        s = self.settings
        try:
            st = os.stat(a.path)
        except OSError:
            self._drop(a)
            return None
        if not stat_mod.S_ISREG(st.st_mode):  # a FIFO, device or folder named like a photo: say so once, never open
            from ase_model.imagesafety import file_kind

            self._fail_unread(a, st, f"{a.path}: not a regular file ({file_kind(st.st_mode)}); not read")
            return None
        sig = (st.st_size, st.st_mtime_ns)
        if not a.closed:
            if a.sig != sig:  # first look, or it grew: (re)start the stability clock
                a.sig, a.stable_since = sig, now
                self._schedule(a, now + s.settle_s)
                return None
            if now - a.stable_since < s.settle_s:
                self._schedule(a, a.stable_since + s.settle_s)
                return None
            folder = self._folder_for(a.path)
            if a.written and folder is not None and folder.kind == "native" and now - a.last_write < s.open_wait_s:
                # inotify said someone writes it and has not closed it: a paused copy or download. Its closed event
                # ends the wait; stat again now and then in case the writer keeps it open for good.
                self._schedule(a, now + min(max(s.settle_s, 0.5), a.last_write + s.open_wait_s - now))
                return None
        a.sig = sig
        folder = self._folder_for(a.path)
        if folder is None:
            self._drop(a)
            return None
        from ase_model.imagesafety import ImageLoadError, ImageNotFound, ImageTooLarge, read_regular

        try:
            # regular files only (the stat above can be raced: a FIFO swapped in must not block this thread), inside
            # the watched folder (a link planted there must not make us read what it points to), within the cap
            data = read_regular(a.path, max_bytes=getattr(self.worker, "max_file_bytes", 1 << 30), within=folder.path)
        except ImageNotFound:
            self._drop(a)
            return None
        except ImageTooLarge as e:
            self._fail_unread(a, st, str(e), P.TOO_LARGE)
            return None
        except ImageLoadError as e:
            if e.reason.startswith("empty file"):
                data = b""  # most likely a copy about to start: the decode check below retries it a while
            elif e.reason.startswith(("permission denied", "cannot read", "cannot open")):  # may pass: look again
                self._schedule(a, now + max(1.0, s.settle_s))
                return None
            else:
                self._fail_unread(a, st, str(e))
                return None
        if len(data) != st.st_size:  # still being written
            a.closed, a.sig = False, None
            self._schedule(a, now + s.settle_s)
            return None
        digest = content_hash(data)
        rec = self.store.watched_file(a.path)
        if rec is not None and rec.hash == digest and not a.force and rec.state in (P.QUEUED, P.DONE, P.FAILED):
            # the same photo (touched, re-copied, metadata-only change of the file's times): nothing to redo
            if (rec.size, rec.mtime_ns) != sig:
                self.store.update_watched([{"path": a.path, "state": rec.state, "size": sig[0], "mtime_ns": sig[1]}])
            self._drop(a)
            return None
        from ase_model.imageio import image_info, load_image

        try:
            if a.closed:
                # the writer said it is done (closed after writing, or renamed into place): the header read says it
                # is an image we can open; the worker's full decode reports anything worse as bad_image
                image_info(data, name=a.path)
            else:
                # judged complete only because it stopped changing: decode it all (a stalled copy fails here)
                budget = self.worker.decode_budget() if hasattr(self.worker, "decode_budget") else None
                load_image(data, name=a.path, max_side=TRIAL_SIDE, min_preview_side=0, budget=budget)
        except ImageTooLarge as e:  # over the pixel limit or the memory budget: waiting will not change that
            self._fail_unread(a, st, str(e), P.TOO_LARGE)
            return None
        except ImageLoadError as e:
            a.decode_failures += 1
            broken = (a.closed and a.decode_failures >= CLOSED_RETRIES) or now - a.first >= s.incomplete_timeout_s
            if not broken:  # most likely still arriving: look again later, less and less often
                self.stats["incomplete"] += 1
                a.sig = None
                self._schedule(a, now + min(30.0, max(0.2, s.settle_s) * 2 ** a.decode_failures))
                return None
            self.stats["bad_images"] += 1
            log.warning("%s", e)
            self.store.record_watched_failure(a.path, folder.path, sig[0], sig[1], digest,
                                              {"code": P.BAD_IMAGE, "message": str(e)})
            self._drop(a)
            return None
        return {"path": a.path, "folder": folder.path, "size": sig[0], "mtime_ns": sig[1], "hash": digest}

    def _fail_unread(self, a: Arrival, st, message: str, code: str = P.BAD_IMAGE) -> None:
        """Record a file we will not read (until it changes, or `watch retry`) and forget the arrival."""
        folder = self._folder_for(a.path)
        self.stats["bad_images"] += 1
        log.warning("%s", message)
        if folder is not None:
            self.store.record_watched_failure(a.path, folder.path, st.st_size, st.st_mtime_ns, None,
                                              {"code": code, "message": message})
        self._drop(a)

    # ---- jobs -> sidecars ----------------------------------------------------------------------------------------
    def _drain_done(self) -> None:
        while True:
            with self._lock:
                if not self._done:
                    return
                batch = []
                while self._done and len(batch) < 32:
                    batch.append(self._done.popleft())
            updates = []
            for job_id, result in batch:
                updates += self._finish_job(job_id, result)
            if updates:
                self.store.update_watched(updates)

    def _finish_job(self, job_id: str, result: dict | None) -> list[dict]:
        rows = self.store.watched_files(job_id=job_id, state=P.QUEUED)
        if not rows:
            return []
        job = self.store.get_job(job_id)
        if job is None:  # cannot happen unless the store was edited: start these files over
            for r in rows:
                self._arrive(r.path, closed=True, force=True)
            return []
        if job.state in (P.QUEUED, P.RUNNING):
            return []  # retried meanwhile; its end will come
        if job.state != P.DONE:
            gone = [r.path for r in rows if not os.path.lexists(r.path)]  # deleted while queued: forget them
            if gone:
                self.store.delete_watched(gone, only_states=(P.QUEUED,))
            error = job.error or {"code": P.CANCELLED, "message": "the job was cancelled"}
            return [{"path": r.path, "job_id": job_id, "state": P.FAILED, "error": error} for r in rows
                    if r.path not in gone]
        if result is None:
            hit = self.store.get_critique(job.hash, job.model, job.max_new_tokens) if job.hash and job.model else None
            result = hit.result if hit is not None else None
        if result is None:  # the critique is not in the store (cannot happen): queue the files again
            for r in rows:
                self._arrive(r.path, closed=True, force=True)
            return []
        result = _for_sidecar(result)
        updates = []
        for r in rows:
            updates.append(self._write_one(r, job, result))
        return [u for u in updates if u is not None]

    def _write_one(self, row, job, result: dict) -> dict | None:
        from .xmp import SidecarError, write_sidecar

        try:
            st = os.stat(row.path)
        except OSError:
            self.store.delete_watched([row.path], only_states=(P.QUEUED, P.DONE, P.FAILED))
            return None
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns) or (job.hash and row.hash != job.hash):
            # the photo changed after it was queued: the critique is of the old one; go again
            self._arrive(row.path, force=True)
            return {"path": row.path, "job_id": job.id, "state": P.FAILED,
                    "error": {"code": "changed", "message": "the photo changed while it was being critiqued"}}
        with self._lock:
            folder = self._folders.get(row.folder) or self._folder_for(row.path)
        if folder is None:
            return {"path": row.path, "job_id": job.id, "state": P.FAILED,
                    "error": {"code": "removed", "message": "the folder is no longer watched"}}
        try:
            side = write_sidecar(row.path, result, folder.sidecar_options(self.tag_root))
        except Exception as e:  # SidecarError (disk, permissions, unreadable old sidecar), ValueError (the result)
            self.stats["sidecar_errors"] += 1
            if not isinstance(e, (SidecarError, ValueError)):
                log.exception("sidecar for %s", row.path)
            log.warning("sidecar for %s not written: %s", row.path, e)
            return {"path": row.path, "job_id": job.id, "state": P.FAILED,
                    "error": {"code": "sidecar", "message": str(e)}}
        self.stats["sidecars"] += 1
        return {"path": row.path, "job_id": job.id, "state": P.DONE, "error": None, "sidecar": str(side)}

    # ---- the daemon's ops ----------------------------------------------------------------------------------------
    def install(self, server) -> None:
        """Add the `watch_*` ops (local clients only) and the `watch` block of `status`."""
        import asyncio

        options = {k: (bool, False) for k in WATCH_FOLDER_OPTIONS}

        def run(fn, *args):
            async def go():
                return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
            return go()

        def absolute(req) -> str | None:
            path = req.args.get("path")
            if path is not None and not os.path.isabs(path):
                raise P.ProtocolError(P.BAD_REQUEST, f"path must be absolute (the daemon's working directory is not "
                                      f"yours): {path!r}", req.id)
            return path

        def add(call, req):
            path = absolute(req)
            return run(lambda: self.add(path, {k: v for k, v in req.args.items() if k in WATCH_FOLDER_OPTIONS}))

        def remove(call, req):
            return run(self.remove, absolute(req))

        def lst(call, req):
            return run(lambda: {"folders": self.list(), "stats": dict(self.stats)})

        def retry(call, req):
            return run(self.retry, absolute(req))

        def files(call, req):
            path = absolute(req)
            return run(lambda: {"files": self.files(path, req.args.get("state"))})

        server.add_op("watch_add", add, P.OpSpec({"path": (str, True), **options}, local_only=True))
        server.add_op("watch_remove", remove, P.OpSpec({"path": (str, True)}, local_only=True))
        server.add_op("watch_list", lst, P.OpSpec(local_only=True))
        server.add_op("watch_retry", retry, P.OpSpec({"path": (str, False)}, local_only=True))
        server.add_op("watch_files", files, P.OpSpec({"path": (str, False), "state": (str, False)}, local_only=True))
        server.status_hooks["watch"] = self.status
        server.start_hooks.append(self.start)
        server.stop_hooks.append(self.stop)


class _Handler:
    """watchdog event handler: passes every event to the watcher (runs on the observer's thread; must be quick)."""

    def __init__(self, watcher: Watcher, folder: Folder):
        self.watcher, self.folder = watcher, folder

    def dispatch(self, event) -> None:
        try:
            self.watcher._event(self.folder, event)
        except Exception:  # an exception would kill the observer thread
            log.exception("handling %s failed", event)


def _for_sidecar(result: dict) -> dict:
    """The stored critique in the form write_sidecar takes: `created` as an ISO time (the store keeps Unix seconds)."""
    out = dict(result)
    created = out.get("created")
    if isinstance(created, (int, float)):
        out["created"] = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds")
    return out
