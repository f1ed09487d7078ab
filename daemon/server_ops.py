"""The server's ops: ping, status, critique, submit, job, cancel, load, unload, shutdown (docs/protocol.md).

`_Ops` is a part of `Server` (server.py), split out along this seam. A handler gets (call, request) and returns a
result dict, (dict, frames) or an awaitable of those, or None when it answers later (critique); it raises the
daemon's exceptions (errors.py) or ProtocolError, and the server turns them into error replies.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import TYPE_CHECKING

from . import contract as P
from .errors import Busy, DaemonFault
from .store import QueueFull
from .worker import INTERACTIVE, Outcome, Task, photo_file_problem

log = logging.getLogger("ase_daemon.server")

if TYPE_CHECKING:
    from .server import Call

__all__ = ["GUEST_STATUS", "package_version"]


@functools.cache
@functools.cache
def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("ase-mllm")
    except Exception:  # not installed (running from a source tree)
        return "0+unknown"



# status keys a guest may read: nothing that names a path, an endpoint or the process
GUEST_STATUS = ("state", "model", "device", "version", "uptime_s", "queue", "batches", "memory", "counts", "jobs",
                "limits", "load_seconds")


class _Ops:
    """Server's op handlers (`_op_<name>` for every op of contract.OPS)."""

    def _op_ping(self, call, req):
        return {"state": self.worker.state, "model": self.worker.model_id, "version": package_version(),
                "protocol": P.VERSION, "pid": os.getpid()}

    def _op_status(self, call, req):
        w = self.worker.snapshot()
        memory = {"rss_mb": _rss_mb()}
        if "cuda_allocated_mb" in w:
            memory["cuda_allocated_mb"] = w.pop("cuda_allocated_mb")
        jobs = self.store.job_counts()
        w["queue"]["jobs_queued"] = jobs[P.QUEUED]
        out = {
            "state": w.pop("state"), "model": w.pop("model"), "device": w.pop("device"), "version": package_version(),
            "pid": os.getpid(), "uptime_s": round(time.time() - self.started, 1),
            "queue": w.pop("queue"), "batches": w.pop("batches"), "memory": memory,
            "counts": {"requests": self.counts["requests"], "dropped": self.counts["dropped"],
                       "critiques": self.worker.stats["images"],
                       "cache_hits": w.pop("cache_hits"), "errors": self.counts["errors"],
                       "failed_images": w.pop("errors"), "jobs_done": w.pop("jobs_done"),
                       "jobs_failed": w.pop("jobs_failed")},
            "jobs": jobs, "endpoints": self.config.all_endpoints(),
            "limits": dict(vars(self.config.limits)),
            **w,
        }
        if call.remote:  # no endpoints, folders, pid or load errors (they name paths) for guests
            return {key: out[key] for key in GUEST_STATUS if key in out}
        return {**out, **{key: hook() for key, hook in self.status_hooks.items()}}

    def _image_args(self, call: Call, req: P.Request) -> dict:
        """path (local clients only, absolute) xor one binary frame; name; max_new_tokens within the limit."""
        a = req.args
        path, frames = a.get("path"), req.frames
        if (path is None) == (not frames):
            raise P.ProtocolError(P.BAD_REQUEST, f"{req.op} needs either args.path or one binary frame with the "
                                  "image bytes (not both)", req.id)
        if path is not None:
            if call.remote:
                raise P.ProtocolError(P.FORBIDDEN, "only the daemon's own user may name files on its disk (this "
                                      f"client is {call.client}); send the image bytes as a binary frame", req.id)
            if not os.path.isabs(path):
                raise P.ProtocolError(P.BAD_REQUEST, f"path must be absolute (the daemon's working directory is "
                                      f"not yours): {path!r}", req.id)
        elif not frames[0]:
            raise P.ProtocolError(P.BAD_REQUEST, "the image frame is empty", req.id)
        mnt = a.get("max_new_tokens")
        limit = self.config.limits.max_new_tokens
        if mnt is not None and not 1 <= mnt <= limit:
            raise P.ProtocolError(P.BAD_REQUEST, f"max_new_tokens must be 1..{limit}", req.id)
        profile = a.get("profile")
        if profile is not None:  # refused now, not after the queue: no such profile, or learnt on another model
            self.worker.personal.profile(profile, self.worker.model_id)
        return {"path": path, "data": frames[0] if frames else None, "name": a.get("name") or path,
                "max_new_tokens": mnt or self.worker.max_new_tokens, "profile": profile}

    def _op_critique(self, call: Call, req: P.Request):
        key = (call.client, req.id)
        previous = self._inflight.get(key)
        if previous is not None:  # a Lazy Pirate retry: answer the new socket, don't run it twice
            previous.sock, previous.envelope = call.sock, call.envelope
            call.done = True
            return None
        image = self._image_args(call, req)
        stream, want_png = req.args.get("stream", False), req.args.get("saliency", True)
        call.progress = stream or req.args.get("progress", False)
        loop = self.loop

        def on_done(outcome: Outcome):
            loop.call_soon_threadsafe(self._critique_done, call, outcome, want_png)

        def on_token(text: str):
            loop.call_soon_threadsafe(self._event, call, P.TOKEN, {"text": text})

        def on_stage(stage: str, info: dict):
            if call.progress:
                loop.call_soon_threadsafe(self._event, call, P.PROGRESS, {"stage": stage, **info})

        task = Task(**image, force=req.args.get("force", False), lane=INTERACTIVE, on_done=on_done,
                    on_token=on_token if stream else None, on_stage=on_stage)
        call.task = task
        self._inflight[key] = call
        try:
            self.worker.submit(task)
        except DaemonFault:  # busy, or shutting down
            self._inflight.pop(key, None)
            raise
        if call.progress:
            self._event(call, P.PROGRESS, {"stage": "accepted"})
        return None

    def _critique_done(self, call: Call, outcome: Outcome, want_png: bool) -> None:
        if outcome.ok:
            frames = [outcome.saliency_png] if want_png and outcome.saliency_png else []
            self._answer(call, (outcome.result.to_dict(), frames))
        else:
            self._fail_with(call, outcome.error)

    async def _op_submit(self, call: Call, req: P.Request):
        image = self._image_args(call, req)
        path = image["path"]
        problem = await self.loop.run_in_executor(None, photo_file_problem, path) if path is not None else None
        if problem is not None:  # says what it is (a FIFO, a device, a folder ...), not just "no such file"
            raise problem
        add = functools.partial(
            self.store.add_job, path=image["path"], data=image["data"], name=image["name"],
            priority=req.args.get("priority", 0), meta=req.args.get("meta"), max_new_tokens=image["max_new_tokens"],
            request_id=req.id, max_queued=self.config.limits.max_jobs, owner=call.client, profile=image["profile"])
        try:  # off the loop: the insert waits for fsync
            job, created = await self.loop.run_in_executor(None, add)
        except QueueFull as e:
            raise Busy(f"too many background jobs: {e}", retry_after=30.0) from None
        self.worker.notify_jobs()
        return {"job": job.id, "state": job.state, "created": created}

    def _own_job(self, call: Call, job_id: str, rid: str):
        """The job, if this client may see it: the daemon's own user sees every job, a guest only its own."""
        job = self.store.get_job(job_id)
        if job is None or (call.remote and job.owner != call.client):
            raise P.ProtocolError(P.NOT_FOUND, f"no job {job_id!r}", rid)
        return job

    def _op_job(self, call: Call, req: P.Request):
        job = self._own_job(call, req.args["job"], req.id)
        out, frames = job.to_dict(), []
        if job.kind == P.KIND_CULL:  # a cull's decisions (cull_ops.py), once it is done
            if job.state == P.DONE:
                out["decisions"] = self.store.cull_results(job.id)
            return out, frames
        if job.state == P.DONE:
            hit = self.store.get_critique(job.hash, job.model, job.max_new_tokens)
            if hit is not None:
                result = hit.result.for_request(job.name)
                if job.profile:
                    result = self._personal(result, job)
                out["result"] = result.to_dict()
                if req.args.get("saliency") and hit.saliency_png:
                    frames.append(hit.saliency_png)
        return out, frames

    def _personal(self, result, job):
        """A job's result with its profile's personal_score, from the cached features (left out when the profile
        was deleted or relearnt on another model since: the critique itself stands)."""
        try:
            score = self.worker.personal.from_cache(job.profile, job.model, job.hash)
        except DaemonFault as e:
            log.info("job %s: no personal score (%s)", job.id, e.message)
            return result
        return result if score is None else result.with_personal(job.profile, score)

    def _op_cancel(self, call: Call, req: P.Request):
        job_id, request_id = req.args.get("job"), req.args.get("request")
        if (job_id is None) == (request_id is None):
            raise P.ProtocolError(P.BAD_REQUEST, "cancel needs exactly one of args.job or args.request", req.id)
        if job_id is not None:
            self._own_job(call, job_id, req.id)
            job = self.worker.cancel_job(job_id)
            if job is None:
                raise P.ProtocolError(P.NOT_FOUND, f"no job {job_id!r}", req.id)
            return {"job": job.id, "state": job.state, "cancelled": job.state == P.CANCELLED}
        target = self._inflight.get((call.client, request_id))
        if target is None or target.task is None:
            raise P.ProtocolError(P.NOT_FOUND, f"no request {request_id!r} in flight", req.id)
        cancelled = self.worker.cancel(target.task)
        return {"request": request_id, "cancelled": cancelled, "state": target.task.stage}

    def _op_load(self, call, req):
        state = self.worker.load()
        return {"state": P.LOADING if state in (P.UNLOADED, P.ERROR) else state}

    async def _op_unload(self, call, req):
        state = await self.loop.run_in_executor(None, self.worker.unload, 2.0)
        return {"state": state}

    def _op_shutdown(self, call, req):
        self.loop.call_later(0.05, self._stop.set)
        return {"state": "stopping"}

    # ---- library search (issue 18) ------------------------------------------------------------------------------
    async def _op_search(self, call: Call, req: P.Request):
        """Photos of the library (store_library.py) matching every filter, best score first."""
        a = req.args
        tags = a.get("tags", [])
        if len(tags) > 32 or not all(isinstance(t, str) and t.strip("| ") and len(t) <= 256 for t in tags):
            raise P.ProtocolError(P.BAD_REQUEST, "search: tags must be at most 32 non-empty strings like "
                                  "'exposure|underexposed'", req.id)
        low, high = a.get("min_score"), a.get("max_score")
        if low is not None and high is not None and low > high:
            raise P.ProtocolError(P.BAD_REQUEST, f"search: min_score {low} is above max_score {high}", req.id)
        folder = a.get("folder")
        if folder is not None and ("\x00" in folder or not os.path.isabs(folder)):
            raise P.ProtocolError(P.BAD_REQUEST, f"search: folder must be an absolute path: {folder!r}", req.id)
        limit = a.get("limit", P.SEARCH_DEFAULT_LIMIT)
        if not 1 <= limit <= P.SEARCH_MAX_LIMIT:
            raise P.ProtocolError(P.BAD_REQUEST, f"search: limit must be 1..{P.SEARCH_MAX_LIMIT}", req.id)
        query = functools.partial(self.store.search, tags=tags, min_score=low, max_score=high, folder=folder,
                                  text=a.get("text"), limit=limit, details=a.get("details", False))
        t0 = time.perf_counter()
        photos, truncated = await self.loop.run_in_executor(None, query)  # off the loop: a big library takes ms
        return {"photos": photos, "count": len(photos), "truncated": truncated,
                "ms": round(1000 * (time.perf_counter() - t0), 2)}


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

