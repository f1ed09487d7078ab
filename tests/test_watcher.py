"""The folder watcher end to end: a REAL daemon process on the tiny model, REAL watchdog observers (inotify and
polling), real files written the ways cameras, copies, downloads and sync tools write them. No mocks.

One daemon serves most tests (each watches its own folder, added at run time); the kill -9 test has its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from ase_daemon import protocol as P
from ase_daemon.client import Client, DaemonError
from ase_daemon.xmp import read_sidecar, sidecar_path
from conftest import DaemonProcess, daemon_env, free_port
from PIL import Image

IS_ROOT = os.geteuid() == 0
WATCH_CONFIG = """
[watch]
settle_s = 0.3
poll_interval_s = 0.3
open_wait_s = 60
rescan_s = 30
write_description = true
write_rating = true
"""


# ---- helpers -------------------------------------------------------------------------------------------------
def variants(photos, n: int, start: int = 0) -> list[bytes]:
    """n small, distinct JPEGs from the real sample photos: different crops, sizes and tints (every hash differs)."""
    base = list(photos.values())
    out = []
    for i in range(start, start + n):
        im = base[i % len(base)]
        w, h = im.size
        side = min(w, h) // 2 + (i * 7) % (min(w, h) // 3)
        x, y = (i * 13) % (w - side), (i * 29) % (h - side)
        crop = im.crop((x, y, x + side, y + side)).resize((48 + i % 5 * 8, 40 + i % 3 * 8))
        tint = Image.new("RGB", crop.size, ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
        buf = io.BytesIO()
        Image.blend(crop, tint, 0.15 + (i % 4) * 0.05).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    assert len({hashlib.sha256(b).digest() for b in out}) == n
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def wait_for(cond, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}: last {value!r}"
        time.sleep(every)


def folder_status(c: Client, path: Path) -> dict:
    for f in c.status()["watch"]["folders"]:
        if f["path"] == str(path):
            return f
    raise AssertionError(f"{path} is not watched")


def wait_folder(c: Client, path: Path, done: int, failed: int = 0, timeout: float = 60.0) -> dict:
    def ok():
        f = folder_status(c, path)
        return f if (f["done"], f["failed"], f["pending"]) == (done, failed, 0) else False

    try:
        return wait_for(ok, timeout, f"{path}: {done} done, {failed} failed")
    except AssertionError:
        raise AssertionError(f"{folder_status(c, path)}; files not done: "
                             f"{[f for f in files(c, path) if f['state'] != 'done'][:5]}") from None


def files(c: Client, path: Path, state: str | None = None) -> list[dict]:
    args = {"path": str(path)}
    if state:
        args["state"] = state
    return c.request("watch_files", args).result["files"]


def db_rows(db: Path, sql: str, params=()) -> list:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
        return con.execute(sql, params).fetchall()


def write_slowly(path: Path, data: bytes, pause: float) -> None:
    """A copy that stalls half way (a slow card reader, a network copy): open, half, pause, the rest, close."""
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(pause)
        f.write(data[len(data) // 2:])


def foreign_sidecar(rating: int = 2) -> str:
    """What another application left: its own namespace, the user's tags, a rating and a description."""
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:acme="http://example.com/acme/1.0/"
    xmp:Rating="{rating}"
    darktable:xmp_version="5"
    darktable:history_end="3"
    acme:Project="Holiday 2024">
   <dc:subject><rdf:Bag><rdf:li>family</rdf:li><rdf:li>Paris</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>places|Paris</rdf:li></rdf:Bag></lr:hierarchicalSubject>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">Grandma's birthday</rdf:li></rdf:Alt></dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def exiftool(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", "-a", "-struct", str(path)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return json.loads(out)[0]


def as_list(v) -> list[str]:
    return [] if v is None else [str(x) for x in (v if isinstance(v, list) else [v])]


