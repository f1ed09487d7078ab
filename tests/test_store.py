"""The daemon's SQLite store: critiques by (hash, model, length) and the persistent job queue."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from ase_daemon.store import QueueFull, Store, content_hash

RESULT = {"text": "Composition: balanced.\nLight: soft.", "attributes": {"composition": "balanced"}, "score": 6.5,
          "tags": ["aesthetics|composition|balanced"], "saliency": {"centroid": [0.5, 0.5]}, "timings": {"batch": 1}}


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "s.db")
    yield s
    s.close()


def test_wal_and_durability_settings(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_critique_round_trip_and_key(store):
    h = content_hash(b"image bytes")
    assert store.get_critique(h, "m@1", 160) is None
    store.put_critique(h, "m@1", 160, RESULT, b"PNG")
    hit = store.get_critique(h, "m@1", 160)
    assert hit.saliency_png == b"PNG"
    stored = hit.result.to_dict()
    for k in ("text", "attributes", "score", "tags", "saliency", "timings"):
        assert stored[k] == RESULT[k]
    assert hit.result.hash == h and hit.result.model == "m@1"
    assert hit.result.cached is True  # set by the record's constructor in the store, not patched by a caller
    # another model or another length is another critique
    assert store.get_critique(h, "m@2", 160) is None
    assert store.get_critique(h, "m@1", 8) is None
    store.put_critique(h, "m@1", 160, {**RESULT, "text": "new"}, None)  # force: replaces
    assert store.get_critique(h, "m@1", 160).result.text == "new"
    assert store.count_critiques() == 1


def test_jobs_lifecycle(store):
    a, created = store.add_job(path="/p/a.jpg", request_id="r1", meta={"sidecar": True}, origin="watch:/p")
    assert created and a.state == "queued" and a.meta == {"sidecar": True} and a.origin == "watch:/p"
    again, created = store.add_job(path="/p/a.jpg", request_id="r1")
    assert again.id == a.id and not created
    b, _ = store.add_job(data=b"bytes", name="b.jpg", priority=5)
    c, _ = store.add_job(path="/p/c.jpg")
    assert store.job_data(b.id) == b"bytes" and b.has_blob
    claimed = store.claim_jobs(2)
    assert [j.id for j in claimed] == [b.id, a.id]  # priority first, then oldest
    assert all(j.state == "running" and j.attempts == 1 for j in claimed)
    assert store.job_counts() == {"queued": 1, "running": 2, "done": 0, "failed": 0, "cancelled": 0}
    store.save_batch([(b.id, "h" * 64, "m@1", 160, RESULT, b"PNG"), (None, "g" * 64, "m@1", 160, RESULT, None)])
    done = store.get_job(b.id)
    assert done.state == "done" and done.hash == "h" * 64 and not done.has_blob  # bytes dropped once done
    assert store.get_critique("g" * 64, "m@1", 160) is not None
    assert store.fail_job(a.id, "bad_image", "a.jpg: truncated")
    assert store.get_job(a.id).error == {"code": "bad_image", "message": "a.jpg: truncated"}
    assert not store.finish_job(a.id, "x", "m", 1)  # not running any more
    assert store.retry_job(a.id).state == "queued"
    assert store.cancel_job(c.id).state == "cancelled"
    assert store.cancel_job(b.id).state == "done"  # finished work stays finished
    assert store.cancel_job("nope") is None
    assert [j.id for j in store.jobs(origin="watch:/p")] == [a.id]
    since = store.get_job(a.id).updated
    store.claim_jobs(5)
    store.finish_job(a.id, "h" * 64, "m@1", 160)  # completed from the store: no result to write
    assert [j.id for j in store.jobs(origin="watch:/p", since=since)] == [a.id]
    assert store.jobs(state="done", origin="watch:/p")[0].state == "done"


def test_recover_requeue_and_limit(tmp_path):
    s = Store(tmp_path / "s.db")
    jobs = [s.add_job(path=f"/p/{i}.jpg")[0] for i in range(3)]
    s.claim_jobs(3)
    assert s.requeue([jobs[0].id]) == 1
    s.close()
    s = Store(tmp_path / "s.db")  # a new process after a crash
    assert s.recover() == 2
    assert s.job_counts()["queued"] == 3
    with pytest.raises(QueueFull):
        s.add_job(path="/p/x.jpg", max_queued=3)
    s.close()


def test_threads_share_one_store(store):
    errors = []

    def add(k):
        try:
            for i in range(20):
                store.add_job(path=f"/p/{k}-{i}.jpg", request_id=f"{k}-{i}")
                store.put_critique(content_hash(f"{k}{i}".encode()), "m", 8, RESULT, None)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.job_counts()["queued"] == 80 and store.count_critiques("m") == 80
    # readable by another connection (WAL: readers don't block the writer)
    with sqlite3.connect(store.path) as other:
        assert other.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 80


def test_add_job_needs_one_source(store):
    with pytest.raises(ValueError):
        store.add_job()
    with pytest.raises(ValueError):
        store.add_job(path="/a", data=b"b")
