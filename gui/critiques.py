"""The critique of the photo on screen: asked of the daemon through `DaemonLink` (newest wins), streamed into the
critique panel, kept for the last 64 photos, and asked again by itself when the daemon comes back.

    critiques = CritiqueController(link, panel, listed=lambda path: path in files)
    critiques.select(path)     # a new photo on screen: forget the last one's critique
    critiques.request()        # from memory at once, else from the daemon (tokens, then the final answer)
    critiques.shown.connect(…) # a final critique is on the panel: .result, .saliency
"""

from __future__ import annotations

import html
import os
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from .critique_panel import CritiquePanel
from .daemon_link import DOWN, DaemonLink
from .daemon_state import waiting_message

__all__ = ["CritiqueController", "content_key"]

REMEMBERED = 64  # critiques kept in memory (the daemon's store keeps them all, by content hash)


def content_key(path: str) -> tuple:
    """A critique is of the file's content: an edited file (new mtime/size) is critiqued again.

    Args:
        path: the photo's path.

    Returns:
        (path, mtime_ns, size); (path, None, None) for a file that cannot be read.
    """
    try:
        st = os.stat(path)
        return path, st.st_mtime_ns, st.st_size
    except OSError:
        return path, None, None


class CritiqueController(QObject):
    """Gets the critique of the photo on screen into the panel: streamed text, the final answer, or a line that says
    why it is not there yet (the daemon's state). A late answer for a photo the user has left is kept, for when
    they come back.

    Args:
        link: the viewer's link to the daemon; its token, critique_ready and critique_failed signals are connected.
        panel: the critique panel it writes to.
        listed: whether a path is among the photos opened (late answers are kept only for those).
        parent: the Qt parent object, if any.
    """

    shown = Signal()  # a final critique is on the panel (result and saliency are set)

    def __init__(self, link: DaemonLink, panel: CritiquePanel, listed: Callable[[str], bool], parent=None):
        super().__init__(parent)
        self.link, self.panel, self._listed = link, panel, listed
        self.path: str | None = None  # the photo on screen
        self.result: dict | None = None
        self.saliency: np.ndarray | None = None
        self.tokens_seen = 0  # streamed tokens received for the current photo (tests check streaming)
        self._rid: str | None = None
        self._cache: OrderedDict[tuple, tuple[dict, np.ndarray | None]] = OrderedDict()  # by content_key
        link.token.connect(self._on_token)
        link.critique_ready.connect(self._on_critique)
        link.critique_failed.connect(self._on_failed)

    def select(self, path: str | None) -> None:
        """A photo comes on screen: forget the critique of the last one (ask with `request`).

        Args:
            path: the photo's path; None for none (nothing is asked then).
        """
        self.path, self.result, self.saliency = path, None, None
        if path is not None:
            self.tokens_seen = 0

    def request(self) -> None:
        """Show the current photo's critique: from memory at once, else ask the daemon (unless it is down)."""
        path = self.path
        if path is None:
            return
        key = content_key(path)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self._rid = None
            self.link.cancel()
            self._show(*hit)
            return
        self.panel.text.clear()
        if self.link.state == DOWN:
            self._rid = None
            self.show_state()
            return
        self._rid = self.link.critique(path)
        self.show_state()

    def on_state(self, state: str) -> None:
        """The daemon's state changed: once it is ready, the photo on screen gets its critique if it has none.

        Args:
            state: the daemon's new state.
        """
        if state == "ready":
            self.request_if_missing()
        self.show_state()

    def request_if_missing(self) -> None:
        """Ask for the current photo's critique if it has none, none is on its way and the daemon is ready."""
        if self.path and self.result is None and self._rid is None and self.link.state == "ready":
            self.request()

    def show_state(self) -> None:
        """Write the panel's line about the daemon (nothing once the critique is there) and show its Start button
        while the daemon is down and can be started here."""
        state = self.link.state
        self.panel.start_button.setVisible(state == DOWN and self.link.can_start)
        if self.path is None or self.result is not None:
            message = ""
        else:
            message = waiting_message(state, self.link.endpoint, self.tokens_seen)
        if message is not None:
            self.panel.state.setText(message)

    def _on_token(self, rid: str, text: str) -> None:
        if rid != self._rid:
            return
        self.tokens_seen += 1
        if self.tokens_seen == 1:
            self.panel.text.clear()
            self.panel.state.setText("<span style='color:#8b949e'>writing the critique…</span>")
        self.panel.append_token(text)

    def _on_critique(self, rid: str, result: dict, saliency) -> None:
        if rid != self._rid:
            # a late answer for a photo we left: keep it, it is the critique of that photo
            path = result.get("image")
            if self._listed(path) and result.get("profile") == self.link.profile:  # not one asked before a change
                self._remember(path, result, saliency)
            return
        self._rid = None
        self._remember(self.path, result, saliency)
        self._show(result, saliency)

    def remembered(self, path: str) -> tuple[dict, np.ndarray | None] | None:
        """A photo's critique and saliency map if one is in memory (its content unchanged), else None.

        Args:
            path: the photo's path.
        """
        return self._cache.get(content_key(path))

    def remember(self, path: str, result: dict, saliency) -> None:
        """Keep a critique got elsewhere (the shoot's background pass): the photo then shows it at once.

        Args:
            path: the photo's path.
            result: the daemon's critique.
            saliency: its saliency map, or None.
        """
        self._remember(path, result, saliency)

    def forget(self) -> None:
        """Forget every critique kept (they are asked again, e.g. with another personal profile)."""
        self._cache.clear()

    def _remember(self, path, result, saliency) -> None:
        self._cache[content_key(path)] = (result, saliency)
        while len(self._cache) > REMEMBERED:
            self._cache.popitem(last=False)

    def _show(self, result: dict, saliency) -> None:
        self.result, self.saliency = result, saliency
        self.panel.show_result(result)
        self.show_state()
        self.shown.emit()

    def _on_failed(self, rid: str, code: str, message: str) -> None:
        if rid != self._rid:
            return
        self._rid = None
        if code == DOWN:
            # asked again when the daemon is back (on_state); if the pinger has seen it back already, now
            if self.link.state == "ready":
                QTimer.singleShot(300, self.request_if_missing)
            self.show_state()
            return
        self.panel.state.setText(f"<span style='color:#f85149'>No critique: {html.escape(message)}</span>")
