"""The worker's model thread: batching the lanes, running the model, and turning its output into results.

    lanes (interactive first, background jobs fill the rest) ──> one batch of up to max_batch images with the same
    max_new_tokens, after the batch window ──> Critic.critique ──> CritiqueResult + saliency frame per image ──>
    the store (one transaction per batch) ──> each task's on_done / the job listeners

`_Batches` is a part of `Worker` (worker.py), split out along this seam; it uses the Worker's state.
"""

from __future__ import annotations

import logging
import time

from .contract import ERROR, READY, UNLOADED, CritiqueResult, encode_saliency
from .errors import Cancelled, ModelFailure
from .worker_intake import BACKGROUND, INTERACTIVE, Outcome, Task

__all__ = ["JOB_POLL_S"]

log = logging.getLogger("ase_daemon.worker")

JOB_POLL_S = 5.0  # also look at the job table this often (jobs added without notify_jobs())


class _Batches:
    """Worker's model thread: the loop, feeding jobs, batching, running the model, results."""

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
                self._stream_drain()
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
            if self._streaming():  # continuous batching through the engine (worker_stream.py)
                self._stream_once()
                continue
            batch = self._take_batch()
            if batch:
                self._run_batch(batch)
        self._stream_drain()  # stopping: what is decoding ends first (as a running batch does)
        log.debug("model thread exits")

    def _has_work(self) -> bool:
        queued, ready = any(self._lanes), bool(self._ready)
        if self._streaming() and (queued or ready):
            # work that cannot start now (its lane's preparer busy; background work while an interactive critique
            # is in flight) waits for the notify that ends it, not in a spinning loop
            fg = self._interactive_in_flight()
            queued = (bool(self._lanes[INTERACTIVE]) and not self._preparing[INTERACTIVE]) or (
                bool(self._lanes[BACKGROUND]) and not self._preparing[BACKGROUND] and not fg)
            ready = any(tasks[0].lane == INTERACTIVE or not fg for tasks, _, _ in self._ready)
        if self._want_load or self._want_unload or queued or self._live or self._held or ready:
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
        return 2 * self._slot_count() - in_flight

    def _feed_jobs(self) -> None:
        with self._cv:
            if self._paused or not self._jobs_hint:
                return
            room = self._room_for_jobs()
        # streaming: claim in handfuls, not one job per engine step (each claim is a store transaction)
        if room <= 0 or (self._live and room < max(1, self._slot_count() // 2)):
            return
        jobs = self.store.claim_jobs(room)
        with self._cv:
            if len(jobs) < room:
                self._jobs_hint = False  # the table is drained; notify_jobs() or the poll turns it back on
        for job in jobs:
            data = self.store.job_data(job.id) if job.path is None else None
            task = Task(path=job.path, data=data, name=job.name, max_new_tokens=job.max_new_tokens, lane=BACKGROUND,
                        job=job, profile=job.profile)
            try:
                self.submit(task)
            except Cancelled:  # stopping
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
            self._finish(batch[0], Outcome(error=ModelFailure(f"model failure: {type(e).__name__}: {e}")))
            return
        seconds = time.perf_counter() - t0
        log.debug("batch of %d (%d background) in %.0f ms", len(batch), sum(t.lane for t in batch), 1000 * seconds)
        with self._cv:
            s = self.stats
            s["batches"] += 1
            s["images"] += len(batch)
            s["slot_steps"] += len(batch)
            s["max_batch"] = max(s["max_batch"], len(batch))
            s["batch_seconds"] += seconds
            self._last_work = time.monotonic()
        self._deliver(batch, critiques, self.critic)

    def _deliver(self, batch: list[Task], critiques: list, critic) -> None:
        """Critiques to results: CritiqueResult + saliency PNG per task, the store (one transaction for the
        group), personal scores, each task's answer. Runs on the model thread (static batches) or the finisher
        thread (worker_stream.py).

        Args:
            batch: the tasks.
            critiques: their Critiques, in order (fewer: the rest fail).
            critic: the Critic that made them (for personal scores).
        """
        from ase_model.saliency import summary

        finished = []
        for t, c in zip(batch, critiques):
            try:  # one odd result (a map that cannot be summarised) fails alone
                result = CritiqueResult(text=c.text, attributes=c.attributes, score=c.score, tags=c.tags,
                                        saliency=summary(c.saliency), timings=c.timings, model=c.model, hash=t.hash,
                                        cached=False, image=t.name or t.path, warnings=list(t.warnings))
                finished.append((t, result, encode_saliency(c.saliency)))
            except Exception as e:
                log.exception("the result for %s could not be built", t.name or t.path)
                self._finish(t, Outcome(error=ModelFailure(f"model failure: {type(e).__name__}: {e}")))
        for t in batch[len(critiques):]:  # a critic that answered short must not leave anyone waiting
            self._finish(t, Outcome(error=ModelFailure("the model returned no critique for this image")))
        try:  # one transaction for the whole batch: critiques stored, jobs marked done
            self.store.save_batch([(t.job.id if t.job else None, t.hash, self.model_id, t.max_new_tokens, r, png,
                                    t.path) for t, r, png in finished])
        except Exception:
            log.exception("storing a batch failed; answering anyway")
        for t, result, png in self._with_personal(finished, critic):
            self._finish(t, Outcome(result, png), store_job=t.job is not None)

    def _with_personal(self, finished: list, critic) -> list:
        """The results of tasks that name a profile, with its personal_score (not stored: computed per answer).
        The features come from one more pass of the image side, cached for the next time."""
        by_profile: dict[str, list[int]] = {}
        for i, (t, _, _) in enumerate(finished):
            if t.profile:
                by_profile.setdefault(t.profile, []).append(i)
        out = list(finished)
        for name, idx in by_profile.items():
            try:
                scores = self.personal.compute(critic, name, [finished[i][0].image for i in idx],
                                               [finished[i][0].hash for i in idx])
            except Exception as e:  # the profile went away or was relearnt meanwhile: the critique still counts
                log.warning("personal score with profile %r failed: %s: %s", name, type(e).__name__, e)
                continue
            for i, score in zip(idx, scores):
                t, result, png = finished[i]
                out[i] = (t, result.with_personal(name, score), png)
        return out

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
