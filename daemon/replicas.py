"""One model worker per device (issue 17, "Several GPUs"): `Replicas` holds a Worker per device and presents the
Worker surface that the server, the folder watcher and the culler use.

    interactive request ──> the least-loaded ready replica (fewest interactive tasks in flight; ties: lowest index)
    background jobs     ──> every replica claims from the one job table

Each replica has its own Critic (and decode engine) on its device, its own model thread and decode pool. They share
the Store, the personal profiles and the decode memory budget (`limits.decode_budget_mb` stays one daemon-wide
figure). The Store is one SQLite connection behind a lock, and `claim_jobs` selects and marks its rows in one
BEGIN IMMEDIATE transaction under that lock, so two replicas never claim the same job. A job a replica claimed
stays in that replica until it ends; at shutdown each replica puts back only the jobs it holds.

A daemon with one device runs a plain Worker (cli.make_worker), so nothing changes there. Config: `devices` =
"all" | [ids] (config.parse_devices, docs/daemon.md).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from .contract import ERROR, LOADING, READY
from .errors import Busy
from .personal import PersonalScores
from .store import Job, Store
from .worker import INTERACTIVE, Outcome, Task, Worker

__all__ = ["Replicas", "resolve_devices"]

log = logging.getLogger("ase_daemon.replicas")

_SUMMED = ("batches", "images", "batch_seconds", "cache_hits", "errors", "jobs_done", "jobs_failed")


def resolve_devices(devices: str | list[str] | None, device: str | None) -> list[str | None]:
    """The device of every replica.

    Args:
        devices: the parsed `devices` key (config.parse_devices): None, "all" or a list of device names.
        device: the `device` key (None = auto); the single replica's device when `devices` is unset, or when
            "all" finds no CUDA GPU (a machine without one runs as it did before).
    """
    if devices is None:
        return [device]
    if devices == "all":
        import torch  # only here: counting GPUs needs it, and it is slow to import

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            log.warning('devices = "all" but no CUDA GPU is visible: one worker on %s', device or "auto")
            return [device]
        return [f"cuda:{i}" for i in range(n)]
    return list(devices)


class _Replica(Worker):
    """A Worker whose decodes reserve from the first replica's budget (one for the daemon, not one each)."""

    def __init__(self, *args, shared_budget: Callable[[], object], **kwargs):
        super().__init__(*args, **kwargs)
        self._shared_budget = shared_budget

    def decode_budget(self):
        return self._shared_budget()


