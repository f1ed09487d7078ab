"""The folder watcher's tables in the store: watched folders (added at run time) and the per-file memory.

`_WatchedTables` is a part of `Store` (store.py), split out along this seam; it uses the Store's connection,
lock and transactions. The per-file table is what makes "nothing twice" hold across restarts (docs/watcher.md).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from .contract import CANCELLED, DONE, FAILED, KIND_CRITIQUE, QUEUED, RUNNING

__all__ = ["WatchedFile"]


@dataclass
class WatchedFile:
    path: str
    folder: str
    size: int
    mtime_ns: int
    hash: str | None
    job_id: str | None
    state: str
    error: dict | None
    sidecar: str | None
    written: float | None
    attempts: int
    updated: float

    def to_dict(self) -> dict:
        return {"path": self.path, "folder": self.folder, "state": self.state, "error": self.error,
                "sidecar": self.sidecar, "job": self.job_id, "hash": self.hash, "size": self.size,
                "mtime": self.mtime_ns / 1e9, "attempts": self.attempts, "updated": self.updated}


_WF_COLUMNS = "path, folder, size, mtime_ns, hash, job_id, state, error, sidecar, written, attempts, updated"


class _WatchedTables:
    """Store's watch_folders and watched_files tables."""

    # ---- the folder watcher's tables -----------------------------------------------------------------------
    def _upgrade_watched(self) -> None:
        """Schema 7: a watched folder's personal profile (NULL: none), in its own column (options are flags)."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(watch_folders)")}
        if "profile" not in columns:
            self._db.execute("ALTER TABLE watch_folders ADD COLUMN profile TEXT")

    def watch_folders(self) -> dict[str, dict]:
        """Folders added at run time: {path: options}, the options with "profile" (a name, or None)."""
        with self._lock:
            rows = self._db.execute("SELECT path, options, profile FROM watch_folders ORDER BY added").fetchall()
        return {path: {**json.loads(options), "profile": profile} for path, options, profile in rows}

    def save_watch_folder(self, path: str, options: dict, profile: str | None = None) -> None:
        """Remember a folder added (or changed) at run time.

        Args:
            path: the folder.
            options: its flags (config.WATCH_FOLDER_OPTIONS).
            profile: the personal profile its critiques are also scored by; None for none.
        """
        with self._lock, self._tx():
            self._db.execute("INSERT INTO watch_folders (path, options, added, profile) VALUES (?,?,?,?) ON "
                             "CONFLICT(path) DO UPDATE SET options=excluded.options, profile=excluded.profile",
                             (path, json.dumps(options), time.time(), profile))

    def delete_watch_folder(self, path: str) -> bool:
        with self._lock, self._tx():
            return self._db.execute("DELETE FROM watch_folders WHERE path=?", (path,)).rowcount == 1

    def watched_file(self, path: str) -> WatchedFile | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_WF_COLUMNS} FROM watched_files WHERE path=?", (path,)).fetchone()
        return WatchedFile(*row[:7], json.loads(row[7]) if row[7] else None, *row[8:]) if row else None

    def watched_files(self, *, folder: str | None = None, state: str | None = None, job_id: str | None = None,
                      under: str | None = None) -> list[WatchedFile]:
        where, params = [], []
        for column, value in (("folder", folder), ("state", state), ("job_id", job_id)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if under is not None:  # a folder and everything below it
            where.append("(path = ? OR substr(path, 1, ?) = ?)")
            prefix = under.rstrip("/") + "/"
            params += [under, len(prefix), prefix]
        sql = f"SELECT {_WF_COLUMNS} FROM watched_files"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY path", params).fetchall()
        return [WatchedFile(*r[:7], json.loads(r[7]) if r[7] else None, *r[8:]) for r in rows]

    def watched_signatures(self, folder: str) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, state) for a folder's files: what a rescan compares the disk against."""
        with self._lock:
            rows = self._db.execute("SELECT path, size, mtime_ns, state FROM watched_files WHERE folder=?",
                                    (folder,)).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def enqueue_watched(self, items: list[dict], *, origin_of, priority: int = -1, max_queued: int | None = None,
                        max_new_tokens: int | None = None) -> list[tuple[str, str, bool]]:
        """Queue critiques for arrived files, in ONE transaction with their watched_files rows (a crash between
        "job queued" and "file recorded" would otherwise critique the file twice after a restart).

        items: {"path", "folder", "size", "mtime_ns", "hash", "profile" (optional: the folder's personal profile,
        kept with the job)}. A file whose content (hash) is already being critiqued for the watcher with the same
        profile joins that job instead of starting another: copies go through the model once.
        Returns (path, job id, created) for the files queued; files beyond max_queued are left out (retry later).
        """
        out = []
        now = time.time()
        with self._lock, self._tx():
            room = None
            if max_queued is not None:
                room = max_queued - self._db.execute("SELECT COUNT(*) FROM jobs WHERE state=?", (QUEUED,)).fetchone()[0]
            for it in items:
                profile = it.get("profile")
                row = self._db.execute(
                    "SELECT w.job_id FROM watched_files w JOIN jobs j ON j.id = w.job_id WHERE w.hash=? AND "
                    "w.state=? AND j.state IN (?, ?) AND j.profile IS ? LIMIT 1",
                    (it["hash"], QUEUED, QUEUED, RUNNING, profile)).fetchone()
                if row is not None:
                    job_id, created = row[0], False
                else:
                    if room is not None and room <= 0:
                        continue
                    job_id, created = uuid.uuid4().hex[:16], True
                    meta = {"path": it["path"], "size": it["size"], "mtime": it["mtime_ns"] / 1e9,
                            "folder": it["folder"], "sidecar": True}
                    self._db.execute(
                        "INSERT INTO jobs (id, state, priority, kind, origin, path, name, max_new_tokens, meta,"
                        " created, updated, profile) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (job_id, QUEUED, priority, KIND_CRITIQUE, origin_of(it["folder"]), it["path"], it["path"],
                         max_new_tokens, json.dumps(meta, ensure_ascii=False), now, now, profile))
                    if room is not None:
                        room -= 1
                self._db.execute(
                    "INSERT INTO watched_files (path, folder, size, mtime_ns, hash, job_id, state, error, sidecar, "
                    "written, attempts, updated) VALUES (?,?,?,?,?,?,?,NULL,NULL,NULL,1,?) ON CONFLICT(path) DO UPDATE "
                    "SET folder=excluded.folder, size=excluded.size, mtime_ns=excluded.mtime_ns, hash=excluded.hash, "
                    "job_id=excluded.job_id, state=excluded.state, error=NULL, attempts=attempts+1, "
                    "updated=excluded.updated",
                    (it["path"], it["folder"], it["size"], it["mtime_ns"], it["hash"], job_id, QUEUED, now))
                out.append((it["path"], job_id, created))
        return out

    def update_watched(self, updates: list[dict]) -> int:
        """Finish files in one transaction: {"path", "state", "job_id" (only a row still on this job changes),
        "error", "sidecar", "size", "mtime_ns"} (absent keys stay). Returns the rows changed."""
        n = 0
        now = time.time()
        with self._lock, self._tx():
            for u in updates:
                sets, params = ["state=?", "updated=?"], [u["state"], now]
                if "error" in u:
                    sets.append("error=?")
                    params.append(json.dumps(u["error"]) if u["error"] else None)
                if u.get("sidecar"):
                    sets += ["sidecar=?", "written=?"]
                    params += [u["sidecar"], now]
                for key in ("size", "mtime_ns"):
                    if key in u:
                        sets.append(f"{key}=?")
                        params.append(u[key])
                sql = f"UPDATE watched_files SET {', '.join(sets)} WHERE path=?"
                params.append(u["path"])
                if u.get("job_id") is not None:
                    sql += " AND job_id=?"
                    params.append(u["job_id"])
                changed = self._db.execute(sql, params).rowcount
                n += changed
                if changed and u["state"] == DONE and u.get("job_id") is not None:
                    self._index_watched(u["path"], u["job_id"])  # copies of one photo share a job: each is indexed
        return n

    def _index_watched(self, path: str, job_id: str) -> None:
        row = self._db.execute("SELECT hash, model, max_new_tokens FROM jobs WHERE id=? AND hash IS NOT NULL AND "
                               "model IS NOT NULL", (job_id,)).fetchone()
        if row is not None:
            self._index_photo(path, *row)

    def record_watched_failure(self, path: str, folder: str, size: int, mtime_ns: int, hash: str | None,
                               error: dict) -> None:
        """A file that failed before it got a job (never decoded): remembered with its size and mtime so that
        it is not tried again until it changes (or `watch retry`)."""
        now = time.time()
        with self._lock, self._tx():
            self._db.execute(
                "INSERT INTO watched_files (path, folder, size, mtime_ns, hash, job_id, state, error, attempts,"
                " updated) VALUES (?,?,?,?,?,NULL,?,?,1,?) ON CONFLICT(path) DO UPDATE SET folder=excluded.folder, "
                "size=excluded.size, mtime_ns=excluded.mtime_ns, hash=excluded.hash, job_id=NULL, state=excluded.state,"
                " error=excluded.error, attempts=attempts+1, updated=excluded.updated",
                (path, folder, size, mtime_ns, hash, FAILED, json.dumps(error), now))

    def delete_watched(self, paths, only_states=(DONE, FAILED)) -> int:
        """Forget files (deleted from disk, or their folder was removed); rows still queued stay unless asked."""
        n = 0
        marks = ",".join("?" * len(only_states))
        with self._lock, self._tx():
            for path in paths:
                n += self._db.execute(f"DELETE FROM watched_files WHERE path=? AND state IN ({marks})",
                                      (path, *only_states)).rowcount
            if DONE in only_states:  # a photo gone from disk leaves the library too
                self._forget_photos(paths)
        return n

    def watched_jobs_ended(self) -> list[str]:
        """Jobs that ended (done/failed/cancelled) or vanished while files waiting on them are still `queued`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT w.job_id FROM watched_files w LEFT JOIN jobs j ON j.id = w.job_id WHERE w.state=? "
                "AND w.job_id IS NOT NULL AND (j.id IS NULL OR j.state IN (?, ?, ?))",
                (QUEUED, DONE, FAILED, CANCELLED)).fetchall()
        return [r[0] for r in rows]

    def watched_counts(self) -> dict[str, dict[str, int]]:
        """{folder: {"queued", "done", "failed"}}."""
        with self._lock:
            rows = self._db.execute(
                "SELECT folder, state, COUNT(*) FROM watched_files GROUP BY folder, state").fetchall()
        out: dict[str, dict[str, int]] = {}
        for folder, state, n in rows:
            out.setdefault(folder, dict.fromkeys((QUEUED, DONE, FAILED), 0))[state] = n
        return out
