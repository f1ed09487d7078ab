"""The worker's continuous batching through the Critic's decode engine (daemon/worker_stream.py): a real Worker and
Store on the tiny model, no zmq. One worker (2 slots) for the module."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ase_daemon.contract import decode_saliency
from ase_daemon.store import Store
from ase_daemon.worker import Task, Worker
from conftest import random_jpeg as jpeg

SHORT = 8  # the worker's default critique length
LONG = 64  # seed 0 and 10 photos run past this without the stop token (checked against the reference below)
JOB_LONG = 48  # seeds 11, 13, 15 run past this




@pytest.fixture(scope="module")
def worker(tiny_model_dir, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("stream") / "s.db")
    w = Worker(tiny_model_dir, store, max_new_tokens=SHORT, max_batch=4, slots=2).start()
    deadline = time.monotonic() + 120
    while w.state != "ready":
        assert w.state != "error" and time.monotonic() < deadline, w.load_error
        time.sleep(0.05)
    assert w.snapshot()["batches"]["streaming"], w.critic.engine_fallback
    yield w
    w.stop()
    store.close()


@pytest.fixture(scope="module")
def plain(tiny_model_dir):
    """The reference: the same model through transformers' generate."""
    from ase_model.critic import Critic

    return Critic.from_pretrained(tiny_model_dir, device="cpu", engine=False)


def reference(worker, plain, data: bytes, max_new_tokens: int, stream=None):
    from ase_model.imageio import load_image

    return plain.critique([load_image(data, max_side=worker.decode_side)], max_new_tokens=max_new_tokens,
                          stream=stream)[0]


class Waiter:
    """A task's outcome and streamed text, with the order in which tasks ended."""

    order: list[str] = []

    def __init__(self, name: str, **kw):
        self.name, self.pieces, self.outcome = name, [], None
        self.done, self.first_token = threading.Event(), threading.Event()
        self.task = Task(data=kw.pop("data"), name=name, on_done=self._done, on_token=self._token, **kw)

    def _token(self, text: str):
        self.pieces.append(text)
        self.first_token.set()

    def _done(self, outcome):
        self.outcome = outcome
        Waiter.order.append(self.name)
        self.done.set()

    def wait(self, timeout: float = 60):
        assert self.done.wait(timeout), f"{self.name} never finished"
        return self.outcome


def test_results_equal_the_critics(worker, plain):
    waiters = [Waiter(f"same{s}.jpg", data=jpeg(s), force=True) for s in (3, 4, 5)]
    for w in waiters:
        worker.submit(w.task)
    for s, w in zip((3, 4, 5), waiters):
        got, ref = w.wait(), reference(worker, plain, jpeg(s), SHORT)
        assert got.ok, got.error
        r = got.result
        assert (r.text, r.attributes, r.tags) == (ref.text, ref.attributes, ref.tags)
        assert r.score == pytest.approx(ref.score, abs=1e-4)
        assert r.timings["new_tokens"] == ref.timings["new_tokens"]
        sal = decode_saliency(got.saliency_png)
        assert sal.shape == ref.saliency.shape
        assert np.abs(sal - ref.saliency).max() < 0.02  # an 8-bit PNG of the same map
    b = worker.snapshot()["batches"]
    assert b["streaming"] and b["slots"] == 2 and 0 < b["mean_size"] <= 2 and b["max_size"] <= 2


def test_short_request_overtakes_a_long_one_and_streams_in_order(worker, plain):
    long = Waiter("long.jpg", data=jpeg(0), max_new_tokens=LONG, force=True)
    worker.submit(long.task)
    assert long.first_token.wait(60)
    short = Waiter("short.jpg", data=jpeg(3), max_new_tokens=2, force=True)
    worker.submit(short.task)  # joins while the long one decodes: no waiting for it to end
    assert short.wait().ok and long.wait().ok
    assert Waiter.order.index("short.jpg") < Waiter.order.index("long.jpg")
    ref_pieces = []
    ref = reference(worker, plain, jpeg(0), LONG, stream=lambda i, text: ref_pieces.append(text))
    assert ref.timings["new_tokens"] == LONG  # the premise: it ran its whole length
    assert long.outcome.result.text == ref.text
    assert long.pieces == ref_pieces and "".join(long.pieces).strip() == ref.text  # same pieces, same order


def test_cancel_mid_decode_frees_the_slot(worker, plain):
    long = Waiter("cancel-me.jpg", data=jpeg(10), max_new_tokens=LONG, force=True)
    worker.submit(long.task)
    assert long.first_token.wait(60)
    assert worker.cancel(long.task)
    assert long.wait().error.code == "cancelled"
    after = Waiter("after.jpg", data=jpeg(4), force=True)
    worker.submit(after.task)
    got = after.wait()
    assert got.ok and got.result.text == reference(worker, plain, jpeg(4), SHORT).text
    engine = worker.critic.engine.engine
    assert not engine.active and not engine.queue and not worker._live
    assert reference(worker, plain, jpeg(10), LONG).timings["new_tokens"] == LONG  # it was cut mid-decode


