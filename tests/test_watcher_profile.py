"""A watched folder that names a personal profile (issue 20): its jobs carry the profile, so their results get
`personal_score`; the sidecar gets asecritic:PersonalScore and :Profile, and its stars come from the critic's
score unless the folder says `personal_rating`. The profile is stored with the folder (store schema 7) and shown by
`watch list`; a store from before schema 7 opens and keeps its folders.

A REAL daemon process on the tiny model with REAL watchdog observers, as tests/test_watcher.py; the profile is the
dark lover's of tests/test_personal_cull.py, learnt with `ase-mllm learn` into the daemon's data folder.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import pytest
from ase_daemon import protocol as P
from ase_daemon.client import DaemonError
from ase_daemon.xmp import rating_from_score, read_sidecar
from conftest import DaemonProcess
from PIL import ImageEnhance
from test_personal_cull import learn_dark
from test_watcher import WATCH_CONFIG, add, db_rows, files, wait_folder


@pytest.fixture(scope="module")
def wd(tmp_path_factory, tiny_model_dir, photos):
    root = tmp_path_factory.mktemp("watch-profile")
    learn_dark(root / "data", tiny_model_dir, photos, root / "rated")
    d = DaemonProcess(root, tiny_model_dir, "wp", ["--batch-window-ms", "20"], config=WATCH_CONFIG)
    d.start()
    yield d
    d.stop()


def three_exposures(photos, folder) -> list:
    """One real scene, dark / as shot / bright: the dark lover's profile scores them far apart."""
    folder.mkdir(parents=True, exist_ok=True)
    scene = photos["astronaut"].copy()
    scene.thumbnail((160, 160))
    out = []
    for name, gain in (("dark.jpg", 0.45), ("plain.jpg", 1.0), ("bright.jpg", 1.35)):
        ImageEnhance.Brightness(scene).enhance(gain).save(folder / name, quality=90)
        out.append(folder / name)
    return out


def test_a_folder_with_a_profile(wd, photos, tmp_path):
    personal, generic, none = tmp_path / "personal", tmp_path / "generic", tmp_path / "none"
    for folder in (personal, generic, none):
        folder.mkdir()
    with wd.client(timeout=60) as c:
        r = add(c, personal, profile="dark", write_rating=True, personal_rating=True)
        assert r["profile"] == "dark" and r["personal_rating"] is True and r["added"]
        assert add(c, generic, profile="dark", write_rating=True)["profile"] == "dark"
        assert add(c, none, write_rating=True)["profile"] is None
        listed = {f["path"]: f for f in c.request(P.OP_WATCH_LIST).result["folders"]}
        assert listed[str(personal)]["profile"] == "dark" and listed[str(personal)]["personal_rating"] is True
        assert listed[str(none)]["profile"] is None
        status = {f["path"]: f for f in c.status()["watch"]["folders"]}
        assert status[str(generic)]["profile"] == "dark"
        # the same photos land in all three (the same content: the folders with one profile share a job, the
        # folder without one gets its own)
        for folder in (personal, generic, none):
            three_exposures(photos, folder)
        for folder in (personal, generic, none):
            wait_folder(c, folder, done=3)
        scores = {}
        for f in files(c, personal) + files(c, generic):
            info, _ = c.job(f["job"])
            assert info["profile"] == "dark", info
            result = info["result"]
            assert 0 <= result["personal_score"] <= 10 and result["profile"] == "dark"
            side = read_sidecar(f["path"])
            assert side["personal_score"] == pytest.approx(result["personal_score"], abs=0.006)
            assert side["profile"] == "dark" and side["score"] == pytest.approx(result["score"], abs=0.006)
            scores[f["path"]] = (result["score"], result["personal_score"])
        for f in files(c, none):
            info, _ = c.job(f["job"])
            assert "profile" not in info and "personal_score" not in info["result"]
            assert "personal_score" not in read_sidecar(f["path"])
    # the dark lover's order, and the stars: from the personal score only where the folder says so
    s = {p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1]: v for p, v in scores.items()}
    assert s["personal/dark.jpg"][1] > s["personal/plain.jpg"][1] > s["personal/bright.jpg"][1]
    stars = {}
    for name in ("dark.jpg", "plain.jpg", "bright.jpg"):
        score, mine = s[f"personal/{name}"]
        stars[name] = exif_rating(personal / name)
        assert stars[name] == rating_from_score(round(mine, 2))
        assert exif_rating(generic / name) == rating_from_score(round(s[f"generic/{name}"][0], 2))
        assert exif_rating(none / name) == exif_rating(generic / name)
    assert stars != {name: exif_rating(generic / name) for name in stars}  # the two folders rate differently


