"""The ZeroMQ front of ase-daemon: asyncio ROUTER sockets that turn protocol v1 messages into worker tasks.

One ROUTER socket per kind of endpoint, so that every request knows where it came from, and who sent it:
  ipc       the daemon's own user: the socket file is 0600 in a 0700 directory, and the peer's uid (SO_PEERCRED,
            which libzmq appends to the message's Peer-Address) is checked on every message
  loopback  tcp on 127.0.0.1/::1: any local user can connect, so it is a guest's door unless trust_loopback
  curve     anything else (or endpoints listed in [curve] endpoints): CurveZMQ with an allow-list of client keys,
            checked again on every message (a key removed from the folder + SIGHUP cuts its connected clients)
Guests (loopback without trust, curve clients, another uid on the ipc socket) send image bytes, see only their own
jobs and no local paths, and may not manage the daemon (docs/daemon.md, "Security").

All sockets live on the event loop's thread. The worker reports back from its own threads through
`loop.call_soon_threadsafe`, never by touching a socket.

The server is split along its seams: server.py (requests in, replies out: the edge where exceptions become error
replies), server_sockets.py (binding the endpoints, ipc locks, CURVE keys), server_ops.py (the ops' handlers).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio

from . import contract as P
from .config import Config
from .errors import DaemonFault, wire_error
from .server_ops import GUEST_STATUS, _Ops, package_version
from .server_sockets import StartupError, _Sockets
from .store import Store
from .worker import Task, Worker

__all__ = ["Server", "Call", "StartupError", "GUEST_STATUS", "package_version"]

log = logging.getLogger("ase_daemon.server")


@dataclass(eq=False)
class Call:
    """One request being answered: where the reply goes, who asked, and what to log."""

    sock: zmq.asyncio.Socket
    envelope: list[bytes]
    client: str | None  # None: the daemon's own user; else the guest ("tcp", "uid:1001", "curve:<public key>")
    id: str | None = None
    op: str | None = None
    t0: float = field(default_factory=time.perf_counter)
    progress: bool = False
    task: Task | None = None
    done: bool = False

    @property
    def remote(self) -> bool:
        """A guest: no paths, no admin ops, only its own jobs."""
        return self.client is not None


class Server(_Sockets, _Ops):
    """The daemon's front: binds the endpoints (server_sockets.py), answers the ops (server_ops.py).

    Args:
        config: the daemon's configuration.
        worker: the model worker it hands critiques to.
        store: the critique store and job queue.
    """

    def __init__(self, config: Config, worker: Worker, store: Store):
        self.config, self.worker, self.store = config, worker, store
        self.max_message = int(config.limits.max_message_mb * 2**20)
        self.ops: dict[str, P.OpSpec] = dict(P.OPS)
        self._handlers = {op: getattr(self, f"_op_{op}") for op in self.ops}
        self._inflight: dict[tuple[str | None, str], Call] = {}
        self._background: set[asyncio.Task] = set()
        self._sockets: list[tuple[zmq.asyncio.Socket, str]] = []  # (socket, endpoint kind)
        self._ipc_files: list[Path] = []
        self._locks: list[int] = []  # fds of the ipc sockets' lock files
        self._authorized: set[str] = set()  # z85 public keys of the CURVE clients allowed now
        self._stop = asyncio.Event()
        self._signals = 0
        self.ctx: zmq.asyncio.Context | None = None
        self.auth = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = time.time()
        self.counts = {"requests": 0, "errors": 0, "dropped": 0}
        # components beside the worker (the folder watcher): started once the endpoints are bound (a daemon that
        # cannot bind must not start watching), stopped after the worker (its last batch's results still count)
        self.status_hooks: dict[str, object] = {}  # status result key -> callable returning that block
        self.start_hooks: list = []
        self.stop_hooks: list = []

    def add_op(self, name: str, handler, spec: P.OpSpec) -> None:
        """Serve a new op (the folder watcher adds the watch ops, contract.WATCH_OPS).

        Args:
            name: the op's name (a contract.OP_* constant).
            handler: handler(call, request) returns a result dict, (dict, frames), or an awaitable of those; it
                raises an errors.DaemonFault (or a ProtocolError) for an error reply.
            spec: the op's argument spec.
        """
        self.ops[name] = spec
        self._handlers[name] = handler


    def request_stop(self) -> None:
        self._signals += 1
        if self._signals > 1:  # second Ctrl-C: don't wait for the batch; jobs are requeued at the next start
            log.warning("forced exit")
            self._remove_ipc_files()
            os._exit(1)
        self._stop.set()

    async def serve(self) -> None:
        """Bind, start the worker (it loads the model in the background), answer until stopped."""
        self.loop = asyncio.get_running_loop()
        self.bind()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop)
        if self.auth is not None:
            self.loop.add_signal_handler(signal.SIGHUP, self._reload_keys)
        self.worker.start()
        for hook in self.start_hooks:
            hook()
        tasks = [asyncio.create_task(self._receive(sock, kind)) for sock, kind in self._sockets]
        tasks.append(asyncio.create_task(self._heartbeat()))
        try:
            await self._stop.wait()
        finally:
            log.info("shutting down: finishing the running batch")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.run_in_executor(None, self.worker.stop)
            for hook in self.stop_hooks:
                try:
                    await self.loop.run_in_executor(None, hook)
                except Exception:
                    log.exception("stopping %s failed", hook)
            await asyncio.sleep(0.05)  # replies the worker scheduled with call_soon_threadsafe
            for call in list(self._inflight.values()):
                self._fail(call, P.CANCELLED, "the daemon is shutting down")
            await asyncio.gather(*self._background, return_exceptions=True)
            self._close()
            self.store.close()
            log.info("stopped")


    # ---- receiving -------------------------------------------------------------------------------------------
    async def _receive(self, sock: zmq.asyncio.Socket, kind: str) -> None:
        while True:
            try:
                msg = await sock.recv_multipart(copy=False)
            except zmq.ZMQError as e:
                log.warning("receive failed: %s", e)
                await asyncio.sleep(0.01)
                continue
            try:
                client, refusal = self._identify(kind, msg[-1])
                self._dispatch(sock, client, msg, refusal)
            except Exception:  # never let one request take the server down
                log.exception("dispatch failed")

    def _identify(self, kind: str, frame: zmq.Frame) -> tuple[str | None, str | None]:
        """(client, refusal): client None is the daemon's own user; a refusal is answered `forbidden`."""
        if kind == "loopback":
            return (None if self.config.trust_loopback else "tcp"), None
        if kind == "curve":
            key = _meta(frame, "User-Id")
            if key not in self._authorized:  # revoked since it connected (ZAP only runs at the handshake)
                return f"curve:{key}", "this client's key is not (or no longer) in the daemon's authorized keys"
            return f"curve:{key}", None
        # ipc: libzmq appends the peer's ":uid:gid:pid" (SO_PEERCRED) to Peer-Address; without it (platforms with
        # no peer credentials, inproc) the socket file's 0600 mode in its 0700 folder is the proof
        parts = (_meta(frame, "Peer-Address") or "").rsplit(":", 3)
        if len(parts) == 4 and parts[1].isdigit() and int(parts[1]) != os.getuid():
            return f"uid:{parts[1]}", None
        return None, None

    def _dispatch(self, sock, client: str | None, frames: list, refusal: str | None = None) -> None:
        """frames: bytes or zmq.Frame; a frame's bytes are copied out only once the message is within the limits
        (an oversize message of many frames is refused without a second copy of it)."""
        # [identity, (empty delimiter from REQ-style clients), header, binary frames…]
        n = 2 if len(frames) > 1 and len(frames[1]) == 0 else 1
        call = Call(sock, [_bytes(f) for f in frames[:n]], client)
        body = frames[n:]
        self.counts["requests"] += 1
        try:
            if refusal is not None:
                call.id = P.peek_id(_bytes(body[0])) if body else None
                raise P.ProtocolError(P.FORBIDDEN, refusal, call.id)
            size = sum(len(f) for f in body)
            if size > self.max_message:
                call.id = P.peek_id(_bytes(body[0]))
                raise P.ProtocolError(P.TOO_LARGE, f"message is {size / 2**20:.1f} MiB; the limit is "
                                      f"{self.config.limits.max_message_mb:g} MiB (max_message_mb)", call.id)
            req = P.decode_request([_bytes(f) for f in body], self.ops)
            call.id, call.op = req.id, req.op
            if call.remote and self.ops[req.op].local_only:
                raise P.ProtocolError(P.FORBIDDEN, f"{req.op} is only for the daemon's own user (its ipc socket)",
                                      req.id)
            out = self._handlers[req.op](call, req)
            if inspect.isawaitable(out):
                task = asyncio.ensure_future(self._finish_async(call, out))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            elif out is not None:
                self._answer(call, out)
        except Exception as e:  # the edge: the daemon's exceptions become error replies here
            if isinstance(e, P.ProtocolError):
                call.id = call.id or e.id
            self._fail_with(call, e)

    async def _finish_async(self, call: Call, awaitable) -> None:
        try:
            out = await awaitable
            if out is not None:
                self._answer(call, out)
        except Exception as e:
            self._fail_with(call, e)

    # ---- sending ---------------------------------------------------------------------------------------------
    def _send(self, call: Call, frames: list[bytes]) -> None:
        if self.ctx is None:
            return
        fut = call.sock.send_multipart(call.envelope + frames, flags=zmq.DONTWAIT, copy=False)
        if fut.done() and fut.exception() is not None:  # client gone (EHOSTUNREACH) or not reading (EAGAIN)
            e = fut.exception()
            log.debug("reply to %s dropped: %s", call.id, e)
            if getattr(e, "errno", None) == errno.EHOSTUNREACH and not call.done:
                self._abandon(call)

    def _abandon(self, call: Call) -> None:
        """The client of a request in flight is gone: stop its heartbeats and drop its image before the model runs
        (a Lazy Pirate retry from a new socket starts it again)."""
        call.done = True
        self.counts["dropped"] += 1
        if call.id is not None and self._inflight.get((call.client, call.id)) is call:
            del self._inflight[(call.client, call.id)]
        if call.task is not None:
            self.worker.cancel(call.task)
        log.info("%s id=%s: the client is gone; request dropped", call.op, call.id)

    def _answer(self, call: Call, out) -> None:
        result, frames = out if isinstance(out, tuple) else (out, [])
        try:
            encoded = P.encode_result(call.id, result, frames)
        except (TypeError, ValueError) as e:  # a bug: still answer, so no request is left without a reply
            log.exception("%s: cannot encode the result", call.op)
            return self._fail(call, P.INTERNAL, f"cannot encode the result: {e}")
        self._final(call, encoded, None)

    def _fail(self, call: Call, code: str, message: str, **extra) -> None:
        self.counts["errors"] += 1
        try:
            encoded = P.encode_error(call.id, code, message, **extra)
        except (TypeError, ValueError):
            encoded = P.encode_error(call.id, code, message)
        self._final(call, encoded, (code, message))

    def _fail_with(self, call: Call, exc: BaseException) -> None:
        """Answer the error reply for an exception (errors.wire_error); anything unexpected is logged as a bug."""
        if not isinstance(exc, (P.ProtocolError, DaemonFault)):
            log.error("%s failed", call.op, exc_info=exc)
        err = wire_error(exc)
        extra = {**err.extra, **({"retry_after": err.retry_after} if err.retry_after is not None else {})}
        self._fail(call, err.code, err.message, **extra)

    def _final(self, call: Call, frames: list[bytes], error) -> None:
        if call.done:
            return
        call.done = True
        if call.id is not None and self._inflight.get((call.client, call.id)) is call:
            del self._inflight[(call.client, call.id)]
        self._send(call, frames)
        ms = 1000 * (time.perf_counter() - call.t0)
        where = f" ({call.client})" if call.client else ""
        if error is None:
            log.info("%s id=%s %.1f ms ok%s", call.op, call.id, ms, where)
        else:
            log.warning("%s id=%s %.1f ms %s: %s%s", call.op or "?", call.id, ms, error[0], error[1], where)

    def _event(self, call: Call, event: str, data: dict) -> None:
        if not call.done:
            self._send(call, P.encode_event(call.id, event, data))

    async def _heartbeat(self) -> None:
        """Progress events keep waiting clients' Lazy Pirate timers from firing while their request is queued."""
        period = max(0.05, self.config.heartbeat_s)
        while True:
            await asyncio.sleep(period)
            now = time.perf_counter()
            for call in list(self._inflight.values()):
                if call.progress and call.task is not None and not call.done:
                    self._event(call, P.PROGRESS, {"stage": call.task.stage, "waited_s": round(now - call.t0, 2),
                                                    "model": self.worker.state})


def _bytes(frame) -> bytes:
    return frame.bytes if isinstance(frame, zmq.Frame) else frame



def _meta(frame: zmq.Frame, name: str) -> str | None:
    try:
        return frame.get(name)
    except zmq.ZMQError:  # no such property (e.g. User-Id without ZAP)
        return None

