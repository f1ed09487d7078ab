"""Library search: the store's index (vs a full scan), the `search` op over ZeroMQ, `ase-client search`, the folder
filter's bounds, and a schema-3 store that gains the library when it is opened."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from ase_daemon import contract as P
from ase_daemon.client import DaemonError
from ase_daemon.store import SCHEMA_VERSION, Store
from conftest import DaemonProcess, daemon_env
from PIL import Image

ROOT_TAGS = {
    "/photos/a/dark.jpg": (3.0, ["aesthetics|exposure|underexposed", "aesthetics|focus|sharp"], "Too dark, murky."),
    "/photos/a/sub/dim.jpg": (4.5, ["aesthetics|exposure|underexposed"], "A dim frame with soft light."),
    "/photos/ab/bright.jpg": (6.0, ["aesthetics|exposure|overexposed"], "Bright and airy."),
    "/photos/ab/dark2.jpg": (2.0, ["aesthetics|exposure|underexposed"], "Dark again."),
    "/elsewhere/golden.jpg": (8.5, ["aesthetics|lighting|golden hour", "aesthetics|focus|sharp"], "Golden light."),
}


def fill(store: Store, rows=ROOT_TAGS, model="m@1") -> None:
    items = []
    for i, (path, (score, tags, text)) in enumerate(rows.items()):
        items.append((None, f"{i:064x}", model, 8, {"text": text, "score": score, "tags": tags}, None, path))
    store.save_batch(items)


def paths(found) -> list[str]:
    return [r["path"] for r in found[0]]


def test_store_search_filters_and_index_agree_with_a_scan(tmp_path):
    store = Store(tmp_path / "s.db")
    try:
        fill(store)
        for use_index in (True, False):
            s = lambda **q: paths(store.search(use_index=use_index, **q))  # noqa: E731
            # best first; with or without the root, any case, a whole branch, a bare leaf
            assert s(tags=["exposure|underexposed"]) == ["/photos/a/sub/dim.jpg", "/photos/a/dark.jpg",
                                                         "/photos/ab/dark2.jpg"]
            assert s(tags=["Aesthetics | Exposure|underexposed"]) == s(tags=["underexposed"])
            assert len(s(tags=["exposure"])) == 4 and s(tags=["golden hour"]) == ["/elsewhere/golden.jpg"]
            assert s(tags=["exposure|under"]) == [] and s(tags=["posure"]) == []  # whole parts only
            assert s(tags=["underexposed", "focus|sharp"]) == ["/photos/a/dark.jpg"]  # all tags must match
            assert s(tags=["underexposed"], min_score=2.5, max_score=4.5) == ["/photos/a/sub/dim.jpg",
                                                                              "/photos/a/dark.jpg"]
            assert s(text="DARK") == ["/photos/a/dark.jpg", "/photos/ab/dark2.jpg"]
            assert s(text="soft dim") == ["/photos/a/sub/dim.jpg"]
            # a folder is a folder: /photos/a is not /photos/ab; ".." is folded as text, nothing is opened
            assert s(folder="/photos/a") == ["/photos/a/sub/dim.jpg", "/photos/a/dark.jpg"]
            assert s(folder="/photos/a/") == s(folder="/photos/a")
            assert s(folder="/photos/a/../ab", tags=["underexposed"]) == ["/photos/ab/dark2.jpg"]
            assert s(folder="/photos/a%") == [] and s(folder="/photos/_b") == []  # no LIKE wildcards
        found, truncated = store.search(limit=2, details=True)
        assert truncated and [r["path"] for r in found] == ["/elsewhere/golden.jpg", "/photos/ab/bright.jpg"]
        assert found[0]["tags"] == ROOT_TAGS["/elsewhere/golden.jpg"][1] and found[0]["text"] == "Golden light."
        with pytest.raises(ValueError):
            store.search(folder="photos/a")
        with pytest.raises(ValueError):
            store.search(tags=["|"])
        # a re-critique (forced, same key) moves the photo's score and tags in the index
        store.put_critique(f"{0:064x}", "m@1", 8, {"text": "Now fine.", "score": 7.0,
                                                   "tags": ["aesthetics|exposure|well exposed"]}, None)
        assert "/photos/a/dark.jpg" not in paths(store.search(tags=["underexposed"]))
        assert paths(store.search(tags=["well exposed"], min_score=7)) == ["/photos/a/dark.jpg"]
        # a photo gone from disk (the watcher forgets it) leaves the library
        store.delete_watched(["/photos/ab/bright.jpg"])
        assert "/photos/ab/bright.jpg" not in paths(store.search())
        # random library: the index answers exactly what the scan answers
        rng = random.Random(3)
        leaves = ["exposure|underexposed", "exposure|overexposed", "focus|sharp", "focus|soft", "color|muted",
                  "lighting|golden hour"]
        fill(store, {f"/lib/{i % 7}/{i}.jpg": (round(rng.uniform(0, 10), 2),
                                               [f"aesthetics|{t}" for t in rng.sample(leaves, rng.randint(0, 3))],
                                               "x") for i in range(400)}, model="m@2")
        for q in ({"tags": ["focus"]}, {"tags": ["sharp", "exposure"], "min_score": 5},
                  {"tags": ["golden hour"], "folder": "/lib/3"}, {"max_score": 1.5}):
            assert store.search(**q, limit=10_000) == store.search(**q, limit=10_000, use_index=False), q
    finally:
        store.close()


def test_a_schema_3_store_gains_the_library(tmp_path):
    """A store written before the library (schema 3) opens, keeps its data and indexes the photos it knew."""
    db = tmp_path / "old.db"
    store = Store(db)  # today's schema, then taken back to what schema 3 had
    fill(store, {"/old/critiqued-by-path.jpg": (3.5, ["aesthetics|exposure|underexposed"], "dark")})
    store.close()
    h = f"{0:064x}"
    with sqlite3.connect(db) as con:
        con.executescript(f"""DROP TABLE library; DROP TABLE library_tags;
            INSERT INTO jobs (id, state, path, name, hash, model, max_new_tokens, created, updated)
            VALUES ('j1', 'done', '/old/watched/one.jpg', '/old/watched/one.jpg', '{h}', 'm@1', 8, 1, 1);
            INSERT INTO watched_files (path, folder, size, mtime_ns, hash, job_id, state, updated)
            VALUES ('/old/watched/one.jpg', '/old/watched', 1, 1, '{h}', 'j1', 'done', 1),
                   ('/old/watched/copy.jpg', '/old/watched', 1, 1, '{h}', 'j1', 'done', 2),
                   ('/old/watched/queued.jpg', '/old/watched', 1, 1, '{h}', 'j1', 'queued', 3);
            PRAGMA user_version=3;""")
    store = Store(db)
    try:
        assert paths(store.search(tags=["exposure|underexposed"])) == ["/old/watched/copy.jpg",
                                                                       "/old/watched/one.jpg"]
        assert store.get_job("j1").state == "done" and store.count_critiques() == 1
    finally:
        store.close()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7


def ase_client(*args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "ase_daemon.client_cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_search_op_and_cli_over_a_real_daemon(tmp_path, tiny_model_dir):
    root = tmp_path / "d"
    d = DaemonProcess(root, tiny_model_dir, "search")
    store = Store(d.db)  # a library the daemon finds when it starts
    fill(store)
    store.close()
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    rng = np.random.default_rng(0)
    photo = shoot / "new.jpg"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo, quality=90)
    copy = tmp_path / "copies" / "same.jpg"
    copy.parent.mkdir()
    shutil.copy(photo, copy)
    d.start()
    env = daemon_env(root)
    try:
        with d.client(timeout=30) as c:
            result, _ = c.critique(path=photo)  # a photo critiqued by path joins the library ...
            assert c.critique(path=copy)[0]["cached"]  # ... and so does a copy answered from the store
            r = c.search(folder=tmp_path)
            assert sorted(p["path"] for p in r["photos"]) == [str(copy), str(photo)]
            assert {p["score"] for p in r["photos"]} == {result["score"]} and r["truncated"] is False
            r = c.search(tags=["exposure|underexposed"], max_score=4.0, details=True)
            assert [p["path"] for p in r["photos"]] == ["/photos/a/dark.jpg", "/photos/ab/dark2.jpg"]
            assert r["photos"][0]["text"] == "Too dark, murky." and "aesthetics|focus|sharp" in r["photos"][0]["tags"]
            assert c.search(limit=1)["truncated"] is True
            for bad in ({"tags": [""]}, {"tags": ["x"] * 33}, {"tags": "exposure"}, {"min_score": 5, "max_score": 4},
                        {"folder": "relative/dir"}, {"folder": "/a\x00b"}, {"limit": 0}, {"limit": True},
                        {"sort": "score"}):
                with pytest.raises(DaemonError) as e:
                    c.request(P.OP_SEARCH, bad)
                assert e.value.code == P.BAD_REQUEST, bad
        with d.client(d.tcp, timeout=10) as guest:  # loopback tcp without trust_loopback: a guest sees no paths
            with pytest.raises(DaemonError) as e:
                guest.search(tags=["exposure"])
            assert e.value.code == P.FORBIDDEN

        r = ase_client("--endpoint", d.ipc, "search", "--tag", "exposure|underexposed", env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["/photos/a/sub/dim.jpg", "/photos/a/dark.jpg", "/photos/ab/dark2.jpg"]
        r = ase_client("--endpoint", d.ipc, "search", "--tag", "underexposed", "--folder", "/photos/a",
                       "--min-score", "3", "--json", env=env)
        records = [json.loads(line) for line in r.stdout.splitlines()]
        assert [x["path"] for x in records] == ["/photos/a/sub/dim.jpg", "/photos/a/dark.jpg"]
        assert records[1]["score"] == 3.0 and records[1]["text"] == "Too dark, murky."
        r = ase_client("--endpoint", d.ipc, "search", "--text", "golden", "--limit", "5", env=env)
        assert r.stdout == "/elsewhere/golden.jpg\n"
        r = ase_client("--endpoint", d.ipc, "search", "--folder", "/photos/a/../ab", "--limit", "1", env=env)
        assert r.returncode == 0 and r.stdout == "/photos/ab/bright.jpg\n" and "--limit" in r.stderr
        r = ase_client("--endpoint", d.ipc, "search", "--min-score", "9", "--max-score", "1", env=env)
        assert r.returncode == 1 and "bad_request" in r.stderr
        r = ase_client("--endpoint", d.tcp, "search", "--tag", "exposure", env=env)
        assert r.returncode == 2 and "local" in r.stderr
    finally:
        d.stop()