def test_interactive_is_admitted_while_background_jobs_hold_slots(worker, plain):
    store = worker.store
    ended = []
    all_jobs = threading.Event()
    jobs = [store.add_job(data=jpeg(s), name=f"bg{s}.jpg", max_new_tokens=JOB_LONG)[0].id for s in (11, 13, 15)]

    def job_done(job, outcome):
        if job.id in jobs:
            ended.append(job.id)
            if len(ended) == len(jobs):
                all_jobs.set()

    worker.on_job_done(job_done)
    worker.notify_jobs()
    seen_background = []

    class Counting(Waiter):
        def _token(self, text):
            with worker._cv:
                seen_background.append(sum(1 for x in worker._live.values() if x.task.lane == 1))
            super()._token(text)

    deadline = time.monotonic() + 60
    while not any(x.task.lane == 1 for x in list(worker._live.values())):  # a background job is decoding
        assert time.monotonic() < deadline, "no background job started"
        time.sleep(0.005)
    fg = Counting("fg.jpg", data=jpeg(10), max_new_tokens=JOB_LONG, force=True)
    worker.submit(fg.task)
    assert fg.wait().ok
    done_before = len(ended)
    assert all_jobs.wait(120)
    assert all(store.get_job(j).state == "done" for j in jobs)
    # it decoded beside a background job, which never takes the slot kept for interactive requests
    assert max(seen_background) == 1
    assert done_before < len(jobs)  # it did not wait for the background work to end
    assert reference(worker, plain, jpeg(11), JOB_LONG).timings["new_tokens"] == JOB_LONG


def test_a_failure_in_finish_fails_only_its_task(worker):
    critic = worker.critic
    original = critic.finish

    def finish(prepared, tokens, timings=None):
        if prepared.name == "bad.jpg":
            raise RuntimeError("finish broke")
        return original(prepared, tokens, timings=timings)

    critic.finish = finish  # an injected fault in the finisher's first step
    try:
        bad, good = Waiter("bad.jpg", data=jpeg(6), force=True), Waiter("good.jpg", data=jpeg(7), force=True)
        worker.submit(bad.task)
        worker.submit(good.task)
        assert "finish broke" in bad.wait().error.message
        assert good.wait().ok
    finally:
        del critic.finish


def test_background_image_side_runs_beside_the_decoding(tiny_model_dir, tmp_path):
    """With room for several background critiques, a newcomer's image side runs on its lane's preparer thread while
    the model thread keeps stepping the engine (one core decodes, the other prepares)."""
    store = Store(tmp_path / "s.db")
    w = Worker(tiny_model_dir, store, max_new_tokens=SHORT, max_batch=4, slots=4).start()
    try:
        deadline = time.monotonic() + 120
        while w.state != "ready":
            assert w.state != "error" and time.monotonic() < deadline, w.load_error
            time.sleep(0.05)
        prepares, steps = [], []
        original_prepare, original_step = w.critic.prepare, w._stream_step

        def prepare(images, names=None):
            t0 = time.perf_counter()
            out = original_prepare(images, names=names)
            prepares.append((threading.current_thread().name, list(names), t0, time.perf_counter()))
            return out

        def step():
            t0 = time.perf_counter()
            original_step()
            steps.append((t0, time.perf_counter()))

        w.critic.prepare, w._stream_step = prepare, step
        jobs = [store.add_job(data=jpeg(s), name=f"bg{s}.jpg", max_new_tokens=JOB_LONG)[0].id
                for s in (11, 13, 15, 17, 19, 21)]
        done = threading.Event()
        ended = set()

        def job_done(job, outcome):
            ended.add(job.id)
            if ended >= set(jobs):
                done.set()

        w.on_job_done(job_done)
        w.notify_jobs()
        assert done.wait(180)
        assert all(store.get_job(j).state == "done" for j in jobs)
        fg = Waiter("fg-prepared.jpg", data=jpeg(12), force=True)
        w.submit(fg.task)
        assert fg.wait().ok
        background = [p for p in prepares if p[1][0].startswith("bg")]
        assert sum(len(p[1]) for p in background) == len(jobs)  # each job's image side once
        assert all(p[0].startswith("ase-prepare-background") for p in background)
        assert [p[0][:23] for p in prepares if p[1] == ["fg-prepared.jpg"]] == ["ase-prepare-interactive"]
        # the overlap: engine steps ran on the model thread while a background group was being prepared
        assert any(t0 < s0 < t1 for _, names, t0, t1 in background for s0, _ in steps)
    finally:
        w.stop()
        store.close()
