"""kill -9 during a burst of submitted jobs and, at the same moments, during a watched-folder import; then restart.

Each kill lands somewhere between "just bound, model loading" and "model running, sidecars being written". The
client retries every submit that got no answer with the same request id, as the Lazy Pirate client does; at the
end every acknowledged submit is one job, done once; every photo has one watched row, one job and one sidecar; and
SQLite's integrity_check is clean after every kill. bench/hostile.py runs more rounds through `kill_rounds`.
"""

from __future__ import annotations

import io
import random
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ase_daemon import protocol as P
from ase_daemon.client import Client, DaemonError, DaemonUnavailable
from conftest import DaemonProcess
from PIL import Image

__all__ = ["kill_rounds", "KILL_CONFIG"]

KILL_CONFIG = """
[watch]
settle_s = 0.2
poll_interval_s = 0.3
rescan_s = 30
"""


FOREIGN = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:foo="http://example.com/foo/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<foo:Note>{note}</foo:Note><dc:subject><rdf:Bag><rdf:li>{tag}</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>
"""


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 48 + seed % 7 * 4, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as con:
        return con.execute("PRAGMA integrity_check").fetchone()[0]


def _wait_bound(d: DaemonProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with Client(d.ipc, timeout=0.5, retries=0) as c:
        while True:
            assert d.proc.poll() is None, d.log.read_text()[-2000:]
            try:
                c.ping()
                return
            except DaemonUnavailable:
                assert time.monotonic() < deadline, "the daemon did not bind"
                time.sleep(0.05)


def _wait_ready(d: DaemonProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with Client(d.ipc, timeout=2, retries=0) as c:
        while c.ping()["state"] != P.READY:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.05)


def kill_rounds(d: DaemonProcess, folder: Path, rounds: int, seed: int = 0, per_round: int = 24,
                drain_timeout: float = 180) -> dict:
    """`rounds` kill -9 of daemon `d` (which watches `folder`) during submits and arrivals; then a clean run to the
    end. Every other arriving photo already has a sidecar with another program's metadata (kept through it all).
    Returns the figures and the evidence: kills, integrity results, submits acked/lost/duplicated, photos,
    sidecars with our critique, foreign values lost, watched rows/jobs duplicated, finished jobs run again."""
    from ase_daemon.xmp import SidecarError, read_sidecar

    r = random.Random(seed)
    foreign: dict[Path, tuple[str, str]] = {}  # sidecar -> (note, tag) another program wrote
    acked: dict[str, str] = {}  # request id -> job id from the first acknowledgement
    changed_ack = 0  # a retried request id answered with another job: a duplicate
    unanswered = 0  # submits cut off by a kill (sent again, same id, after the restart)
    sent: dict[str, bytes] = {}
    photos: list[Path] = []
    checks: list[str] = []
    done_before: dict[str, int] = {}  # job id -> attempts, for jobs already done at some kill
    n = 0

    def submit_all(c: Client, rids) -> bool:
        nonlocal changed_ack, unanswered
        for rid in rids:
            try:
                job = c.request("submit", {"name": f"{rid}.jpg"}, frames=[sent[rid]], request_id=rid).result["job"]
            except (DaemonUnavailable, DaemonError):
                unanswered += 1
                return False
            if acked.setdefault(rid, job) != job:
                changed_ack += 1
        return True

    # early: model loading, submits being acknowledged; mid: the kill lands while a submit is on its way;
    # late: the model is ready, batches running, sidecars being written
    modes = (["mid", "early", "late"] * rounds)[:rounds]
    r.shuffle(modes)
    for k, mode in enumerate(modes):
        d.start(wait_ready=False)
        _wait_bound(d)
        stop, go = threading.Event(), threading.Event()
        resend = [rid for rid in sent if rid not in acked]
        pace = random.Random(r.random())
        kill_at = pace.randint(1, 8) if mode == "mid" else -1

        def burst(resend=resend, pace=pace, kill_at=kill_at, go=go):
            """Resend what the last kill cut off, then keep submitting until this daemon dies."""
            nonlocal n
            with Client(d.ipc, timeout=1.0, retries=0) as c:
                if not submit_all(c, resend):
                    return
                for j in range(per_round):
                    n += 1
                    rid = f"kill-{seed}-{n}"
                    sent[rid] = photo(10_000 * seed + n)
                    if j == kill_at:
                        go.set()
                    if not submit_all(c, [rid]) or stop.wait(pace.uniform(0.02, 0.25)):
                        return

        def arrive(k=k, pace=random.Random(r.random())):
            """Photos keep arriving in the watched folder until this daemon dies."""
            for i in range(per_round // 2):
                p = folder / f"IMG_{k:02d}_{i}.jpg"
                if i % 2 == 0:  # another program's sidecar, there before the photo (a re-import)
                    note, tag = f"keep-me-{seed}-{k}-{i}", f"family|{seed}-{k}-{i}"
                    side = p.with_name(p.name + ".xmp")
                    side.write_text(FOREIGN.format(note=note, tag=tag))
                    foreign[side] = (note, tag)
                p.write_bytes(photo(20_000 * seed + 100 * k + i + 5))
                photos.append(p)
                if stop.wait(pace.uniform(0.1, 0.6)):
                    return

        threads = [threading.Thread(target=burst), threading.Thread(target=arrive)]
        for t in threads:
            t.start()
        if mode == "mid":
            go.wait(30)
        elif mode == "early":
            time.sleep(r.uniform(0.05, 1.0))
        else:
            _wait_ready(d)
            time.sleep(r.uniform(0.1, 1.5))
        d.proc.kill()
        d.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(30)
        checks.append(integrity(d.db))
        with sqlite3.connect(d.db) as con:
            for job_id, attempts in con.execute("SELECT id, attempts FROM jobs WHERE state='done'"):
                done_before.setdefault(job_id, attempts)
    # the last run: everything not acknowledged is sent again (same ids), then all work drains
    d.start()
    with Client(d.ipc, timeout=10) as c:
        submit_all(c, [rid for rid in sent if rid not in acked])
        deadline = time.monotonic() + drain_timeout
        while True:
            jobs = c.status()["jobs"]
            watch = c.status()["watch"]
            if jobs[P.QUEUED] == jobs[P.RUNNING] == 0 and watch["done"] + watch["failed"] >= len(photos):
                break
            assert time.monotonic() < deadline, (jobs, watch)
            time.sleep(0.2)
    d.stop()
    checks.append(integrity(d.db))
    with sqlite3.connect(d.db) as con:
        rows = con.execute("SELECT request_id, id, state FROM jobs WHERE origin='client'").fetchall()
        watched = con.execute("SELECT path, state, job_id FROM watched_files").fetchall()
        watch_jobs = con.execute("SELECT id, path, state FROM jobs WHERE origin LIKE 'watch:%'").fetchall()
        attempts = dict(con.execute("SELECT id, attempts FROM jobs"))
    by_rid: dict[str, list] = {}
    for rid, job_id, state in rows:
        by_rid.setdefault(rid, []).append((job_id, state))
    ours = 0
    for p in photos:
        try:
            ours += bool(read_sidecar(p).get("text") is not None)
        except SidecarError:
            pass
    foreign_lost = [side for side, values in foreign.items()
                    if not side.is_file() or not all(v in side.read_text(errors="replace") for v in values)]
    return {
        "kills": rounds, "integrity": checks,
        "submits": len(sent), "acked": len(acked), "cut_off_and_resent": unanswered,
        "jobs_lost": sum(1 for rid in sent if rid not in by_rid) + sum(
            1 for v in by_rid.values() for _, state in v if state != P.DONE),
        "jobs_duplicated": changed_ack + sum(len(v) - 1 for v in by_rid.values()) + sum(
            1 for rid, job in acked.items() if [j for j, _ in by_rid.get(rid, [])] != [job]),
        "phantom_jobs": sum(1 for rid in by_rid if rid not in sent),
        "photos": len(photos), "sidecars": ours, "foreign_sidecars": len(foreign),
        "foreign_lost": len(foreign_lost), "foreign_bytes_lost": sum(len("".join(foreign[s])) for s in foreign_lost),
        "temp_files_left": len(list(folder.glob(".*.tmp"))),
        "watched_not_done": sum(1 for _, state, _ in watched if state != P.DONE) + len(photos) - len(watched),
        "watch_jobs": len(watch_jobs), "watch_jobs_per_photo": len({p for _, p, _ in watch_jobs}),
        "rerun_after_done": sum(1 for job_id, a in done_before.items() if attempts.get(job_id) != a),
    }


@pytest.mark.slow
def test_kill9_during_submits_and_watched_import(tmp_path, tiny_model_dir):
    folder = tmp_path / "import"
    folder.mkdir()
    d = DaemonProcess(tmp_path / "d", tiny_model_dir, "kill", ["--watch", str(folder), "--max-batch", "4",
                                                               "--batch-window-ms", "5", "--log-level", "warning"],
                      config=KILL_CONFIG)
    try:
        out = kill_rounds(d, folder, rounds=10, seed=1)
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
    assert out["kills"] >= 10 and out["integrity"] == ["ok"] * (out["kills"] + 1), out
    assert out["jobs_lost"] == 0 and out["jobs_duplicated"] == 0 and out["phantom_jobs"] == 0, out
    assert out["rerun_after_done"] == 0, out
    assert out["photos"] == out["sidecars"] and out["watched_not_done"] == 0, out
    assert out["foreign_sidecars"] >= 10 and out["foreign_lost"] == 0, out
    assert out["watch_jobs"] == out["watch_jobs_per_photo"] == out["photos"], out
