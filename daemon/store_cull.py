"""Culling's tables in the store: per-photo culling features beside the critiques, and the decisions of cull jobs.

`_CullTables` is a part of `Store` (store.py), split out along this seam; it uses the Store's connection, lock
and transactions. Features are keyed like critiques, by (content hash, model): a photo seen before (under any
name) is culled again without decoding it or running the model (docs/culling.md, "Wiring it in").
"""

from __future__ import annotations

import json
import time

from .contract import CANCELLED, FAILED, KIND_CULL, QUEUED, RUNNING

__all__ = ["CULL_SCHEMA"]

CULL_SCHEMA = """
CREATE TABLE IF NOT EXISTS cull_features (
    hash TEXT NOT NULL,               -- sha256 of the image file's bytes (as critiques.hash)
    model TEXT NOT NULL,              -- the model fingerprint whose critique the features were measured with
    features TEXT NOT NULL,           -- JSON: ase_model.culling.CullFeatures.to_dict() (path: the first seen)
    created REAL NOT NULL,
    PRIMARY KEY (hash, model)
);
CREATE TABLE IF NOT EXISTS cull_results (  -- the decisions of a daemon `cull` job, one row per file
    job_id TEXT NOT NULL,
    path TEXT NOT NULL,
    decision TEXT NOT NULL,           -- JSON: ase_model.culling.CullDecision.to_dict()
    PRIMARY KEY (job_id, path)
);
"""


class _CullTables:
    """Store's cull_features and cull_results tables, and the critique lookup culling uses."""

    def get_cull_features(self, hash: str, model: str) -> dict | None:
        """The stored CullFeatures dict of a photo's content under a model, or None."""
        with self._lock:
            row = self._db.execute("SELECT features FROM cull_features WHERE hash=? AND model=?",
                                   (hash, model)).fetchone()
        return json.loads(row[0]) if row else None

    def put_cull_features(self, hash: str, model: str, features: dict) -> None:
        with self._lock, self._tx():
            self._db.execute("INSERT OR REPLACE INTO cull_features VALUES (?,?,?,?)",
                             (hash, model, json.dumps(features, separators=(",", ":")), time.time()))

    def any_critique(self, hash: str, model: str, prefer_max_new_tokens: int | None = None):
        """A stored critique of this content by this model, whatever its length limit (the score and the saliency
        map do not depend on it; the text does): the preferred length first, else the longest. None when absent.

        Args:
            hash: the content hash.
            model: the model fingerprint.
            prefer_max_new_tokens: the length to return when several are stored.
        """
        with self._lock:
            rows = self._db.execute("SELECT max_new_tokens FROM critiques WHERE hash=? AND model=? "
                                    "ORDER BY max_new_tokens DESC", (hash, model)).fetchall()
        lengths = [r[0] for r in rows]
        if not lengths:
            return None
        mnt = prefer_max_new_tokens if prefer_max_new_tokens in lengths else lengths[0]
        return self.get_critique(hash, model, mnt)

    def save_cull_results(self, job_id: str, decisions: list[dict]) -> None:
        """The decisions of a cull job (CullDecision.to_dict() each), replacing any earlier ones of that job."""
        with self._lock, self._tx():
            self._db.execute("DELETE FROM cull_results WHERE job_id=?", (job_id,))
            self._db.executemany("INSERT INTO cull_results VALUES (?,?,?)",
                                 [(job_id, d["path"], json.dumps(d, ensure_ascii=False)) for d in decisions])

    def cull_results(self, job_id: str) -> list[dict]:
        """A cull job's decisions (in group, then rank order)."""
        with self._lock:
            rows = self._db.execute("SELECT decision FROM cull_results WHERE job_id=?", (job_id,)).fetchall()
        out = [json.loads(r[0]) for r in rows]
        return sorted(out, key=lambda d: (d["group"], d.get("rank", 1), d["path"]))

    def count_cull_features(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return self._db.execute("SELECT COUNT(*) FROM cull_features").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM cull_features WHERE model=?", (model,)).fetchone()[0]

    # ---- cull jobs (rows of the jobs table with kind KIND_CULL; the worker never claims them) -------------------
    def set_cull_job_state(self, job_id: str, state: str, error: dict | None = None) -> bool:
        """Move a cull job that is still queued or running to `state` (running, done, failed or cancelled);
        False when it had already ended (a cancel got there first)."""
        with self._lock, self._tx():
            cur = self._db.execute(
                "UPDATE jobs SET state=?, error=?, attempts=attempts+?, updated=? WHERE id=? AND kind=? AND "
                "state IN (?, ?)", (state, json.dumps(error) if error else None, int(state == RUNNING), time.time(),
                                    job_id, KIND_CULL, QUEUED, RUNNING))
            return cur.rowcount == 1

    def abandon_cull_jobs(self, message: str) -> int:
        """At start: cull jobs a dead daemon left queued or running fail (a cull is the client's request; it is
        not resumed behind its back). Returns how many."""
        with self._lock, self._tx():
            return self._db.execute(
                "UPDATE jobs SET state=?, error=?, updated=? WHERE kind=? AND state IN (?, ?)",
                (FAILED, json.dumps({"code": CANCELLED, "message": message}), time.time(), KIND_CULL, QUEUED,
                 RUNNING)).rowcount
