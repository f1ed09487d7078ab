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

from .contract import DONE, FAILED, KIND_CRITIQUE, QUEUED, RUNNING, CritiqueResult
from .errors import QueueFull
from .store_cull import CULL_SCHEMA, _CullTables
from .store_jobs import _JOB_COLUMNS, Job, _job, _JobHistory
from .store_library import LIBRARY_SCHEMA, _LibraryTables
from .store_watched import WatchedFile, _WatchedTables

__all__ = ["SCHEMA_VERSION", "Store", "StoredCritique", "Job", "WatchedFile", "QueueFull", "content_hash"]

SCHEMA_VERSION = 7  # 2: watch_folders + watched_files (the folder watcher); 3: jobs.owner; 4: jobs.profile;
#                    5: library + library_tags (store_library.py); 6: cull_features + cull_results (store_cull.py);
#                    7: watch_folders.profile (store_watched.py).
#                    Upgrades only add.
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
    owner TEXT,                       -- NULL: the daemon's own user; else the remote client ("curve:<key>", "tcp")
    profile TEXT                      -- the personal profile the result is also scored by (docs/personal.md)
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
    """The store's key for an image: SHA-256 of its bytes, in hex.

    Args:
        data: the image file's bytes.
    """
    return hashlib.sha256(data).hexdigest()


@dataclass
class StoredCritique:
    """A critique read back from the store.

    Args:
        result: the critique, with cached=True and image=None (see CritiqueResult.for_request).
        saliency_png: its saliency map as a PNG, if one was stored.
    """

    result: CritiqueResult
    saliency_png: bytes | None


