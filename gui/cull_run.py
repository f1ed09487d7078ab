"""The daemon's `cull` op run from the viewer: a thread with its own client (a ZeroMQ socket stays in its thread),
progress and the result handed to the GUI thread as Qt signals, and cancel by the job's id from a second client.

    run = CullRun(link._client)
    run.progress.connect(...)      # (stage, done, total): "accepted", "culling", "critiquing", ...
    run.finished.connect(...)      # the op's result: {"job", "decisions", "errors", "counts"}
    run.failed.connect(...)        # (code, message): contract.CANCELLED when cancelled, DOWN when nobody answers
    run.start(["/shoot"]); run.cancel()
"""

from __future__ import annotations

import threading

from ase_daemon.contract import DOWN, INTERNAL
from PySide6.QtCore import QObject, Signal

__all__ = ["CullRun"]


class CullRun(QObject):
    """One cull at a time (a new start replaces the old one's reports: the old one is cancelled).

    Args:
        make_client: builds a client for a thread, as make_client(timeout, retries) (the link's `_client`).
        parent: the Qt parent object, if any.
    """

    progress = Signal(str, int, int)  # stage, done, total (0, 0 when the stage has no count)
    finished = Signal(dict)
    failed = Signal(str, str)  # code, message

    def __init__(self, make_client, parent=None):
        super().__init__(parent)
        self._make_client = make_client
        self._gen = 0
        self._job: str | None = None
        self.running = False  # set and cleared on the GUI thread (the end is seen with the result, not before)
        self.finished.connect(self._ended)  # connected first: runs before the receivers connected later
        self.failed.connect(self._ended)

    def start(self, paths: list[str], profile: str | None = None) -> None:
        """Cull these photos (files and folders) on the daemon, in the background.

        Args:
            paths: absolute paths on the daemon's machine.
            profile: a personal profile whose score ranks the clean frames (None: the critic's score).
        """
        if self.running:
            self.cancel()
        self._gen += 1
        self._job = None
        self.running = True
        threading.Thread(target=self._run, args=(self._gen, list(paths), profile), name="ase-viewer-cull",
                         daemon=True).start()

    def cancel(self) -> None:
        """Stop the cull between photos (the daemon answers the waiting thread with `cancelled`)."""
        job = self._job
        if job is None:
            return
        threading.Thread(target=self._send_cancel, args=(job,), name="ase-viewer-cull-cancel", daemon=True).start()

    def _send_cancel(self, job: str) -> None:
        try:
            client = self._make_client(5.0, 1)
        except Exception:
            return
        try:
            client.cancel(job)
        except Exception:  # finished already, or the daemon is gone: nothing to cancel
            pass
        finally:
            client.close()

    def _run(self, gen: int, paths: list[str], profile: str | None = None) -> None:
        from ase_daemon.client import DaemonError, DaemonUnavailable

        def on_progress(data: dict) -> None:
            if gen != self._gen:
                return
            if data.get("job"):
                self._job = data["job"]
            self._emit(gen, self.progress, str(data.get("stage", "")), int(data.get("done") or 0),
                       int(data.get("total") or 0))

        try:
            client = self._make_client(600.0, 0)  # progress events keep a long cull alive; silence is death
        except Exception as e:
            self._emit(gen, self.failed, DOWN, str(e))
            return
        try:
            result = client.cull(paths, on_progress=on_progress, profile=profile)
            self._emit(gen, self.finished, dict(result))
        except DaemonError as e:
            self._emit(gen, self.failed, e.code, e.message)
        except DaemonUnavailable as e:
            self._emit(gen, self.failed, DOWN, str(e))
        except Exception as e:  # never a silent dead thread: the view would wait forever
            self._emit(gen, self.failed, INTERNAL, f"{type(e).__name__}: {e}")
        finally:
            client.close()

    def _ended(self, *_) -> None:
        self.running = False

    def _emit(self, gen: int, signal, *args) -> None:
        if gen != self._gen:
            return
        try:
            signal.emit(*args)
        except RuntimeError:  # the window is gone
            pass
