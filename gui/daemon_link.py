"""The viewer's only connection to ase-daemon: two background threads, each owning its own Client, and Qt
signals that carry their results to the GUI thread.

    link = DaemonLink(endpoint=None)        # --endpoint > $ASE_ENDPOINT > config file > default ipc socket
    link.state_changed.connect(...)         # (state, info): "ready" | "loading" | "unloaded" | "error" | "down"
    rid = link.critique(path)               # -> token(rid, text)…, then critique_ready(rid, result, saliency)
                                            #    or critique_failed(rid, code, message)
    link.start_daemon(); link.close()

Why threads and not the GUI thread: every Client call blocks (a dead daemon costs timeout x (retries + 1)), and
a ZeroMQ socket must stay in the thread that uses it. Why two: the pinger keeps the status indicator honest
(and notices a dead daemon within ~1 s) while a critique is still generating on the other thread.

Plain daemon threads rather than QThreads: a thread stuck in a request to a dead daemon must not keep the
process alive, and a QThread still running when its object is destroyed aborts the process. Signals emitted
from these threads are queued to the GUI thread (the bridge QObject lives there).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading

from ase_daemon import contract as P
from ase_daemon.contract import DOWN, decode_saliency
from PySide6.QtCore import QObject, QProcess, Signal

__all__ = ["DaemonLink", "DOWN"]

# DOWN (contract.DOWN, a client-side code): nobody answered. It is the link's state then (beside the daemon's own
# loading/ready/unloaded/error) and the code of critique_failed; UNREADABLE: the photo could not be read here.
# Any other code of critique_failed is the daemon's (contract.ERROR_CODES); INTERNAL also covers a bug in the link.


class DaemonLink(QObject):
    state_changed = Signal(str, dict)
    _pinged = Signal(str, dict)  # thread -> GUI thread; re-emitted there as state_changed (see _on_pinged)
    token = Signal(str, str)
    critique_ready = Signal(str, dict, object)  # saliency: float32 ndarray or None
    critique_failed = Signal(str, str, str)  # code (contract.DOWN, UNREADABLE, or an ERROR_CODES code), message

    def __init__(self, endpoint: str | None = None, parent=None, *, server_key=None, client_keys=None,
                 ping_interval: float = 2.0, max_backoff: float = 5.0, ping_timeout: float = 1.5,
                 critique_timeout: float = 5.0):
        """server_key/client_keys: CURVE keys, as for ase-client (by default from $ASE_SERVER_KEY/$ASE_CLIENT_KEY
        or the config file for non-loopback endpoints)."""
        super().__init__(parent)
        self._keys = {"server_key": server_key, "client_keys": client_keys} if server_key else {}
        from ase_daemon.client import is_local, load_client_config, resolve_endpoint

        self._config = load_client_config()
        self._explicit = endpoint or os.environ.get("ASE_ENDPOINT")
        self.endpoint = resolve_endpoint(endpoint, self._config)
        self.local = is_local(self.endpoint)
        self.state = "unknown"
        self.info: dict = {}
        self.profile: str | None = None  # a personal profile's name: critiques then carry `personal_score` too
        self._ping_interval, self._max_backoff = ping_interval, max_backoff
        self._ping_timeout, self._critique_timeout = ping_timeout, critique_timeout
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._cancel: list[str] = []  # protocol ids for the pinger to cancel
        self._job_cv = threading.Condition()
        self._job: tuple[str, str] | None = None  # the one critique wanted next: (rid, path); newest wins
        self._wanted: str | None = None
        self._active: tuple[str, str] | None = None  # (rid, protocol id) being generated now
        self._send_bytes = not self.local  # remote daemons may not read our paths
        self._pinged.connect(self._on_pinged)
        self._threads = [threading.Thread(target=self._ping_loop, name="ase-viewer-ping", daemon=True),
                         threading.Thread(target=self._critique_loop, name="ase-viewer-critique", daemon=True)]
        for t in self._threads:
            t.start()

    # ---- public (GUI thread) ---------------------------------------------------------------------------------
    def critique(self, path: str | os.PathLike) -> str:
        """Ask for a critique of `path`; returns the request's id. A newer request supersedes an older one that has
        not started, and cancels one that is generating (the viewer only shows the current photo)."""
        rid = f"v{next(self._ids)}"
        with self._job_cv:
            self._wanted = rid
            self._job = (rid, os.fspath(path))
            active = self._active
            self._job_cv.notify()
        if active is not None:
            self._request_cancel(active[1])
        return rid

    def cancel(self) -> None:
        """Drop the pending critique and cancel the one generating."""
        with self._job_cv:
            self._wanted, self._job, active = None, None, self._active
        if active is not None:
            self._request_cancel(active[1])

    def poke(self) -> None:
        """Ping now (and restart the backoff), e.g. after starting the daemon."""
        self._poke.set()

    @property
    def can_start(self) -> bool:
        return self.local

    def start_daemon(self) -> bool:
        """Launch `ase-client --start ping` detached: it starts ase-daemon on our endpoint (or finds it running)
        and waits for the model. Detached, so it outlives the viewer and leaves no zombie behind."""
        if not self.local:
            return False
        args = ["-m", "ase_daemon.client_cli"]
        if self._explicit:  # otherwise ase-client resolves the same default (ipc + tcp) itself
            args += ["--endpoint", self.endpoint]
        args += ["--start", P.OP_PING]
        ok = QProcess.startDetached(sys.executable, args)
        ok = ok[0] if isinstance(ok, tuple) else ok
        self.poke()
        return bool(ok)

    def close(self) -> None:
        """Stop both threads (they exit at their next wake-up; one stuck in a request finishes it first)."""
        self._stop.set()
        self._poke.set()
        with self._job_cv:
            self._job = None
            self._job_cv.notify()

    # ---- plumbing ------------------------------------------------------------------------------------------------
    def _on_pinged(self, state: str, info: dict) -> None:
        # State is set and announced from the GUI thread, in one step: a receiver connected at any time sees
        # every change after `link.state` (a signal emitted straight from the thread would reach only the
        # receivers connected at that moment).
        self.state, self.info = state, info
        self.state_changed.emit(state, info)

    def _emit(self, signal, *args) -> None:
        if self._stop.is_set():
            return
        try:
            signal.emit(*args)
        except RuntimeError:  # the QObject was deleted under us (window closed): nothing to tell
            pass

    def _request_cancel(self, protocol_id: str) -> None:
        self._cancel.append(protocol_id)
        self._poke.set()

    def _client(self, timeout: float, retries: int):
        from ase_daemon.client import Client

        return Client(self.endpoint, timeout=timeout, retries=retries, config=self._config, **self._keys)

    def _ping_loop(self) -> None:
        from ase_daemon.client import DaemonError, DaemonUnavailable

        client = self._client(self._ping_timeout, 0)
        backoff = 0.0
        last = None
        while not self._stop.is_set():
            while self._cancel:
                try:
                    client.cancel(request=self._cancel.pop())
                except Exception:  # finished already, or the daemon is gone: nothing to cancel
                    pass
            try:
                info = client.ping()
                state = info.get("state") or P.ERROR
            except DaemonUnavailable as e:
                state, info = DOWN, {"message": str(e)}
            except DaemonError as e:
                state, info = P.ERROR, {"message": str(e), "code": e.code}
            except Exception as e:  # a malformed endpoint, a zmq error: report it, keep trying
                state, info = DOWN, {"message": f"{type(e).__name__}: {e}"}
            info = {**info, "endpoint": self.endpoint}
            if (state, info.get("model")) != last or state != P.READY:
                self._emit(self._pinged, state, info)
            last = (state, info.get("model"))
            if state in (P.READY, P.UNLOADED):  # unloaded (idle unload) may last hours; a critique reloads it
                backoff, wait = 0.0, self._ping_interval
            elif state == P.LOADING:
                backoff, wait = 0.0, 0.5  # it is coming: look again soon
            else:  # down or failed: back off so a dead endpoint costs almost nothing
                backoff = min(self._max_backoff, max(0.25, backoff * 2))
                wait = backoff
            if self._poke.wait(wait):
                self._poke.clear()
                if not self._cancel:
                    backoff = 0.0
        client.close()

    def _still_wanted(self, rid: str) -> bool:
        return self._wanted == rid and not self._stop.is_set()

    def _critique_loop(self) -> None:
        from ase_daemon.client import DaemonError, DaemonUnavailable

        client = self._client(self._critique_timeout, 1)
        while True:
            with self._job_cv:
                while self._job is None and not self._stop.is_set():
                    self._job_cv.wait()
                if self._stop.is_set():
                    break
                rid, path = self._job
                self._job = None
            attempt = 0
            while self._still_wanted(rid):
                attempt += 1
                pid = P.new_id()
                self._active = (rid, pid)
                try:
                    if self._send_bytes:
                        with open(path, "rb") as f:
                            data = f.read()
                        result, png = client.critique(data=data, name=os.path.basename(path), request_id=pid,
                                                      stream=lambda text, rid=rid: self._emit(self.token, rid, text),
                                                      profile=self.profile)
                    else:
                        result, png = client.critique(path=path, request_id=pid, profile=self.profile,
                                                      stream=lambda text, rid=rid: self._emit(self.token, rid, text))
                    self._emit(self.critique_ready, rid, result, decode_saliency(png))
                    break
                except DaemonError as e:
                    if e.code == P.FORBIDDEN and not self._send_bytes:
                        self._send_bytes = True  # a remote daemon: it may not open our paths, send the bytes
                        continue
                    if e.code in (P.BUSY, P.NOT_READY) and attempt < 50:
                        # the model is loading or the queue is full: wait as told, unless the photo changes
                        self._wait_or_new_job(min(max(e.retry_after or 1.0, 0.2), 5.0))
                        continue
                    self._emit(self.critique_failed, rid, e.code, e.message)
                    break
                except DaemonUnavailable as e:
                    self._emit(self.critique_failed, rid, DOWN, str(e))
                    self._poke.set()  # let the status indicator say so at once
                    break
                except OSError as e:
                    self._emit(self.critique_failed, rid, P.UNREADABLE, f"{path}: {e.strerror or e}")
                    break
                except Exception as e:  # never let the thread die: the viewer would silently stop critiquing
                    self._emit(self.critique_failed, rid, P.INTERNAL, f"{type(e).__name__}: {e}")
                    break
                finally:
                    self._active = None
        client.close()

    def _wait_or_new_job(self, seconds: float) -> None:
        with self._job_cv:
            if self._job is None and not self._stop.is_set():
                self._job_cv.wait(seconds)
