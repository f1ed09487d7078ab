"""The job queue's rows and history in the store: the `Job` record, and requeue / recover / cancel / retry /
listing of jobs.

`_JobHistory` is a part of `Store` (store.py), split out along this seam as store_watched.py is; it uses the
Store's connection, lock and transactions. Adding and claiming jobs stay in store.py with the critiques, because
finishing a job and storing its critique are one transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .contract import CANCELLED, DONE, FAILED, QUEUED, RUNNING

__all__ = ["Job"]


@dataclass
class Job:
    """A row of the job queue (built by the store; `to_dict` is its wire form).

    Args:
        id: the job's id.
        state: queued, running, done, failed or cancelled.
        priority: higher is claimed first.
        kind: what the job does (KIND_CRITIQUE).
        origin: who queued it ("client", "watch:/photos", ...).
        path: the image's path, for a path job.
        name: the image's name in results.
        hash: the image's content_hash, once read.
        model: the model that critiqued it, once done.
        max_new_tokens: its length cap (None: the daemon's).
        meta: what the submitter attached.
        error: {"code", "message"} of a failed job.
        attempts: how many times it was claimed.
        created: when it was queued (seconds since the epoch).
        updated: when its row last changed.
        request_id: the submitter's request id (without the owner prefix).
        has_blob: whether the store still holds the image's bytes.
        owner: the remote client that queued it; None for the daemon's own user.
        profile: the personal profile its result is also scored by (None: none).
    """

    id: str
    state: str
    priority: int
    kind: str
    origin: str
    path: str | None
    name: str | None
    hash: str | None
    model: str | None
    max_new_tokens: int | None
    meta: dict
    error: dict | None
    attempts: int
    created: float
    updated: float
    request_id: str | None = None
    has_blob: bool = False
    owner: str | None = None
    profile: str | None = None  # a personal profile: the result also gets its personal_score

    def to_dict(self) -> dict:
        return {
            "job": self.id, "state": self.state, "priority": self.priority, "kind": self.kind, "origin": self.origin,
            "image": self.name, "hash": self.hash, "model": self.model, "meta": self.meta, "error": self.error,
            "attempts": self.attempts, "created": self.created, "updated": self.updated,
            **({"profile": self.profile} if self.profile else {}),
        }


_JOB_COLUMNS = ("id, state, priority, kind, origin, path, name, hash, model, max_new_tokens, meta, error, attempts, "
                "created, updated, request_id, blob IS NOT NULL, owner, profile")


def _job(row) -> Job:
    (id_, state, priority, kind, origin, path, name, hash_, model, mnt, meta, error, attempts, created, updated,
     request_id, has_blob, owner, profile) = row
    if request_id and owner is not None:
        request_id = request_id.split("\x1f", 1)[-1]  # stored per owner (see add_job)
    return Job(id_, state, priority, kind, origin, path, name, hash_, model, mnt, json.loads(meta or "{}"),
               json.loads(error) if error else None, attempts, created, updated, request_id, bool(has_blob), owner,
               profile)


class _JobHistory:
    """Job lifecycle and queries of `Store` (needs its `_db`, `_lock` and `_tx`)."""

    def requeue(self, job_ids) -> int:
        """Put running jobs back in the queue (shutdown before they reached the model). Returns how many.

        Args:
            job_ids: the jobs' ids.
        """
        with self._lock, self._tx():
            n = 0
            for job_id in job_ids:
                n += self._db.execute("UPDATE jobs SET state=?, attempts=MAX(attempts-1, 0), updated=? WHERE id=? AND "
                                      "state=?", (QUEUED, time.time(), job_id, RUNNING)).rowcount
            return n

    def recover(self) -> int:
        """At start: jobs a dead daemon left running go back to the queue. Returns how many."""
        with self._lock, self._tx():
            return self._db.execute("UPDATE jobs SET state=?, updated=? WHERE state=?",
                                    (QUEUED, time.time(), RUNNING)).rowcount

    def cancel_job(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (a running one may still finish its model pass; its result is kept).

        Args:
            job_id: the job's id.
        """
        with self._lock, self._tx():
            self._db.execute("UPDATE jobs SET state=?, blob=NULL, updated=? WHERE id=? AND state IN (?, ?)",
                             (CANCELLED, time.time(), job_id, QUEUED, RUNNING))
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def retry_job(self, job_id: str) -> Job | None:
        """A failed or cancelled job back to the queue (the watcher's `retry`).

        Args:
            job_id: the job's id.
        """
        with self._lock, self._tx():
            # a failed or cancelled byte job has dropped its bytes: there is nothing left to retry
            self._db.execute("UPDATE jobs SET state=?, error=NULL, updated=? WHERE id=? AND state IN (?, ?) AND "
                             "(path IS NOT NULL OR blob IS NOT NULL)", (QUEUED, time.time(), job_id, FAILED, CANCELLED))
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self, *, origin: str | None = None, state: str | None = None, since: float | None = None,
             limit: int = 1000) -> list[Job]:
        """Jobs by origin / state / updated after `since` (oldest update first): the watcher's polling query.

        Args:
            origin: only jobs from this origin.
            state: only jobs in this state.
            since: only jobs updated after this time (seconds since the epoch).
            limit: the most jobs to return.
        """
        where, params = [], []
        for column, op, value in (("origin", "=", origin), ("state", "=", state), ("updated", ">", since)):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY updated LIMIT ?", (*params, limit)).fetchall()
        return [_job(r) for r in rows]

    def job_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        counts = dict.fromkeys((QUEUED, RUNNING, DONE, FAILED, CANCELLED), 0)
        counts.update(dict(rows))
        return counts