class Replicas:
    """One Worker per device behind the Worker's interface (module docstring).

    Takes Worker's arguments, so that it can stand in for one (cli.make_worker), plus `devices`.

    Args:
        model: the model folder (None: the built-in starter model), as Worker's.
        store: the daemon's Store, shared by every replica.
        devices: one device per replica ("cuda:0", "cpu", ...; None = auto).
        device: not used (each replica's device comes from `devices`).
        personal: the personal profiles, shared (default: a new PersonalScores).
        **settings: the rest of Worker's arguments (max_batch, max_new_tokens, ...), the same for every replica.
    """

    def __init__(self, model: str | Path | None, store: Store, *, devices: list[str | None],
                 device: str | None = None, personal: PersonalScores | None = None, **settings):
        if not devices:
            raise ValueError("Replicas needs at least one device")
        self.store = store
        self.devices = list(devices)
        self.personal = personal or PersonalScores()
        first = Worker(model, store, device=self.devices[0], personal=self.personal, **settings)
        self.replicas: list[Worker] = [first] + [
            _Replica(model, store, device=d, personal=self.personal, shared_budget=first.decode_budget, **settings)
            for d in self.devices[1:]]
        # settings the server, watcher and culler read (the same on every replica)
        self.model_path, self.tag_root = first.model_path, first.tag_root
        self.max_queue, self.max_batch, self.max_new_tokens = first.max_queue, first.max_batch, first.max_new_tokens
        self.max_file_bytes, self.decode_budget_bytes = first.max_file_bytes, first.decode_budget_bytes
        self._where: weakref.WeakKeyDictionary[Task, int] = weakref.WeakKeyDictionary()  # task -> replica index

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def start(self, load: bool = True) -> Replicas:
        """Start every replica, then load. Each Worker.start requeues jobs left running (Store.recover); all of them
        run before any replica has a model, so none can put back a job another replica has just claimed."""
        for w in self.replicas:
            w.start(load=False)
        if load:
            self.load()
        return self

    def load(self) -> str:
        """Ask every replica to load (no-op for those loading or ready). Returns the state."""
        for w in self.replicas:
            w.load()
        return self.state

    def unload(self, wait: float = 0.0) -> str:
        """Free every replica's model after its running batch, waiting up to `wait` seconds in all.

        Args:
            wait: seconds to wait for the models to be freed.
        """
        deadline = time.monotonic() + wait
        for w in self.replicas:
            w.unload(0.0)
        for w in self.replicas:
            w.unload(max(0.0, deadline - time.monotonic()))
        return self.state

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every replica at once (each finishes its running batch and puts back only the jobs it holds).

        Args:
            timeout: seconds each replica may take to finish its batch.
        """
        def stop_one(w: Worker) -> None:
            try:
                w.stop(timeout)
            except Exception:
                log.exception("stopping the replica on %s failed", w.device)

        threads = [threading.Thread(target=stop_one, args=(w,), name=f"ase-stop-{i}")
                   for i, w in enumerate(self.replicas)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def on_job_done(self, callback: Callable[[Job, Outcome], None]) -> None:
        """`callback(job, outcome)` when any replica ends a background job (see Worker.on_job_done).

        Args:
            callback: runs on a worker thread; keep it short.
        """
        for w in self.replicas:
            w.on_job_done(callback)

    def notify_jobs(self) -> None:
        """New rows in the job table: every replica looks now."""
        for w in self.replicas:
            w.notify_jobs()

    def decode_budget(self):
        """The MemoryBudget every decode of this daemon reserves from: the first replica's, shared by all."""
        return self.replicas[0].decode_budget()

    # ---- requests --------------------------------------------------------------------------------------------
    def submit(self, task: Task) -> Task:
        """Admit a task on the least-loaded replica: ready ones first, then the fewest tasks of the task's lane in
        flight, then the lowest index. A full replica (Busy) passes it to the next; Busy when all are full.

        Args:
            task: the task (see Worker.submit).
        """
        lane = "interactive" if task.lane == INTERACTIVE else "background"
        loads = [(w.state != READY, w.snapshot()["queue"][lane], i) for i, w in enumerate(self.replicas)]
        busy: Busy | None = None
        for *_, i in sorted(loads):
            self._where[task] = i  # before submit: the task may end on the decode pool before submit returns
            try:
                return self.replicas[i].submit(task)
            except Busy as e:
                busy = busy or e
        self._where.pop(task, None)
        raise busy

    def replica_of(self, task: Task) -> int | None:
        """The index of the replica a task was given to (None: not submitted here).

        Args:
            task: a task given to submit.
        """
        return self._where.get(task)

    def cancel(self, task: Task) -> bool:
        """Cancel a task that has not reached its replica's model. True when it was cancelled.

        Args:
            task: a task given to submit.
        """
        i = self._where.get(task)
        return False if i is None else self.replicas[i].cancel(task)

    def cancel_job(self, job_id: str) -> Job | None:
        """Cancel a job in the store and, in whichever replica holds it, its task.

        Args:
            job_id: the job's id.
        """
        job = None
        for w in self.replicas:  # the first cancels the row; each then drops its own task for it, if any
            job = w.cancel_job(job_id)
            if job is None:
                return None
        return job

    # ---- observation -----------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """ready when any replica is; else loading when any is; else error when any failed; else unloaded."""
        states = [w.state for w in self.replicas]
        for s in (READY, LOADING, ERROR):
            if s in states:
                return s
        return states[0]

    @property
    def model_id(self) -> str | None:
        return next((w.model_id for w in self.replicas if w.model_id is not None), None)

    @property
    def load_error(self) -> str | None:
        errors = [f"{w.device or 'auto'}: {w.load_error}" for w in self.replicas if w.load_error]
        return "; ".join(errors) or None

    @property
    def critic(self):
        """The first loaded replica's Critic (None while none is loaded)."""
        return next((w.critic for w in self.replicas if w.critic is not None), None)

    @property
    def stats(self) -> dict:
        """Worker.stats summed over the replicas (max_batch: the largest)."""
        out = dict.fromkeys(_SUMMED, 0)
        out["max_batch"] = 0
        for w in self.replicas:
            s = dict(w.stats)
            for key in _SUMMED:
                out[key] += s.get(key, 0)
            out["max_batch"] = max(out["max_batch"], s.get("max_batch", 0))
        return out

    def snapshot(self) -> dict:
        """Worker.snapshot's keys over all replicas (sums; `device` lists them), plus `replicas`: each replica's
        own snapshot (without the model, which they share) and its `index`."""
        snaps = [w.snapshot() for w in self.replicas]
        s = self.stats
        out = {
            "state": self.state,
            "model": self.model_id,
            "device": ",".join(x["device"] for x in snaps),
            "queue": {lane: sum(x["queue"][lane] for x in snaps) for lane in ("interactive", "background")},
            "batches": {"count": s["batches"], "images": s["images"], "max_size": s["max_batch"],
                        "mean_size": round(s["images"] / s["batches"], 3) if s["batches"] else 0.0,
                        "mean_ms": round(1000 * s["batch_seconds"] / s["batches"], 2) if s["batches"] else 0.0},
            "cache_hits": s["cache_hits"], "errors": s["errors"],
            "jobs_done": s["jobs_done"], "jobs_failed": s["jobs_failed"],
            "load_seconds": max((x["load_seconds"] for x in snaps if x["load_seconds"] is not None), default=None),
        }
        if "decode_memory" in snaps[0]:  # the first replica's budget is everyone's
            out["decode_memory"] = snaps[0]["decode_memory"]
        if self.load_error:
            out["load_error"] = self.load_error
        cuda = [x["cuda_allocated_mb"] for x in snaps if "cuda_allocated_mb" in x]
        if cuda:
            out["cuda_allocated_mb"] = round(sum(cuda), 1)
        out["replicas"] = [{"index": i, **{k: v for k, v in x.items() if k != "model"}} for i, x in enumerate(snaps)]
        return out
