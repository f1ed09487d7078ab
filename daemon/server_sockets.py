"""The server's sockets: binding its endpoints safely (ipc socket files, their locks, CURVE keys) and closing them.

`_Sockets` is a part of `Server` (server.py), split out along this seam.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

import zmq
import zmq.asyncio

from . import contract as P
from .config import endpoint_kind, ipc_path, is_local, runtime_dir

__all__ = ["StartupError", "ZAP_DOMAIN"]

log = logging.getLogger("ase_daemon.server")
ZAP_DOMAIN = "ase-mllm"  # pyzmq's authenticator matches the socket's ZAP domain exactly ("*" is not a wildcard)


class StartupError(RuntimeError):
    """The daemon cannot start (endpoint taken, insecure bind, bad keys): the message says what to do."""



class _Sockets:
    """Server's endpoints: bind, CURVE keys, ipc files and locks, close."""

    # ---- startup / shutdown ----------------------------------------------------------------------------------
    def bind(self) -> None:
        """Create the sockets and bind every endpoint, or raise StartupError (before any model is loaded)."""
        cfg = self.config
        groups: dict[str, list[str]] = {"ipc": [], "loopback": [], "curve": []}
        for ep in [*cfg.all_endpoints(), *cfg.curve.endpoints]:
            kind = endpoint_kind(ep, cfg.curve.endpoints)
            if ep not in groups[kind]:
                groups[kind].append(ep)
        curve = groups["curve"]
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