# ---- the shared daemon -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wd(tmp_path_factory, tiny_model_dir, curve_keys):
    """A daemon with a CURVE endpoint too (watch ops must refuse it); folders are added by each test."""
    curve_ep = f"tcp://127.0.0.1:{free_port()}"
    config = WATCH_CONFIG + f"""
[curve]
server_secret_key = "{curve_keys / 'server.key_secret'}"
authorized_keys = "{curve_keys / 'authorized_clients'}"
"""
    d = DaemonProcess(tmp_path_factory.mktemp("watch-daemon"), tiny_model_dir, "w",
                      ["--curve-endpoint", curve_ep, "--max-batch", "8", "--batch-window-ms", "20"], config=config)
    d.curve, d.curve_keys = curve_ep, curve_keys
    d.start()
    with d.client() as c:
        d.model = c.ping()["model"]
    yield d
    assert d.stop(signal.SIGTERM) == 0


def add(c: Client, folder: Path, **options) -> dict:
    return c.request("watch_add", {"path": str(folder), **options}).result


def critiques(c: Client) -> int:
    return c.status()["counts"]["critiques"]


# ---- unit level: what counts as a photo, configuration ------------------------------------------------------------
def test_names_and_config(tmp_path):
    from ase_daemon.cli import main as daemon_main
    from ase_daemon.config import ConfigError, load_config, parse_watch
    from ase_daemon.watcher import is_photo

    for name in ("IMG_0001.JPG", "a.jpeg", "b.png", "c.tif", "d.TIFF", "e.CR3", "f.nef", "g.dng", "h.ARW"):
        assert is_photo(name), name
    for name in ("IMG.jpg.xmp", "IMG.xmp", ".hidden.jpg", "IMG.jpg.part", "IMG.jpg.crdownload", "IMG.jpg~",
                 ".#IMG.jpg", "IMG.tmp", "IMG.jpg.tmp", "IMG.jpg.!sync", "#IMG.jpg#", "IMG.jpg.saliency.png",
                 "notes.txt", "movie.mp4", "~$doc.jpg", "IMG.jpg.filepart"):
        assert not is_photo(name), name
    ws = parse_watch({"settle_s": 0.5, "write_rating": True,
                      "folders": ["~/a", {"path": "/b", "recursive": True, "polling": True}]},
                     cli_dirs=["/c", "/b"], recursive=None, polling=None)
    by = {f["path"]: f for f in ws.folders}
    assert ws.settle_s == 0.5 and by[os.path.expanduser("~/a")]["write_rating"] is True
    assert by["/b"]["recursive"] and by["/b"]["polling"] and by["/b"]["source"] == "cli"  # file options kept
    assert by["/c"]["recursive"] is False and by["/c"]["write_tags"] is True
    assert parse_watch({}, cli_dirs=["/d"], recursive=True, polling=True).folders[0]["polling"] is True
    for bad, match in (({"setle_s": 1}, "setle_s"), ({"folders": [{"path": "/x", "recursiv": True}]}, "recursiv"),
                       ({"settle_s": -1}, "settle_s"), ({"folders": [{"recursive": True}]}, "path"),
                       ({"write_rating": "yes"}, "write_rating"), ({"folders": "/x"}, "folders")):
        with pytest.raises(ConfigError, match=match):
            parse_watch(bad)
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[watch]\nrescan_s = 60\n[[watch.folders]]\npath = "/p"\nwrite_description = true\n')
    cfg = load_config(cfg_file, watch_dirs=["/q"], watch_recursive=True)
    assert cfg.watch_settings.rescan_s == 60
    assert [(f["path"], f["write_description"], f["recursive"]) for f in cfg.watch_settings.folders] == [
        ("/p", True, False), ("/q", False, True)]
    # a --watch folder that does not exist is a usage error, before anything starts
    assert daemon_main(["--watch", str(tmp_path / "nope"), "--db", str(tmp_path / "x.db")]) == 2


class _NoModel:
    """The worker's interface as the watcher uses it, without a model: jobs stay queued in the store."""

    def on_job_done(self, callback):
        pass

    def notify_jobs(self):
        pass


