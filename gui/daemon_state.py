"""What the viewer says about the daemon: the toolbar's coloured dot and words, its Start daemon action, and the
panel's line about a critique that is not there yet (loading, daemon down, model failed, asking).

The state itself comes from `DaemonLink.state` ("ready", "loading", "unloaded", "error", DOWN, "unknown").
"""

from __future__ import annotations

import html

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QToolBar

from .daemon_link import DOWN, DaemonLink

__all__ = ["STATE_STYLE", "DaemonStatus", "waiting_message"]

STATE_STYLE = {  # state -> (dot colour, words)
    "ready": ("#3fb950", "ready"),
    "loading": ("#d29922", "loading model…"),
    "unloaded": ("#d29922", "model unloaded"),
    "error": ("#f85149", "model failed"),
    DOWN: ("#f85149", "daemon down"),
    "unknown": ("#8b949e", "connecting…"),
}


def waiting_message(state: str, endpoint: str, tokens_seen: int) -> str | None:
    """The panel's rich-text line while a photo has no critique yet.

    Args:
        state: the daemon's state, as `DaemonLink.state`.
        endpoint: the daemon's endpoint (named when nobody answers there).
        tokens_seen: streamed tokens received for the photo so far.

    Returns:
        The line, or None when the line should stay as it is (text is streaming in).
    """
    if state == DOWN:
        return ("<span style='color:#f85149'><b>daemon down</b></span> — no ase-daemon answers at "
                f"<code>{html.escape(endpoint)}</code>. The critique will appear once it is running "
                "(<code>ase-daemon</code>, or the button below).")
    if state in ("loading", "unloaded"):
        return "<span style='color:#d29922'>The model is loading; the critique follows.</span>"
    if state == "error":
        return ("<span style='color:#f85149'>The daemon's model failed to load "
                "(see <code>ase-client status</code>).</span>")
    if tokens_seen == 0:
        return "<span style='color:#8b949e'>asking the critic…</span>"
    return None


class DaemonStatus(QObject):
    """The daemon's state at the end of a toolbar: a coloured dot, words (with the model's name when ready; the
    daemon's message or endpoint as tooltip), and a **Start daemon** action shown while it is down and can be
    started here.

    Args:
        link: the viewer's link to the daemon (its endpoint and whether it can start one).
        toolbar: the toolbar the dot, the words and the action are added to, in that order.
        parent: the Qt parent object, if any.
    """

    start_requested = Signal()

    def __init__(self, link: DaemonLink, toolbar: QToolBar, parent=None):
        super().__init__(parent)
        self.link = link
        self.dot = QLabel("●")
        self.label = QLabel("")
        toolbar.addWidget(self.dot)
        toolbar.addWidget(self.label)
        self.start_action = QAction("Start daemon", toolbar)
        self.start_action.triggered.connect(self.start_requested)
        toolbar.addAction(self.start_action)

    def show_state(self, state: str, info: dict) -> None:
        """Show a state of the daemon.

        Args:
            state: the daemon's state, as `DaemonLink.state`.
            info: the daemon's last ping (its "model" and "message" are shown).
        """
        colour, words = STATE_STYLE.get(state, STATE_STYLE["error"])
        model = info.get("model") or ""
        self.dot.setStyleSheet(f"color: {colour}; font-size: 16px;")
        self.label.setText(f"{words}  " + (f"· {model.split('@')[0]}  " if model and state == "ready" else ""))
        self.label.setToolTip(info.get("message") or self.link.endpoint)
        self.start_action.setVisible(state == DOWN and self.link.can_start)

    def starting(self) -> None:
        """Say the daemon is being started (until its first ping says otherwise)."""
        self.label.setText("starting the daemon…  ")
        self.start_action.setVisible(False)
