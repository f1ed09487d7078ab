"""The daemon's memory: critiques by (content hash, model, length) and the persistent background job queue.

SQLite in WAL mode, one connection guarded by a lock (statements are short; the worker thread and the server's
loop share it). synchronous=FULL: a job is on disk before the daemon acknowledges it, so a crash, kill -9 or
power cut loses no acknowledged job. Finishing a job stores its critique and marks it done in one transaction,
so nothing finished is ever run again.

The folder watcher (and any later producer of work) uses the same queue: `add_job(..., origin="watch:/photos",
meta={"sidecar": True})`, then either `Worker.on_job_done(callback)` or polling `jobs(origin=..., since=...)`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .contract import CANCELLED, DONE, FAILED, KIND_CRITIQUE, QUEUED, RUNNING, CritiqueResult
from .errors import QueueFull
from .store_cull import CULL_SCHEMA, _CullTables
from .store_watched import WatchedFile, _WatchedTables

__all__ = ["SCHEMA_VERSION", "Store", "StoredCritique", "Job", "WatchedFile", "QueueFull", "content_hash"]

SCHEMA_VERSION = 4  # 2: watch_folders + watched_files (the folder watcher); 3: jobs.owner; 4: cull_features +
# cull_results (culling). Upgrades only add.
INT64 = (-(2**63), 2**63 - 1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS critiques (
    hash TEXT NOT NULL,               -- sha256 of the image file's bytes
    model TEXT NOT NULL,              -- the model fingerprint (Critic.model_id)
    max_new_tokens INTEGER NOT NULL,  -- the length limit changes the text, so it is part of the key
    text TEXT NOT NULL,
    attributes TEXT NOT NULL,         -- JSON object
    score REAL NOT NULL,
    tags TEXT NOT NULL,               -- JSON list of "root|a|b" paths
    saliency BLOB,                    -- 8-bit grayscale PNG
    saliency_summary TEXT,            -- JSON (ase_model.saliency.summary)
    timings TEXT,                     -- JSON
    created REAL NOT NULL,
    PRIMARY KEY (hash, model, max_new_tokens)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,           -- the client's request id: a retried `submit` returns the same job
    state TEXT NOT NULL,              -- queued | running | done | failed | cancelled
    priority INTEGER NOT NULL DEFAULT 0,  -- higher first; then oldest first
    kind TEXT NOT NULL DEFAULT 'critique',
    origin TEXT NOT NULL DEFAULT 'client',  -- who enqueued it: "client", "watch:<folder>", ...
    path TEXT,                        -- the image on this machine's disk, or NULL when `blob` holds its bytes
    blob BLOB,                        -- image bytes sent by a client (dropped once the job is done)
    name TEXT,                        -- display name (the path, or the name a client gave)
    hash TEXT,                        -- content hash once known
    model TEXT,                       -- the model that produced the result
    max_new_tokens INTEGER,
    meta TEXT,                        -- free JSON object for the job's owner (e.g. {"sidecar": true})
    error TEXT,                       -- JSON {"code", "message"} when failed
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    owner TEXT                        -- NULL: the daemon's own user; else the remote client ("curve:<key>", "tcp")
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, priority DESC, created);
CREATE INDEX IF NOT EXISTS jobs_by_origin ON jobs (origin, updated);
CREATE TABLE IF NOT EXISTS watch_folders (  -- folders added at run time (`ase-client watch add`): they persist
    path TEXT PRIMARY KEY,
    options TEXT NOT NULL,            -- JSON: recursive, polling, write_* ...
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS watched_files (  -- the folder watcher's per-file memory: nothing is done twice
    path TEXT PRIMARY KEY,
    folder TEXT NOT NULL,             -- the watched folder it belongs to
    size INTEGER NOT NULL,            -- size and mtime (ns) of the version that was queued/done
    mtime_ns INTEGER NOT NULL,
    hash TEXT,                        -- sha256 of that version (the critique's key)
    job_id TEXT,                      -- the job that critiques it (files with the same content share one)
    state TEXT NOT NULL,              -- queued | done | failed
    error TEXT,                       -- JSON {"code", "message"} when failed (model, image or sidecar)
    sidecar TEXT,                     -- the sidecar written for it
    written REAL,                     -- when
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS watched_by_job ON watched_files (job_id);
CREATE INDEX IF NOT EXISTS watched_by_folder ON watched_files (folder, state);
CREATE INDEX IF NOT EXISTS watched_by_hash ON watched_files (hash);
"""


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class StoredCritique:
    result: CritiqueResult  # cached=True, image=None (see CritiqueResult.for_request)
    saliency_png: bytes | None


