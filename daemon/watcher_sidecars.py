"""The watcher's sidecars: a finished job's critique is written into each of its files' XMP sidecars.

Runs on the watcher's thread (the worker only hands over job ids). `_Sidecars` is a part of `Watcher`
(watcher.py), split out along this seam.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone

from . import contract as P
from .errors import DaemonFault

__all__ = []

log = logging.getLogger("ase_daemon.watcher")


class _Sidecars:
    """Watcher's jobs -> sidecars: drain finished jobs, write sidecars, record each file's outcome."""

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
            result = self._with_personal(hit.result, job).to_dict() if hit is not None else None
        if result is None:  # the critique is not in the store (cannot happen): queue the files again
            for r in rows:
                self._arrive(r.path, closed=True, force=True)
            return []
        result = _for_sidecar(result)
        updates = []
        for r in rows:
            updates.append(self._write_one(r, job, result))
        return [u for u in updates if u is not None]

    def _with_personal(self, result, job):
        """A stored critique (a job that ended while the daemon was down, or answered before the watcher heard of
        it) with its job's personal_score from the cached features; left out when the profile cannot score it."""
        personal = getattr(self.worker, "personal", None)
        if not job.profile or personal is None:
            return result
        try:
            score = personal.from_cache(job.profile, job.model, job.hash)
        except DaemonFault as e:  # deleted, or relearnt with another model since: the critique still counts
            log.info("job %s: no personal score (%s)", job.id, e.message)
            return result
        return result if score is None else result.with_personal(job.profile, score)

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


def _for_sidecar(result: dict) -> dict:
    """The stored critique in the form write_sidecar takes: `created` as an ISO time (the store keeps Unix seconds)."""
    out = dict(result)
    created = out.get("created")
    if isinstance(created, (int, float)):
        out["created"] = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds")
    return out
