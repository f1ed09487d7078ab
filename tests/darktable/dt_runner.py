"""Running REAL darktable for a test: under Xvfb and `timeout`, `--library :memory:`, `-d lua`, a Lua driver
(`--luacmd`) that writes key<TAB>value lines (\\n, \\t, \\\\ escaped) into $ASE_DT_RESULT and touches
$ASE_DT_RESULT.started once it runs.

darktable 4.2 can hang while it starts, before any of our Lua runs (its Lua/GTK start-up race, darktable
issue #22357): a run whose driver has not started within STARTUP_TIMEOUT is killed and started once more.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from conftest import daemon_env

STARTUP_TIMEOUT = 45  # seconds for darktable to get as far as running the test's driver


def unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "t": "\t", "\\": "\\"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


SEGFAULT = (139, -11)  # darktable killed by SIGSEGV (through `timeout`: 128 + 11)


def worth_a_retry(outcome: str, rc: int | None) -> bool:
    """darktable 4.2 itself failed, not the test: it hung before running any Lua, or it crashed (a segfault in its
    own signal handling, seen once in dt_collection_new under a loaded machine). One more run on a fresh config."""
    return outcome == "startup-hang" or rc in SEGFAULT


@contextlib.contextmanager
def one_darktable():
    """Held while a test's darktable runs: one darktable at a time on the machine, whatever pytest-xdist worker
    runs the test (two at once made darktable 4.2's start-up hang more likely)."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "ase-mllm-darktable-tests.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, 0)  # anyone left in the run's process group (darktable outlives xvfb-run on a timeout)?
    except (ProcessLookupError, PermissionError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _darktable_once(cmd: list, env: dict, log: Path, started: Path, timeout: int) -> tuple[int | None, str]:
    """One darktable run in its own process group; (returncode, outcome) with outcome ok|startup-hang|timeout."""
    t0 = time.monotonic()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        outcome = "ok"
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - t0
                if not started.exists() and elapsed > STARTUP_TIMEOUT:
                    outcome = "startup-hang"
                    break
                if elapsed > timeout:
                    outcome = "timeout"
                    break
                time.sleep(0.2)
        finally:
            _kill_group(proc.pid)
            proc.wait()
    return proc.returncode, outcome


def display_base() -> int:
    """Where xvfb-run's search for a free X display starts: apart for each pytest-xdist worker, so that two workers
    starting darktable at the same moment never pick the same display (`-a` alone races)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 99 + 20 * int(worker.removeprefix("gw") or 0)


def run_darktable(work: Path, cfg: Path, driver: Path, env: dict, conf: dict | None = None,
                  timeout: int = 150, lua_errors_ok: bool = False) -> tuple[dict, str]:
    """darktable with config dir `cfg` running `driver`; returns (the driver's report, the log) once it has
    checked that the driver said PASS, darktable quit cleanly and (unless lua_errors_ok: the test checks the
    errors itself) the log has no LUA ERROR."""
    result, started, log = work / "result.txt", work / "result.txt.started", work / "darktable.log"
    full_env = {**daemon_env(work), "ASE_DT_RESULT": str(result), "ASE_DT_DRIVER": str(driver), **env}
    cmd = ["timeout", "-k", "5", str(timeout), "xvfb-run", "-a", "-n", str(display_base()),
           "-s", "-screen 0 1600x1000x24",
           "darktable", "--configdir", str(cfg), "--cachedir", str(work / "cache"), "--library", ":memory:",
           "--disable-opencl", "-d", "lua"]
    for key, value in (conf or {}).items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += ["--luacmd", "dofile(os.getenv('ASE_DT_DRIVER'))"]
    with one_darktable():
        t0 = time.monotonic()
        for attempt in (1, 2):
            for f in (result, started):
                f.unlink(missing_ok=True)
            for stale in cfg.glob("data.db*"):
                stale.unlink()
            rc, outcome = _darktable_once(cmd, full_env, log, started, timeout)
            if not worth_a_retry(outcome, rc):
                break
            shutil.copy(log, work / f"darktable-{outcome}-rc{rc}-{attempt}.log")
    text = log.read_text(errors="replace")
    report = {}
    if result.exists():
        for line in result.read_text().splitlines():
            key, _, value = line.partition("\t")
            report[unescape(key)] = unescape(value)
    where = (f"(darktable {outcome}, rc={rc}, attempt {attempt}, {time.monotonic() - t0:.0f} s in all; "
             f"log {log}):\n{text[-4000:]}")
    assert report.get("driver") == "PASS", f"driver: {report.get('driver')!r} {where}"
    assert outcome == "ok" and rc == 0, f"darktable did not quit cleanly {where}"
    assert lua_errors_ok or "LUA ERROR" not in text, where
    return report, text
