"""The model worker: one thread owns the device and the Critic; a small pool decodes and hashes images beside it.

    admit ──> decode pool (read, sha256, cache lookup, load_image) ──> lanes ──> model thread ──> finisher ──> done
               interactive (critique) lane first, background (jobs) lane fills the rest

With the Critic's decode engine (the default) the model thread batches continuously: tasks take free engine slots
at the next step and leave when their critique ends, and results are built and stored on a finisher thread
(worker_stream.py). Without it (`generate` fallback) the model thread runs static batches (worker_batches.py).

Transport-free on purpose (no zmq import): the server drives it through callbacks, and the GPU benchmark drives
it directly on machines without pyzmq. Callbacks run on the worker's threads; keep them short and thread-safe
(the server hands them to its event loop with `loop.call_soon_threadsafe`).

Background work lives in the Store's job table: the worker claims queued jobs while it has room, finishes them
in the same transaction that stores their critique, and tells `on_job_done` listeners (the folder watcher).

The Worker is split along its seams: worker_intake.py (tasks, decode pool, cache), worker_batches.py (the model
thread: static batches and results), worker_stream.py (continuous batching through the engine), worker_model.py
(loading and unloading). Failures are the daemon's own exceptions
(errors.py), which the server maps to error replies.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .contract import CANCELLED, ERROR, UNLOADED
from .errors import Busy, Cancelled
from .personal import PersonalScores
from .store import Job, Store
from .worker_batches import JOB_POLL_S, _Batches
from .worker_intake import BACKGROUND, INTERACTIVE, Outcome, Task, _Intake, log, photo_file_problem
from .worker_model import _ModelLife
from .worker_stream import _Stream

__all__ = ["Worker", "Task", "Outcome", "INTERACTIVE", "BACKGROUND", "DECODE_MAX_SIDE", "JOB_POLL_S",
           "photo_file_problem"]

DECODE_MAX_SIDE = 1024  # until a model is loaded; then twice the model's input size (see _load)


class Worker(_Intake, _Stream, _Batches, _ModelLife):
    """The model worker (module docstring). Args are the daemon's [worker] settings (docs/daemon.md)."""

    def __init__(self, model: str | Path | None, store: Store, *, device: str | None = None, dtype: str | None = None,
                 threads: int = 0, tag_root: str = "aesthetics", max_queue: int = 64, max_batch: int = 8,
                 batch_window_ms: float = 20.0, max_new_tokens: int = 160, decode_threads: int = 2,
                 idle_unload_s: float = 0.0, warmup_batch_sizes: list[int] | None = None,
                 critic_factory: Callable[[], object] | None = None, max_file_mb: float = 1024.0,
                 decode_budget_mb: float = 2048.0, personal: PersonalScores | None = None, engine: bool | str = "auto",
                 slots: int = 0):
        self.model_path = Path(model).expanduser() if model else None
        self.critic_factory = critic_factory  # builds the Critic instead of loading `model` (benchmarks)
        self.store = store
        self.device, self.dtype, self.threads, self.tag_root = device, dtype, threads, tag_root
        self.engine = engine  # the Critic decodes through ase_model's DecodeEngine (config `engine`)
        self.max_queue, self.max_batch = max_queue, max_batch
        self.slots = slots or max_batch  # the engine's slots (continuous batching); 0 = max_batch
        self.batch_window = batch_window_ms / 1000
        self.max_new_tokens = max_new_tokens
        self.idle_unload_s = idle_unload_s
        self.warmup_batch_sizes = warmup_batch_sizes
        self.max_file_bytes = int(max_file_mb * 2**20)  # a photo file (or image frame) over this: too_large
        self.decode_budget_bytes = int(decode_budget_mb * 2**20)  # decoder memory shared by the decode pool
        self._budget = None  # the MemoryBudget, made on first use (ase_model imports transformers: not at start)
        self.personal = personal or PersonalScores()  # tasks with a `profile` also get a personal_score

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
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix="ase-finish")  # results off the model thread
        self._live: dict = {}  # engine handle -> worker_stream._Live (model thread; read under _cv)
        self._admitting: set[Task] = set()  # taken from a lane, image side running (or prepared, not yet in)
        # newcomers' image side on a thread per lane while the model thread decodes (worker_stream.py)
        self._preparers = [ThreadPoolExecutor(1, thread_name_prefix=f"ase-prepare-{name}")
                           for name in ("interactive", "background")]  # indexed by lane
        self._preparing = [False, False]  # a group of that lane is on its preparer
        self._ready: list = []  # prepared groups (tasks, prepared, started) waiting to enter the engine
        self._held: list = []  # (live, need): too long for the busy engine's cache, waiting for it to drain
        self._thread = threading.Thread(target=self._run, name="ase-model", daemon=True)
        # batches = model steps (static batches, or engine steps), slot_steps = images summed over them,
        # images = critiques the model made; groups = image-side forwards of newcomers (streaming)
        self.stats = {"batches": 0, "images": 0, "max_batch": 0, "batch_seconds": 0.0, "cache_hits": 0, "errors": 0,
                      "jobs_done": 0, "jobs_failed": 0, "slot_steps": 0, "groups": 0, "group_images": 0}


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
        for preparer in self._preparers:
            preparer.shutdown(wait=True)
        self._finisher.shutdown(wait=True)  # results of what the model finished are delivered
        with self._cv:
            left = list(self._tasks)
        jobs = [t.job.id for t in left if t.job is not None and t.stage != "running"]
        if jobs:
            self.store.requeue(jobs)
        for t in left:
            if t.stage != "running" or not self._thread.is_alive():
                self._finish(t, Outcome(error=Cancelled("the daemon is shutting down")), store_job=False)

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
                raise Cancelled("the daemon is shutting down")
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
        """Cancel a task that has not reached the model, or is decoding in the engine (its slot is freed at the
        next step). True when it was cancelled."""
        with self._cv:
            decoding = any(x.task is task for x in self._live.values()) or any(x.task is task for x, _ in self._held)
            if task.finished or (task.stage == "running" and not decoding):
                return False
            task.cancelled = True
            for lane in self._lanes:
                if task in lane:
                    lane.remove(task)
        self._finish(task, Outcome(error=Cancelled("cancelled by the client")), store_job=False)
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
            # count: model steps; mean_size / max_size: images per step (with the engine: active slots)
            "batches": {"count": s["batches"], "images": s["images"], "max_size": s["max_batch"],
                        "mean_size": round(s["slot_steps"] / s["batches"], 3) if s["batches"] else 0.0,
                        "mean_ms": round(1000 * s["batch_seconds"] / s["batches"], 2) if s["batches"] else 0.0,
                        "streaming": self._streaming(), "slots": self._slot_count() if self._streaming() else 0,
                        "groups": s["groups"],
                        "mean_group": round(s["group_images"] / s["groups"], 3) if s["groups"] else 0.0},
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
        if self._streaming():  # a batch is one engine step: a critique takes about max_new_tokens of them
            per_batch *= self.max_new_tokens
        return min(60.0, max(0.1, per_batch * (1 + waiting / self._slot_count())))