def test_writer_that_never_closes(tmp_path, photos):
    """inotify: a file written and then held open (no closed event) is waited for open_wait_s, then judged by
    stability + a full trial decode; rescans meanwhile must not restart that clock."""
    from ase_daemon.config import WatchSettings
    from ase_daemon.store import Store
    from ase_daemon.watcher import Watcher

    import ase_model.imageio  # noqa: F401  (the daemon has it loaded; its first import takes seconds)

    folder = tmp_path / "open"
    folder.mkdir()
    ws = WatchSettings(settle_s=0.2, open_wait_s=1.5, rescan_s=0.3)
    ws.folders = [{"path": str(folder), **ws.defaults, "source": "config"}]
    store = Store(tmp_path / "s.db")
    w = Watcher(ws, store, _NoModel()).start()
    try:
        wait_for(lambda: w.list() and w.list()[0]["observer"] == "native", 10, "the observer")
        data = variants(photos, 1, start=800)[0]
        with open(folder / "held.jpg", "wb") as f:
            f.write(data)
            f.flush()
            t0 = time.monotonic()
            row = wait_for(lambda: store.watched_file(str(folder / "held.jpg")), 10, "the held-open file queued")
            waited = time.monotonic() - t0
            assert 1.4 <= waited < 4, waited  # open_wait_s, not settle_s, and not reset by the rescans
        assert row.state == "queued" and row.hash == sha(folder / "held.jpg")
        assert w.stats["scans"] >= 3 and w.stats["incomplete"] == 0
    finally:
        w.stop()
        store.close()


def test_ops_refusals_and_curve(wd, tmp_path):
    with wd.client() as c:
        for args, code in (({"path": str(tmp_path / "missing")}, P.NOT_FOUND),
                           ({"path": "relative/folder"}, P.BAD_REQUEST),
                           ({"path": str(Path(__file__))}, P.BAD_REQUEST),
                           ({"path": str(tmp_path), "recursive": "yes"}, P.BAD_REQUEST)):
            with pytest.raises(DaemonError) as e:
                c.request("watch_add", args)
            assert e.value.code == code, (args, e.value)
        with pytest.raises(DaemonError) as e:
            c.request("watch_add", {"path": str(tmp_path / "missing")})
        assert "no such folder" in e.value.message
        with pytest.raises(DaemonError) as e:
            c.request("watch_remove", {"path": str(tmp_path)})
        assert e.value.code == P.NOT_FOUND
    keys = wd.curve_keys
    with Client(wd.curve, timeout=10, server_key=keys / "server.key", client_keys=keys / "client.key_secret") as c:
        assert c.ping()["state"] == "ready"
        for op, args in (("watch_add", {"path": str(tmp_path)}), ("watch_remove", {"path": str(tmp_path)}),
                         ("watch_list", {}), ("watch_retry", {}), ("watch_files", {})):
            with pytest.raises(DaemonError) as e:
                c.request(op, args)
            assert e.value.code == P.FORBIDDEN, op


