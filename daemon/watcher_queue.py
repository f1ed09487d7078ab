"""The watcher's queueing: is an arrived file complete, new and an image? Then it becomes a job.

Complete: the writer closed it, or its size and mtime stayed the same for settle_s and it decodes. New: its
content hash differs from its record in watched_files. Jobs and records are written in one transaction
(store.enqueue_watched). `_Queueing` is a part of `Watcher` (watcher.py), split out along this seam.
"""

from __future__ import annotations

import heapq
import logging
import os
import stat as stat_mod
import time

from . import contract as P
from .store import QueueFull, content_hash
from .watcher_events import Arrival, origin_of

__all__ = ["TRIAL_SIDE", "SCAN_CHUNK", "ENQUEUE_GROUP", "CLOSED_RETRIES"]

log = logging.getLogger("ase_daemon.watcher")

# trial decode size: JPEG draft mode (1/8 scale) and RAW previews make it cheap; it still reads every byte
TRIAL_SIDE = 64
SCAN_CHUNK = 64  # arrivals handled per round before completed jobs get their sidecars
ENQUEUE_GROUP = 8  # files per store transaction: the model starts on the first ones while the rest are read
CLOSED_RETRIES = 2  # a file that was closed after writing and still does not decode is broken, not incomplete


class _Queueing:
    """Watcher's arrivals -> jobs: examine each due arrival, queue the complete new ones."""

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
        return {"path": a.path, "folder": folder.path, "size": sig[0], "mtime_ns": sig[1], "hash": digest,
                "profile": folder.profile}

    def _fail_unread(self, a: Arrival, st, message: str, code: str = P.BAD_IMAGE) -> None:
        """Record a file we will not read (until it changes, or `watch retry`) and forget the arrival."""
        folder = self._folder_for(a.path)
        self.stats["bad_images"] += 1
        log.warning("%s", message)
        if folder is not None:
            self.store.record_watched_failure(a.path, folder.path, st.st_size, st.st_mtime_ns, None,
                                              {"code": code, "message": message})
        self._drop(a)
