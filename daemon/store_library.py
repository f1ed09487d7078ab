"""The library index in the store: which photo on this machine's disk has which critique, searchable by tag,
score, folder and text (`ase-client search`, the `search` op; docs/protocol.md).

`_LibraryTables` is a part of `Store` (store.py), split out along this seam; it uses the Store's connection, lock
and transactions. Critiques are keyed by content (hash, model, length); a library row ties a path to the critique
it got last, with its score copied so that a tag + score query never opens the critiques table. Tags are indexed
by every contiguous run of their parts ("aesthetics|exposure|underexposed" is found by "exposure|underexposed",
"exposure", "underexposed" ...), one row per term and photo, so a tag query is one B-tree lookup.

Paths are only matched as strings, never opened: a folder filter cannot reach what the store does not hold.
"""

from __future__ import annotations

import json
import os
import time

from .contract import DONE

__all__ = ["LIBRARY_SCHEMA", "tag_terms", "escape_like"]

LIBRARY_SCHEMA = """
CREATE TABLE IF NOT EXISTS library (  -- schema 5: photos on this disk with a critique (the last one each got)
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,        -- absolute path, as the daemon's own user named it
    hash TEXT NOT NULL,               -- the critique's key: (hash, model, max_new_tokens)
    model TEXT NOT NULL,
    max_new_tokens INTEGER NOT NULL,
    score REAL NOT NULL,              -- copied from the critique: tag + score queries stay in the index
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS library_by_score ON library (score);
CREATE INDEX IF NOT EXISTS library_by_critique ON library (hash, model, max_new_tokens);
CREATE TABLE IF NOT EXISTS library_tags (  -- every contiguous run of a tag's parts, lower case -> photo
    term TEXT NOT NULL,
    score REAL NOT NULL,              -- the photo's score again: tag + score is one range of this key
    photo INTEGER NOT NULL,
    PRIMARY KEY (term, score, photo)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS library_tags_by_photo ON library_tags (photo, term);
"""


def tag_terms(tag: str) -> set[str]:
    """The terms a stored tag is found by: every contiguous run of its parts, lower case.

    Args:
        tag: a rooted tag, e.g. "aesthetics|exposure|underexposed".
    """
    parts = [p.strip().lower() for p in str(tag).split("|") if p.strip()]
    return {"|".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}


def query_term(tag: str) -> str:
    """A query tag in the form terms are stored in ("Exposure | Underexposed" -> "exposure|underexposed")."""
    return "|".join(p.strip().lower() for p in str(tag).split("|") if p.strip())


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _folder_prefix(folder: str) -> str:
    """An absolute folder, normalised as text (never resolved: nothing on disk is looked at), ending in "/"."""
    if not os.path.isabs(folder):
        raise ValueError(f"folder must be an absolute path: {folder!r}")
    return os.path.normpath(folder).rstrip("/") + "/"


