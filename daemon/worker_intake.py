"""The worker's intake: tasks, their outcomes, and the decode pool's side (read, hash, cache lookup, decode).

    admit ──> decode pool: read the file (regular files only, capped), sha256, the store's critique (a cache hit
              finishes here), decode to the model's size ──> the task's lane (model thread, worker_batches.py)

`_Intake` is a part of `Worker` (worker.py), split out along this seam; it uses the Worker's state (its lock
`_cv`, lanes, store, stats). Failures are the daemon's own exceptions (errors.py); the server turns them into
error replies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .contract import CANCELLED, READY, UNLOADED, CritiqueResult
from .errors import BadImage, DaemonFault, NotFound, TooLarge
from .store import Job, content_hash

__all__ = ["INTERACTIVE", "BACKGROUND", "Outcome", "Task", "photo_file_problem"]

log = logging.getLogger("ase_daemon.worker")

INTERACTIVE, BACKGROUND = 0, 1


@dataclass
class Outcome:
    """How a task ended: a result (+ the saliency PNG), or an error (code, message, extra)."""

    result: CritiqueResult | None = None
    saliency_png: bytes | None = None
    error: DaemonFault | None = None

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
    profile: str | None = None  # a personal profile: the result also gets its personal_score
    # filled in by the worker
    warnings: list = field(default_factory=list)  # damage the decoder papered over; goes into the result
    stage: str = "admitted"
    hash: str | None = None
    image: object = None
    ready_at: float = 0.0
    cancelled: bool = False
    finished: bool = False
    admitted_at: float = field(default_factory=time.monotonic)


class _Intake:
    """Worker's decode-pool side: reading, hashing, the cache, decoding, and finishing tasks."""

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
                raise TooLarge(f"{task.name or '<bytes>'}: image of {len(task.data) / 2**20:,.1f} "
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
                personal = None
                if hit is not None and task.profile:  # features not cached yet: the model runs once more
                    personal = self.personal.from_cache(task.profile, model_id, task.hash)
                if hit is not None and (personal is not None or not task.profile):
                    with self._cv:
                        self.stats["cache_hits"] += 1
                    from ase_model.imageio import damage_warnings

                    # the store keeps the critique, not the file's damage: look again (headers only, cheap)
                    warnings = damage_warnings(data, name=task.name or task.path)
                    result = hit.result.for_request(task.name or task.path, warnings)  # cached: set by the store
                    if personal is not None:
                        result = result.with_personal(task.profile, personal)
                    if task.path is not None and task.job is None:  # a job is indexed when it is marked done
                        self.store.note_photo(task.path, task.hash, model_id, task.max_new_tokens)
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
        except DaemonFault as e:
            self._finish(task, Outcome(error=e))
        except Exception as e:  # a bug: answer, never leave the client hanging
            log.exception("preparing %s failed", task.name or task.path)
            self._finish(task, Outcome(error=DaemonFault(f"{type(e).__name__}: {e}")))

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
        if outcome.ok and outcome.result.cached:  # completed from the store, the model never ran
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


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def _image_error(e) -> DaemonFault:
    """An ImageLoadError as the daemon's fault: NotFound, TooLarge (with the figures) or BadImage."""
    from ase_model.imagesafety import ImageNotFound, ImageTooLarge

    if isinstance(e, ImageNotFound):
        return NotFound(str(e))
    if isinstance(e, ImageTooLarge):
        if e.unit == "pixels":
            return TooLarge(str(e), pixels=e.needed, limit_pixels=e.limit)
        return TooLarge(str(e), needed_mb=_mb(e.needed), limit_mb=_mb(e.limit))
    return BadImage(str(e))


def photo_file_problem(path: str, within: str | None = None) -> DaemonFault | None:
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
