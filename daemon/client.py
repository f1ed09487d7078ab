"""Python client of ase-daemon: a Lazy Pirate DEALER (zguide ch. 4) speaking protocol v1.

    with Client() as c:                       # --endpoint > $ASE_ENDPOINT > config file > the default ipc socket
        c.ping()["state"]                     # "loading" | "ready" | "unloaded" | "error"
        result, png = c.critique(path="/photos/IMG_0001.jpg", stream=lambda text: print(text, end=""))

One Client per thread (a ZeroMQ socket must not be shared between threads); it works from any thread, e.g. a
GUI's worker thread. On a silent daemon the socket is closed, reopened and the request re-sent with the same id
(the daemon treats a repeated id as the same request); after `retries` it raises DaemonUnavailable. `timeout` is
the longest silence accepted: while a critique waits in the queue the daemon sends progress events, so a long
queue is not mistaken for a dead daemon.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from . import contract as P
from .client_shoot import _ShootCalls
from .config import Config, ConfigError, is_local, load_config, resolve_endpoint

__all__ = ["Client", "DaemonError", "DaemonUnavailable", "start_daemon", "ensure_daemon", "load_client_config",
           "resolve_endpoint", "is_local"]


def load_client_config() -> Config:
    """The config file's settings a client needs (endpoint, CURVE keys); the defaults when it is missing or broken
    (a client must still reach the default endpoint)."""
    try:
        return load_config()
    except ConfigError:
        return Config()


class DaemonUnavailable(ConnectionError):
    """No daemon answered at `endpoint` (nothing listening, or silent through every retry).

    Args:
        endpoint: the endpoint that was tried.
        detail: appended to the message, e.g. " (no socket file)".
    """

    def __init__(self, endpoint: str, detail: str = ""):
        self.endpoint = endpoint
        super().__init__(f"no ase-daemon answering at {endpoint}{detail} (is it running? start it with `ase-daemon` "
                         "or `ase-client --start …`)")


class DaemonError(RuntimeError):
    """An error reply: `code` is one of contract.ERROR_CODES; busy/not_ready carry `retry_after` seconds.

    Args:
        code: the error code.
        message: the daemon's message.
        retry_after: seconds to wait before retrying (busy, not_ready), else None.
        **extra: the code's other fields (contract.ERROR_FIELDS).
    """

    def __init__(self, code: str, message: str, retry_after: float | None = None, **extra):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.retry_after, self.extra = code, message, retry_after, extra

    @classmethod
    def from_wire(cls, error: P.WireError) -> DaemonError:
        """The exception for an error reply.

        Args:
            error: the reply's error, decoded by the contract.
        """
        return cls(error.code, error.message, error.retry_after, **error.extra)


def _read_key(value, secret: bool) -> tuple[bytes, bytes | None]:
    """A z85 key, or a key file written by zmq.auth.create_certificates."""
    if isinstance(value, (bytes, str)) and len(value) == 40 and not os.path.exists(value):
        return (value.encode() if isinstance(value, str) else value), None
    import zmq.auth

    public, private = zmq.auth.load_certificate(os.fspath(Path(value).expanduser()))
    if secret and not private:
        raise ValueError(f"{value} holds no secret key (use the .key_secret file)")
    return public, private


class Client(_ShootCalls):
    """A connection to ase-daemon: one DEALER socket, each request retried on silence (Lazy Pirate).

    Args:
        endpoint: where the daemon listens (default: $ASE_ENDPOINT, the config file, else the local ipc socket).
        timeout: seconds to wait for a reply (or a sign of life) before retrying.
        retries: how many times a silent request is sent again before DaemonUnavailable.
        server_key: the daemon's CURVE public key (z85 or key file) for an encrypted remote endpoint; for a
            remote endpoint it defaults to $ASE_SERVER_KEY or the config file's key.
        client_keys: this client's CURVE key pair: a .key_secret file or (public, secret); needed with
            `server_key`.
        context: the ZeroMQ context (default: the process's shared instance).
        config: the client settings (default: load_client_config()).
    """

    def __init__(self, endpoint: str | None = None, timeout: float = 5.0, retries: int = 2,
                 server_key: str | bytes | os.PathLike | None = None,
                 client_keys: str | os.PathLike | tuple[bytes, bytes] | None = None, context: zmq.Context | None = None,
                 config: Config | None = None):
        if config is None:
            config = load_client_config()
        self.endpoint = resolve_endpoint(endpoint, config)
        self.timeout, self.retries = timeout, retries
        if server_key is None and not is_local(self.endpoint):  # configured keys are for remote daemons
            server_key = os.environ.get("ASE_SERVER_KEY") or config.curve.server_public_key
            client_keys = client_keys or os.environ.get("ASE_CLIENT_KEY") or config.curve.client_secret_key
        self._curve = None
        if server_key is not None:
            if client_keys is None:
                raise ValueError("a CURVE server key needs client_keys too (the client's .key_secret file)")
            server_public = _read_key(server_key, secret=False)[0]
            pair = tuple(client_keys) if isinstance(client_keys, tuple) else _read_key(client_keys, secret=True)
            self._curve = (server_public, pair[0], pair[1])
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None

    @property
    def secure(self) -> bool:
        return self._curve is not None

    # ---- plumbing --------------------------------------------------------------------------------------------
    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.linger = 0  # a request to a dead daemon must not keep the process alive
            if self._curve is not None:
                sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._curve
            sock.connect(self.endpoint)
            self._sock = sock
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, op: str, args: dict | None = None, frames=(), on_event: Callable[[P.Reply], None] | None = None,
                timeout: float | None = None, request_id: str | None = None) -> P.Reply:
        """Send any op and wait for its final reply (events go to `on_event`). Raises DaemonError on an error
        reply and DaemonUnavailable when the daemon stays silent through every retry.

        Args:
            op: the op name (contract.OPS).
            args: the op's arguments.
            frames: binary frames sent after the request (image bytes).
            on_event: called with each event reply (tokens, progress) before the final one.
            timeout: seconds of silence before a retry (default: the client's timeout).
            request_id: the request's id (default: a new one); a retry sends the same id.
        """
        rid = request_id or P.new_id()
        message = [b"", *P.encode_request(rid, op, args, frames)]  # empty delimiter: REQ-compatible envelope
        timeout = self.timeout if timeout is None else timeout
        ipc = self.endpoint[len("ipc://"):] if self.endpoint.startswith("ipc://") else None
        for _attempt in range(self.retries + 1):
            if ipc is not None and not os.path.exists(ipc):  # nobody can be there: no need to wait
                raise DaemonUnavailable(self.endpoint, " (no socket file)")
            sock = self._socket()
            sock.send_multipart(message, copy=False)
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sock.poll(int(remaining * 1000) + 1, zmq.POLLIN):
                    break
                frames_in = sock.recv_multipart()
                if frames_in and frames_in[0] == b"":
                    frames_in = frames_in[1:]
                reply = P.decode_reply(frames_in)
                if reply.id not in (rid, None):
                    continue  # a late answer to an abandoned request on this socket
                if reply.event is not None:
                    deadline = time.monotonic() + timeout  # a sign of life
                    if on_event is not None:
                        on_event(reply)
                    continue
                if not reply.ok:
                    raise DaemonError.from_wire(P.WireError.from_dict(reply.error))
                return reply
            self._reset()  # Lazy Pirate: the socket may be wedged; reopen it and send the same id again
        raise DaemonUnavailable(self.endpoint)

    def _call(self, op: str, args: dict | None = None, **kw) -> dict:
        return self.request(op, args, **kw).result or {}

    # ---- ops ---------------------------------------------------------------------------------------------------
    def ping(self) -> dict:
        return self._call(P.OP_PING)

    def status(self) -> dict:
        return self._call(P.OP_STATUS)

    @staticmethod
    def _image(path, data, name, max_new_tokens, force) -> tuple[dict, list[bytes]]:
        if (path is None) == (data is None):
            raise ValueError("give exactly one of path or data")
        args: dict = {}
        frames: list[bytes] = []
        if path is not None:
            args["path"] = os.path.abspath(os.fspath(path))
        else:
            frames.append(bytes(data))
            if name:
                args["name"] = str(name)
        if max_new_tokens is not None:
            args["max_new_tokens"] = int(max_new_tokens)
        if force:
            args["force"] = True
        return args, frames

    def critique(self, path=None, data: bytes | None = None, stream: Callable[[str], None] | None = None,
                 saliency: bool = True, max_new_tokens: int | None = None, force: bool = False,
                 name: str | None = None, on_progress: Callable[[dict], None] | None = None,
                 request_id: str | None = None, profile: str | None = None) -> tuple[dict, bytes | None]:
        """Critique one photo: `path` on the daemon's machine (local endpoints) or its bytes as `data`.

        Returns (result, saliency PNG or None).

        Args:
            path: the photo's path, as the daemon sees it (give this or `data`).
            data: the photo's bytes (give this or `path`).
            stream: called with each piece of the critique's text as it is generated.
            saliency: whether to return the saliency map as a PNG.
            max_new_tokens: a cap on the critique's length (default: the daemon's).
            force: do not answer from the store; the new critique replaces the stored one.
            name: the photo's file name, for `data`: labels it, and its extension identifies RAW formats.
            on_progress: called with each progress event's data.
            request_id: the request's id (default: a new one), for `cancel(request=...)`.
            profile: a personal profile's name (`ase-mllm learn`): the result then also has `personal_score`.
        """
        args, frames = self._image(path, data, name, max_new_tokens, force)
        if profile:
            args["profile"] = profile
        args.update(saliency=saliency, progress=True)
        if stream is not None:
            args["stream"] = True

        def on_event(ev: P.Reply) -> None:
            if ev.event == P.TOKEN and stream is not None:
                stream(ev.data.get("text", ""))
            elif ev.event == P.PROGRESS and on_progress is not None:
                on_progress(ev.data)

        reply = self.request(P.OP_CRITIQUE, args, frames, on_event=on_event, request_id=request_id)
        return reply.result, (reply.frames[0] if reply.frames else None)

    def submit(self, path=None, data: bytes | None = None, priority: int = 0, meta: dict | None = None,
               max_new_tokens: int | None = None, name: str | None = None, profile: str | None = None) -> dict:
        """Queue a background critique; persisted before the reply. Returns {"job", "state", "created"}.

        Args:
            path: the photo's path, as the daemon sees it (give this or `data`).
            data: the photo's bytes (give this or `path`).
            priority: higher runs sooner.
            meta: kept with the job and returned with it.
            max_new_tokens: a cap on the critique's length (default: the daemon's).
            name: the photo's file name, for `data`.
            profile: a personal profile's name: the job's result also has its `personal_score`.
        """
        args, frames = self._image(path, data, name, max_new_tokens, False)
        if profile:
            args["profile"] = profile
        if priority:
            args["priority"] = int(priority)
        if meta:
            args["meta"] = meta
        return self.request(P.OP_SUBMIT, args, frames).result

    def job(self, job_id: str, saliency: bool = False) -> tuple[dict, bytes | None]:
        """A queued job's state and, once done, its result. Returns (job, saliency PNG or None).

        Args:
            job_id: the id `submit` returned.
            saliency: whether to return the saliency map as a PNG.
        """
        reply = self.request(P.OP_JOB, {"job": job_id, "saliency": saliency})
        return reply.result, (reply.frames[0] if reply.frames else None)

    def cancel(self, job_id: str | None = None, request: str | None = None) -> dict:
        """Cancel a queued job or a running request.

        Args:
            job_id: the job to cancel.
            request: the id of a critique in flight sent by this client (when `job_id` is None).
        """
        args = {"job": job_id} if job_id is not None else {"request": request}
        return self._call(P.OP_CANCEL, args)

    def load(self) -> dict:
        return self._call(P.OP_LOAD)

    def unload(self) -> dict:
        return self._call(P.OP_UNLOAD)

    def shutdown(self) -> dict:
        return self._call(P.OP_SHUTDOWN)

    def wait_ready(self, timeout: float = 120.0, poll: float = 0.2) -> dict:
        """Ping until the model is ready (asking an unloaded daemon to load it). Raises DaemonError(not_ready) if
        loading failed, TimeoutError if slow.

        Args:
            timeout: seconds to wait in all.
            poll: seconds between pings.
        """
        deadline = time.monotonic() + timeout
        while True:
            info = self.ping()
            if info.get("state") == P.READY:
                return info
            if info.get("state") == P.ERROR:
                raise DaemonError(P.NOT_READY, "the model failed to load (see `ase-client status` and the daemon log)")
            if info.get("state") == P.UNLOADED:
                self.load()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the model was not ready within {timeout:.0f} s (state {info.get('state')})")
            time.sleep(poll)


# ---- starting a local daemon ------------------------------------------------------------------------------------
def start_daemon(endpoint: str, config: Config | None = None, config_path: str | os.PathLike | None = None,
                 explicit_endpoint: bool = True, timeout: float = 180.0,
                 say: Callable[[str], None] | None = None) -> dict:
    """Start `ase-daemon` detached (it outlives the caller; log in the runtime dir) and wait until its model is
    ready or failed. Returns the ping result. Local endpoints only.

    Args:
        endpoint: where the daemon will listen.
        config: the settings the start resolved (decides whether `--endpoint` must be passed).
        config_path: a config file passed on to the daemon.
        explicit_endpoint: pass `--endpoint` even when it is the default one.
        timeout: seconds to wait for the model.
        say: called with progress lines for the user.
    """
    import subprocess
    import sys

    from .config import default_ipc_endpoint, runtime_dir

    config = config or Config()
    log_path = runtime_dir() / "daemon.log"
    cmd = [sys.executable, "-m", "ase_daemon.cli"]
    if config_path:
        cmd += ["--config", str(Path(config_path).resolve())]
    if explicit_endpoint or (endpoint != default_ipc_endpoint() and not config.endpoints):
        cmd += ["--endpoint", endpoint]
    if say:
        say(f"starting ase-daemon (log: {log_path})")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)  # detached: outlives this command
    deadline = time.monotonic() + timeout
    with Client(endpoint, timeout=1.0, retries=0, config=config) as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                if say:
                    say("the daemon exited at start:\n  " + "\n  ".join(tail))
                raise DaemonUnavailable(endpoint)
            try:
                info = c.ping()
                if info.get("state") in (P.READY, P.ERROR):
                    return info
            except DaemonUnavailable:
                pass
            time.sleep(0.2)
    raise DaemonUnavailable(endpoint, f" (started, but not ready within {timeout:.0f} s)")


def ensure_daemon(endpoint: str | None = None, timeout: float = 180.0,
                  say: Callable[[str], None] | None = None) -> dict:
    """The daemon at `endpoint` (default resolution), started if none answers; waits for its model.
    Returns its ping result plus the resolved "endpoint".

    Args:
        endpoint: the endpoint (default: $ASE_ENDPOINT, the config file, else the local ipc socket).
        timeout: seconds to wait for the model.
        say: called with progress lines for the user.
    """
    config = load_client_config()
    resolved = resolve_endpoint(endpoint, config)
    try:
        with Client(resolved, timeout=2.0, retries=0, config=config) as c:
            info = c.ping()
            if info.get("state") != P.READY:
                info = c.wait_ready(timeout)
    except DaemonUnavailable:
        if not is_local(resolved):
            raise
        info = start_daemon(resolved, config, explicit_endpoint=endpoint is not None, timeout=timeout, say=say)
        if info.get("state") != P.READY:
            raise DaemonError(P.NOT_READY, "the daemon's model failed to load (see the daemon log)") from None
    return {**info, "endpoint": resolved}
