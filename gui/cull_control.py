"""The window's culling mode: the culling view in place of the photo, the daemon's cull of the opened photos run in the
background (progress, cancel), and the override keys written to the sidecars.

    cull = CullControl(window)
    cull.toggle()              # K: into the culling view (a cull of the folder starts when it has none), and back
    cull.flag(path, "reject")  # what X does on the selected frame: xmp:Rating -1 in its sidecar

While the view is on screen, the window's own uses of X (compare), Esc and the arrows are switched off: the view takes
them (X rejects, the arrows move through frames and groups, Esc goes back). The digit keys still rate the frame
selected, which is the window's photo on screen.
"""

from __future__ import annotations

import os

from ase_daemon.contract import CANCELLED, DOWN
from PySide6.QtCore import QObject

from .cull_flags import RatingError, flag, read_flag
from .cull_run import CullRun
from .cull_view import CullView
from .thumbnails import list_images

__all__ = ["CullControl", "cull_paths"]

_WINDOW_KEYS = ("compare", "leave_compare", "next", "prev", "first", "last")  # the view's keys while it is shown


def cull_paths(files: list[str]) -> list[str]:
    """What to send to the `cull` op for these photos: a folder whose photos are all among them goes as the folder
    (a request naming 5,000 files would pass the protocol's header limit), the others one by one.

    Args:
        files: the photos opened (absolute paths).
    """
    by_folder: dict[str, list[str]] = {}
    for f in files:
        by_folder.setdefault(os.path.dirname(f), []).append(f)
    out: list[str] = []
    for folder, members in by_folder.items():
        listed, _ = list_images([folder])
        out.extend([folder] if listed and set(listed) <= set(members) else members)
    return out


class CullControl(QObject):
    """Runs culls for the window and keeps its culling view and the sidecars in step.

    Args:
        window: the viewer's MainWindow (its link, model's loader, stack, view, actions, files, show_index and
            status bar are used).
        pick_rating: stars (1..5) a pick (P) rated lower is raised to; None leaves its stars (the cull's rule).
    """

    def __init__(self, window, pick_rating: int | None = None):
        super().__init__(window)
        self.w = window
        self.pick_rating = pick_rating
        self.run = CullRun(window.link._client, self)
        self.view = CullView(window.model.loader)
        self.result: dict | None = None
        self._culled: list[str] | None = None  # the files the result is of
        self.run.progress.connect(self.view.show_progress)
        self.run.finished.connect(self._on_finished)
        self.run.failed.connect(self._on_failed)
        self.view.flag_requested.connect(self.flag)
        self.view.selected.connect(self._on_selected)
        self.view.cancel_requested.connect(self.run.cancel)
        self.view.rerun_requested.connect(self.start)
        self.view.back_requested.connect(self.leave)
        window.stack.addWidget(self.view)

    @property
    def active(self) -> bool:
        """Whether the culling view is on screen."""
        return self.w.stack.currentWidget() is self.view

    def toggle(self) -> None:
        """Into the culling view, or back to the photo."""
        if self.active:
            self.leave()
        else:
            self.enter()

    def enter(self) -> None:
        """Show the culling view; cull the opened photos if they have not been culled (or the list changed)."""
        if self.w.shoot.comparing:
            self.w.shoot.leave_compare()
        self.w.stack.setCurrentWidget(self.view)
        for name in _WINDOW_KEYS:
            self.w.actions[name].setEnabled(False)
        self.w.strip.hide()
        files = list(self.w.shoot.all_files)
        if not self.run.running and files and files != self._culled:
            self.start()
        elif self.w.current and not self.view.select(self.w.current) and self.view.rows:
            self.view.rows[0].setFocus()

    def opened(self, files: list[str]) -> None:
        """A new list of photos: culled at once while the view is on screen (else when it is next shown).

        Args:
            files: the photos opened.
        """
        if self.active and files != self._culled:
            self.start()

    def leave(self) -> None:
        """Back to the photo (a cull running goes on; its result is shown next time)."""
        if not self.active:
            return
        for name in _WINDOW_KEYS:
            self.w.actions[name].setEnabled(True)
        self.w.stack.setCurrentWidget(self.w.view)
        if len(self.w.files) > 1:
            self.w.strip.show()
        self.w.view.setFocus()

    def start(self) -> None:
        """Cull the photos opened (all of them, whatever the filter shows) on the daemon, in the background."""
        files = list(self.w.shoot.all_files)
        if not files:
            self.view.show_message("Open a folder of photos to cull.")
            return
        self._culled = files
        self.view.show_running(True)
        self.run.start(cull_paths(files), profile=self.w.link.profile)

    def _on_finished(self, result: dict) -> None:
        self.view.show_running(False)
        listed = set(self._culled or [])
        result = {**result, "decisions": [d for d in result.get("decisions") or [] if d.get("path") in listed]}
        self.result = result
        self.view.show_result(result, self._earlier_flags(result["decisions"]))
        if self.w.current:
            self.view.select(self.w.current)

    @staticmethod
    def _earlier_flags(decisions: list[dict]) -> dict[str, str]:
        """Overrides made before (in an earlier session): a sidecar whose decision differs from this cull's."""
        flags = {}
        for d in decisions:
            try:
                written = read_flag(d["path"])["decision"]
            except Exception:  # an unreadable sidecar: no override known
                continue
            if written and written != d.get("decision"):
                flags[d["path"]] = written
        return flags

    def _on_failed(self, code: str, message: str) -> None:
        self.view.show_running(False)
        self._culled = None if code != CANCELLED else self._culled
        if code == CANCELLED:
            self.view.show_message("Cull cancelled (every critique made so far is kept: culling again is quicker).")
        elif code == DOWN:
            self.view.show_message(f"The daemon is down: {message}")
        else:
            self.view.show_message(f"The cull failed ({code}): {message}")

    def _on_selected(self, path: str) -> None:
        if path in self.w.files and path != self.w.current:
            self.w.show_index(self.w.files.index(path))

    def flag(self, path: str, what: str) -> dict | None:
        """Pick, reject or unflag a frame: written to its sidecar (cull_flags.flag), then shown.

        Args:
            path: the photo.
            what: "pick", "reject" or "unflag".

        Returns:
            What was written ({"sidecar", "decision", "rating"}), or None when it could not be.
        """
        try:
            done = flag(path, what, pick_rating=self.pick_rating)
        except (RatingError, ValueError) as e:
            self.w.statusBar().showMessage(f"Not written: {e}", 6000)
            return None
        self.view.set_flag(path, done["decision"])
        stars = done["rating"]
        rating = "rejected" if stars == -1 else f"{stars or 0} stars"
        self.w.statusBar().showMessage(f"{done['decision']} ({rating}) → {os.path.basename(done['sidecar'])}", 4000)
        return done