class Store(_JobHistory, _WatchedTables, _LibraryTables, _CullTables):
    """The daemon's SQLite store: critiques, the job queue (its history: store_jobs.py), (store_watched.py) the
    folder watcher's tables, (store_library.py) the library index that `search` reads and (store_cull.py)
    culling's.

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
        self._db.execute("PRAGMA cache_size=-65536")  # up to 64 MiB of pages: library searches read at random
        with self._lock:
            old_version = self._db.execute("PRAGMA user_version").fetchone()[0]
            self._db.executescript(_SCHEMA + CULL_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if "owner" not in columns:  # a store from before schema 3
                self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
            if "profile" not in columns:  # before schema 4
                self._db.execute("ALTER TABLE jobs ADD COLUMN profile TEXT")
            self._db.executescript(LIBRARY_SCHEMA)
            self._upgrade_watched()  # before schema 7: watched folders without a profile
            if old_version < 5:  # a store from before the library: index the photos it already knows
                with self._tx():
                    self._backfill_library()
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Transaction(self._db)

    # ---- critiques -------------------------------------------------------------------------------------------
    def get_critique(self, hash: str, model: str, max_new_tokens: int) -> StoredCritique | None:
        """The stored critique of an image by a model at a length cap, or None.

        Args:
            hash: the image's content_hash.
            model: the model's id.
            max_new_tokens: the length cap the critique was made with.
        """
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
        """Store (or replace) a critique.

        Args:
            hash: the image's content_hash.
            model: the model's id.
            max_new_tokens: the length cap the critique was made with.
            result: a CritiqueResult, or a dict with its keys (text and score required); its `created` is kept
                when it has one.
            saliency_png: the saliency map as a PNG, if any.
        """
        with self._lock, self._tx():
            self._put_critique(hash, model, max_new_tokens, result, saliency_png)
            self._reindex_critique(hash, model, max_new_tokens)

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
        """How many critiques are stored.

        Args:
            model: count only this model's (default: all).
        """
        with self._lock:
            if model is None:
                return self._db.execute("SELECT COUNT(*) FROM critiques").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM critiques WHERE model=?", (model,)).fetchone()[0]

    # ---- jobs ------------------------------------------------------------------------------------------------
    def add_job(self, *, path: str | None = None, data: bytes | None = None, name: str | None = None,
                priority: int = 0, kind: str = KIND_CRITIQUE, origin: str = "client", meta: dict | None = None,
                max_new_tokens: int | None = None, request_id: str | None = None,
                max_queued: int | None = None, owner: str | None = None,
                profile: str | None = None) -> tuple[Job, bool]:
        """Persist a queued job; returns (job, created). A request_id seen before returns that job (created False).

        Args:
            path: the image's path (give this or `data`).
            data: the image's bytes, kept until the job is done (give this or `path`).
            name: the image's name for results (default: `path`).
            priority: higher is claimed first (a 64-bit integer).
            kind: what the job does (KIND_CRITIQUE).
            origin: who queued it ("client", "watch:/photos" for the folder watcher, ...).
            meta: kept with the job and returned with it.
            max_new_tokens: a cap on the critique's length (None: the daemon's).
            request_id: the client's id for the request, to make a resent submit idempotent.
            max_queued: refuse (QueueFull) when this many jobs are already queued.
            owner: None for the daemon's own user, else the remote client; request ids are per owner, so one
                client's id can never fetch another's job.
            profile: a personal profile's name: the job's result also gets that profile's personal_score.
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
                " meta, created, updated, owner, profile) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, request_id, QUEUED, priority, kind, origin, path, data, name or path, max_new_tokens,
                 json.dumps(meta or {}, ensure_ascii=False), now, now, owner, profile))
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row), True

    def get_job(self, job_id: str) -> Job | None:
        """A job by id, or None.

        Args:
            job_id: the job's id.
        """
        with self._lock:
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def job_data(self, job_id: str) -> bytes | None:
        """The image bytes a job was queued with (None for a path job, or once the job is over).

        Args:
            job_id: the job's id.
        """
        with self._lock:
            row = self._db.execute("SELECT blob FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row[0] if row else None

    def claim_jobs(self, limit: int, kind: str = KIND_CRITIQUE) -> list[Job]:
        """Move up to `limit` queued jobs (highest priority, then oldest) to running and return them.

        Args:
            limit: the most jobs to claim.
            kind: claim only jobs of this kind.
        """
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
        (e.g. cancelled meanwhile); the critique is stored either way, it is a valid result.

        Args:
            job_id: the job's id.
            hash, model, max_new_tokens: the critique's key (see put_critique).
            result: the critique to store with it, if any.
            saliency_png: its saliency map as a PNG, if any.
        """
        now = time.time()
        with self._lock, self._tx():
            if result is not None:
                self._put_critique(hash, model, max_new_tokens, result, saliency_png)
                self._reindex_critique(hash, model, max_new_tokens)
            cur = self._db.execute(
                "UPDATE jobs SET state=?, hash=?, model=?, max_new_tokens=?, blob=NULL, error=NULL, updated=? "
                "WHERE id=? AND state=?", (DONE, hash, model, max_new_tokens, now, job_id, RUNNING))
            self._index_job(job_id)
            return cur.rowcount == 1

    def save_batch(self, items) -> None:
        """Store a model batch in one transaction; jobs among them are marked done (unless cancelled meanwhile).

        Args:
            items: tuples of (job_id or None, hash, model, max_new_tokens, result, png), as for finish_job, or the
                same with the photo's path last (a photo on this disk: it joins the library).
        """
        now = time.time()
        with self._lock, self._tx():
            for job_id, hash, model, max_new_tokens, result, png, *path in items:
                self._put_critique(hash, model, max_new_tokens, result, png)
                self._reindex_critique(hash, model, max_new_tokens)
                if job_id is not None:
                    self._db.execute(
                        "UPDATE jobs SET state=?, hash=?, model=?, max_new_tokens=?, blob=NULL, error=NULL, updated=? "
                        "WHERE id=? AND state=?", (DONE, hash, model, max_new_tokens, now, job_id, RUNNING))
                    self._index_job(job_id)
                if path and path[0]:
                    self._index_photo(path[0], hash, model, max_new_tokens, now)

    def fail_job(self, job_id: str, code: str, message: str, hash: str | None = None) -> bool:
        """Mark a running job failed; False if it was not running.

        Args:
            job_id: the job's id.
            code: the error code (contract.ERROR_CODES).
            message: the error's message.
            hash: the image's content_hash, when it was read.
        """
        with self._lock, self._tx():
            cur = self._db.execute(
                "UPDATE jobs SET state=?, error=?, hash=COALESCE(?, hash), blob=NULL, updated=? WHERE id=? AND "
                "state=?",
                (FAILED, json.dumps({"code": code, "message": message}), hash, time.time(), job_id, RUNNING))
            return cur.rowcount == 1

class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK (autocommit connection: we decide where transactions start)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