# ---- the burst -------------------------------------------------------------------------------------------------
def test_burst_of_300(wd, photos, tmp_path):
    """300 photos at once, written the ways photos arrive: 300 sidecars, 300 files done, one model run per content."""
    folder = tmp_path / "burst"
    folder.mkdir()
    data = variants(photos, 295)
    copies = [0, 1, 2, 50, 100]  # five files whose content another file has: the model sees it once
    with wd.client(timeout=30) as c:
        assert add(c, folder)["added"] is True
        runs_before = critiques(c)
    names = [f"IMG_{i:04d}.jpg" for i in range(295)]
    slow = set(range(0, 295, 15))  # 20 files stall half way for longer than settle_s
    renamed = set(range(7, 295, 12)) - slow  # ~24 written under a temp name, then renamed into place
    moved_in = set(range(4, 295, 30)) - slow - renamed  # written elsewhere, then moved in (no closed event here)
    staging = tmp_path / "staging"
    staging.mkdir()
    temp_styles = [lambda n: f".{n}.tmp", lambda n: f"{n}.part", lambda n: f"{Path(n).stem}.tmp",
                   lambda n: f"{n}.crdownload"]

    def writer(indices):
        for i in indices:
            target = folder / names[i]
            if i in slow:
                write_slowly(target, data[i], 0.8)
            elif i in renamed:
                tmp = folder / temp_styles[i % 4](names[i])
                tmp.write_bytes(data[i])
                os.rename(tmp, target)
            elif i in moved_in:
                (staging / names[i]).write_bytes(data[i])
                os.rename(staging / names[i], target)
            else:
                target.write_bytes(data[i])

    slow_idx, rest = sorted(slow), [i for i in range(295) if i not in slow]
    threads = [threading.Thread(target=writer, args=(part,)) for part in (slow_idx[:10], slow_idx[10:], rest[::2],
                                                                         rest[1::2])]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, i in enumerate(copies):
        shutil.copy(folder / names[i], folder / f"copy_{k}_{names[i]}")
    # things that must be left alone
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".hidden.jpg").write_bytes(data[3])
    (folder / "IMG_9999.jpg.crdownload").write_bytes(data[4][:500])  # an abandoned download
    (folder / "IMG_9998.jpg~").write_bytes(data[5])
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.jpg").write_bytes(data[6])  # not recursive
    photos_on_disk = sorted(p for p in folder.glob("*.jpg") if not p.name.startswith("."))
    assert len(photos_on_disk) == 300

    with wd.client(timeout=30) as c:
        wait_folder(c, folder, done=300, timeout=150)
        elapsed = time.monotonic() - t0
        st = c.status()
        runs = st["counts"]["critiques"] - runs_before
        rows = {f["path"]: f for f in files(c, folder)}
        stats = c.request("watch_list").result["stats"]
        p0 = photos_on_disk[0]
        job, _ = c.job(rows[str(p0)]["job"])
    assert job["origin"] == f"watch:{folder}" and job["priority"] == -1 and job["state"] == "done"
    assert job["meta"]["path"] == str(p0) and job["meta"]["size"] == p0.stat().st_size
    assert job["meta"]["mtime"] == pytest.approx(p0.stat().st_mtime)
    # inotify's closed events: no file was even tried before its writer closed it (the stalled copies waited)
    assert stats["incomplete"] == 0 and stats["bad_images"] == 0, stats
    assert runs == 295, f"{runs} model runs for 295 distinct photos (5 copies)"
    assert elapsed < 50, f"{elapsed:.0f} s: a file waited for a closed event that never comes (open_wait_s is 60)"
    assert sorted(rows) == [str(p) for p in photos_on_disk]
    for p in photos_on_disk:
        row = rows[str(p)]
        assert row["state"] == "done" and row["error"] is None, row
        assert row["hash"] == sha(p), f"{p.name} was critiqued before it was complete"
        assert row["sidecar"] == str(sidecar_path(p)) and row["attempts"] == 1, row
        side = read_sidecar(p)
        assert side["model"] == wd.model and 0 <= side["score"] <= 10 and "created" in side, side
    # sidecars: exactly one per photo, none for what was ignored; no temp files left behind
    xmps = sorted(folder.glob("*.xmp"))
    assert [x.name for x in xmps] == sorted(p.name + ".xmp" for p in photos_on_disk)
    assert not list(folder.glob(".*.tmp")) and not (folder / "sub" / "deep.jpg.xmp").exists()
    # copies and originals: same content, same critique, each file its own sidecar
    for k, i in enumerate(copies):
        a, b = read_sidecar(folder / names[i]), read_sidecar(folder / f"copy_{k}_{names[i]}")
        assert (a["text"], a["score"]) == (b["text"], b["score"])
    # the store: one critique per content, every watcher job done, jobs <= files (copies in flight share one)
    stored = {h for (h,) in db_rows(wd.db, "SELECT hash FROM critiques")}
    assert {sha(p) for p in photos_on_disk} <= stored
    jobs = db_rows(wd.db, "SELECT state, COUNT(*) FROM jobs WHERE origin=? GROUP BY state", (f"watch:{folder}",))
    assert dict(jobs).keys() == {"done"} and 295 <= dict(jobs)["done"] <= 300, jobs
    print(f"\n300 files -> 300 sidecars in {elapsed:.1f} s (model runs {runs})")


