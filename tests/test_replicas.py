"""One worker replica per device (daemon/replicas.py): two CPU "devices" stand for two GPUs. Real Workers with the
tiny model and a real Store: both replicas take jobs from the one job table and no job runs twice; interactive
requests go to the less-loaded replica; stopping puts back each claimed job once; the `devices` config key."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from ase_daemon import protocol as P
from conftest import random_jpeg

pytest.importorskip("torch")


def jpeg(seed: int, size=(48, 40)) -> bytes:
    return random_jpeg(seed, size)


def _start(model_dir, store):
    from ase_daemon.replicas import Replicas

    # a 50 ms batch window: a lone interactive request is still in flight when the next one is placed
    replicas = Replicas(model_dir, store, devices=["cpu", "cpu"], threads=1, max_batch=2, max_new_tokens=4,
                        batch_window_ms=50, decode_threads=1).start()
    finished: list[str] = []
    lock = threading.Lock()

    def on_job_done(job, outcome):
        with lock:
            finished.append(job.id)

    replicas.on_job_done(on_job_done)
    deadline = time.monotonic() + 120
    while not all(w.state == P.READY for w in replicas.replicas):
        assert replicas.state != P.ERROR and time.monotonic() < deadline, replicas.load_error
        time.sleep(0.05)
    return replicas, finished


def _wait(cond, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture(scope="module")
def running(tiny_model_dir, tmp_path_factory):
    from ase_daemon.store import Store

    store = Store(tmp_path_factory.mktemp("replicas") / "store.sqlite3")
    replicas, finished = _start(tiny_model_dir, store)
    yield replicas, store, finished
    replicas.stop()
    store.close()


def test_interactive_requests_go_to_the_less_loaded_replica(running):
    from ase_daemon.worker import Task

    replicas, *_ = running
    before = [w.stats["images"] for w in replicas.replicas]
    outcomes, done = {}, threading.Semaphore(0)
    tasks = [Task(data=jpeg(100 + i), name=f"i{i}.jpg",
                  on_done=lambda o, i=i: (outcomes.__setitem__(i, o), done.release())) for i in range(4)]
    for t in tasks:
        replicas.submit(t)
    # in flight 0/0 -> replica 0; 1/0 -> 1; 1/1 -> 0 (ties to the lowest index); 2/1 -> 1
    assert [replicas.replica_of(t) for t in tasks] == [0, 1, 0, 1]
    for _ in tasks:
        assert done.acquire(timeout=60)
    assert all(o.ok for o in outcomes.values()), [o.error for o in outcomes.values()]
    assert [w.stats["images"] - b for w, b in zip(replicas.replicas, before)] == [2, 2]
    snap = replicas.snapshot()
    assert snap["state"] == P.READY and snap["device"] == "cpu,cpu" and snap["model"] == replicas.model_id
    assert [r["index"] for r in snap["replicas"]] == [0, 1] and all(r["state"] == P.READY for r in snap["replicas"])
    assert snap["batches"]["images"] == sum(r["batches"]["images"] for r in snap["replicas"])
    assert snap["queue"] == {"interactive": 0, "background": 0}
    assert replicas.cancel(tasks[0]) is False  # finished: nothing to cancel
    assert replicas.decode_budget() is replicas.replicas[1].decode_budget()  # one budget for the daemon


def test_a_full_replica_passes_the_request_on(running):
    from ase_daemon.errors import Busy
    from ase_daemon.worker import Task

    replicas, *_ = running
    first, second = replicas.replicas
    done = threading.Semaphore(0)
    try:
        first.max_queue = 0  # full: the request that would go to replica 0 (ties) goes to replica 1
        task = replicas.submit(Task(data=jpeg(150), name="b.jpg", on_done=lambda o: done.release()))
        assert replicas.replica_of(task) == 1
        second.max_queue = 0
        with pytest.raises(Busy):  # all full
            replicas.submit(Task(data=jpeg(151), name="c.jpg"))
    finally:
        first.max_queue = second.max_queue = replicas.max_queue
    assert done.acquire(timeout=60)


def test_replicas_share_one_decode_budget(running):
    replicas, *_ = running
    first, second = replicas.replicas
    assert first.decode_budget() is second.decode_budget() is replicas.decode_budget()


def test_status_reply_with_replicas(running):
    """The server's `status` keeps its keys and gains `replicas` (docs/protocol.md); guests do not see it."""
    from ase_daemon.config import Config
    from ase_daemon.server import GUEST_STATUS, Call, Server

    replicas, store, *_ = running
    server = Server(Config(), replicas, store)
    st = server._op_status(Call(None, [], None), None)
    assert {"state", "model", "device", "queue", "batches", "memory", "counts", "jobs", "limits"} <= set(st)
    assert st["device"] == "cpu,cpu" and st["counts"]["critiques"] == replicas.stats["images"]
    assert [(r["index"], r["device"], r["state"]) for r in st["replicas"]] == [(0, "cpu", P.READY), (1, "cpu", P.READY)]
    assert "replicas" not in server._op_status(Call(None, [], "tcp"), None) and "replicas" not in GUEST_STATUS
    assert server._op_ping(Call(None, [], None), None)["state"] == P.READY
    from ase_daemon.client_cli import _status_text

    assert "replica 1 on cpu: ready" in _status_text(st)  # `ase-client status --format text`


