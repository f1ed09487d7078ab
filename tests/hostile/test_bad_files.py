"""Every kind of bad file through a real daemon (tiny model, real ZeroMQ, real files): a clear answer, fast.

After all of them the daemon still answers ping, a valid critique still succeeds and its memory is back within
the decode budget. The same kinds land in a watched folder beside ordinary photos: every photo gets its sidecar,
every bad file is recorded failed, nothing outside the folder is touched, the single watcher thread never blocks.
"""

from __future__ import annotations

import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from ase_daemon import protocol as P
from ase_daemon.client import DaemonError
from PIL import Image

from .badfiles import EXPECT, TOO_LARGE_KINDS, make_bad_files
from .conftest import BUDGET_MB

ANSWER_S = 20.0  # every request, whatever the file, is answered within this (the client's heartbeats aside)
CLEAR = {P.BAD_IMAGE, P.NOT_FOUND, P.TOO_LARGE}

pytestmark = pytest.mark.timeout(300)
# recorded failed in a watched folder (with the reason), never read or never critiqued
REFUSED_IN_FOLDER = ("fifo", "link_dev_zero", "link_out_photo", "link_out_text", "png_196mp_zeros", "zero_bytes",
                     "socket", "dir_named_jpg", "text_file")


def photo_bytes(seed: int, size=(96, 72)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture()
def daemon(hostile_daemon):
    return hostile_daemon


def ask(daemon, **kwargs) -> tuple[str, object, float]:
    """("ok", result, seconds) or (error code, DaemonError, seconds); raises if no answer within ANSWER_S."""

    def go():
        t0 = time.monotonic()
        with daemon.client(timeout=ANSWER_S) as c:
            try:
                result, _ = c.critique(saliency=False, **kwargs)
                return "ok", result, time.monotonic() - t0
            except DaemonError as e:
                return e.code, e, time.monotonic() - t0

    with ThreadPoolExecutor(1) as pool:  # the client's own timeout restarts at every heartbeat: keep a hard one
        return pool.submit(go).result(timeout=ANSWER_S + 5)


def check(kind: str, how: str, outcome: tuple) -> str | None:
    """None when the answer is what EXPECT says, else why not."""
    code, value, seconds = outcome
    expect = EXPECT[kind]
    if seconds > ANSWER_S:
        return f"{kind} ({how}): answered after {seconds:.1f} s"
    if code == "ok":
        if expect == "error":
            return f"{kind} ({how}): critiqued, but it must be refused"
        if expect == "warn" and not value["warnings"]:
            return f"{kind} ({how}): damaged, critiqued without a warning"
        if not isinstance(value.get("warnings"), list):
            return f"{kind} ({how}): no warnings list in the result"
        return None
    if expect == "ok":
        return f"{kind} ({how}): a valid image was refused: {code}: {value.message}"
    if kind in TOO_LARGE_KINDS and code != P.TOO_LARGE:
        return f"{kind} ({how}): {code} instead of too_large: {value.message}"
    if code not in CLEAR and not (code == P.INTERNAL and kind.startswith(("thin_", "tiny_"))):  # may fail, alone
        return f"{kind} ({how}): unclear error {code}: {value.message}"
    if not value.message or len(value.message) < 10:
        return f"{kind} ({how}): error without a message"
    return None


def rss_mb(daemon) -> float:
    with daemon.client() as c:
        return c.status()["memory"]["rss_mb"]


def test_every_bad_file_gets_a_clear_answer_and_the_daemon_stays_well(daemon, tmp_path):
    files = make_bad_files(tmp_path / "bad")
    assert len(files) >= 60, len(files)
    assert ask(daemon, data=photo_bytes(1))[0] == "ok"  # warm: the baseline includes a decoded batch
    baseline = rss_mb(daemon)
    jobs = [(kind, "path", {"path": path}) for kind, path in files]
    jobs += [(kind, "bytes", {"data": path.read_bytes(), "name": path.name}) for kind, path in files
             if path.is_file() and not path.is_symlink() and path.stat().st_size]
    with ThreadPoolExecutor(8) as pool:  # eight at a time: bad files share batches with good ones
        outcomes = list(pool.map(lambda j: ask(daemon, **j[2]), jobs))
    problems = [p for (kind, how, _), o in zip(jobs, outcomes) if (p := check(kind, how, o))]
    assert not problems, "\n".join(problems)
    by_path = {kind: o for (kind, how, _), o in zip(jobs, outcomes) if how == "path"}
    for kind in ("fifo", "link_dev_zero", "socket", "dir_named_jpg"):
        code, err, _ = by_path[kind]
        assert code == P.BAD_IMAGE and str(tmp_path) in err.message, (kind, err)
    assert "FIFO" in by_path["fifo"][1].message and "character device" in by_path["link_dev_zero"][1].message
    assert by_path["link_dangling"][0] == P.NOT_FOUND
    err = by_path["png_196mp_zeros"][1]
    assert err.extra["limit_mb"] == BUDGET_MB and err.extra["needed_mb"] > BUDGET_MB, err.extra
    assert by_path["png_dims_over_limit"][1].extra["pixels"] == 10**10
    warned = by_path["jpeg_garbage_middle"]
    assert warned[0] == "ok" and any("corrupt JPEG data" in w for w in warned[1]["warnings"]), warned
    # afterwards: alive, still critiquing, memory back within the budget
    with daemon.client() as c:
        assert c.ping()["state"] == "ready"
        status = c.status()
    assert ask(daemon, data=photo_bytes(2), force=True)[0] == "ok"
    assert status["decode_memory"]["in_use_mb"] == 0 and status["decode_memory"]["peak_mb"] <= BUDGET_MB
    grown = rss_mb(daemon) - baseline
    assert grown < BUDGET_MB + 256, f"RSS grew {grown:.0f} MB over {baseline:.0f} MB"


def test_fifos_and_devices_do_not_wedge_the_decode_pool(daemon, tmp_path):
    os.mkfifo(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "b.jpg")
    (tmp_path / "z.jpg").symlink_to("/dev/zero")
    good = tmp_path / "good.jpg"
    good.write_bytes(photo_bytes(3))
    with ThreadPoolExecutor(4) as pool:  # before the fix two FIFOs held both decode threads for good
        futures = [pool.submit(ask, daemon, path=tmp_path / n) for n in ("a.jpg", "b.jpg", "z.jpg", "good.jpg")]
        outcomes = [f.result() for f in futures]
    assert [o[0] for o in outcomes] == [P.BAD_IMAGE, P.BAD_IMAGE, P.BAD_IMAGE, "ok"], outcomes
    with daemon.client() as c:
        for name, code, words in (("a.jpg", P.BAD_IMAGE, "FIFO"), ("z.jpg", P.BAD_IMAGE, "character device"),
                                  ("missing.jpg", P.NOT_FOUND, "not found")):
            with pytest.raises(DaemonError) as e:
                c.submit(path=tmp_path / name)
            assert e.value.code == code and words in e.value.message, e.value


def test_thin_images_fail_alone_in_a_shared_batch(daemon, tmp_path):
    files = dict(make_bad_files(tmp_path / "set"))
    thin = [files[k] for k in ("thin_8x2000", "thin_1x10000", "thin_10000x1")]
    good = []
    for i in range(5):
        p = tmp_path / f"ok{i}.jpg"
        p.write_bytes(photo_bytes(10 + i))
        good.append(p)
    with daemon.client() as c:
        before = c.status()["batches"]["max_size"]
    barrier = threading.Barrier(len(thin) + len(good))

    def one(p):
        barrier.wait()
        return ask(daemon, path=p, force=True)

    with ThreadPoolExecutor(len(thin) + len(good)) as pool:
        outcomes = list(pool.map(one, thin + good))
    assert all(o[0] == "ok" for o in outcomes[len(thin):]), outcomes  # one bad item never fails its batch
    for o in outcomes[:len(thin)]:
        assert o[0] in ("ok", P.INTERNAL, P.BAD_IMAGE), o
    with daemon.client() as c:
        assert c.status()["batches"]["max_size"] >= min(2, before + 2)


def test_bad_files_in_a_watched_folder(daemon, tmp_path):
    folder = tmp_path / "import"
    files = make_bad_files(folder)
    outside = tmp_path / "import.outside"
    outside_before = sorted(os.listdir(outside))
    photos = []
    for i in range(6):
        p = folder / f"IMG_{i:04d}.jpg"
        p.write_bytes(photo_bytes(40 + i))
        photos.append(p)
    valid = photos + [p for k, p in files if EXPECT[k] == "ok" and not p.is_symlink()]
    with daemon.client(timeout=30) as c:
        c.request("watch_add", {"path": str(folder)})
        deadline = time.monotonic() + 120
        while True:
            rows = c.request("watch_files", {"path": str(folder)}).result["files"]
            states = {r["path"]: r["state"] for r in rows}
            refused = [str(dict(files)[k]) for k in REFUSED_IN_FOLDER]
            if (all(states.get(str(p)) == P.DONE for p in valid) and P.QUEUED not in states.values()
                    and all(states.get(p) == P.FAILED for p in refused)):
                break
            assert time.monotonic() < deadline, ({str(p): states.get(str(p)) for p in valid
                                                   if states.get(str(p)) != P.DONE},
                                                  {p: states.get(p) for p in refused if states.get(p) != P.FAILED})
            time.sleep(0.3)
        assert c.ping()["state"] == "ready"
        c.request("watch_remove", {"path": str(folder)})
    for p in valid:
        assert Path(f"{p}.xmp").is_file(), p
    failed = {r["path"]: r["error"]["message"] for r in rows if r["state"] == P.FAILED}
    assert "not a regular file" in failed[str(dict(files)["fifo"])]
    assert "symbolic link out of" in failed[str(dict(files)["link_out_photo"])]
    # nothing outside the folder touched, no sidecar beside a special file, no temp file left
    assert sorted(os.listdir(outside)) == outside_before
    for kind in ("fifo", "link_dev_zero", "dir_named_jpg", "socket", "link_out_photo"):
        assert not os.path.lexists(f"{dict(files)[kind]}.xmp"), kind
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


class _FailsOnThin:
    """The real tiny Critic, except that any batch holding an image under 4 px on a side raises (the shape of the
    empty-quantile crash in issue 15, whatever its cause)."""

    def __init__(self, critic):
        self._critic = critic
        self.batches: list[int] = []

    def __getattr__(self, name):
        return getattr(self._critic, name)

    def critique(self, images, **kw):
        self.batches.append(len(images))
        if any(min(im.size) < 4 for im in images):
            raise RuntimeError("quantile() input tensor must be non-empty")
        return self._critic.critique(images, **kw)


def test_worker_isolates_the_item_that_fails_its_batch(tmp_path, tiny_model_dir):
    from ase_daemon.store import Store
    from ase_daemon.worker import INTERACTIVE, Task, Worker

    from ase_model.critic import Critic

    # generate + static batches (batch window): the path where images share one `critique` call; the streaming
    # worker's own isolation is in tests/test_worker_stream.py
    critic = _FailsOnThin(Critic.from_pretrained(tiny_model_dir, device="cpu", engine=False))
    worker = Worker(None, Store(tmp_path / "s.db"), critic_factory=lambda: critic, max_batch=8, batch_window_ms=200,
                    max_new_tokens=4).start()
    try:
        deadline = time.monotonic() + 120
        while worker.state != "ready":
            assert time.monotonic() < deadline and worker.state != "error", worker.load_error
            time.sleep(0.05)
        files = dict(make_bad_files(tmp_path / "set"))
        items = [files["thin_1x10000"]] + [photo_bytes(60 + i) for i in range(5)] + [files["thin_10000x1"]]
        done: dict[int, object] = {}
        finished = threading.Event()

        def on_done(i):
            def cb(outcome):
                done[i] = outcome
                if len(done) == len(items):
                    finished.set()
            return cb

        for i, item in enumerate(items):
            kw = {"path": str(item)} if isinstance(item, Path) else {"data": item, "name": f"ok{i}.jpg"}
            worker.submit(Task(**kw, lane=INTERACTIVE, force=True, on_done=on_done(i)))
        assert finished.wait(120), f"only {len(done)} of {len(items)} answered"
    finally:
        worker.stop()
    assert max(critic.batches) > 1, critic.batches  # they did share a batch, and it failed
    assert [done[i].ok for i in range(len(items))] == [False, True, True, True, True, True, False]
    for i in (0, len(items) - 1):  # the failure recorded is the culprit's own
        assert done[i].error.code == P.INTERNAL and "quantile" in done[i].error.message
    assert all(isinstance(done[i].result.warnings, list) for i in range(1, 6))


def test_file_and_budget_limits_in_the_config(tmp_path):
    from ase_daemon.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text("[limits]\nmax_file_mb = 8\ndecode_budget_mb = 256.5\n")
    lim = load_config(cfg).limits
    assert (lim.max_file_mb, lim.decode_budget_mb) == (8, 256.5)
    for bad in ("max_file_mb = 0", "decode_budget_mb = -1", 'decode_budget_mb = "lots"', "max_file_mb = true"):
        cfg.write_text(f"[limits]\n{bad}\n")
        with pytest.raises(ConfigError, match="positive number of MiB"):
            load_config(cfg)