def test_existing_sidecar_kept_exiftool_and_changed_photo(wd, photos, tmp_path):
    folder = tmp_path / "merge"
    folder.mkdir()
    a, b = variants(photos, 2, start=400)
    photo = folder / "DSC_0001.JPG"
    sidecar_path(photo).write_text(foreign_sidecar(rating=2))
    with wd.client(timeout=30) as c:
        add(c, folder)
        photo.write_bytes(a)
        wait_folder(c, folder, done=1)
        first = files(c, folder)[0]
        runs = critiques(c)
    x = exiftool(sidecar_path(photo))
    # the user's and the other application's data, untouched (write_rating/write_description are on, but the user
    # has a rating and a description: ours do not replace them)
    assert x["XMP-xmp:Rating"] == 2
    assert x["XMP-dc:Description"] == "Grandma's birthday"
    assert {"family", "Paris"} <= set(as_list(x.get("XMP-dc:Subject")))
    assert "places|Paris" in as_list(x.get("XMP-lr:HierarchicalSubject"))
    assert x["XMP-acme:Project"] == "Holiday 2024" and str(x["XMP-darktable:Xmp_version"]) == "5"
    # ours, read by an independent reader
    ours = read_sidecar(photo)
    assert float(x["XMP-asecritic:Score"]) == pytest.approx(ours["score"]) and x["XMP-asecritic:Model"] == ours["model"]
    assert "XMP-asecritic:Critique" in x and "XMP-asecritic:Date" in x

    # the photo changes (edited and saved over): critiqued again, the sidecar follows, the user's data stays
    photo.write_bytes(b)
    with wd.client(timeout=30) as c:
        wait_for(lambda: files(c, folder)[0]["hash"] == sha(photo) and files(c, folder)[0]["state"] == "done", 30,
                 "the changed photo critiqued again")
        assert critiques(c) == runs + 1
        again = files(c, folder)[0]
    assert again["hash"] != first["hash"] and again["job"] != first["job"]
    (stored_score,) = db_rows(wd.db, "SELECT score FROM critiques WHERE hash=?", (again["hash"],))[0]
    side = read_sidecar(photo)
    assert side["score"] == pytest.approx(round(stored_score, 2))
    x = exiftool(sidecar_path(photo))
    assert x["XMP-xmp:Rating"] == 2 and x["XMP-dc:Description"] == "Grandma's birthday"
    assert x["XMP-acme:Project"] == "Holiday 2024" and "places|Paris" in as_list(x.get("XMP-lr:HierarchicalSubject"))
    # touching it (same bytes, new mtime) is not a change worth a critique
    os.utime(photo, None)
    with wd.client(timeout=30) as c:
        time.sleep(1.0)
        assert critiques(c) == runs + 1 and files(c, folder)[0]["job"] == again["job"]
    # an unrated photo without a sidecar gets our rating and description (the folder allows both)
    fresh = folder / "DSC_0002.JPG"
    fresh.write_bytes(variants(photos, 1, start=402)[0])
    with wd.client(timeout=30) as c:
        wait_folder(c, folder, done=2)
    from ase_daemon.xmp import rating_from_score

    x = exiftool(sidecar_path(fresh))
    ours = read_sidecar(fresh)
    assert x["XMP-xmp:Rating"] == rating_from_score(ours["score"])
    assert x["XMP-dc:Description"] == ours["text"]


@contextmanager
def tmpfs(mountpoint: Path):
    """A small tmpfs (as tests/test_xmp_failures.py does): the honest read-only folder when tests run as root."""
    mountpoint.mkdir()
    if not IS_ROOT or shutil.which("mount") is None:
        pytest.skip("cannot mount a tmpfs here (needs root): the simulated-failure test covers sidecar failures")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mountpoint)],
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode(errors='replace').strip()}): the "
                    "simulated-failure test covers sidecar failures")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


def ase_client(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ase_daemon.client_cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_read_only_folder_then_retry(wd, photos, tmp_path):
    with tmpfs(tmp_path / "ro") as folder:
        photo = folder / "card.jpg"
        photo.write_bytes(variants(photos, 1, start=500)[0])
        sidecar_path(photo).write_text(foreign_sidecar(rating=4))
        old = sidecar_path(photo).read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=30)
        with wd.client(timeout=30) as c:
            runs = critiques(c)
            add(c, folder)  # the catch-up scan finds the photo that was already there
            wait_folder(c, folder, done=0, failed=1)
            (row,) = files(c, folder)
            assert row["error"]["code"] == "sidecar" and "Read-only" in row["error"]["message"], row
            assert critiques(c) == runs + 1
        assert sidecar_path(photo).read_bytes() == old and sorted(os.listdir(folder)) == ["card.jpg", "card.jpg.xmp"]
        env = daemon_env(tmp_path)
        r = ase_client("--endpoint", wd.ipc, "status", "--format", "text", env=env)
        assert r.returncode == 0 and f"{0:>8} {0:>7} {1:>7}  {folder}" in r.stdout, r.stdout
        # the folder becomes writable; `ase-client watch retry` finishes it without running the model again
        subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True, timeout=30)
        r = ase_client("--endpoint", wd.ipc, "watch", "retry", folder, env=env)
        assert r.returncode == 0 and "1 failed file(s) queued again" in r.stdout, (r.stdout, r.stderr)
        with wd.client(timeout=30) as c:
            wait_folder(c, folder, done=1)
            assert critiques(c) == runs + 1
            assert c.request("watch_remove", {"path": str(folder)}).result["removed"] is True
        x = exiftool(sidecar_path(photo))
        assert x["XMP-xmp:Rating"] == 4 and x["XMP-acme:Project"] == "Holiday 2024" and "XMP-asecritic:Score" in x


