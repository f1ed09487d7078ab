"""The daemon's `cull` op: culling a shoot as a background job, with progress events, cancel and stored results.

    request  cull {paths: [absolute files or folders], recursive?, apply?, pick_rating?, overwrite_rating?,
                   max_gap_s?, min_similarity?, profile?, progress?, wait?}
    events   progress {stage: "accepted" | "waiting for the model" | "culling" | "critiquing" | "writing sidecars",
                       job, done, total}
    reply    {job, state: "done", decisions: [CullDecision + sidecar/rating with apply], errors: [{path, message}],
              counts: {...}}   or the error `cancelled` (cancel {job}) / `not_ready` (the model failed to load)

A cull is a row of the job table (kind KIND_CULL, so the model worker never claims it) run by one cull thread, one
cull at a time. It is ase-mllm cull's pipeline (cull_run.py) with the worker as its critic: photos the store knows
cost nothing, new ones go to the worker's background lane in batches, which stores their critiques as any other.
The decisions are kept in the store (`job` returns them); `wait: false` answers at once with the job's id. A
retried request (same id) re-attaches to its job. Cull jobs a dead daemon left are failed at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import contract as P
from .errors import BadArgument, Cancelled, DaemonFault, NotReady
from .worker import BACKGROUND, Outcome, Task

__all__ = ["Culler"]

log = logging.getLogger("ase_daemon.cull")


class Culler:
    """Serves `cull` (install() adds it to the server).

    Args:
        store: the daemon's Store.
        worker: the model worker (critiques of photos the store does not know).
        heartbeat_s: how often a waiting cull sends a progress event (keeps clients' Lazy Pirate timers quiet).
    """

    def __init__(self, store, worker, heartbeat_s: float = 1.0):
        self.store, self.worker, self.heartbeat_s = store, worker, max(0.05, heartbeat_s)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ase-cull")
        self._calls: dict[str, list] = {}  # job id -> the calls waiting for its end
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = None

    def install(self, server) -> None:
        self.server = server
        server.add_op(P.OP_CULL, self._op, P.CULL_OPS[P.OP_CULL])
        server.start_hooks.append(self.start)
        server.stop_hooks.append(self.stop)

    def start(self) -> None:
        n = self.store.abandon_cull_jobs("the daemon stopped during this cull; send it again")
        if n:
            log.info("%d cull job(s) a previous daemon left were failed", n)

    def stop(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ---- the op --------------------------------------------------------------------------------------------------
    async def _op(self, call, req):
        a = req.args
        paths = a["paths"]
        if not paths or not all(isinstance(p, str) and p and "\x00" not in p for p in paths):
            raise BadArgument("cull: paths must be a non-empty list of file or folder paths")
        if not all(os.path.isabs(p) for p in paths):
            raise BadArgument("cull: paths must be absolute (the daemon's working directory is not yours)")
        if a.get("pick_rating") is not None and not 1 <= a["pick_rating"] <= 5:
            raise BadArgument("cull: pick_rating must be 1..5")
        if not 0.0 <= a.get("min_similarity", 0.5) <= 1.0 or a.get("max_gap_s", 0.0) < 0:
            raise BadArgument("cull: min_similarity must be 0..1 and max_gap_s >= 0")
        if a.get("profile") is not None:  # refused now, not after the queue: no such profile, or another model's
            self.worker.personal.profile(a["profile"], self.worker.model_id)
        meta = {k: v for k, v in a.items() if k not in ("progress", "wait")}
        loop = asyncio.get_running_loop()
        job, created = await loop.run_in_executor(None, lambda: self.store.add_job(
            path=paths[0], kind=P.KIND_CULL, meta=meta, request_id=req.id, owner=call.client))
        if not a.get("wait", True):
            if created:
                self._pool.submit(self._run, job)
            return {"job": job.id, "state": job.state, "created": created}
        call.progress = a.get("progress", True)
        if not created and job.state not in (P.QUEUED, P.RUNNING):  # a retry after the end: answer from the store
            return self._stored_answer(job)
        with self._lock:
            self._calls.setdefault(job.id, []).append(call)
        if created:
            self._pool.submit(self._run, job)
        self._emit(job.id, {"stage": "accepted", "job": job.id})
        return None

    def _stored_answer(self, job):
        if job.state == P.DONE:
            return {"job": job.id, "state": job.state, "decisions": self.store.cull_results(job.id), "errors": [],
                    "counts": {}}
        if job.state == P.CANCELLED:
            raise Cancelled(f"cull job {job.id} was cancelled")
        raise DaemonFault((job.error or {}).get("message") or f"cull job {job.id} failed")

    # ---- talking to the calls (from the cull thread) ---------------------------------------------------------------
    def _event(self, job_id: str, data: dict) -> None:
        loop = getattr(self.server, "loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(self._emit, job_id, data)

    def _emit(self, job_id: str, data: dict) -> None:
        with self._lock:
            calls = list(self._calls.get(job_id, ()))
        for call in calls:
            if call.progress:
                self.server._event(call, P.PROGRESS, data)

    def _end(self, job_id: str, result: dict | None = None, error: Exception | None = None) -> None:
        def answer():
            with self._lock:
                calls = self._calls.pop(job_id, [])
            for call in calls:
                if error is None:
                    self.server._answer(call, result)
                else:
                    self.server._fail_with(call, error)

        loop = getattr(self.server, "loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(answer)

    # ---- the cull thread -----------------------------------------------------------------------------------------
    def _run(self, job) -> None:
        try:
            result = self._cull(job)
            if not self.store.set_cull_job_state(job.id, P.DONE):
                raise Cancelled(f"cull job {job.id} was cancelled")
        except DaemonFault as e:
            state = P.CANCELLED if e.code == P.CANCELLED else P.FAILED
            self.store.set_cull_job_state(job.id, state, {"code": e.code, "message": str(e)})
            self._end(job.id, error=e)
            return
        except Exception as e:  # a bug: answer, never leave the client waiting
            log.exception("cull job %s failed", job.id)
            fault = DaemonFault(f"the cull failed: {type(e).__name__}: {e}")
            self.store.set_cull_job_state(job.id, P.FAILED, {"code": fault.code, "message": str(fault)})
            self._end(job.id, error=fault)
            return
        self._end(job.id, result=result)

    def _cancelled(self, job_id: str) -> bool:
        if self._stopping.is_set():
            return True
        job = self.store.get_job(job_id)
        return job is None or job.state == P.CANCELLED

    def _cull(self, job) -> dict:
        from ase_model.culling import CullConfig, GroupingConfig, cull

        from .cull_run import CullSource, list_photos
        from .xmp_cull import CullSidecarOptions, apply_decisions

        if not self.store.set_cull_job_state(job.id, P.RUNNING):
            raise Cancelled(f"cull job {job.id} was cancelled before it started")
        a = job.meta
        files, errors = list_photos(a["paths"], recursive=a.get("recursive", False))
        model_id = self._model_id(job.id)
        name = a.get("profile")  # new photos' critiques compute the profile's features in the same batch
        source = CullSource(self.store, model_id, self._critic(job.id, name),
                            max_new_tokens=self.worker.max_new_tokens, batch_size=self.worker.max_batch,
                            budget=self.worker.decode_budget())
        total = len(files)
        self._event(job.id, {"stage": "culling", "job": job.id, "done": 0, "total": total})

        def progress(done: int, total: int) -> None:
            self._event(job.id, {"stage": "culling", "job": job.id, "done": done, "total": total})

        feats = source.features(files, progress=progress, errors=errors, cancelled=lambda: self._cancelled(job.id))
        if self._cancelled(job.id):
            raise Cancelled(f"cull job {job.id} was cancelled")
        grouping = GroupingConfig()
        grouping.max_gap_s = float(a.get("max_gap_s", grouping.max_gap_s))
        grouping.min_similarity = float(a.get("min_similarity", grouping.min_similarity))
        mine = None
        if name is not None:
            from .cull_run import personal_scores

            unscored: dict[str, str] = {}
            mine = personal_scores(feats, source.hashes, lambda h: self.worker.personal.from_cache(name, model_id, h),
                                   self._personal_compute(job.id, name), unscored)
            for message in unscored.values():
                log.warning("cull job %s: %s", job.id, message)
        decisions = [d.to_dict() for d in cull(feats, CullConfig(grouping=grouping), personal=mine)]
        sidecar_errors: dict[str, str] = {}
        if a.get("apply"):
            options = CullSidecarOptions(pick_rating=a.get("pick_rating"),
                                         overwrite_rating=a.get("overwrite_rating", False))
            apply_decisions(decisions, options, sidecar_errors, progress=lambda done, total: self._event(
                job.id, {"stage": "writing sidecars", "job": job.id, "done": done, "total": total}))
        self.store.save_cull_results(job.id, decisions)
        counts = {**source.counts, "culled": len(decisions), "groups": len({d["group"] for d in decisions}),
                  **{f"{k}s": sum(d["decision"] == k for d in decisions) for k in P.CULL_DECISIONS},
                  "sidecars_failed": len(sidecar_errors)}
        return {"job": job.id, "state": P.DONE, "decisions": decisions,
                "errors": [{"path": p, "message": m} for p, m in errors.items()], "counts": counts}

    def _model_id(self, job_id: str) -> str:
        """The worker's model fingerprint (the store's key), asking it to load when it has none yet."""
        last = 0.0
        while self.worker.model_id is None:
            if self.worker.state == P.ERROR:
                raise NotReady(f"the model failed to load: {self.worker.load_error}")
            if self._cancelled(job_id):
                raise Cancelled(f"cull job {job_id} was cancelled")
            self.worker.load()
            if time.monotonic() - last >= self.heartbeat_s:
                last = time.monotonic()
                self._event(job_id, {"stage": "waiting for the model", "job": job_id, "model": self.worker.state})
            time.sleep(0.05)
        return self.worker.model_id

    def _wait_ready(self, job_id: str) -> None:
        last = 0.0
        while self.worker.state != P.READY:
            if self.worker.state == P.ERROR:
                raise NotReady(f"the model failed to load: {self.worker.load_error}")
            if self._cancelled(job_id):
                raise Cancelled(f"cull job {job_id} was cancelled")
            self.worker.load()
            if time.monotonic() - last >= self.heartbeat_s:
                last = time.monotonic()
                self._event(job_id, {"stage": "waiting for the model", "job": job_id, "model": self.worker.state})
            time.sleep(0.05)

    def _through_worker(self, job_id: str, paths: list, profile: str | None = None) -> list[Outcome | None]:
        """Critiques of photo files through the worker's background lane (stored by the worker), one Outcome each;
        with `profile` each result also has that profile's personal_score."""
        self._wait_ready(job_id)
        outcomes: list[Outcome | None] = [None] * len(paths)
        left = [len(paths)]
        all_done = threading.Event()
        lock = threading.Lock()
        tasks = []
        for k, path in enumerate(paths):
            def on_done(outcome: Outcome, k=k) -> None:
                outcomes[k] = outcome
                with lock:
                    left[0] -= 1
                    if left[0] == 0:
                        all_done.set()

            task = Task(path=str(path), name=str(path), lane=BACKGROUND, on_done=on_done, profile=profile)
            tasks.append(task)
            try:
                self.worker.submit(task)
            except DaemonFault as e:
                on_done(Outcome(error=e))
        while paths and not all_done.wait(self.heartbeat_s):
            if self._cancelled(job_id):
                for t in tasks:
                    self.worker.cancel(t)
            self._event(job_id, {"stage": "critiquing", "job": job_id, "photos": len(paths)})
        return outcomes

    def _critic(self, job_id: str, profile: str | None = None):
        """critique(items) for CullSource through the worker's background lane (the worker stores each critique)."""
        from .cull_run import critique_from_result

        def run(items):
            outcomes = self._through_worker(job_id, [path for path, _, _ in items], profile)
            out = []
            for (path, _, _), o in zip(items, outcomes):
                if o is not None and o.ok:
                    c = critique_from_result(o.result.to_dict(), o.saliency_png)
                    out.append(c if c is not None else ValueError(f"{path}: the critique came without a saliency map"))
                else:
                    out.append(ValueError(o.error.message if o is not None and o.error else f"{path}: no critique"))
            return out

        return run

    def _personal_compute(self, job_id: str, profile: str):
        """compute([(path, hash)]) for cull_run.personal_scores: photos whose features are not cached go through
        the worker with the profile (a stored critique then runs the model's image side once more)."""

        def compute(items):
            outcomes = self._through_worker(job_id, [path for path, _ in items], profile)
            return [o.result.personal_score if o is not None and o.ok and o.result.personal_score is not None
                    else ValueError(o.error.message if o is not None and o.error else "not computed")
                    for o in outcomes]

        return compute
