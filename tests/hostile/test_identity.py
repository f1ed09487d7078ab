"""Identity, not address: who may name paths, manage the daemon and see which jobs (docs/daemon.md, "Security").

Real daemons on the tiny model: the shared one (ipc + loopback tcp without trust + a CURVE endpoint) for the guest
rows of the table, and one of this module's own (trust_loopback, CURVE keys it may revoke, an explicit socket in a
0755 folder, started under umask 000). The second local user (uid 65534) runs only when the tests run as root.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ase_daemon import protocol as P
from ase_daemon.client import Client, DaemonError, DaemonUnavailable
from ase_daemon.config import Config
from ase_daemon.server import GUEST_STATUS
from conftest import DaemonProcess, daemon_env, free_port
from PIL import Image


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def code_of(fn) -> str:
    try:
        fn()
    except DaemonError as e:
        return e.code
    return "ok"


ADMIN = {
    "shutdown": lambda c: c.shutdown(),
    "load": lambda c: c.load(),
    "unload": lambda c: c.unload(),
    "watch_add": lambda c: c.request("watch_add", {"path": "/"}),
    "watch_list": lambda c: c.request("watch_list"),
}


def curve_client(endpoint: str, keys: Path, secret: Path, **kw) -> Client:
    return Client(endpoint, server_key=keys / "server.key", client_keys=secret, config=Config(), **kw)


# ---- the trust table, guest rows: loopback tcp without trust_loopback, and CURVE --------------------------------
def test_guests_send_bytes_see_only_their_jobs_and_no_paths(shared_daemon, tmp_path):
    photo = tmp_path / "private.jpg"
    photo.write_bytes(jpeg(1))
    keys = shared_daemon.curve_keys
    with shared_daemon.client() as owner:  # the ipc socket: the daemon's own user
        assert owner.critique(path=photo)[0]["image"] == str(photo)
        st = owner.status()
        assert {"endpoints", "pid", "watch"} <= set(st)
        assert code_of(lambda: owner.request("watch_list")) == "ok"
        rid = P.new_id()
        owner_job = owner.request("submit", {"path": str(photo)}, request_id=rid).result["job"]
    guests = {"tcp": shared_daemon.client(shared_daemon.tcp, config=Config()),
              "curve": curve_client(shared_daemon.curve, keys, keys / "client.key_secret", timeout=10)}
    own_jobs = {}
    try:
        for name, g in guests.items():
            for what, fn in [("critique path", lambda: g.critique(path=photo)),
                             ("submit path", lambda: g.submit(path="/etc/shadow"))] + [
                             (op, lambda f=f: f(g)) for op, f in ADMIN.items()]:
                assert code_of(fn) == P.FORBIDDEN, (name, what)
            st = g.status()
            assert set(st) <= set(GUEST_STATUS) and st["state"] == "ready", (name, sorted(st))
            assert "endpoints" not in st and "watch" not in st and "pid" not in st
            result, png = g.critique(data=jpeg(2), name=f"{name}.jpg")
            assert result["image"] == f"{name}.jpg" and png
            # the owner's job is invisible, even by the owner's own request id
            assert code_of(lambda: g.job(owner_job)) == P.NOT_FOUND
            assert code_of(lambda: g.cancel(owner_job)) == P.NOT_FOUND
            again = g.request("submit", {}, frames=[jpeg(3)], request_id=rid).result
            assert again["job"] != owner_job and again["created"]
            own_jobs[name] = again["job"]
            assert g.job(again["job"])[0]["job"] == again["job"]
        # one guest cannot see another's job; the owner sees them all
        assert code_of(lambda: guests["tcp"].job(own_jobs["curve"])) == P.NOT_FOUND
        assert code_of(lambda: guests["curve"].job(own_jobs["tcp"])) == P.NOT_FOUND
        with shared_daemon.client() as owner:
            for job in (*own_jobs.values(), owner_job):
                assert owner.job(job)[0]["job"] == job
            assert owner.ping()["state"] == "ready"
    finally:
        for g in guests.values():
            g.close()


# ---- startup refusals: abstract sockets, planted links, files that are not sockets ------------------------------
def run_cli(args, tmp_path, timeout=60):
    return subprocess.run([sys.executable, "-m", "ase_daemon.cli", *args], env=daemon_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


def test_abstract_socket_refused_and_no_lock_in_cwd(tmp_path, tiny_model_dir):
    r = run_cli(["--model", str(tiny_model_dir), "--endpoint", "ipc://@ase-test", "--db", str(tmp_path / "x.db")],
                tmp_path)
    assert r.returncode == 2 and "abstract" in r.stderr, r.stderr
    assert not list(tmp_path.glob("@*")), list(tmp_path.iterdir())


def test_planted_lock_link_and_foreign_file_not_followed(tmp_path, tiny_model_dir):
    sock = tmp_path / "x.sock"
    target = tmp_path / "elsewhere" / "created-by-the-daemon"
    target.parent.mkdir()
    Path(f"{sock}.lock").symlink_to(target)
    args = ["--model", str(tiny_model_dir), "--endpoint", f"ipc://{sock}", "--db", str(tmp_path / "x.db")]
    r = run_cli(args, tmp_path)
    assert r.returncode == 1 and "symbolic link" in r.stderr, r.stderr
    assert not target.exists() and Path(f"{sock}.lock").is_symlink()
    # a regular file where the socket should go is the user's file, not a stale socket: left alone
    Path(f"{sock}.lock").unlink()
    sock.write_text("my notes")
    r = run_cli(args, tmp_path)
    assert r.returncode == 1 and "not a socket" in r.stderr, r.stderr
    assert sock.read_text() == "my notes"


# ---- a daemon of this module's own: trust_loopback, umask 000, CURVE revocation ---------------------------------
@pytest.fixture(scope="module")
def own_daemon(tmp_path_factory, tiny_model_dir, curve_keys):
    root = tmp_path_factory.mktemp("identity")
    authorized = root / "authorized"
    authorized.mkdir()
    shutil.copy(curve_keys / "authorized_clients" / "client.key", authorized / "client.key")
    import zmq.auth

    zmq.auth.create_certificates(root, "other")
    shutil.copy(root / "other.key", authorized / "other.key")
    config = textwrap.dedent(f"""\
        trust_loopback = true
        [curve]
        server_secret_key = "{curve_keys / 'server.key_secret'}"
        authorized_keys = "{authorized}"
        """)
    curve = f"tcp://127.0.0.1:{free_port()}"
    d = DaemonProcess(root, tiny_model_dir, "own", ["--curve-endpoint", curve], config=config)
    # an explicit socket in an existing folder others may enter: its own mode must keep them out
    sockdir = Path(tempfile.mkdtemp(prefix="ase-identity-"))
    sockdir.chmod(0o755)
    ipc = f"ipc://{sockdir / 'own.sock'}"
    d.cmd[d.cmd.index(d.ipc)] = ipc
    d.ipc, d.ipc_path = ipc, sockdir / "own.sock"
    d.curve, d.authorized, d.keys_root, d.curve_keys = curve, authorized, root, curve_keys
    old = os.umask(0)  # the daemon inherits umask 000
    try:
        d.start()
    finally:
        os.umask(old)
    yield d
    d.stop()
    shutil.rmtree(sockdir, ignore_errors=True)


def test_socket_modes_under_umask_000(own_daemon):
    assert stat.S_IMODE(own_daemon.ipc_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{own_daemon.ipc_path}.lock").stat().st_mode) == 0o600
    assert stat.S_ISSOCK(own_daemon.ipc_path.stat().st_mode)


def test_trust_loopback_lets_loopback_name_paths(own_daemon, tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg(4))
    with own_daemon.client(own_daemon.tcp, config=Config()) as c:
        assert c.critique(path=photo)[0]["image"] == str(photo)
        assert "endpoints" in c.status()
        assert code_of(lambda: c.request("watch_list")) == "ok"


def test_curve_revocation_cuts_connected_clients(own_daemon):
    secret_dir, root = own_daemon.curve_keys, own_daemon.keys_root
    a = curve_client(own_daemon.curve, secret_dir, secret_dir / "client.key_secret", timeout=10, retries=0)
    b = curve_client(own_daemon.curve, secret_dir, root / "other.key_secret", timeout=10, retries=0)
    try:
        assert a.ping()["state"] == "ready" and b.ping()["state"] == "ready"
        job_a = a.submit(data=jpeg(5), name="a.jpg")["job"]
        assert code_of(lambda: b.job(job_a)) == P.NOT_FOUND
        assert a.job(job_a)[0]["job"] == job_a
        # revoke a's key: its already-connected socket is refused on its very next request; b is untouched
        (own_daemon.authorized / "client.key").rename(root / "client.key.revoked")
        own_daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while code_of(a.ping) != P.FORBIDDEN:
            assert time.monotonic() < deadline, "the revoked client is still served"
            time.sleep(0.1)
        assert code_of(lambda: a.job(job_a)) == P.FORBIDDEN
        assert b.ping()["state"] == "ready"
        # a fresh connection with the revoked key does not get through the handshake at all
        with curve_client(own_daemon.curve, secret_dir, secret_dir / "client.key_secret", timeout=0.7,
                          retries=0) as fresh, pytest.raises(DaemonUnavailable):
            fresh.ping()
        # restored + SIGHUP: served again
        (root / "client.key.revoked").rename(own_daemon.authorized / "client.key")
        own_daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while code_of(a.ping) != "ok":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        a.close()
        b.close()
    assert own_daemon.proc.poll() is None


# ---- a second local user --------------------------------------------------------------------------------------
NOBODY = textwrap.dedent("""\
    import json, os, sys
    from ase_daemon.client import Client, DaemonError, DaemonUnavailable
    from ase_daemon.config import Config
    ipc, tcp, secret = sys.argv[1:4]
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    out = {}
    try:
        with Client(ipc, timeout=1.5, retries=0, config=Config()) as c:
            out["ipc"] = c.ping()["state"]
    except DaemonUnavailable:
        out["ipc"] = "unavailable"
    with Client(tcp, timeout=20, retries=0, config=Config()) as c:
        out["ping"] = c.ping()["state"]
        calls = {"critique": lambda: c.critique(path=secret), "submit": lambda: c.submit(path="/etc/shadow"),
                 "watch_add": lambda: c.request("watch_add", {"path": "/"}), "shutdown": c.shutdown,
                 "unload": c.unload}
        for name, fn in calls.items():
            try:
                fn(); out[name] = "ok"
            except DaemonError as e:
                out[name] = e.code
        out["status"] = sorted(c.status())
    print(json.dumps(out))
    """)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switching to uid 65534 needs root")
def test_second_local_user_cannot_connect_or_name_paths(own_daemon, shared_daemon, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    secret = private / "IMG_0001.jpg"
    secret.write_bytes(jpeg(6))
    r = subprocess.run([sys.executable, "-c", NOBODY, own_daemon.ipc, shared_daemon.tcp, str(secret)],
                       env=daemon_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["ipc"] == "unavailable", out  # the socket is 0600: nobody cannot even connect
    assert out["ping"] == "ready"
    assert {k: out[k] for k in ("critique", "submit", "watch_add", "shutdown", "unload")} == dict.fromkeys(
        ("critique", "submit", "watch_add", "shutdown", "unload"), P.FORBIDDEN), out
    assert not {"endpoints", "watch", "pid"} & set(out["status"])
    assert not list(private.glob("*.xmp"))
    for d in (own_daemon, shared_daemon):
        assert d.proc.poll() is None