def test_sidecar_failure_simulated_then_retry(wd, photos, tmp_path):
    """Runs everywhere (no mount needed): an existing sidecar no XMP reader can parse is never overwritten; the
    failure is recorded with its reason; once the user has dealt with the file, `watch retry` writes it."""
    folder = tmp_path / "sim"
    folder.mkdir()
    photo = folder / "broken_sidecar.jpg"
    garbage = b"this is not XMP at all\x00\x01"
    sidecar_path(photo).write_bytes(garbage)
    with wd.client(timeout=30) as c:
        runs = critiques(c)
        add(c, folder)
        photo.write_bytes(variants(photos, 1, start=600)[0])
        (folder / "junk.jpg").write_bytes(b"<html>a download that went wrong</html>")  # named .jpg, not an image
        (folder / "half.jpg").write_bytes(variants(photos, 1, start=601)[0][:300])  # an abandoned, truncated copy
        wait_folder(c, folder, done=0, failed=3)
        failed = {Path(r["path"]).name: r for r in files(c, folder, state="failed")}
        assert failed["broken_sidecar.jpg"]["error"]["code"] == "sidecar"
        assert "not valid XMP" in failed["broken_sidecar.jpg"]["error"]["message"]
        assert failed["junk.jpg"]["error"]["code"] == P.BAD_IMAGE and failed["half.jpg"]["error"]["code"] == P.BAD_IMAGE
        assert sidecar_path(photo).read_bytes() == garbage
        assert not sidecar_path(folder / "junk.jpg").exists() and not sidecar_path(folder / "half.jpg").exists()
        sidecar_path(photo).unlink()  # the user moves it away
        assert c.request("watch_retry", {"path": str(folder)}).result["retried"] == 3
        wait_folder(c, folder, done=1, failed=2)
        assert critiques(c) == runs + 1  # the retry came from the store
    assert read_sidecar(photo)["model"] == wd.model


def test_polling_observer(wd, photos, tmp_path):
    """Network shares: no inotify there. The PollingObserver (and the stability rule + trial decode, without closed
    events) must still see renames, stalled copies and plain writes."""
    folder = tmp_path / "share"
    (folder / "2024" / "june").mkdir(parents=True)
    data = variants(photos, 6, start=700)
    env = daemon_env(tmp_path)
    r = ase_client("--endpoint", wd.ipc, "watch", "add", folder, "--polling", "--recursive", "--no-description",
                   env=env)
    assert r.returncode == 0 and f"watching {folder}  (recursive, polling, writes tags+rating)" in r.stdout, r
    with wd.client(timeout=30) as c:
        slow = threading.Thread(target=write_slowly, args=(folder / "slow.jpg", data[0], 1.0))
        slow.start()
        (folder / "plain.jpg").write_bytes(data[1])
        (folder / "x.tmp").write_bytes(data[2])
        os.rename(folder / "x.tmp", folder / "renamed.jpg")
        Image.open(io.BytesIO(data[3])).save(folder / "2024" / "june" / "deep.png")  # in a subfolder, a PNG
        slow.join()
        wait_folder(c, folder, done=4)
        rows = {Path(f["path"]).name: f for f in files(c, folder)}
        listed = next(f for f in c.request("watch_list").result["folders"] if f["path"] == str(folder))
    assert listed["observer"] == "polling" and listed["state"] == "watching"
    for name, path in (("slow.jpg", folder / "slow.jpg"), ("plain.jpg", folder / "plain.jpg"),
                       ("renamed.jpg", folder / "renamed.jpg"), ("deep.png", folder / "2024" / "june" / "deep.png")):
        assert rows[name]["hash"] == sha(path) and rows[name]["state"] == "done"
        assert read_sidecar(path)["model"] == wd.model
    r = ase_client("--endpoint", wd.ipc, "watch", "list", env=env)
    assert r.returncode == 0 and f"       0       4       0  {folder}  (polling, recursive)" in r.stdout, r.stdout
    # removed and added again: its finished photos are not redone
    r = ase_client("--endpoint", wd.ipc, "watch", "remove", folder, env=env)
    assert r.returncode == 0 and f"stopped watching {folder}" in r.stdout, r
    with wd.client(timeout=30) as c:
        runs = critiques(c)
        assert str(folder) not in [f["path"] for f in c.request("watch_list").result["folders"]]
        add(c, folder, polling=True, recursive=True)
        time.sleep(1.0)
        assert folder_status(c, folder)["done"] == 4 and folder_status(c, folder)["pending"] == 0
        assert critiques(c) == runs and files(c, folder)[0]["attempts"] == 1


