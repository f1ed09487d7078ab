"""The window's shoot features, wired together: the folder's critiques gathered in the background (badges, sort,
filter), star keys written to the sidecar, and the side-by-side compare of two frames.

    shoot = ShootControl(window)
    shoot.opened(files)          # a new list: score it in the background
    shoot.set_sort("score"); shoot.set_filter("exposure >=6")   # or set_sort("personal")
    shoot.set_profile("me")      # critiques (and badges) with a personal score too
    shoot.rate(4)                # the photo on screen gets 4 stars in its sidecar
    shoot.toggle_compare()       # the photo shown before | the photo on screen
"""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, QTimer

from .compare import CompareView, Side
from .rating import RatingError, write_rating
from .shoot import Query, ScorePass, filter_paths, parse_query, sort_paths

__all__ = ["ShootControl"]


class ShootControl(QObject):
    """Keeps what is known of the shoot (critiques by path) and arranges the window's photos by it.

    Args:
        window: the viewer's MainWindow (its nav, model, critiques, photos, overlay, stack, compare_view, status
            bar and show_index are used).
    """

    def __init__(self, window):
        super().__init__(window)
        self.w = window
        self.all_files: list[str] = []  # as opened, by name
        self.results: dict[str, dict] = {}
        self.sort_key = "name"
        self.query: Query = Query()
        self.previous: str | None = None  # the photo shown before the one on screen (compare's left side)
        self._current: str | None = None
        self.scores = ScorePass(window.link._client, self)  # its own client, in its own thread
        self.scores.scored.connect(self._on_scored)
        self._rearrange = QTimer(self)  # scores arrive in bursts from the store: re-sort once per burst
        self._rearrange.setSingleShot(True)
        self._rearrange.setInterval(300)
        self._rearrange.timeout.connect(self.arrange)
        # the pass starts once the photo on screen has its critique (or after a while): that one comes first
        self._pass_due = False
        self._pass_timer = QTimer(self)
        self._pass_timer.setSingleShot(True)
        self._pass_timer.setInterval(5000)
        self._pass_timer.timeout.connect(self._start_pass)

    # ---- the list -------------------------------------------------------------------------------------------
    def opened(self, files: list[str]) -> None:
        """A new list of photos: score it in the background, and arrange it as the sort and filter say.

        Args:
            files: the photos opened, by name.
        """
        self.all_files = list(files)
        self._pass_due = len(files) > 1  # one photo: its critique is asked anyway
        if self._pass_due:
            self._pass_timer.start()
        if self.sort_key != "name" or self.query:
            self.arrange()

    def arranged(self) -> list[str]:
        """The photos opened, filtered and sorted as asked."""
        return sort_paths(filter_paths(self.all_files, self.results, self.query), self.results, self.sort_key)

    def arrange(self) -> None:
        """Show the photos as the sort and filter say; the photo on screen stays if it still matches."""
        files = self.arranged()
        if files == self.w.files:
            return
        if self.w.nav.arrange(files) < 0:
            self.w.show_index(0 if files else -1)
        if not files and self.all_files:
            self.w.view.set_message("No photo matches the filter.")

    def set_sort(self, key: str) -> None:
        """Sort the photos.

        Args:
            key: "name", "date" or "score".
        """
        self.sort_key = key
        self.arrange()

    def set_filter(self, text: str) -> None:
        """Show only the photos that answer the filter box's words (see `shoot.parse_query`).

        Args:
            text: e.g. "exposure >=6"; "" shows all.
        """
        self.query = parse_query(text)
        self.arrange()

    def known(self, path: str, result: dict) -> None:
        """A critique is known (on screen, or from the background pass): badge, and the order if it depends on it.

        Args:
            path: the photo.
            result: its critique.
        """
        self.results[path] = result
        self._start_pass()
        score, personal = result.get("score"), result.get("personal_score")
        self.w.model.set_score(path, score if isinstance(score, (int, float)) else None,
                               personal if isinstance(personal, (int, float)) else None)
        if self.sort_key in ("score", "personal") or self.query:
            self._rearrange.start()

    def set_profile(self, name: str | None) -> None:
        """Score the photos with a personal profile (or none): the badges go, and the pass asks every photo again
        (the daemon answers from its store; only the personal score is new).

        Args:
            name: the profile's name, or None for the generic score only.
        """
        self.scores.profile = name
        self.results.clear()
        self.w.model.clear_scores()
        self._pass_due = len(self.all_files) > 1
        if self._pass_due:
            self._pass_timer.start()

    def _start_pass(self) -> None:
        if self._pass_due and self.w.link.state != "ready":  # a dead daemon: no thread waiting on it; look later
            self._pass_timer.start()
            return
        if self._pass_due:
            self._pass_due = False
            self._pass_timer.stop()
            self.scores.start(self.all_files, done=set(self.results))

    def _on_scored(self, path: str, result: dict, saliency) -> None:
        if path not in self.all_files or result.get("profile") != self.scores.profile:
            return  # not listed, or asked before the profile changed (the new pass asks it again)
        self.w.critiques.remember(path, result, saliency)
        self.known(path, result)

    # ---- stars -----------------------------------------------------------------------------------------------------
    def rate(self, stars: int) -> str | None:
        """Write a star rating into the sidecar of the photo on screen (darktable's photo.ext.xmp, xmp:Rating).

        Args:
            stars: 0…5.

        Returns:
            The sidecar's path, or None if nothing was written (no photo, or it could not be written).
        """
        path = self.w.current
        if path is None:
            return None
        try:
            sidecar = write_rating(path, stars)
        except (RatingError, ValueError) as e:
            self.w.statusBar().showMessage(f"Rating not written: {e}", 6000)
            return None
        self.w.statusBar().showMessage(f"{'★' * stars or 'no stars'} → {os.path.basename(sidecar)}", 4000)
        return sidecar

    # ---- compare ---------------------------------------------------------------------------------------------------
    @property
    def comparing(self) -> bool:
        """Whether the compare view is on screen."""
        return self.w.stack.currentWidget() is self.w.compare_view

    def shown(self, path: str | None) -> None:
        """The window moved to another photo (the last one becomes compare's left side; compare follows).

        Args:
            path: the photo now on screen.
        """
        if path is not None and self._current != path:
            self.previous, self._current = self._current, path
        if self.comparing:
            self.refresh_compare()

    def _side(self, path: str) -> Side:
        hit = self.w.critiques.remembered(path)
        result, saliency = hit if hit is not None else (self.results.get(path) or {}, None)
        return Side(path, self.w.photos.peek(path), saliency, result.get("score"))

    def refresh_compare(self) -> None:
        """Show the two frames again (a critique or a photo arrived, the overlay settings changed)."""
        left, right = self.previous, self.w.current
        if left is None or right is None:
            return
        view: CompareView = self.w.compare_view
        view.set_overlay(self.w.overlay.opacity, self.w.overlay.mode, self.w.overlay.on)
        view.show_pair(self._side(left), self._side(right))

    def toggle_compare(self) -> None:
        """Compare the photo shown before with the photo on screen, side by side; again: back to one photo."""
        if self.comparing:
            self.leave_compare()
            return
        if self.previous is None or self.w.current is None or self.previous == self.w.current:
            self.w.statusBar().showMessage("Compare: show another photo first (it goes on the left)", 4000)
            return
        self.w.stack.setCurrentWidget(self.w.compare_view)
        self.refresh_compare()

    def leave_compare(self) -> None:
        """Back to one photo."""
        self.w.stack.setCurrentWidget(self.w.view)
