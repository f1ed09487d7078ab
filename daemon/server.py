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
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import functools
import inspect
import json
import logging
import os
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio

from . import protocol as P
from .config import Config, endpoint_kind, ipc_path, is_local, runtime_dir
from .store import QueueFull, Store
from .worker import INTERACTIVE, Outcome, Task, Worker, photo_file_problem

log = logging.getLogger("ase_daemon.server")
ZAP_DOMAIN = "ase-mllm"  # pyzmq's authenticator matches the socket's ZAP domain exactly ("*" is not a wildcard)


class StartupError(RuntimeError):
    """The daemon cannot start (endpoint taken, insecure bind, bad keys): the message says what to do."""


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


class Server:
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
        """Serve a new op (the folder watcher adds `watch`). handler(call, request) returns a result dict,
        (dict, frames), or an awaitable of those; raise protocol.ProtocolError for an error reply."""
        self.ops[name] = spec
        self._handlers[name] = handler

    # ---- startup / shutdown ----------------------------------------------------------------------------------
    def bind(self) -> None:
        """Create the sockets and bind every endpoint, or raise StartupError (before any model is loaded)."""
        cfg = self.config
        groups: dict[str, list[str]] = {"ipc": [], "loopback": [], "curve": []}
        for ep in [*cfg.all_endpoints(), *cfg.curve.endpoints]:
            kind = endpoint_kind(ep, cfg.curve.endpoints)
            if ep not in groups[kind]:
                groups[kind].append(ep)
        local, curve = groups["ipc"] + groups["loopback"], groups["curve"]
        self.ctx = zmq.asyncio.Context()
        try:
            if curve:
                keys = self._curve_keys(curve)  # refuse an insecure bind before binding anything
            for kind in ("ipc", "loopback"):
                if groups[kind]:
                    sock = self._router()
                    for ep in groups[kind]:
                        self._bind(sock, ep)
                    self._sockets.append((sock, kind))
            if curve:
                from zmq.auth.asyncio import AsyncioAuthenticator

                self.auth = AsyncioAuthenticator(self.ctx)
                self.auth.start()
                self.auth.configure_curve(domain=ZAP_DOMAIN, location=str(keys[2]))
                sock = self._router()
                sock.curve_server = True
                sock.curve_publickey, sock.curve_secretkey = keys[0], keys[1]
                sock.zap_domain = ZAP_DOMAIN.encode()
                for ep in curve:
                    self._bind(sock, ep)
                self._sockets.append((sock, "curve"))
        except BaseException:
            self._close()
            raise
        trust = " (trusted: trust_loopback)" if cfg.trust_loopback else " (guests: bytes only)"
        log.info("listening on %s", ", ".join([*groups["ipc"], *(ep + trust for ep in groups["loopback"]),
                                                *(f"{ep} (CURVE)" for ep in curve)]))

    def _curve_keys(self, endpoints: list[str]):
        c = self.config.curve
        if not (c.server_secret_key and c.authorized_keys):
            raise StartupError(
                f"refusing to bind {', '.join(endpoints)}: it is reachable from other machines and CurveZMQ is not "
                "configured. Run `ase-daemon keys`, then set [curve] server_secret_key and authorized_keys in "
                "config.toml (docs/daemon.md, 'Security'), or bind 127.0.0.1 / an ipc socket.")
        import zmq.auth

        secret_file, folder = Path(c.server_secret_key).expanduser(), Path(c.authorized_keys).expanduser()
        try:
            public, secret = zmq.auth.load_certificate(secret_file)
        except (OSError, ValueError) as e:
            raise StartupError(f"cannot read the server key {secret_file}: {e}") from None
        if not secret:
            raise StartupError(f"{secret_file} holds no secret key (use the server.key_secret file)")
        if not folder.is_dir() or not any(folder.glob("*.key")):
            raise StartupError(f"no authorized client keys (*.key) in {folder}; `ase-daemon keys` makes one")
        self._authorized = _load_keys(folder)
        return public, secret, folder

    def _router(self) -> zmq.asyncio.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a vanished client raises instead of silently queueing
        sock.linger = 500  # at shutdown, half a second for the last replies, then go
        # libzmq disconnects a peer whose frame exceeds this; up to it, oversize requests get a `too_large` reply
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message + P.MAX_HEADER_BYTES)
        return sock

    def _bind(self, sock: zmq.asyncio.Socket, ep: str) -> None:
        path = ipc_path(ep)
        if path is not None:
            self._prepare_ipc(ep, path)
        old_umask = os.umask(0o077) if path is not None else None  # the socket is born 0700, whatever the umask
        try:
            sock.bind(ep)
        except zmq.ZMQError as e:
            if e.errno == errno.EADDRINUSE:
                raise StartupError(self._taken_message(ep)) from None
            raise StartupError(f"cannot bind {ep}: {e}") from None
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        if path is not None:
            self._ipc_files.append(path)
            os.chmod(path, 0o600)

    def _prepare_ipc(self, ep: str, path: Path) -> None:
        """The socket's folder (0700 when we make it), its lock (never through a link), a stale socket removed."""
        if str(path).startswith("@") or not path.is_absolute():
            raise StartupError(f"refusing {ep}: use an absolute socket path (an abstract socket has no permissions, "
                               "so any local user could connect)")
        if path.parent == runtime_dir(create=False):
            runtime_dir()  # create 0700 and check it is ours
        elif not path.parent.is_dir():
            path.parent.mkdir(mode=0o700, parents=True)
        # the lock makes "is another daemon here?" race-free; the socket file alone can be stale
        fd = _open_lock(Path(f"{path}.lock"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StartupError(self._taken_message(ep)) from None
        self._locks.append(fd)
        try:
            st = path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a socket" if not stat.S_ISSOCK(
                st.st_mode) else f"a socket of uid {st.st_uid}"
            raise StartupError(f"{path} exists and is {what}; not touching it (remove it, or pick another endpoint)")
        if _ping(ep) is not None:  # a server that does not use our lock
            raise StartupError(self._taken_message(ep))
        log.info("removing a stale socket file %s (nobody answers on it)", path)
        path.unlink()

    @staticmethod
    def _taken_message(ep: str) -> str:
        info = _ping(ep)
        if info is None:
            return f"{ep} is in use (by a daemon that is starting, or another program); pick another --endpoint"
        return (f"an ase-daemon is already serving {ep} (pid {info.get('pid')}, model {info.get('state')}); "
                f"use it, or stop it with `ase-client --endpoint {ep} shutdown`")

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

    def _reload_keys(self) -> None:
        folder = Path(self.config.curve.authorized_keys).expanduser()
        self.auth.configure_curve(domain=ZAP_DOMAIN, location=str(folder))
        self._authorized = _load_keys(folder)  # connected clients are checked against it on their next request
        log.info("reloaded the authorized client keys (%d)", len(self._authorized))

    def _close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if self.ctx is not None:
            self.ctx.destroy(linger=500)
            self.ctx = None
        self._remove_ipc_files()
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()

    def _remove_ipc_files(self) -> None:
        for path in self._ipc_files:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._ipc_files.clear()

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
                call.id = _peek_id(_bytes(body[0])) if body else None
                raise P.ProtocolError(P.FORBIDDEN, refusal, call.id)
            size = sum(len(f) for f in body)
            if size > self.max_message:
                call.id = _peek_id(_bytes(body[0]))
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
        except P.ProtocolError as e:
            call.id = call.id or e.id
            self._fail(call, e.code, e.message, **e.extra)
        except Exception as e:
            log.exception("%s failed", call.op)
            self._fail(call, P.INTERNAL, f"{type(e).__name__}: {e}")

    async def _finish_async(self, call: Call, awaitable) -> None:
        try:
            out = await awaitable
            if out is not None:
                self._answer(call, out)
        except P.ProtocolError as e:
            self._fail(call, e.code, e.message, **e.extra)
        except Exception as e:
            log.exception("%s failed", call.op)
            self._fail(call, P.INTERNAL, f"{type(e).__name__}: {e}")

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

    # ---- ops ---------------------------------------------------------------------------------------------------
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
                       "failed_images": w.pop("errors"), "jobs_done": w.pop("jobs_done"), "jobs_failed": w.pop("jobs_failed")},
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
        return {"path": path, "data": frames[0] if frames else None, "name": a.get("name") or path,
                "max_new_tokens": mnt or self.worker.max_new_tokens}

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
        except P.ProtocolError:
            self._inflight.pop(key, None)
            raise
        if call.progress:
            self._event(call, P.PROGRESS, {"stage": "accepted"})
        return None

    def _critique_done(self, call: Call, outcome: Outcome, want_png: bool) -> None:
        if outcome.ok:
            frames = [outcome.saliency_png] if want_png and outcome.saliency_png else []
            self._answer(call, (outcome.result, frames))
        else:
            e = outcome.error
            self._fail(call, e.code, e.message, **e.extra)

    async def _op_submit(self, call: Call, req: P.Request):
        image = self._image_args(call, req)
        path = image["path"]
        problem = await self.loop.run_in_executor(None, photo_file_problem, path) if path is not None else None
        if problem is not None:  # says what it is (a FIFO, a device, a folder ...), not just "no such file"
            raise P.ProtocolError(problem.code, problem.message, req.id, **problem.extra)
        add = functools.partial(
            self.store.add_job, path=image["path"], data=image["data"], name=image["name"],
            priority=req.args.get("priority", 0), meta=req.args.get("meta"), max_new_tokens=image["max_new_tokens"],
            request_id=req.id, max_queued=self.config.limits.max_jobs, owner=call.client)
        try:  # off the loop: the insert waits for fsync
            job, created = await self.loop.run_in_executor(None, add)
        except QueueFull as e:
            raise P.ProtocolError(P.BUSY, f"too many background jobs: {e}", req.id, retry_after=30.0) from None
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
        if job.state == P.DONE:
            hit = self.store.get_critique(job.hash, job.model, job.max_new_tokens)
            if hit is not None:
                out["result"] = {**hit.result, "image": job.name}
                if req.args.get("saliency") and hit.saliency_png:
                    frames.append(hit.saliency_png)
        return out, frames

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