# ---- kill -9 in the middle of a burst ---------------------------------------------------------------------------
def test_kill9_mid_burst_restart_and_catch_up(tmp_path, tiny_model_dir, photos):
    """A runtime-added folder survives restarts; kill -9 while a burst is half done: after the restart the rest
    is done, files added while the daemon was down are caught up, and nothing is done twice."""
    folder = tmp_path / "import"
    folder.mkdir()
    d = DaemonProcess(tmp_path / "daemon", tiny_model_dir, "k", ["--max-batch", "4", "--batch-window-ms", "5"],
                      config=WATCH_CONFIG)
    d.start()
    data = variants(photos, 130, start=1000)
    try:
        with d.client(timeout=30) as c:
            assert add(c, folder)["added"] is True
            for i in range(120):
                (folder / f"P{i:03d}.jpg").write_bytes(data[i])
            wait_for(lambda: folder_status(c, folder)["done"] >= 15, 60, "15 sidecars", every=0.02)
        d.proc.kill()
        d.proc.wait(10)
        done_at_kill = {r[0]: r[1] for r in db_rows(d.db, "SELECT path, written FROM watched_files WHERE state='done'")}
        stored_at_kill = db_rows(d.db, "SELECT COUNT(*) FROM critiques")[0][0]
        sidecars_at_kill = {p: sidecar_path(p).stat().st_mtime_ns for p in map(Path, done_at_kill)}
        assert 15 <= len(done_at_kill) < 120, len(done_at_kill)
        # photos arrive while the daemon is down
        for i in range(120, 130):
            (folder / f"P{i:03d}.jpg").write_bytes(data[i])

        d.start()  # no --watch: the folder comes back from the store
        with d.client(timeout=30) as c:
            wait_folder(c, folder, done=130, timeout=90)
            second_life_runs = critiques(c)
            listed = c.request("watch_list").result["folders"]
        assert [(f["path"], f["source"]) for f in listed] == [(str(folder), "runtime")]
        # each photo went through the model once: the second daemon ran only what the first had not stored
        assert second_life_runs == 130 - stored_at_kill
        assert db_rows(d.db, "SELECT COUNT(*) FROM critiques")[0][0] == 130
        rows = db_rows(d.db, "SELECT path, hash, state, attempts FROM watched_files")
        assert len(rows) == 130 and all(r[2] == "done" and r[3] == 1 for r in rows), rows[:3]
        per_path = db_rows(d.db, "SELECT path, COUNT(*) FROM jobs WHERE origin=? GROUP BY path", (f"watch:{folder}",))
        assert len(per_path) == 130 and all(n == 1 for _, n in per_path)
        for p in sorted(folder.glob("*.jpg")):
            assert read_sidecar(p)["model"].startswith(f"{tiny_model_dir.name}@")
        # sidecars written before the kill were not written again
        assert {p: sidecar_path(p).stat().st_mtime_ns for p in sidecars_at_kill} == sidecars_at_kill
        # SIGTERM: observers and the watcher stop with the daemon, promptly and cleanly
        t0 = time.monotonic()
        assert d.stop(signal.SIGTERM) == 0
        assert time.monotonic() - t0 < 15
        log = d.log.read_text()
        assert "stopped" in log and "Traceback" not in log, log[-3000:]
    finally:
        d.stop(signal.SIGKILL)