class _LibraryTables:
    """Store's library and library_tags tables."""

    # ---- writing (inside the caller's transaction) -------------------------------------------------------
    def _index_photo(self, path: str, hash: str, model: str, max_new_tokens: int, now: float | None = None) -> bool:
        """Point `path` at the critique (hash, model, max_new_tokens), which must be stored; re-index its tags."""
        row = self._db.execute("SELECT score, tags FROM critiques WHERE hash=? AND model=? AND max_new_tokens=?",
                               (hash, model, max_new_tokens)).fetchone()
        if row is None or not path or not os.path.isabs(path):
            return False
        score, tags = row
        photo = self._db.execute(
            "INSERT INTO library (path, hash, model, max_new_tokens, score, updated) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(path) DO UPDATE SET hash=excluded.hash, model=excluded.model, "
            "max_new_tokens=excluded.max_new_tokens, score=excluded.score, updated=excluded.updated RETURNING id",
            (path, hash, model, max_new_tokens, score, now or time.time())).fetchone()[0]
        self._db.execute("DELETE FROM library_tags WHERE photo=?", (photo,))
        terms = set()
        for tag in json.loads(tags or "[]"):
            terms |= tag_terms(tag)
        self._db.executemany("INSERT INTO library_tags (term, score, photo) VALUES (?,?,?)",
                             [(t, score, photo) for t in terms])
        return True

    def _reindex_critique(self, hash: str, model: str, max_new_tokens: int) -> None:
        """A critique was replaced (a forced re-critique): the photos pointing at it follow its score and tags."""
        for (path,) in self._db.execute("SELECT path FROM library WHERE hash=? AND model=? AND max_new_tokens=?",
                                        (hash, model, max_new_tokens)).fetchall():
            self._index_photo(path, hash, model, max_new_tokens)

    def _index_job(self, job_id: str) -> None:
        """A finished path job: its photo joins the library."""
        row = self._db.execute("SELECT path, hash, model, max_new_tokens FROM jobs WHERE id=? AND path IS NOT NULL "
                               "AND hash IS NOT NULL AND model IS NOT NULL", (job_id,)).fetchone()
        if row is not None:
            self._index_photo(*row)

    def _backfill_library(self) -> int:
        """Schema 4 -> 5: index the photos an older store already knows (done path jobs, done watched files),
        the newest critique of each path winning."""
        rows = self._db.execute(
            "SELECT w.path, w.hash, j.model, j.max_new_tokens, w.updated FROM watched_files w JOIN jobs j ON "
            "j.id = w.job_id WHERE w.state=? AND w.hash IS NOT NULL AND j.model IS NOT NULL "
            "UNION ALL SELECT path, hash, model, max_new_tokens, updated FROM jobs WHERE state=? AND path IS NOT NULL "
            "AND hash IS NOT NULL AND model IS NOT NULL ORDER BY 5", (DONE, DONE)).fetchall()
        n = 0
        for path, hash, model, mnt, updated in rows:  # oldest first: the newest ends up in the index
            n += self._index_photo(path, hash, model, mnt, updated)
        return n

    def _forget_photos(self, paths) -> None:
        for path in paths:
            row = self._db.execute("SELECT id FROM library WHERE path=?", (path,)).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM library_tags WHERE photo=?", (row[0],))
                self._db.execute("DELETE FROM library WHERE id=?", (row[0],))

    # ---- public ----------------------------------------------------------------------------------------------
    def note_photo(self, path: str, hash: str, model: str, max_new_tokens: int) -> None:
        """Record that `path` (on this disk) has the stored critique (hash, model, max_new_tokens): a cache hit.

        Args:
            path: the photo's absolute path.
            hash, model, max_new_tokens: the critique's key.
        """
        with self._lock:
            row = self._db.execute("SELECT hash, model, max_new_tokens FROM library WHERE path=?",
                                   (path,)).fetchone()
            if row == (hash, model, max_new_tokens):
                return  # nothing new: no write (and no fsync) on a read path
            with self._tx():
                self._index_photo(path, hash, model, max_new_tokens)

    def search(self, *, tags=(), min_score: float | None = None, max_score: float | None = None,
               folder: str | None = None, text: str | None = None, limit: int = 1000, details: bool = False,
               use_index: bool = True) -> tuple[list[dict], bool]:
        """Photos of the library matching every filter, best score first. Returns (records, truncated).

        Args:
            tags: tags every match carries; each is a run of parts ("exposure|underexposed", "exposure",
                "aesthetics|focus|sharp"), matched case-insensitively with or without the root.
            min_score, max_score: bounds on the score (inclusive).
            folder: an absolute folder; only photos in it or below (matched as text, never opened).
            text: words that must all occur in the critique text (case-insensitive).
            limit: at most this many records (truncated=True when there were more).
            details: add the critique's tags, text, model and content hash to each record.
            use_index: False runs the same query as a full scan of the critiques (the benchmark's baseline).
        """
        terms = [t for t in (query_term(t) for t in tags) if t]
        if len(terms) != len(tuple(tags)):
            raise ValueError("an empty tag matches nothing; give a tag like 'exposure|underexposed'")
        where, params = [], []
        join_critique = details or bool(text) or not use_index
        driver = use_index and bool(terms)  # the first tag's index range drives the query, score included
        score = "t.score" if driver else "l.score" if use_index else "c.score"
        sql = "SELECT l.path, l.score"
        if details:
            sql += ", c.tags, c.text, l.model, l.hash"  # not c.created: it sits behind the saliency blob
        sql += " FROM library_tags t JOIN library l ON l.id = t.photo" if driver else " FROM library l"
        if join_critique:
            sql += " JOIN critiques c ON c.hash=l.hash AND c.model=l.model AND c.max_new_tokens=l.max_new_tokens"
        for n, term in enumerate(terms):
            if driver and n == 0:
                where.append("t.term = ?")
            elif use_index:
                where.append("EXISTS (SELECT 1 FROM library_tags t2 WHERE t2.photo = l.id AND t2.term = ?)")
            else:  # no index: read every critique's JSON tags
                where.append("EXISTS (SELECT 1 FROM json_each(c.tags) WHERE '|' || lower(value) || '|' LIKE ? "
                             "ESCAPE '\\')")
                term = f"%|{escape_like(term)}|%"
            params.append(term)
        for op, value in ((">=", min_score), ("<=", max_score)):
            if value is not None:
                where.append(f"{score} {op} ?")
                params.append(float(value))
        if folder is not None:
            prefix = _folder_prefix(folder)
            where.append("substr(l.path, 1, ?) = ?")
            params += [len(prefix), prefix]
        for word in (text or "").lower().split():
            where.append("instr(lower(c.text), ?) > 0")
            params.append(word)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY l.score DESC, l.path LIMIT ?"
        params.append(int(limit) + 1)
        with self._lock:
            if driver and len(terms) > 1:  # the rarest tag drives, the others are checked per photo
                params[:len(terms)] = sorted(terms, key=self._term_count)
            rows = self._db.execute(sql, params).fetchall()
        truncated = len(rows) > limit
        out = []
        for row in rows[:limit]:
            record = {"path": row[0], "score": row[1]}
            if details:
                record.update(tags=json.loads(row[2] or "[]"), text=row[3], model=row[4], hash=row[5])
            out.append(record)
        return out, truncated

    def _term_count(self, term: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM library_tags WHERE term=?", (term,)).fetchone()[0]

    def count_photos(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM library").fetchone()[0]