def exif_rating(photo) -> int:
    """xmp:Rating as exiftool reads it from the photo's sidecar."""
    out = subprocess.run(["exiftool", "-s3", "-XMP-xmp:Rating", f"{photo}.xmp"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return int(out.strip())


def test_refusals(wd, tmp_path):
    with wd.client(timeout=30) as c:
        for args, code, said in (({"profile": "nobody"}, P.NOT_FOUND, "no profile 'nobody'"),
                                 ({"profile": "other"}, P.BAD_REQUEST, "learn it again"),
                                 ({"profile": "../x"}, P.BAD_REQUEST, "bad profile name"),
                                 ({"personal_rating": True}, P.BAD_REQUEST, "needs a profile"),
                                 ({"profile": 3}, P.BAD_REQUEST, "must be str")):
            with pytest.raises(DaemonError) as e:
                c.request(P.OP_WATCH_ADD, {"path": str(tmp_path), **args})
            assert e.value.code == code and said in e.value.message, e.value.message
        assert str(tmp_path) not in {f["path"] for f in c.request(P.OP_WATCH_LIST).result["folders"]}


def test_ase_client_watch_add_profile_is_stored_and_survives_a_restart(wd, tmp_path):
    folder = tmp_path / "kept"
    folder.mkdir()

    def client(*args):
        r = subprocess.run([sys.executable, "-m", "ase_daemon.client_cli", "--endpoint", wd.ipc, "watch", *args],
                           env=wd.env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = client("add", str(folder), "--profile", "dark", "--rating", "--personal-rating")
    assert "profile dark (stars from it)" in out
    assert "profile dark (stars from it)" in client("list")
    assert db_rows(wd.db, "SELECT profile FROM watch_folders WHERE path=?", (str(folder),)) == [("dark",)]
    # only the profile changes: the folder keeps watching; '' takes it away
    out = client("add", str(folder), "--profile", "", "--no-personal-rating")
    assert "options changed" in out and "profile dark" not in out
    assert db_rows(wd.db, "SELECT profile FROM watch_folders WHERE path=?", (str(folder),)) == [(None,)]
    client("add", str(folder), "--profile", "dark")
    wd.stop()
    wd.start()
    with wd.client(timeout=30) as c:
        listed = {f["path"]: f for f in c.request(P.OP_WATCH_LIST).result["folders"]}
    assert listed[str(folder)]["profile"] == "dark" and listed[str(folder)]["state"] == "watching"


def test_a_schema_6_store_gains_the_folders_profile(tmp_path):
    """A store written before schema 7 (watch_folders without `profile`) opens, keeps its folders (no profile),
    and remembers a profile from then on."""
    from ase_daemon.store import SCHEMA_VERSION, Store

    db = tmp_path / "old.db"
    Store(db).close()  # today's schema, then taken back to what schema 6 had
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE watch_folders")
        con.execute("CREATE TABLE watch_folders (path TEXT PRIMARY KEY, options TEXT NOT NULL, added REAL NOT NULL)")
        con.execute("INSERT INTO watch_folders VALUES ('/photos/old', '{\"recursive\": true}', 1)")
        con.execute("PRAGMA user_version=6")
    store = Store(db)
    try:
        assert store.watch_folders() == {"/photos/old": {"recursive": True, "profile": None}}
        store.save_watch_folder("/photos/old", {"recursive": True}, "dark")
        assert store.watch_folders()["/photos/old"]["profile"] == "dark"
    finally:
        store.close()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7


def test_config_folders_take_a_profile(tmp_path):
    from ase_daemon.config import ConfigError, parse_watch

    ws = parse_watch({"folders": [{"path": str(tmp_path), "profile": "dark", "write_rating": True,
                                   "personal_rating": True}]})
    [f] = ws.folders
    assert f["profile"] == "dark" and f["personal_rating"] and f["write_rating"]
    with pytest.raises(ConfigError, match="profile"):
        parse_watch({"folders": [{"path": str(tmp_path), "profile": "../x"}]})
    assert shutil.which("exiftool"), "exiftool reads the sidecars back"