def _bytes(frame) -> bytes:
    return frame.bytes if isinstance(frame, zmq.Frame) else frame


def _peek_id(header: bytes) -> str | None:
    """The id of a message refused before parsing (too large, forbidden), so the client can match the reply."""
    if len(header) > P.MAX_HEADER_BYTES:
        return None
    try:
        rid = json.loads(header).get("id")
        return rid if isinstance(rid, str) else None
    except Exception:
        return None


def _meta(frame: zmq.Frame, name: str) -> str | None:
    try:
        return frame.get(name)
    except zmq.ZMQError:  # no such property (e.g. User-Id without ZAP)
        return None


def _load_keys(folder: Path) -> set[str]:
    """The z85 public keys in an authorized-keys folder (what the ZAP handler puts in a message's User-Id)."""
    import zmq.auth

    try:
        return {k.decode() if isinstance(k, bytes) else k for k in zmq.auth.load_certificates(folder)}
    except (OSError, ValueError) as e:
        log.warning("cannot read the authorized keys in %s (%s): no CURVE client is allowed", folder, e)
        return set()


def _open_lock(path: Path) -> int:
    """Open (creating) an ipc socket's lock file without ever following a link: a planted `X.sock.lock` symlink
    must not make us create or truncate its target."""
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, flags)
    except OSError as e:
        what = "a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise StartupError(f"the lock file {path} is {what}; not using it (remove it if you did not make it)") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        os.close(fd)
        raise StartupError(f"the lock file {path} is not a regular file of yours; not using it (remove it)")
    return fd


def _ping(ep: str) -> dict | None:
    """Is an ase-daemon answering at `ep`? Its ping result, or None."""
    if not is_local(ep):
        return None
    from .client import Client, DaemonError, DaemonUnavailable

    try:
        with Client(ep, timeout=1.0, retries=0) as c:
            return c.ping()
    except (DaemonUnavailable, DaemonError, OSError):
        return None


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