def test_both_replicas_take_jobs_and_each_job_runs_once(running):
    replicas, store, finished = running
    before = [w.stats["jobs_done"] for w in replicas.replicas]
    jobs = [store.add_job(data=jpeg(200 + i), name=f"j{i}.jpg")[0] for i in range(12)]
    ids = {j.id for j in jobs}
    replicas.notify_jobs()
    _wait(lambda: ids <= set(finished), "the 12 jobs did not finish")
    per_replica = [w.stats["jobs_done"] - b for w, b in zip(replicas.replicas, before)]
    assert all(n > 0 for n in per_replica) and sum(per_replica) == 12, per_replica
    assert all(n == 1 for job_id, n in Counter(finished).items() if job_id in ids)  # ended once each
    rows = [store.get_job(j.id) for j in jobs]
    assert all(r.state == P.DONE and r.attempts == 1 for r in rows), [(r.state, r.attempts) for r in rows]
    assert replicas.snapshot()["jobs_done"] >= 12


def test_stop_requeues_each_claimed_job_once(running, tiny_model_dir):
    """Stop while both replicas hold jobs: each job is done or back in the queue exactly once; a new start
    finishes the rest, and no job ends twice over both runs."""
    replicas, store, finished = running
    jobs = [store.add_job(data=jpeg(300 + i), name=f"s{i}.jpg", max_new_tokens=24)[0] for i in range(12)]
    ids = {j.id for j in jobs}
    replicas.notify_jobs()
    _wait(lambda: ids & set(finished), "no job finished")
    replicas.stop()
    rows = [store.get_job(j.id) for j in jobs]
    assert {r.state for r in rows} <= {P.DONE, P.QUEUED}, [r.state for r in rows]
    assert all(r.attempts == (1 if r.state == P.DONE else 0) for r in rows), [(r.state, r.attempts) for r in rows]
    first_run = [i for i in finished if i in ids]

    again, finished_again = _start(tiny_model_dir, store)
    try:
        _wait(lambda: ids <= set(first_run) | set(finished_again), "the requeued jobs did not finish")
    finally:
        again.stop()
    ended = Counter(first_run + [i for i in finished_again if i in ids])
    assert set(ended) == ids and set(ended.values()) == {1}
    assert all(store.get_job(i).state == P.DONE and store.get_job(i).attempts == 1 for i in ids)


def test_devices_config(tmp_path):
    from ase_daemon.cli import make_worker
    from ase_daemon.config import ConfigError, load_config
    from ase_daemon.replicas import Replicas, resolve_devices
    from ase_daemon.store import Store
    from ase_daemon.worker import Worker

    conf = tmp_path / "config.toml"
    for written, parsed in (('"all"', "all"), ('["cuda:0", "cuda:2"]', ["cuda:0", "cuda:2"]),
                            ("[0, 2]", ["cuda:0", "cuda:2"]), ('["cpu", "cpu"]', ["cpu", "cpu"]),
                            ('["CUDA", "mps"]', ["cuda:0", "mps"])):
        conf.write_text(f"devices = {written}\n")
        assert load_config(conf).devices == parsed
    conf.write_text("")
    assert load_config(conf).devices is None
    for written, message in (('"gpu"', 'devices must be "all" or a list'), ("[]", "non-empty list"),
                             ("4", 'devices must be "all"'), ("[-1]", "-1 is not a device"),
                             ('["tpu:0"]', "'tpu:0' is not a device"), ("[true]", "True is not a device"),
                             ('["cuda:1", 1]', "cuda:1 listed twice")):
        conf.write_text(f"devices = {written}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(conf)

    assert resolve_devices(None, "cpu") == ["cpu"] and resolve_devices(["cpu", "cpu"], None) == ["cpu", "cpu"]
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert resolve_devices("all", "cpu") == ([f"cuda:{i}" for i in range(gpus)] if gpus else ["cpu"])

    store = Store(tmp_path / "w.db")
    try:
        conf.write_text('device = "cpu"\n')
        one = make_worker(load_config(conf), store)  # one device: the plain Worker, as before
        assert type(one) is Worker and one.device == "cpu"
        conf.write_text('devices = ["cpu", "cpu"]\n\n[limits]\nmax_batch = 3\n')
        two = make_worker(load_config(conf), store)
        assert isinstance(two, Replicas) and [w.device for w in two.replicas] == ["cpu", "cpu"]
        assert all(w.max_batch == 3 for w in two.replicas) and two.max_batch == 3
        assert two.personal is two.replicas[0].personal is two.replicas[1].personal
    finally:
        store.close()


def test_replicas_loading_at_once_leave_model_loading_sound(running):
    """transformers patches process-wide state while it loads (parameters made on the meta device): the replicas'
    loads, side by side, must not leave it patched for every model loaded after them."""
    import torch

    from ase_model.critic import Critic

    replicas, *_ = running
    for w in replicas.replicas:
        assert all(p.device.type == "cpu" for p in w.critic.model.parameters())
    critic = Critic.from_pretrained(None, device="cpu")  # the starter model: it was left on the meta device
    assert all(p.device.type == "cpu" for p in critic.model.parameters())
    assert torch.isfinite(critic.model.get_input_embeddings().weight).all()