@dataclass
class Job:
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
    owner: str | None = None  # None = the daemon's own user

    def to_dict(self) -> dict:
        return {
            "job": self.id, "state": self.state, "priority": self.priority, "kind": self.kind, "origin": self.origin,
            "image": self.name, "hash": self.hash, "model": self.model, "meta": self.meta, "error": self.error,
            "attempts": self.attempts, "created": self.created, "updated": self.updated,
        }


_JOB_COLUMNS = ("id, state, priority, kind, origin, path, name, hash, model, max_new_tokens, meta, error, attempts, "
                "created, updated, request_id, blob IS NOT NULL, owner")


def _job(row) -> Job:
    (id_, state, priority, kind, origin, path, name, hash_, model, mnt, meta, error, attempts, created, updated,
     request_id, has_blob, owner) = row
    if request_id and owner is not None:
        request_id = request_id.split("\x1f", 1)[-1]  # stored per owner (see add_job)
    return Job(id_, state, priority, kind, origin, path, name, hash_, model, mnt, json.loads(meta or "{}"),
               json.loads(error) if error else None, attempts, created, updated, request_id, bool(has_blob), owner)


class Store(_WatchedTables, _CullTables):
    """The daemon's SQLite store: critiques, the job queue, (store_watched.py) the folder watcher's tables and
    (store_cull.py) culling's.

    Args:
        path: the database file, or ":memory:".
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._lock:
            self._db.executescript(_SCHEMA + CULL_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "owner" not in columns:  # a store from before schema 3
                self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Transaction(self._db)

    # ---- critiques -------------------------------------------------------------------------------------------
    def get_critique(self, hash: str, model: str, max_new_tokens: int) -> StoredCritique | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, attributes, score, tags, saliency, saliency_summary, timings, created FROM critiques "
                "WHERE hash=? AND model=? AND max_new_tokens=?", (hash, model, max_new_tokens)).fetchone()
        if row is None:
            return None
        text, attributes, score, tags, png, summary, timings, created = row
        result = CritiqueResult(text=text, attributes=json.loads(attributes), score=score, tags=json.loads(tags),
                                saliency=json.loads(summary) if summary else None,
                                timings=json.loads(timings or "{}"), model=model, hash=hash, cached=True,
                                created=created)
        return StoredCritique(result, png)

    def put_critique(self, hash: str, model: str, max_new_tokens: int, result: CritiqueResult | dict,
                     saliency_png: bytes | None) -> None:
        """Store (or replace) a critique. `result` is a CritiqueResult, or a dict with its keys (text and score
        required); its `created` is kept when it has one."""
        with self._lock, self._tx():
            self._put_critique(hash, model, max_new_tokens, result, saliency_png)

    def _put_critique(self, hash, model, max_new_tokens, result, png):
        if isinstance(result, CritiqueResult):
            result = result.to_dict()
        created = result.get("created")
        self._db.execute(
            "INSERT OR REPLACE INTO critiques VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (hash, model, max_new_tokens, result["text"], json.dumps(result.get("attributes", {}), ensure_ascii=False),
             float(result["score"]), json.dumps(result.get("tags", []), ensure_ascii=False), png,
             json.dumps(result.get("saliency")), json.dumps(result.get("timings", {})),
             float(created) if isinstance(created, (int, float)) else time.time()))

    def count_critiques(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return self._db.execute("SELECT COUNT(*) FROM critiques").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM critiques WHERE model=?", (model,)).fetchone()[0]

    # ---- jobs ------------------------------------------------------------------------------------------------
    def add_job(self, *, path: str | None = None, data: bytes | None = None, name: str | None = None,
                priority: int = 0, kind: str = KIND_CRITIQUE, origin: str = "client", meta: dict | None = None,
                max_new_tokens: int | None = None, request_id: str | None = None,
                max_queued: int | None = None, owner: str | None = None) -> tuple[Job, bool]:
        """Persist a queued job; returns (job, created). A request_id seen before returns that job (created False).

        max_queued: refuse (QueueFull) when this many jobs are already queued.
        owner: None for the daemon's own user, else the remote client; request ids are per owner, so one client's
        id can never fetch another's job.
        """
        if (path is None) == (data is None):
            raise ValueError("a job needs exactly one of path or data")
        if isinstance(priority, bool) or not isinstance(priority, int) or not INT64[0] <= priority <= INT64[1]:
            raise ValueError(f"priority must be a 64-bit integer, not {priority!r}")
        if request_id is not None and owner is not None:
            request_id = f"{owner}\x1f{request_id}"  # \x1f: cannot occur in an owner name
        now = time.time()
        with self._lock, self._tx():
            if request_id is not None:
                row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE request_id=?", (request_id,)).fetchone()
                if row is not None:
                    return _job(row), False
            if max_queued is not None:
                queued = self._db.execute("SELECT COUNT(*) FROM jobs WHERE state=?", (QUEUED,)).fetchone()[0]
                if queued >= max_queued:
                    raise QueueFull(f"{queued} jobs are queued (limit {max_queued})")
            job_id = uuid.uuid4().hex[:16]
            self._db.execute(
                "INSERT INTO jobs (id, request_id, state, priority, kind, origin, path, blob, name, max_new_tokens,"
                " meta, created, updated, owner) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, request_id, QUEUED, priority, kind, origin, path, data, name or path, max_new_tokens,
                 json.dumps(meta or {}, ensure_ascii=False), now, now, owner))
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row), True

    def get_job(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def job_data(self, job_id: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT blob FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row[0] if row else None

    def claim_jobs(self, limit: int, kind: str = KIND_CRITIQUE) -> list[Job]:
        """Move up to `limit` queued jobs (highest priority, then oldest) to running and return them."""
        if limit <= 0:
            return []
        with self._lock, self._tx():
            rows = self._db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state=? AND kind=? ORDER BY priority DESC, created LIMIT ?",
                (QUEUED, kind, limit)).fetchall()
            jobs = [_job(r) for r in rows]
            now = time.time()
            for j in jobs:
                self._db.execute("UPDATE jobs SET state=?, attempts=attempts+1, updated=? WHERE id=?",
                                 (RUNNING, now, j.id))
                j.state, j.attempts, j.updated = RUNNING, j.attempts + 1, now
        return jobs

    def finish_job(self, job_id: str, hash: str, model: str, max_new_tokens: int,
                   result: CritiqueResult | dict | None = None,
                   saliency_png: bytes | None = None) -> bool:
        """Mark a job done (storing its critique in the same transaction when given). False if it was not running
        (e.g. cancelled meanwhile); the critique is stored either way, it is a valid result."""
        now = time.time()
        with self._lock, self._tx():
            if result is not None:
                self._put_critique(hash, model, max_new_tokens, result, saliency_png)
            cur = self._db.execute(
                "UPDATE jobs SET state=?, hash=?, model=?, max_new_tokens=?, blob=NULL, error=NULL, updated=? "
                "WHERE id=? AND state=?", (DONE, hash, model, max_new_tokens, now, job_id, RUNNING))
            return cur.rowcount == 1

    def save_batch(self, items) -> None:
        """Store a model batch in one transaction: items of (job_id or None, hash, model, max_new_tokens, result, png).
        Jobs among them are marked done (unless cancelled meanwhile)."""
        now = time.time()
        with self._lock, self._tx():
            for job_id, hash, model, max_new_tokens, result, png in items:
                self._put_critique(hash, model, max_new_tokens, result, png)
                if job_id is not None:
                    self._db.execute(
                        "UPDATE jobs SET state=?, hash=?, model=?, max_new_tokens=?, blob=NULL, error=NULL, updated=? "
                        "WHERE id=? AND state=?", (DONE, hash, model, max_new_tokens, now, job_id, RUNNING))

    def fail_job(self, job_id: str, code: str, message: str, hash: str | None = None) -> bool:
        with self._lock, self._tx():
            cur = self._db.execute(
                "UPDATE jobs SET state=?, error=?, hash=COALESCE(?, hash), blob=NULL, updated=? WHERE id=? AND "
                "state=?",
                (FAILED, json.dumps({"code": code, "message": message}), hash, time.time(), job_id, RUNNING))
            return cur.rowcount == 1

    def requeue(self, job_ids) -> int:
        """Put running jobs back in the queue (shutdown before they reached the model)."""
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
        """Cancel a queued or running job (a running one may still finish its model pass; its result is kept)."""
        with self._lock, self._tx():
            self._db.execute("UPDATE jobs SET state=?, blob=NULL, updated=? WHERE id=? AND state IN (?, ?)",
                             (CANCELLED, time.time(), job_id, QUEUED, RUNNING))
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def retry_job(self, job_id: str) -> Job | None:
        """A failed or cancelled job back to the queue (the watcher's `retry`)."""
        with self._lock, self._tx():
            # a failed or cancelled byte job has dropped its bytes: there is nothing left to retry
            self._db.execute("UPDATE jobs SET state=?, error=NULL, updated=? WHERE id=? AND state IN (?, ?) AND "
                             "(path IS NOT NULL OR blob IS NOT NULL)", (QUEUED, time.time(), job_id, FAILED, CANCELLED))
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self, *, origin: str | None = None, state: str | None = None, since: float | None = None,
             limit: int = 1000) -> list[Job]:
        """Jobs by origin / state / updated after `since` (oldest update first): the watcher's polling query."""
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


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK (autocommit connection: we decide where transactions start)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
