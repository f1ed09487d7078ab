"""The watcher's ops: add, remove, list, retry and inspect watched folders (`watch_*`, contract.WATCH_OPS).

`_FolderOps` is a part of `Watcher` (watcher.py), split out along this seam. Its methods raise the daemon's
exceptions (errors.py); the server answers them as error replies.
"""

from __future__ import annotations

import os
import time

from . import contract as P
from .config import WATCH_FOLDER_OPTIONS
from .errors import BadArgument, NotFound
from .watcher_events import Arrival

__all__ = []


class _FolderOps:
    """Watcher's folder management and the watch ops."""

    def add(self, path: str, options: dict | None = None, profile: str | None = None) -> dict:
        """`watch_add`: start watching a folder now and remember it across restarts.

        Args:
            path: the folder.
            options: flags to set (config.WATCH_FOLDER_OPTIONS); absent ones keep the folder's or the defaults.
            profile: a personal profile for the folder's jobs; "" takes the folder's away; None keeps it.
        """
        path = os.path.abspath(path)
        if not os.path.exists(path):
            raise NotFound(f"{path}: no such folder")
        if not os.path.isdir(path):
            raise BadArgument(f"{path} is not a folder (watch the folder that holds it)")
        if not os.access(path, os.R_OK | os.X_OK):
            raise BadArgument(f"{path}: the daemon cannot read this folder (permission denied)")
        if profile:  # refused now: no such profile, a bad name, or one learnt with another model
            personal = getattr(self.worker, "personal", None)
            if personal is not None:
                personal.profile(profile, self.worker.model_id)
        with self._lock:
            existing = self._folders.get(path)
            merged = {**(existing.options if existing else self.settings.defaults), **(options or {})}
            merged = {k: bool(merged[k]) for k in WATCH_FOLDER_OPTIONS}
            if profile is None:
                profile = existing.profile if existing is not None else None
            profile = profile or None
            if (options or {}).get("personal_rating") and profile is None:
                raise BadArgument("personal_rating needs a profile (stars from the personal score of which taste?)")
            if (existing is not None and existing.options == merged and existing.profile == profile
                    and existing.observer is not None):
                self.store.save_watch_folder(path, merged, profile)
                return {**existing.to_dict(), "added": False, "changed": False}
        if existing is not None and existing.options == merged and existing.observer is not None:
            existing.profile = profile  # only the profile changed: the observer stays; files arriving now carry it
            self.store.save_watch_folder(path, merged, profile)
            return {**existing.to_dict(), "added": False, "changed": True}
        if existing is not None:  # new options (recursive/polling need a new observer)
            self._stop_observer(existing)
            with self._lock:
                self._folders.pop(path, None)
        self.store.save_watch_folder(path, merged, profile)
        folder = self._register(path, merged, existing.source if existing else "runtime", profile)
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
                raise NotFound(f"{path} is not a watched folder")
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
        return {"folders": [{k: f[k] for k in ("path", "state", "observer", "recursive", "profile", "arriving",
                                                "queued", "pending", "done", "failed")} for f in folders],
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
        under = os.path.abspath(path) if path else None
        return [r.to_dict() for r in self.store.watched_files(state=state, under=under)]

    # ---- the daemon's ops ----------------------------------------------------------------------------------------
    def install(self, server) -> None:
        """Add the `watch_*` ops (local clients only) and the `watch` block of `status`."""
        import asyncio

        def run(fn, *args):
            async def go():
                return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
            return go()

        def absolute(req) -> str | None:
            path = req.args.get("path")
            if path is not None and not os.path.isabs(path):
                raise BadArgument(f"path must be absolute (the daemon's working directory is not yours): {path!r}")
            return path

        def add(call, req):
            path = absolute(req)
            return run(lambda: self.add(path, {k: v for k, v in req.args.items() if k in WATCH_FOLDER_OPTIONS},
                                        req.args.get("profile")))

        def remove(call, req):
            return run(self.remove, absolute(req))

        def lst(call, req):
            return run(lambda: {"folders": self.list(), "stats": dict(self.stats)})

        def retry(call, req):
            return run(self.retry, absolute(req))

        def files(call, req):
            path = absolute(req)
            return run(lambda: {"files": self.files(path, req.args.get("state"))})

        handlers = {P.OP_WATCH_ADD: add, P.OP_WATCH_REMOVE: remove, P.OP_WATCH_LIST: lst, P.OP_WATCH_RETRY: retry,
                    P.OP_WATCH_FILES: files}
        for op, spec in P.WATCH_OPS.items():  # the contract says which ops and arguments; here is what they do
            server.add_op(op, handlers[op], spec)
        server.status_hooks["watch"] = self.status
        server.start_hooks.append(self.start)
        server.stop_hooks.append(self.stop)
