"""ase-daemon end to end: real daemon processes on the tiny model, real ZeroMQ, no mocks."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq
from ase_daemon import protocol as P
from ase_daemon.client import Client, DaemonError, DaemonUnavailable
from conftest import DaemonProcess, daemon_env, free_port
from conftest import random_jpeg as jpeg
from PIL import Image


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(10):
        p = folder / f"img{i}.jpg"
        p.write_bytes(jpeg(100 + i, size=(64 + 8 * i, 48)))
        paths.append(p)
    return paths


def raw(endpoint: str, frames: list[bytes], timeout: float = 5.0) -> list[bytes]:
    """Send frames on a bare DEALER (no client library) and return the reply frames."""
    ctx = zmq.Context.instance()
    with ctx.socket(zmq.DEALER) as s:
        s.linger = 0
        s.connect(endpoint)
        s.send_multipart(frames)
        assert s.poll(int(timeout * 1000)), "no reply"
        reply = s.recv_multipart()
        return reply[1:] if reply[0] == b"" else reply  # the envelope delimiter echoed back


def header(frames: list[bytes]) -> dict:
    return json.loads(frames[0])


# ---- basic ops -------------------------------------------------------------------------------------------------
def test_ping_and_status(shared_daemon, tiny_model_dir):
    with shared_daemon.client() as c:
        info = c.ping()
        assert info["state"] == "ready" and info["protocol"] == 1 and info["pid"] == shared_daemon.proc.pid
        assert info["model"].startswith(f"{tiny_model_dir.name}@")
        st = c.status()
    assert st["state"] == "ready" and st["device"] == "cpu" and st["uptime_s"] > 0
    assert set(st["queue"]) >= {"interactive", "background"}
    assert st["memory"]["rss_mb"] > 10
    assert set(st["counts"]) >= {"requests", "critiques", "cache_hits", "errors"}
    assert set(st["jobs"]) == {"queued", "running", "done", "failed", "cancelled"}
    assert set(st["batches"]) >= {"count", "mean_size", "max_size"}


def test_critique_by_path_and_by_bytes(shared_daemon, images):
    from ase_model.saliency import from_png

    path = images[9]
    with shared_daemon.client() as c:
        by_path, png = c.critique(path=path, force=True)
    with shared_daemon.client(shared_daemon.tcp) as c:  # loopback tcp is a guest's door: bytes, not paths
        by_bytes, png2 = c.critique(data=path.read_bytes(), name="photo.jpg", force=True)
    for key in ("text", "score", "tags", "attributes", "hash", "model", "saliency"):
        assert by_path[key] == by_bytes[key], key
    assert by_path["cached"] is False and by_path["image"] == str(path)
    assert set(by_path["saliency"]) == {"centroid", "peak", "spread"}
    assert 0 <= by_path["score"] <= 10
    sal = from_png(png)
    assert sal.dtype == np.float32 and 0 <= sal.min() and sal.max() <= 1
    assert png2 == png and by_bytes["image"] == "photo.jpg"
    w, h = Image.open(path).size
    assert abs(sal.shape[1] / sal.shape[0] - w / h) < 0.15  # the map has the photo's aspect
    with shared_daemon.client() as c:
        no_png = c.critique(path=path, saliency=False)[1]
    assert no_png is None


def test_cache_hit(shared_daemon, images):
    with shared_daemon.client() as c:
        t0 = time.perf_counter()
        first, _ = c.critique(path=images[0], force=True)
        t1 = time.perf_counter()
        second, png = c.critique(path=images[0])
        t2 = time.perf_counter()
        hits = c.status()["counts"]["cache_hits"]
    assert first["cached"] is False and second["cached"] is True and png
    assert second["text"] == first["text"] and second["hash"] == first["hash"]
    assert hits >= 1
    assert t2 - t1 < (t1 - t0) / 2, (t1 - t0, t2 - t1)


def test_streaming(shared_daemon, images):
    tokens, finals = [], []
    with shared_daemon.client() as c:

        def on_token(text):
            assert not finals, "a token arrived after the final reply"
            tokens.append(text)

        result, _ = c.critique(path=images[1], stream=on_token, force=True)
        finals.append(result)
    assert tokens, "no token events"
    assert "".join(tokens).strip() == result["text"]


def test_batching_batches_and_matches_single(shared_daemon, images):
    paths = images[2:10]
    with shared_daemon.client() as c:
        singles = [c.critique(path=p, force=True, saliency=False)[0] for p in paths]
        before = c.status()["batches"]
    results = [None] * len(paths)
    barrier = threading.Barrier(len(paths))

    def one(i):
        with shared_daemon.client() as c:
            barrier.wait()
            results[i] = c.critique(path=paths[i], force=True, saliency=False)[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with shared_daemon.client() as c:
        after = c.status()["batches"]
    assert after["max_size"] > 1, after
    ran = after["count"] - before["count"]
    if after.get("streaming"):  # a batch is one engine step: one by one they would take a step per new token
        alone = sum(max(1, r["timings"]["new_tokens"] - 1) for r in results)
        assert ran < alone, f"{len(paths)} concurrent requests took {ran} engine steps, {alone} one by one"
    else:
        assert ran < len(paths), f"{len(paths)} concurrent requests took {ran} batches"
    for single, batched in zip(singles, results):
        assert batched["text"] == single["text"]
        assert batched["score"] == pytest.approx(single["score"], abs=1e-3)


# ---- jobs, load/unload ------------------------------------------------------------------------------------------
def wait_job(c: Client, job_id: str, states=("done", "failed", "cancelled"), timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info, _ = c.job(job_id)
        if info["state"] in states:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


def test_submit_job_and_idempotent_retry(shared_daemon, images, tmp_path):
    with shared_daemon.client() as c:
        r = c.submit(path=images[3], meta={"note": "x"})
        assert r["created"] and r["state"] == "queued"
        info = wait_job(c, r["job"])
        assert info["state"] == "done" and info["origin"] == "client" and info["meta"] == {"note": "x"}
        assert info["result"]["hash"] and info["result"]["text"] is not None
        info2, png = c.job(r["job"], saliency=True)
        assert png and png.startswith(b"\x89PNG")
        # the same request id again (a Lazy Pirate retry) returns the same job
        rid = P.new_id()
        a = c.request("submit", {"path": str(images[4])}, request_id=rid).result
        b = c.request("submit", {"path": str(images[4])}, request_id=rid).result
        assert a["job"] == b["job"] and a["created"] and not b["created"]
        # bytes job
        job = c.submit(data=images[5].read_bytes(), name="five.jpg")["job"]
        assert wait_job(c, job)["result"]["image"] == "five.jpg"
        with pytest.raises(DaemonError) as e:
            c.job("nope")
        assert e.value.code == P.NOT_FOUND
        with pytest.raises(DaemonError) as e:
            c.cancel("nope")
        assert e.value.code == P.NOT_FOUND
        done = c.cancel(r["job"])
        assert done == {"job": r["job"], "state": "done", "cancelled": False}
        with pytest.raises(DaemonError) as e:
            c.submit(path=tmp_path / "missing.jpg")
        assert e.value.code == P.NOT_FOUND


def test_unload_load_cancel_and_cache_while_unloaded(shared_daemon, images):
    with shared_daemon.client() as c:
        cached, _ = c.critique(path=images[0])  # stored by now (or stored here)
        assert c.unload()["state"] == "unloaded"
        assert c.ping()["state"] == "unloaded"
        # a stored critique needs no model
        assert c.critique(path=images[0])[0]["cached"] is True
        # background work waits while explicitly unloaded: cancel it while queued
        job = c.submit(data=jpeg(999))["job"]
        time.sleep(0.2)
        assert c.job(job)[0]["state"] == "queued"
        assert c.cancel(job)["cancelled"] is True
        assert c.job(job)[0]["state"] == "cancelled"
        # an uncached critique says not_ready, with when to retry, and brings the model back
        with pytest.raises(DaemonError) as e:
            c.critique(data=jpeg(998))
        assert e.value.code == P.NOT_READY and e.value.retry_after > 0 and "loading" in e.value.message
        assert c.wait_ready(60)["state"] == "ready"
        assert c.load()["state"] == "ready"
        assert c.critique(data=jpeg(998))[0]["cached"] is False


def test_cancel_request_in_flight_unknown(shared_daemon):
    with shared_daemon.client() as c:
        with pytest.raises(DaemonError) as e:
            c.cancel(request="not-in-flight")
        assert e.value.code == P.NOT_FOUND
        with pytest.raises(DaemonError) as e:
            c.request("cancel", {})
        assert e.value.code == P.BAD_REQUEST


# ---- bad input ----------------------------------------------------------------------------------------------
def test_bad_images_and_paths(shared_daemon, tmp_path):
    with shared_daemon.client() as c:
        for kwargs, code in [
            (dict(data=b"this is not an image"), P.BAD_IMAGE),
            (dict(path=tmp_path / "missing.jpg"), P.NOT_FOUND),
        ]:
            with pytest.raises(DaemonError) as e:
                c.critique(**kwargs)
            assert e.value.code == code, e.value
        with pytest.raises(DaemonError) as e:
            c.request("critique", {"path": "relative.jpg"})
        assert e.value.code == P.BAD_REQUEST and "absolute" in e.value.message
        with pytest.raises(DaemonError) as e:
            c.request("critique", {"path": "/x.jpg"}, frames=[b"bytes"])
        assert e.value.code == P.BAD_REQUEST
        with pytest.raises(DaemonError) as e:
            c.critique(data=jpeg(1), max_new_tokens=10_000)
        assert e.value.code == P.BAD_REQUEST


def test_malformed_messages(shared_daemon):
    ep = shared_daemon.ipc
    ok = json.dumps({"v": 1, "id": "r1", "op": "ping"}).encode()
    cases = [
        ([b"{not json"], P.BAD_JSON, None),
        ([b"\xff\xfe\x00garbage"], P.BAD_JSON, None),
        ([b"[1, 2, 3]"], P.BAD_JSON, None),
        ([b'"a string"'], P.BAD_JSON, None),
        ([b""], P.BAD_JSON, None),  # an empty first frame reads as the REQ delimiter: an empty message
        ([json.dumps({"v": 1, "op": "ping"}).encode()], P.BAD_REQUEST, None),
        ([json.dumps({"v": 1, "id": 7, "op": "ping"}).encode()], P.BAD_REQUEST, None),
        ([json.dumps({"v": 2, "id": "r2", "op": "ping"}).encode()], P.BAD_VERSION, "r2"),
        ([json.dumps({"id": "r3", "op": "ping"}).encode()], P.BAD_VERSION, "r3"),
        ([json.dumps({"v": 1, "id": "r4", "op": "fly"}).encode()], P.UNKNOWN_OP, "r4"),
        ([json.dumps({"v": 1, "id": "r5"}).encode()], P.BAD_REQUEST, "r5"),
        ([json.dumps({"v": 1, "id": "r6", "op": "ping", "args": [1]}).encode()], P.BAD_REQUEST, "r6"),
        ([json.dumps({"v": 1, "id": "r7", "op": "critique", "args": {"stream": "yes"}}).encode()], P.BAD_REQUEST, "r7"),
        ([json.dumps({"v": 1, "id": "r8", "op": "critique", "args": {"max_new_tokens": True}}).encode()],
         P.BAD_REQUEST, "r8"),
        ([json.dumps({"v": 1, "id": "r9", "op": "critique", "args": {"colour": 1}}).encode()], P.BAD_REQUEST, "r9"),
        ([json.dumps({"v": 1, "id": "r10", "op": "job", "args": {}}).encode()], P.BAD_REQUEST, "r10"),
        ([json.dumps({"v": 1, "id": "r11", "op": "critique", "args": {}}).encode(), b"a", b"b"], P.BAD_REQUEST, "r11"),
        ([json.dumps({"v": 1, "id": "r12", "op": "ping"}).encode(), b"extra"], P.BAD_REQUEST, "r12"),
        ([json.dumps({"v": 1, "id": "r13", "op": "critique", "args": {}}).encode(), b"x" * (3 << 19)], P.TOO_LARGE,
         "r13"),  # 1.5 MiB against max_message_mb = 1
        ([b"{" + b" " * (P.MAX_HEADER_BYTES + 1) + b"}"], P.TOO_LARGE, None),
    ]
    for frames, code, rid in cases:
        for envelope in ([], [b""]):  # DEALER style and REQ style
            h = header(raw(ep, envelope + frames))
            assert h["v"] == 1 and h["ok"] is False, (frames[0][:60], h)
            assert h["error"]["code"] == code, (frames[0][:60], h)
            assert h["id"] == rid and h["error"]["message"]
    # a REQ socket works end to end
    ctx = zmq.Context.instance()
    with ctx.socket(zmq.REQ) as s:
        s.linger = 0
        s.connect(ep)
        s.send(ok)
        assert s.poll(5000)
        assert header(s.recv_multipart())["result"]["state"] == "ready"
    with shared_daemon.client() as c:
        assert c.ping()["state"] == "ready"


# ---- security -----------------------------------------------------------------------------------------------
def test_curve_endpoint(shared_daemon):
    keys = shared_daemon.curve_keys
    ep = shared_daemon.curve
    with Client(ep, timeout=10, server_key=keys / "server.key", client_keys=keys / "client.key_secret") as c:
        assert c.secure and c.ping()["state"] == "ready"
        data = jpeg(5)
        result, png = c.critique(data=data, name="remote.jpg")
        assert result["image"] == "remote.jpg" and png
        for call in (lambda: c.critique(path="/etc/hostname"), lambda: c.submit(path="/etc/hostname"), c.shutdown):
            with pytest.raises(DaemonError) as e:
                call()
            assert e.value.code == P.FORBIDDEN
    # a client whose key is not in authorized_clients gets no answer at all
    t0 = time.monotonic()
    with Client(ep, timeout=0.7, retries=0, server_key=keys / "server.key",
                client_keys=keys / "stranger" / "stranger.key_secret") as c, pytest.raises(DaemonUnavailable):
        c.ping()
    assert time.monotonic() - t0 < 3
    # nor does a plain (NULL security) client
    with Client(ep, timeout=0.7, retries=0, server_key=None) as c:
        c._curve = None
        with pytest.raises(DaemonUnavailable):
            c.ping()
    with shared_daemon.client() as c:
        assert c.ping()["state"] == "ready"


def run_daemon_cli(args, env, timeout=30):
    return subprocess.run([sys.executable, "-m", "ase_daemon.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_refusals(shared_daemon, tiny_model_dir, tmp_path):
    env = daemon_env(tmp_path)
    # a second daemon on the same endpoint
    r = run_daemon_cli(["--model", str(tiny_model_dir), "--endpoint", shared_daemon.ipc,
                        "--db", str(tmp_path / "x.db")], env)
    assert r.returncode == 1 and "already serving" in r.stderr and str(shared_daemon.proc.pid) in r.stderr
    r = run_daemon_cli(["--model", str(tiny_model_dir), "--endpoint", shared_daemon.tcp,
                        "--db", str(tmp_path / "x.db")], env)
    assert r.returncode == 1 and "already serving" in r.stderr
    # a non-loopback bind without CURVE
    r = run_daemon_cli(["--model", str(tiny_model_dir), "--endpoint", f"tcp://0.0.0.0:{free_port()}",
                        "--db", str(tmp_path / "x.db")], env)
    assert r.returncode == 1 and "CurveZMQ is not configured" in r.stderr
    # the existing daemon is unharmed, its socket file still there
    assert shared_daemon.ipc_path.exists()
    with shared_daemon.client() as c:
        assert c.ping()["state"] == "ready"


# ---- a daemon of its own: busy, kill -9 and resume, SIGTERM ------------------------------------------------------
def test_busy_kill9_resume_and_sigterm(tmp_path, tiny_model_dir):
    d = DaemonProcess(tmp_path, tiny_model_dir, "own", ["--max-queue", "2", "--max-batch", "2",
                                                        "--max-new-tokens", "32", "--batch-window-ms", "5"])
    d.start()
    try:
        # flood: more concurrent critiques than the queue holds -> some get `busy` at once, none hang
        outcomes = []

        def one(i):
            with d.client(timeout=30) as c:
                t0 = time.monotonic()
                try:
                    c.critique(data=jpeg(500 + i), saliency=False)
                    outcomes.append(("ok", time.monotonic() - t0, None))
                except DaemonError as e:
                    outcomes.append((e.code, time.monotonic() - t0, e.retry_after))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        busy = [o for o in outcomes if o[0] == P.BUSY]
        assert len(outcomes) == 12 and busy and any(o[0] == "ok" for o in outcomes), outcomes
        assert all(o[2] > 0 and o[1] < 2 for o in busy), busy
        assert {o[0] for o in outcomes} <= {"ok", P.BUSY}

        # persisted jobs survive kill -9
        with d.client() as c:
            jobs = [c.submit(data=jpeg(600 + i), name=f"job{i}.jpg")["job"] for i in range(10)]
            deadline = time.monotonic() + 30
            while c.status()["jobs"]["done"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        d.proc.kill()  # SIGKILL: no cleanup at all
        d.proc.wait(10)
        assert d.ipc_path.exists()  # left behind: the next start must reclaim it
        with sqlite3.connect(d.db) as db:
            done_before = {r[0] for r in db.execute("SELECT id FROM jobs WHERE state='done'")}
            rows_before = db.execute("SELECT COUNT(*) FROM critiques").fetchone()[0]
        assert 2 <= len(done_before) <= len(jobs)

        d.start()  # same store, same endpoints: the stale socket file is replaced
        with d.client() as c:
            deadline = time.monotonic() + 60
            while c.status()["jobs"]["done"] < len(jobs) + 0:
                assert time.monotonic() < deadline, c.status()["jobs"]
                time.sleep(0.05)
            st = c.status()
            states = [c.job(j)[0]["state"] for j in jobs]
        assert states == ["done"] * len(jobs)
        # each job ran the model exactly once: the restarted daemon ran only the unfinished ones
        assert st["counts"]["critiques"] == len(jobs) - len(done_before), (st["counts"], len(done_before))
        with sqlite3.connect(d.db) as db:
            rows_after = db.execute("SELECT COUNT(*) FROM critiques").fetchone()[0]
            attempts = dict(db.execute("SELECT id, attempts FROM jobs"))
        assert rows_after == rows_before + len(jobs) - len(done_before)
        assert all(attempts[j] == 1 for j in done_before)

        # SIGTERM: clean exit, socket file removed
        assert d.stop(signal.SIGTERM) == 0
        assert not d.ipc_path.exists()
        assert "stopped" in d.log.read_text()
    finally:
        d.stop(signal.SIGKILL)


def test_keys_and_install_service(tmp_path, monkeypatch, curve_keys):
    import zmq.auth
    from ase_daemon.cli import main
    from ase_daemon.service import unit_path

    for name in ("server.key", "server.key_secret", "client.key", "client.key_secret", "authorized_clients/client.key"):
        assert (curve_keys / name).is_file(), name
    assert oct((curve_keys / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    public, secret = zmq.auth.load_certificate(curve_keys / "server.key_secret")
    assert secret and public
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert main(["install-service"]) == 0
    unit = unit_path().read_text()
    assert f"ExecStart={sys.executable} -m ase_daemon.cli" in unit and "[Install]" in unit
    assert main(["install-service"]) == 1  # exists
    assert main(["install-service", "--force", "--config", str(tmp_path / "c.toml")]) == 0
    assert "--config" in unit_path().read_text()


def test_retried_request_id_runs_once(shared_daemon):
    """A Lazy Pirate retry (same id, new socket) while the first is in flight: one model run, answered once."""
    ctx = zmq.Context.instance()
    msg = P.encode_request("retry-" + P.new_id(), "critique", {"force": True, "saliency": False, "progress": True},
                           [jpeg(4242)])
    with shared_daemon.client() as c:
        before = c.status()["counts"]["critiques"]

    def replies(sock, wait_ms):
        """Decoded messages until a final reply (no event) or silence."""
        out = []
        while sock.poll(wait_ms):
            out.append(P.decode_reply(sock.recv_multipart()))
            if out[-1].event is None:
                break
        return out

    with ctx.socket(zmq.DEALER) as first, ctx.socket(zmq.DEALER) as second:
        for s in (first, second):
            s.linger = 0
            s.connect(shared_daemon.ipc)
        first.send_multipart(msg)
        # "accepted" means the daemon holds the first request in flight: only now is the resend a retry (two
        # sockets have no order between them, so sending both at once could reach the daemon either way round)
        accepted = P.decode_reply(first.recv_multipart())
        assert accepted.event == P.PROGRESS and accepted.data["stage"] == "accepted"
        second.send_multipart(msg)
        final = replies(second, 10_000)[-1]
        assert final.event is None and final.ok and final.result["cached"] is False
        assert all(r.event is not None for r in replies(first, 300)), "the abandoned socket gets no answer"
    with shared_daemon.client() as c:
        assert c.status()["counts"]["critiques"] == before + 1


def test_worker_without_zmq_and_job_hook(tiny_model_dir, tmp_path):
    """The worker runs without pyzmq (the GPU benchmark's machines lack it); on_job_done tells the watcher."""
    code = "import sys; sys.modules['zmq'] = None; import ase_daemon.worker, ase_daemon.store, ase_daemon.protocol"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0

    from ase_daemon.store import Store
    from ase_daemon.worker import Task, Worker

    store = Store(tmp_path / "w.db")
    worker = Worker(tiny_model_dir, store, max_new_tokens=6, batch_window_ms=30).start()
    try:
        deadline = time.monotonic() + 60
        while worker.state != "ready":
            assert worker.state != "error" and time.monotonic() < deadline, worker.load_error
            time.sleep(0.05)
        finished = []
        hook = threading.Event()
        worker.on_job_done(lambda job, outcome: (finished.append((job, outcome)), hook.set()))
        job, _ = store.add_job(data=jpeg(77), name="w.jpg", origin="watch:/photos", meta={"sidecar": True})
        worker.notify_jobs()
        done = [threading.Event() for _ in range(3)]
        outcomes = [None] * 3
        for i in range(3):
            worker.submit(Task(data=jpeg(80 + i), on_done=lambda o, i=i: (outcomes.__setitem__(i, o), done[i].set())))
        assert all(e.wait(30) for e in done) and hook.wait(30)
        assert all(o.ok and o.result.text is not None and o.saliency_png for o in outcomes)
        (j, outcome), = finished
        assert j.id == job.id and j.state == "done" and j.origin == "watch:/photos" and j.meta == {"sidecar": True}
        assert outcome.ok and outcome.result.image == "w.jpg"
        assert worker.snapshot()["batches"]["max_size"] > 1  # the three interactive ones went together
    finally:
        worker.stop()
        store.close()


def test_worker_and_store_results_are_one_record(tiny_model_dir, tmp_path):
    """The critique a model run answers and the one the store answers later are the same record: same keys, same
    values; only `cached` differs, and the record's constructor sets it (the model ran: False; the store: True)."""
    from ase_daemon.contract import CritiqueResult, decode_saliency
    from ase_daemon.store import Store
    from ase_daemon.worker import Task, Worker

    store = Store(tmp_path / "r.db")
    worker = Worker(tiny_model_dir, store, max_new_tokens=6, batch_window_ms=5).start()
    try:
        deadline = time.monotonic() + 60
        while worker.state != P.READY:
            assert worker.state != P.ERROR and time.monotonic() < deadline, worker.load_error
            time.sleep(0.05)

        def run(data: bytes):
            got, done = [], threading.Event()
            worker.submit(Task(data=data, name="r.jpg", on_done=lambda o: (got.append(o), done.set())))
            assert done.wait(30)
            assert got[0].ok, got[0].error
            return got[0]

        data = jpeg(5)
        fresh, stored = run(data), run(data)
        assert isinstance(fresh.result, CritiqueResult) and isinstance(stored.result, CritiqueResult)
        assert fresh.result.cached is False and stored.result.cached is True
        a, b = fresh.result.to_dict(), stored.result.to_dict()
        assert set(a) == set(b)
        assert {**a, "cached": None} == {**b, "cached": None}
        hit = store.get_critique(fresh.result.hash, worker.model_id, 6)
        assert hit.result.cached is True and hit.result.image is None
        assert hit.result.for_request("r.jpg").to_dict() == b
        # the client's side reads the same record back from the wire form
        assert CritiqueResult.from_dict(json.loads(json.dumps(a))) == fresh.result
        assert stored.saliency_png == fresh.saliency_png and decode_saliency(fresh.saliency_png).ndim == 2
    finally:
        worker.stop()
        store.close()


# ---- the store's part of the hardening ---------------------------------------------------------------------------
def test_store_owner_scoped_ids_priority_range_and_failed_bytes_dropped(tmp_path):
    from ase_daemon.store import Store

    store = Store(tmp_path / "s.db")
    try:
        mine, created = store.add_job(data=b"a" * 1000, name="a.jpg", request_id="r1")
        theirs, created2 = store.add_job(data=b"b" * 1000, name="b.jpg", request_id="r1", owner="curve:KEY")
        assert created and created2 and mine.id != theirs.id  # one client's id never reaches another's job
        again, created3 = store.add_job(data=b"b", request_id="r1", owner="curve:KEY")
        assert again.id == theirs.id and not created3 and again.request_id == "r1" and again.owner == "curve:KEY"
        assert store.get_job(mine.id).owner is None
        for bad in (2**63, -(2**63) - 1, True, 1.5):
            with pytest.raises(ValueError, match="priority"):
                store.add_job(data=b"x", priority=bad)
        # a failed byte job drops its bytes (20 x 5 MiB stayed in the store before), and cannot be retried empty
        claimed = {j.id for j in store.claim_jobs(10)}
        assert {mine.id, theirs.id} <= claimed
        assert store.fail_job(mine.id, P.BAD_IMAGE, "broken")
        assert store.job_data(mine.id) is None and not store.get_job(mine.id).has_blob
        assert store.retry_job(mine.id).state == P.FAILED
    finally:
        store.close()


def test_store_upgrades_a_schema_2_database(tmp_path):
    """A store written before jobs.owner existed opens, gains the column, and keeps its jobs."""
    from ase_daemon.store import SCHEMA_VERSION, Store

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as con:
        con.executescript("""CREATE TABLE jobs (id TEXT PRIMARY KEY, request_id TEXT UNIQUE, state TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0, kind TEXT NOT NULL DEFAULT 'critique', origin TEXT NOT NULL DEFAULT
            'client', path TEXT, blob BLOB, name TEXT, hash TEXT, model TEXT, max_new_tokens INTEGER, meta TEXT,
            error TEXT, attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL);
            INSERT INTO jobs (id, request_id, state, path, name, created, updated)
            VALUES ('old1', 'rq', 'queued', '/p.jpg', '/p.jpg', 1, 1);
            PRAGMA user_version=2;""")
    store = Store(db)
    try:
        job = store.get_job("old1")
        assert job.path == "/p.jpg" and job.owner is None and job.request_id == "rq"
        assert store.add_job(path="/p.jpg", request_id="rq")[0].id == "old1"
    finally:
        store.close()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
