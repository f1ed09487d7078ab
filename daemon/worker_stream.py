"""The worker's model thread with continuous batching through the Critic's DecodeEngine (issue 17).

    lanes (interactive first) ──> free slots: ONE image-side forward for a lane's newcomers together (Critic.prepare,
    on that lane's preparer thread while the model thread keeps stepping the engine) ──> engine.submit per task at
    the model thread's next turn ──> loop: one engine step over every active slot, tokens streamed per task ──> a
    finished request leaves its slot at once ──> finisher thread: Critic.finish, CritiqueResult, saliency PNG,
    personal score, the store (one transaction per group that finished in the same step), on_done

No batch window: a lone request on an idle worker starts at the next loop turn; requests with different
`max_new_tokens` share the engine. Background jobs never take the last free slot (one is kept for interactive
requests, no preemption), so an interactive critique never waits for a background one to end; while an interactive
critique is in flight (decode pool, lane or engine), no background newcomer is admitted or enters the engine, so
its steps are not stalled by their prefill; and while it decodes, the background critiques in the engine keep
their slots but sit the steps out (engine.paused), so each step costs what the interactive ones alone cost. A
cancelled task that is decoding leaves its slot at the next step (engine.cancel).

`_Stream` is a part of `Worker` (worker.py), used when the Critic decodes through the engine; without an engine
(the `generate` fallback) the static batches of worker_batches.py run instead. The engine is not thread-safe: only
the model thread touches it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .errors import ModelFailure
from .worker_intake import BACKGROUND, INTERACTIVE, Outcome, Task

__all__ = []

log = logging.getLogger("ase_daemon.worker")


@dataclass(eq=False)
class _Live:
    """A task whose request is in the engine."""

    task: Task
    prepared: object  # ase_model.critic.Prepared
    streamer: object | None  # ase_model.critic_stream.BatchStreamer of its group, or None
    index: int  # its index in the streamer
    started: float  # perf_counter when its group was admitted


class _Stream:
    """Worker's continuous batching: admission, engine steps, hand-off to the finisher (module docstring)."""

    def _streaming(self) -> bool:
        """The loaded Critic decodes through the engine (else: static batches through `critique`)."""
        return self.critic is not None and getattr(self.critic, "engine", None) is not None

    def _slot_count(self) -> int:
        critic = self.critic
        decoder = getattr(critic, "engine", None)
        return decoder.slots if decoder is not None else self.max_batch

    def _stream_once(self) -> None:
        """One turn of the model thread: drop cancelled requests, admit newcomers, one engine step."""
        import torch

        try:
            with torch.inference_mode():  # the engine's tensors are inference tensors (cancel writes to them)
                self._stream_drop_cancelled()
                for lane, tasks in enumerate(self._stream_take()):
                    if tasks:
                        self._preparers[lane].submit(self._stream_prepare_apart, lane, tasks)
                self._stream_enter_ready()
                self._stream_step()
        except Exception as e:  # a bug here must not kill the model thread: fail what is in flight
            log.exception("the streaming loop failed; failing the requests in the engine")
            self._stream_fail_all(ModelFailure(f"model failure: {type(e).__name__}: {e}"))

    def _stream_fail_all(self, error) -> None:
        with self._cv:
            handles = list(self._live)
            lost_tasks = [x.task for x in self._live.values()] + [x.task for x, _ in self._held] + list(self._admitting)
            self._live.clear()
            self._held.clear()
            self._admitting.clear()
            self._ready.clear()  # their tasks are in _admitting
        engine = self.critic.engine.engine if self._streaming() else None
        if engine is not None:
            import torch

            with torch.inference_mode():
                for h in handles:
                    engine.cancel(h)
                    engine.finished.pop(h, None)
        for t in lost_tasks:
            self._finish(t, Outcome(error=error))

    # ---- admission -------------------------------------------------------------------------------------------
    def _stream_take(self) -> tuple[list[Task], list[Task]]:
        """Queued tasks for the free slots, (interactive, background): interactive first; background ones leave one
        slot free. A lane's tasks are taken only when its preparer is free: they go there together."""
        with self._cv:
            if self._held:  # a request too long for the engine's cache waits until it drains
                return [], []
            slots = self._slot_count()
            free = slots - len(self._live) - len(self._admitting)
            background = sum(1 for x in self._live.values() if x.task.lane == BACKGROUND) + sum(
                1 for t in self._admitting if t.lane == BACKGROUND)
            reserve = 1 if slots > 1 else 0
            taken: dict[int, list[Task]] = {INTERACTIVE: [], BACKGROUND: []}
            bg_room = 0 if self._preparing[BACKGROUND] else slots - reserve - background
            if self._interactive_in_flight():
                # an interactive critique is in flight (in the decode pool, queued or decoding): no background
                # newcomer joins until it ends (each one's prefill would stall every slot's step; the running
                # ones finish as usual)
                bg_room = 0
            for lane, room in ((INTERACTIVE, 0 if self._preparing[INTERACTIVE] else free), (BACKGROUND, bg_room)):
                queue = self._lanes[lane]
                while queue and free > 0 and room > 0:
                    t = queue.popleft()
                    if t.cancelled:
                        continue
                    t.stage = "running"
                    taken[lane].append(t)
                    room -= 1
                    free -= 1
            self._admitting.update(taken[INTERACTIVE] + taken[BACKGROUND])
            for lane, tasks in taken.items():
                self._preparing[lane] = self._preparing[lane] or bool(tasks)
            return taken[INTERACTIVE], taken[BACKGROUND]

    def _interactive_in_flight(self) -> bool:
        """An interactive critique is admitted and not finished (in the decode pool, queued or decoding)."""
        return any(t.lane == INTERACTIVE and not t.finished for t in self._tasks)

    def _stream_prepare(self, tasks: list[Task]) -> list[tuple]:
        """The image side for newcomers, in one forward: [(tasks, prepared, started)] groups to enter. One bad
        image must not fail its companions: after a failed group, each runs alone and only the culprit fails."""
        for t in tasks:
            if t.on_stage:
                t.on_stage("running", {"batch": len(tasks)})
        started = time.perf_counter()
        try:
            prepared = self.critic.prepare([t.image for t in tasks], names=[t.name or t.path for t in tasks])
        except Exception as e:
            if len(tasks) > 1:
                log.warning("the image side failed on %d images (%s: %s); running them one by one", len(tasks),
                            type(e).__name__, e)
                return [group for t in tasks for group in self._stream_prepare([t])]
            log.exception("the model failed on %s", tasks[0].name or tasks[0].path)
            with self._cv:
                self._admitting.discard(tasks[0])
            self._finish(tasks[0], Outcome(error=ModelFailure(f"model failure: {type(e).__name__}: {e}")))
            return []
        with self._cv:
            s = self.stats
            s["groups"] += 1
            s["group_images"] += len(tasks)
        return [(tasks, prepared, started)]

    def _stream_prepare_apart(self, lane: int, tasks: list[Task]) -> None:
        """On the lane's preparer thread: the newcomers' image side while the model thread decodes."""
        import torch

        groups: list[tuple] = []
        try:
            with torch.inference_mode():
                groups = self._stream_prepare(tasks)
        except Exception as e:  # a bug here must not leave their slots taken
            log.exception("preparing %d critiques failed", len(tasks))
            with self._cv:
                self._admitting.difference_update(tasks)
            for t in tasks:
                self._finish(t, Outcome(error=ModelFailure(f"model failure: {type(e).__name__}: {e}")))
        finally:
            with self._cv:
                self._ready.extend(groups)
                self._preparing[lane] = False
                self._cv.notify_all()

    def _stream_enter_ready(self) -> None:
        """Prepared groups into the engine: interactive ones at once; background ones unless an interactive
        critique is in flight (their prefill would stall its steps: they wait, keeping their slots)."""
        with self._cv:  # (an interactive group here is itself in flight)
            waits = self._interactive_in_flight()
            entering = [g for g in self._ready if g[0][0].lane == INTERACTIVE or not waits]
            self._ready = [g for g in self._ready if g[0][0].lane != INTERACTIVE and waits]
        for group in sorted(entering, key=lambda g: g[0][0].lane):  # interactive ones first
            self._stream_enter(*group)

    def _stream_enter(self, tasks: list[Task], prepared: list, started: float) -> None:
        """Prepared requests into the engine, with their token streams."""
        from ase_model.critic_stream import BatchStreamer

        streams = {i: t.on_token for i, t in enumerate(tasks) if t.on_token is not None}

        def route(i: int, text: str) -> None:
            try:
                streams[i](text)
            except Exception:  # a client's stream must not fail the others
                log.debug("stream callback failed", exc_info=True)

        streamer = BatchStreamer(self.critic.processor.tokenizer, len(tasks), route) if streams else None
        for i, (t, p) in enumerate(zip(tasks, prepared)):
            with self._cv:
                self._admitting.discard(t)
                if t.cancelled or t.finished:
                    continue
            live = _Live(t, p, streamer if i in streams else None, i, started)
            need = len(p.input_ids) + max(t.max_new_tokens, self.max_new_tokens)
            engine = self._engine_with_room(need)
            if engine is None:  # the cache is too short and busy: this one waits until the engine drains
                with self._cv:
                    self._held.append((live, need))
                continue
            self._stream_submit(engine, live)

    def _engine_with_room(self, need: int):
        """The engine if its slots hold `need` tokens (rebuilt larger when idle), else None."""
        decoder = self.critic.engine
        engine = decoder.engine
        if engine is not None and engine.max_len >= need:
            return engine
        if engine is not None and (engine.active or engine.queue):
            return None
        return decoder.engine_for(need)

    def _stream_submit(self, engine, live: _Live) -> None:
        from ase_model.engine import Request

        stream = None
        if live.streamer is not None:
            streamer, i = live.streamer, live.index
            stream = lambda tok: streamer.token(i, tok)  # noqa: E731  (the engine's per-token callback)
        handle = engine.submit(Request(live.prepared.input_ids, live.prepared.image_features,
                                       live.task.max_new_tokens, stream=stream))
        with self._cv:
            self._live[handle] = live

    def _stream_drop_cancelled(self) -> None:
        """Cancelled (or otherwise finished) tasks leave their slots; held ones enter once the engine drained."""
        with self._cv:
            gone = [h for h, x in self._live.items() if x.task.cancelled or x.task.finished]
            for h in gone:
                del self._live[h]
            held = list(self._held) if self._held and not self._live else []
            if held:
                self._held.clear()
        engine = self.critic.engine.engine if self._streaming() else None
        for h in gone:
            if engine is not None:
                engine.cancel(h)
                engine.finished.pop(h, None)
        for live, need in held:
            if not (live.task.cancelled or live.task.finished):
                self._stream_submit(self._engine_with_room(need), live)

    # ---- decoding --------------------------------------------------------------------------------------------
    def _stream_step(self) -> None:
        """One engine step over the active slots; finished requests go to the finisher."""
        engine = self.critic.engine.engine
        if engine is None or not (engine.active or engine.queue):
            return
        with self._cv:  # interactive critiques first: background ones keep their slots but sit this step out
            interactive = any(x.task.lane == INTERACTIVE for x in self._live.values())
            engine.paused = {h for h, x in self._live.items() if x.task.lane == BACKGROUND} if interactive else set()
        width = min(engine.slots, len(engine.active) + len(engine.queue)) - len(engine.paused)
        t0 = time.perf_counter()
        try:
            engine.step()
        except Exception as e:
            log.exception("a decode step failed; failing the %d requests in the engine", width)
            self._stream_fail_all(ModelFailure(f"model failure: {type(e).__name__}: {e}"))
            return
        seconds = time.perf_counter() - t0
        done = []
        with self._cv:
            s = self.stats
            s["batches"] += 1
            s["slot_steps"] += width
            s["max_batch"] = max(s["max_batch"], width)
            s["batch_seconds"] += seconds
            self._last_work = time.monotonic()
            for h in [h for h in engine.finished if h in self._live]:
                done.append((self._live.pop(h), engine.finished.pop(h).tokens))
            s["images"] += len(done)
        if not done:
            return
        for live, _ in done:  # text held back for more bytes goes out before the result
            if live.streamer is not None:
                live.streamer.end_one(live.index)
        critic, now = self.critic, time.perf_counter()
        self._finisher.submit(self._stream_finish, critic, done, now)

    def _stream_drain(self) -> None:
        """Decode what is in the engine to its end, admitting nothing (before stopping or unloading)."""
        import torch

        while self._streaming():
            with self._cv:  # groups on the preparers enter first
                while any(self._preparing):
                    self._cv.wait(1.0)
                groups, self._ready = self._ready, []
            with torch.inference_mode():
                for group in groups:
                    self._stream_enter(*group)
                self._stream_drop_cancelled()
                with self._cv:
                    if not self._live:
                        return
                self._stream_step()

    # ---- finishing (the finisher thread) -------------------------------------------------------------------------
    def _stream_finish(self, critic, done: list, ended: float) -> None:
        """Critiques from the tokens, then results, the store and the answers (worker_batches._deliver)."""
        pairs = []
        for live, tokens in done:
            try:  # a failure here fails only its task
                p = live.prepared
                pad = critic.processor.tokenizer.pad_token_id
                generate_ms = 1000 * (ended - live.started) - p.timings.get("vision_ms", 0.0)
                timings = {"load_ms": p.timings.get("load_ms", 0.0), "vision_ms": p.timings.get("vision_ms", 0.0),
                           "generate_ms": round(generate_ms, 2), "total_ms": round(1000 * (ended - live.started), 2),
                           "batch": p.timings.get("batch", 1), "new_tokens": sum(t != pad for t in tokens)}
                pairs.append((live.task, critic.finish(p, tokens, timings=timings)))
            except Exception as e:
                log.exception("finishing %s failed", live.task.name or live.task.path)
                self._finish(live.task, Outcome(error=ModelFailure(f"model failure: {type(e).__name__}: {e}")))
        if pairs:
            self._deliver([t for t, _ in pairs], [c for _, c in pairs], critic)
