"""The model worker: one thread owns the device and the Critic; a small pool decodes and hashes images beside it.

    admit ──> decode pool (read, sha256, cache lookup, load_image) ──> lanes ──> model thread (batches) ──> done
               interactive (critique) lane first, background (jobs) lane fills the rest of a batch

Transport-free on purpose (no zmq import): the server drives it through callbacks, and the GPU benchmark drives
it directly on machines without pyzmq. Callbacks run on the worker's threads; keep them short and thread-safe
(the server hands them to its event loop with `loop.call_soon_threadsafe`).

Background work lives in the Store's job table: the worker claims queued jobs while it has room, finishes them
in the same transaction that stores their critique, and tells `on_job_done` listeners (the folder watcher).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .protocol import (
    BAD_IMAGE,
    CANCELLED,
    ERROR,
    INTERNAL,
    LOADING,
    NOT_FOUND,
    NOT_READY,
    READY,
    TOO_LARGE,
    UNLOADED,
    ProtocolError,
)
from .store import Job, Store, content_hash

log = logging.getLogger("ase_daemon.worker")

INTERACTIVE, BACKGROUND = 0, 1
DECODE_MAX_SIDE = 1024  # until a model is loaded; then twice the model's input size (see _load)
JOB_POLL_S = 5.0  # also look at the job table this often (jobs added without notify_jobs())


class Busy(ProtocolError):
    def __init__(self, message: str, retry_after: float):
        super().__init__("busy", message, retry_after=round(retry_after, 2))


class NotReady(ProtocolError):
    def __init__(self, message: str, retry_after: float | None = None):
        extra = {"retry_after": round(retry_after, 2)} if retry_after is not None else {}
        super().__init__(NOT_READY, message, **extra)


@dataclass
class Outcome:
    """How a task ended: a result (+ the saliency PNG), or an error (code, message, extra)."""

    result: dict | None = None
    saliency_png: bytes | None = None
    error: ProtocolError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(eq=False)
class Task:
    """One image to critique. Exactly one of path / data."""

    path: str | None = None
    data: bytes | None = None
    name: str | None = None
    max_new_tokens: int | None = None
    force: bool = False  # skip the cache lookup (the new result replaces the stored one)
    lane: int = INTERACTIVE
    on_done: Callable[[Outcome], None] | None = None
    on_token: Callable[[str], None] | None = None  # streamed text, from the model thread
    on_stage: Callable[[str, dict], None] | None = None  # "decoding" | "queued" | "running"
    job: Job | None = None
    within: str | None = None  # a path's file (links resolved) must lie in this folder; None = anywhere
    # filled in by the worker
    warnings: list = field(default_factory=list)  # damage the decoder papered over; goes into the result
    stage: str = "admitted"
    hash: str | None = None
    image: object = None
    ready_at: float = 0.0
    cancelled: bool = False
    finished: bool = False
    admitted_at: float = field(default_factory=time.monotonic)


class Worker:
    def __init__(self, model: str | Path | None, store: Store, *, device: str | None = None, dtype: str | None = None,
                 threads: int = 0, tag_root: str = "aesthetics", max_queue: int = 64, max_batch: int = 8,
                 batch_window_ms: float = 20.0, max_new_tokens: int = 160, decode_threads: int = 2,
                 idle_unload_s: float = 0.0, warmup_batch_sizes: list[int] | None = None,
                 critic_factory: Callable[[], object] | None = None, max_file_mb: float = 1024.0,
                 decode_budget_mb: float = 2048.0):
        self.model_path = Path(model).expanduser() if model else None
        self.critic_factory = critic_factory  # builds the Critic instead of loading `model` (benchmarks)
        self.store = store
        self.device, self.dtype, self.threads, self.tag_root = device, dtype, threads, tag_root
        self.max_queue, self.max_batch = max_queue, max_batch
        self.batch_window = batch_window_ms / 1000
        self.max_new_tokens = max_new_tokens
        self.idle_unload_s = idle_unload_s
        self.warmup_batch_sizes = warmup_batch_sizes
        self.max_file_bytes = int(max_file_mb * 2**20)  # a photo file (or image frame) over this: too_large
        self.decode_budget_bytes = int(decode_budget_mb * 2**20)  # decoder memory shared by the decode pool
        self._budget = None  # the MemoryBudget, made on first use (ase_model imports transformers: not at start)

        self.state = UNLOADED
        self.model_id: str | None = None  # the fingerprint; known before the weights load, kept after unload
        self.load_error: str | None = None
        self.critic = None
        self.decode_side = DECODE_MAX_SIDE
        self._cv = threading.Condition()
        self._lanes = (deque(), deque())
        self._tasks: set[Task] = set()  # admitted and not finished
        self._job_tasks: dict[str, Task] = {}
        self._want_load = False
        self._want_unload = False
        self._paused = False  # after an explicit unload: background jobs wait for the next load
        self._stopping = False
        self._jobs_hint = True  # the job table may have work
        self._last_work = time.monotonic()
        self._load_started = 0.0
        self._last_load_s: float | None = None
        self._job_listeners: list[Callable[[Job, Outcome], None]] = []
        self._pool = ThreadPoolExecutor(decode_threads, thread_name_prefix="ase-decode")
        self._thread = threading.Thread(target=self._run, name="ase-model", daemon=True)
        self.stats = {"batches": 0, "images": 0, "max_batch": 0, "batch_seconds": 0.0, "cache_hits": 0, "errors": 0,
                      "jobs_done": 0, "jobs_failed": 0}

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def start(self, load: bool = True) -> Worker:
        requeued = self.store.recover()
        if requeued:
            log.info("requeued %d job(s) a previous daemon left running", requeued)
        self._want_load = load
        self._thread.start()
        return self

    def load(self) -> str:
        """Ask for the model to be loaded (no-op when loading or ready). Returns the state."""
        with self._cv:
            self._paused = False
            if self.state in (UNLOADED, ERROR):
                self._want_load = True
                self._want_unload = False
                self._cv.notify_all()
        return self.state

    def unload(self, wait: float = 0.0) -> str:
        """Free the model after the running batch. Queued jobs wait for the next load. Returns the state."""
        with self._cv:
            self._want_unload, self._want_load, self._paused = True, False, True
            self._cv.notify_all()
            deadline = time.monotonic() + wait
            while self.state not in (UNLOADED, ERROR) and self._want_unload and time.monotonic() < deadline:
                self._cv.wait(deadline - time.monotonic())
        return self.state

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the running batch, cancel interactive tasks, put claimed jobs back in the queue."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the model did not finish its batch within %.0f s; its jobs stay queued", timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._cv:
            left = list(self._tasks)
        jobs = [t.job.id for t in left if t.job is not None and t.stage != "running"]
        if jobs:
            self.store.requeue(jobs)
        for t in left:
            if t.stage != "running" or not self._thread.is_alive():
                self._finish(t, Outcome(error=ProtocolError(CANCELLED, "the daemon is shutting down")), store_job=False)

    def on_job_done(self, callback: Callable[[Job, Outcome], None]) -> None:
        """Call `callback(job, outcome)` whenever a background job ends (done, failed or cancelled while running).

        Runs on a worker thread: hand heavy work (writing sidecars) to your own thread.
        """
        self._job_listeners.append(callback)

    def notify_jobs(self) -> None:
        """New rows in the job table: look now rather than at the next poll."""
        with self._cv:
            self._jobs_hint = True
            if self.state == UNLOADED and not self._paused:
                self._want_load = True  # new work brings the model back after an idle unload
            self._cv.notify_all()

    # ---- interactive requests --------------------------------------------------------------------------------
    def submit(self, task: Task) -> Task:
        """Admit a task; raises Busy when the interactive queue is full. The outcome arrives through task.on_done
        (for jobs: the store and the on_job_done listeners)."""
        if task.max_new_tokens is None:
            task.max_new_tokens = self.max_new_tokens
        with self._cv:
            if self._stopping:
                raise ProtocolError(CANCELLED, "the daemon is shutting down")
            if task.lane == INTERACTIVE:
                waiting = sum(1 for t in self._tasks if t.lane == INTERACTIVE and t.stage != "running")
                if waiting >= self.max_queue:
                    raise Busy(f"{waiting} requests are waiting (max_queue {self.max_queue})", self._eta(waiting))
            self._tasks.add(task)
            task.stage = "decoding"
            if task.job is not None:
                self._job_tasks[task.job.id] = task
        self._pool.submit(self._prepare, task)
        return task

    def cancel(self, task: Task) -> bool:
        """Cancel a task that has not reached the model. True when it was cancelled."""
        with self._cv:
            if task.finished or task.stage == "running":
                return False
            task.cancelled = True
            for lane in self._lanes:
                if task in lane:
                    lane.remove(task)
        self._finish(task, Outcome(error=ProtocolError(CANCELLED, "cancelled by the client")), store_job=False)
        return True

    def cancel_job(self, job_id: str) -> Job | None:
        job = self.store.cancel_job(job_id)
        task = self._job_tasks.get(job_id)
        if task is not None and job is not None and job.state == CANCELLED:
            self.cancel(task)
        return job

    # ---- observation -----------------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        with self._cv:
            interactive = sum(1 for t in self._tasks if t.lane == INTERACTIVE)
            background = sum(1 for t in self._tasks if t.lane == BACKGROUND)
        s = self.stats
        out = {
            "state": self.state,
            "model": self.model_id,
            "device": str(getattr(self.critic, "device", self.device or "auto")),
            "queue": {"interactive": interactive, "background": background},
            "batches": {"count": s["batches"], "images": s["images"], "max_size": s["max_batch"],
                        "mean_size": round(s["images"] / s["batches"], 3) if s["batches"] else 0.0,
                        "mean_ms": round(1000 * s["batch_seconds"] / s["batches"], 2) if s["batches"] else 0.0},
            "cache_hits": s["cache_hits"], "errors": s["errors"],
            "jobs_done": s["jobs_done"], "jobs_failed": s["jobs_failed"],
            "load_seconds": self._last_load_s,
        }
        if self._budget is not None:
            out["decode_memory"] = self._budget.snapshot()
        if self.load_error:
            out["load_error"] = self.load_error
        critic = self.critic
        if critic is not None and critic.device.type == "cuda":
            import torch

            out["cuda_allocated_mb"] = round(torch.cuda.memory_allocated(critic.device) / 2**20, 1)
        return out

    def _eta(self, waiting: int) -> float:
        s = self.stats
        per_batch = s["batch_seconds"] / s["batches"] if s["batches"] else 1.0
        return min(60.0, max(0.1, per_batch * (1 + waiting / self.max_batch)))

    def _not_ready(self) -> NotReady:
        if self.state == LOADING:
            elapsed = time.monotonic() - self._load_started
            eta = max(1.0, (self._last_load_s or 5.0) - elapsed)
            return NotReady(f"the model is loading ({elapsed:.0f} s so far); retry in about {eta:.0f} s", eta)
        if self.state == ERROR:
            return NotReady(f"the model failed to load: {self.load_error}; fix it and send `load`")
        eta = self._last_load_s or 5.0
        return NotReady(f"the model is unloaded; it is loading again now because of this request, retry in about "
                        f"{eta:.0f} s", eta)

    # ---- decode pool -----------------------------------------------------------------------------------------
    def decode_budget(self):
        """The MemoryBudget every decode of this daemon reserves from (the folder watcher's trial decodes too)."""
        from ase_model.imagesafety import MemoryBudget  # outside the lock: the first import of ase_model is slow

        with self._cv:
            if self._budget is None:
                self._budget = MemoryBudget(self.decode_budget_bytes)
            return self._budget

    def _read(self, task: Task) -> bytes:
        """The photo's bytes: a path is opened only as a regular file (never a FIFO or device), at most
        max_file_bytes of it; image frames obey the same cap."""
        from ase_model.imagesafety import ImageLoadError, read_regular

        if task.data is not None:
            if len(task.data) > self.max_file_bytes:
                raise ProtocolError(TOO_LARGE, f"{task.name or '<bytes>'}: image of {len(task.data) / 2**20:,.1f} "
                                    f"MiB exceeds the {self.max_file_bytes / 2**20:,.1f} MiB cap on photo files",
                                    needed_mb=_mb(len(task.data)), limit_mb=_mb(self.max_file_bytes))
            return task.data
        try:
            return read_regular(task.path, max_bytes=self.max_file_bytes, within=task.within)
        except ImageLoadError as e:
            raise _image_error(e) from None

    def _prepare(self, task: Task) -> None:
        try:
            if task.cancelled:
                return
            data = self._read(task)
            task.hash = content_hash(data)
            model_id = self.model_id
            if model_id is not None and not task.force:
                hit = self.store.get_critique(task.hash, model_id, task.max_new_tokens)
                if hit is not None:
                    with self._cv:
                        self.stats["cache_hits"] += 1
                    from ase_model.imageio import damage_warnings

                    # the store keeps the critique, not the file's damage: look again (headers only, cheap)
                    warnings = damage_warnings(data, name=task.name or task.path)
                    result = {**hit.result, "warnings": warnings, "image": task.name or task.path, "cached": True}
                    self._finish(task, Outcome(result, hit.saliency_png))
                    return
            if self.state != READY:
                with self._cv:
                    if self.state == UNLOADED:
                        self._want_load = True  # auto-load: work arrived
                        self._paused = False
                        self._cv.notify_all()
                if task.job is not None:  # not an error for a job: it waits in the queue for the model
                    self._release_job(task)
                    return
                raise self._not_ready()
            from ase_model.imageio import ImageLoadError, load_image

            try:
                task.image = load_image(data, name=task.name or task.path, max_side=self.decode_side,
                                        budget=self.decode_budget(), warnings=task.warnings)
            except ImageLoadError as e:
                raise _image_error(e) from None
            del data
            with self._cv:
                if task.cancelled or self._stopping:
                    return
                task.stage, task.ready_at = "queued", time.monotonic()
                self._lanes[task.lane].append(task)
                self._cv.notify_all()
            if task.on_stage:
                task.on_stage("queued", {})
        except ProtocolError as e:
            self._finish(task, Outcome(error=e))
        except Exception as e:  # a bug: answer, never leave the client hanging
            log.exception("preparing %s failed", task.name or task.path)
            self._finish(task, Outcome(error=ProtocolError(INTERNAL, f"{type(e).__name__}: {e}")))

    def _release_job(self, task: Task) -> None:
        """A claimed job that cannot run now goes back to the queue."""
        with self._cv:
            self._tasks.discard(task)
            self._job_tasks.pop(task.job.id, None)
            task.finished = True
        self.store.requeue([task.job.id])

    # ---- finishing -------------------------------------------------------------------------------------------
    def _finish(self, task: Task, outcome: Outcome, store_job: bool = True) -> None:
        with self._cv:
            if task.finished:
                return
            task.finished = True
            self._tasks.discard(task)
            if task.job is not None:
                self._job_tasks.pop(task.job.id, None)
            if not outcome.ok and outcome.error.code != CANCELLED:
                self.stats["errors"] += 1
            self._cv.notify_all()
        if task.job is not None:
            if store_job:
                self._finish_job(task, outcome)
        elif task.on_done is not None:
            try:
                task.on_done(outcome)
            except Exception:
                log.exception("on_done callback failed")

    def _finish_job(self, task: Task, outcome: Outcome) -> None:
        job = task.job
        if outcome.ok and outcome.result.get("cached"):  # completed from the store, the model never ran
            self.store.finish_job(job.id, task.hash, self.model_id, task.max_new_tokens)
        elif not outcome.ok:
            self.store.fail_job(job.id, outcome.error.code, outcome.error.message, task.hash)
        with self._cv:
            self.stats["jobs_done" if outcome.ok else "jobs_failed"] += 1
        job = self.store.get_job(job.id) or job
        if task.on_done is not None:
            task.on_done(outcome)
        for listener in self._job_listeners:
            try:
                listener(job, outcome)
            except Exception:
                log.exception("on_job_done listener failed")

    # ---- the model thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._has_work():
                    self._cv.wait(self._wait_time())
                    if self._idle_expired():
                        self._want_unload = True
                        log.info("unloading the model after %.0f s idle", self.idle_unload_s)
                if self._stopping:
                    break
                want_load, want_unload = self._want_load, self._want_unload
                self._want_load = False
            if want_unload:
                self._unload()
                continue
            if want_load and self.state in (UNLOADED, ERROR):
                self._load()
                continue
            if self.state == UNLOADED and any(self._lanes):
                self._load()
                continue
            if self.state != READY:
                self._fail_lanes()
                continue
            self._feed_jobs()
            batch = self._take_batch()
            if batch:
                self._run_batch(batch)
        log.debug("model thread exits")

    def _has_work(self) -> bool:
        if self._want_load or self._want_unload or any(self._lanes):
            return True
        return self.state == READY and self._jobs_hint and not self._paused and self._room_for_jobs() > 0

    def _wait_time(self) -> float:
        t = JOB_POLL_S
        if self.idle_unload_s > 0 and self.state == READY:
            t = min(t, max(0.05, self._last_work + self.idle_unload_s - time.monotonic()))
        return t

    def _idle_expired(self) -> bool:
        if self.state == READY and not self._paused:
            self._jobs_hint = True  # the periodic wake-up also re-reads the job table
        if self.idle_unload_s <= 0 or self.state != READY or self._tasks:
            return False
        if time.monotonic() - self._last_work < self.idle_unload_s:
            return False
        return self.store.job_counts()["queued"] == 0

    def _room_for_jobs(self) -> int:
        in_flight = sum(1 for t in self._tasks if t.lane == BACKGROUND)
        return 2 * self.max_batch - in_flight

    def _feed_jobs(self) -> None:
        with self._cv:
            if self._paused or not self._jobs_hint:
                return
            room = self._room_for_jobs()
        if room <= 0:
            return
        jobs = self.store.claim_jobs(room)
        with self._cv:
            if len(jobs) < room:
                self._jobs_hint = False  # the table is drained; notify_jobs() or the poll turns it back on
        for job in jobs:
            data = self.store.job_data(job.id) if job.path is None else None
            task = Task(path=job.path, data=data, name=job.name, max_new_tokens=job.max_new_tokens, lane=BACKGROUND,
                        job=job)
            try:
                self.submit(task)
            except ProtocolError:  # stopping
                self.store.requeue([job.id])

    def _take_batch(self) -> list[Task]:
        """Up to max_batch queued tasks with the same max_new_tokens, interactive first, after the batch window."""
        with self._cv:
            lanes = self._lanes
            if not any(lanes):
                return []
            first = (lanes[INTERACTIVE] or lanes[BACKGROUND])[0]
            deadline = first.ready_at + self.batch_window
            # Images still decoding when the window closes would wait a whole batch for the next pass; waiting
            # for them a little longer (up to half a batch's time) is cheaper.
            s = self.stats
            grace = min(0.25, 0.5 * s["batch_seconds"] / s["batches"]) if s["batches"] else self.batch_window
            # requests arriving within the window share the forward (e.g. 8 clients sending at once)
            while len(lanes[0]) + len(lanes[1]) < self.max_batch and not self._stopping:
                now = time.monotonic()
                if now >= deadline:
                    if now >= deadline + grace or not any(t.stage == "decoding" for t in self._tasks):
                        break
                    self._cv.wait(deadline + grace - now)
                else:
                    self._cv.wait(deadline - now)
            batch: list[Task] = []
            for lane in lanes:
                for t in list(lane):
                    if len(batch) == self.max_batch:
                        break
                    if t.max_new_tokens == first.max_new_tokens:
                        lane.remove(t)
                        if not t.cancelled:
                            t.stage = "running"
                            batch.append(t)
            return batch

    def _run_batch(self, batch: list[Task]) -> None:
        for t in batch:
            if t.on_stage:
                t.on_stage("running", {"batch": len(batch)})
        streams = {i: t.on_token for i, t in enumerate(batch) if t.on_token is not None}

        def route(i: int, text: str) -> None:
            cb = streams.get(i)
            if cb is not None:
                try:
                    cb(text)
                except Exception:  # a client's stream must not fail the batch
                    log.debug("stream callback failed", exc_info=True)

        t0 = time.perf_counter()
        try:
            critiques = self.critic.critique([t.image for t in batch], max_new_tokens=batch[0].max_new_tokens,
                                             stream=route if streams else None, names=[t.name or t.path for t in batch])
        except Exception as e:
            if len(batch) > 1:
                # One bad item must not fail its companions: run each alone, so only the culprit fails (and the
                # failure recorded is its own). Rare, so the extra forwards do not matter.
                log.warning("the model failed on a batch of %d (%s: %s); running its images one by one", len(batch),
                            type(e).__name__, e)
                for t in batch:
                    if not t.finished:
                        self._run_batch([t])
                return
            log.exception("the model failed on %s", batch[0].name or batch[0].path)
            self._finish(batch[0], Outcome(error=ProtocolError(INTERNAL, f"model failure: {type(e).__name__}: {e}")))
            return
        seconds = time.perf_counter() - t0
        log.debug("batch of %d (%d background) in %.0f ms", len(batch), sum(t.lane for t in batch), 1000 * seconds)
        with self._cv:
            s = self.stats
            s["batches"] += 1
            s["images"] += len(batch)
            s["max_batch"] = max(s["max_batch"], len(batch))
            s["batch_seconds"] += seconds
            self._last_work = time.monotonic()

        from ase_model.saliency import summary, to_png

        finished = []
        for t, c in zip(batch, critiques):
            try:  # one odd result (a map that cannot be summarised) fails alone
                result = {"image": t.name or t.path, "text": c.text, "attributes": c.attributes,
                          "score": round(c.score, 4), "tags": c.tags, "saliency": summary(c.saliency),
                          "timings": c.timings, "model": c.model, "hash": t.hash, "cached": False,
                          "warnings": list(t.warnings)}
                finished.append((t, result, to_png(c.saliency)))
            except Exception as e:
                log.exception("the result for %s could not be built", t.name or t.path)
                self._finish(t, Outcome(error=ProtocolError(INTERNAL, f"model failure: {type(e).__name__}: {e}")))
        for t in batch[len(critiques):]:  # a critic that answered short must not leave anyone waiting
            self._finish(t, Outcome(error=ProtocolError(INTERNAL, "the model returned no critique for this image")))
        try:  # one transaction for the whole batch: critiques stored, jobs marked done
            self.store.save_batch([(t.job.id if t.job else None, t.hash, self.model_id, t.max_new_tokens, r, png)
                                   for t, r, png in finished])
        except Exception:
            log.exception("storing a batch failed; answering anyway")
        for t, result, png in finished:
            self._finish(t, Outcome(result, png), store_job=t.job is not None)

    def _fail_lanes(self) -> None:
        """The model is not ready (load failed): answer what is queued."""
        with self._cv:
            tasks = [t for lane in self._lanes for t in lane]
            for lane in self._lanes:
                lane.clear()
        for t in tasks:
            if t.job is not None:
                self._release_job(t)
            else:
                self._finish(t, Outcome(error=self._not_ready()))

    # ---- loading ---------------------------------------------------------------------------------------------
    def _load(self) -> None:
        with self._cv:
            self.state, self.load_error = LOADING, None
            self._load_started = time.monotonic()
        log.info("loading the model from %s", self.model_path or "the built-in starter model")
        try:
            import torch
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a daemon's log is not a terminal
            hf_logging.set_verbosity_error()
            if self.threads:
                torch.set_num_threads(self.threads)
            from ase_model.critic import Critic, default_model_dir, fingerprint

            if self.critic_factory is not None:
                critic = self.critic_factory()
            else:
                model_dir = self.model_path or default_model_dir()
                if (model_dir / "config.json").exists():
                    self.model_id = fingerprint(model_dir)  # cache hits can be answered while the weights load
                critic = Critic.from_pretrained(model_dir, device=self.device, dtype=self.dtype, tag_root=self.tag_root)
            cuda = critic.device.type == "cuda"
            sizes = self.warmup_batch_sizes or ([1, self.max_batch] if cuda else [1])
            warm = critic.warmup(sorted(set(sizes)), max_new_tokens=self.max_new_tokens if cuda else 8)
        except Exception as e:
            log.exception("loading the model failed")
            with self._cv:
                self.state, self.load_error = ERROR, f"{type(e).__name__}: {e}"
                self._cv.notify_all()
            return
        # The model sees `image_size` pixels: decoding (in the pool, in parallel) straight to twice that keeps the
        # processor's resize, which runs in the model thread, cheap. 24 MP photos would otherwise cost more there
        # than the model itself on a small model. The saliency prior wants >= 256 px.
        prior = getattr(critic.processor, "use_saliency_prior", False)
        decode_side = max(2 * critic.processor.image_size(), 256 if prior else 64)
        with self._cv:
            self.critic, self.model_id, self.decode_side = critic, critic.model_id, decode_side
            self._last_load_s = time.monotonic() - self._load_started
            self.state, self._last_work, self._jobs_hint = READY, time.monotonic(), True
            self._cv.notify_all()
        log.info("model %s ready on %s in %.1f s (warm-up %.1f s)", critic.model_id, critic.device,
                 self._last_load_s, warm)

    def _unload(self) -> None:
        with self._cv:
            critic, self.critic = self.critic, None
            if self.state == READY:
                self.state = UNLOADED
        if critic is not None:
            cuda = critic.device.type == "cuda"
            del critic
            gc.collect()
            if cuda:  # the caching allocator keeps blocks; only a process restart frees everything
                import torch

                torch.cuda.empty_cache()
            log.info("model unloaded")
        with self._cv:
            self._want_unload = False
            self._cv.notify_all()


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def _image_error(e) -> ProtocolError:
    """An ImageLoadError as the protocol's error: not_found, too_large (with the figures) or bad_image."""
    from ase_model.imagesafety import ImageNotFound, ImageTooLarge

    if isinstance(e, ImageNotFound):
        return ProtocolError(NOT_FOUND, str(e))
    if isinstance(e, ImageTooLarge):
        if e.unit == "pixels":
            return ProtocolError(TOO_LARGE, str(e), pixels=e.needed, limit_pixels=e.limit)
        return ProtocolError(TOO_LARGE, str(e), needed_mb=_mb(e.needed), limit_mb=_mb(e.limit))
    return ProtocolError(BAD_IMAGE, str(e))


def photo_file_problem(path: str, within: str | None = None) -> ProtocolError | None:
    """Why `path` cannot be a photo to critique later (`submit`), as the error to answer; None when it opens as a
    regular file. Opens without reading (non-blocking: a FIFO is named, never waited on)."""
    import os

    from ase_model.imagesafety import ImageLoadError, open_regular

    try:
        fd, _ = open_regular(path, within=within)
    except ImageLoadError as e:
        return _image_error(e)
    os.close(fd)
    return None
