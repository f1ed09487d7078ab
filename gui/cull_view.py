"""The culling view: the daemon's cull of the folder, one row per group (bursts and near-duplicates), the pick marked,
each frame's reason under it, and Lightroom's keys to override: P picks, X rejects, U unflags.

    view = CullView(loader)                  # a ThumbnailLoader: the rows' pictures come from the strip's caches
    view.show_progress("culling", 3, 6)
    view.show_result(result)                 # the `cull` op's result: decisions (path, group, decision, reason…)
    view.flag_requested.connect(...)         # (path, "pick" | "reject" | "unflag"): the controller writes the sidecar
    view.set_flag(path, "reject")            # ...and shows what was written

The view writes nothing itself; `CullControl` (cull_control.py) runs the cull and writes the overrides.
"""

from __future__ import annotations

import os
from collections import defaultdict

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

__all__ = ["CullView", "DECISION_COLOURS", "item_text"]

PathRole = Qt.ItemDataRole.UserRole + 1
DECISION_COLOURS = {"pick": QColor(46, 160, 67), "reject": QColor(218, 54, 51), "keep": QColor(70, 72, 78)}
_WORDS = {"pick": "★ PICK", "reject": "✕ REJECT", "keep": "keep"}
_KEYS = {Qt.Key.Key_P: "pick", Qt.Key.Key_X: "reject", Qt.Key.Key_U: "unflag"}


def item_text(path: str, decision: str, reason: str, yours: bool) -> str:
    """A frame's caption: its decision, its file name and its reason (the cull's, or that the photographer decided).

    Args:
        path: the photo.
        decision: "pick", "keep" or "reject".
        reason: the cull's one-line reason.
        yours: the decision is the photographer's override.
    """
    head = f"{_WORDS.get(decision, decision)}{' (yours)' if yours else ''} · {os.path.basename(path)}"
    return f"{head}\n{reason}" if reason else head


class _Row(QListWidget):
    """One group's frames, left to right, in rank order."""

    def __init__(self, icon: QSize):
        super().__init__()
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setWordWrap(True)
        self.setIconSize(icon)
        self.setGridSize(QSize(icon.width() + 64, icon.height() + 78))
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedHeight(icon.height() + 100)
        self.setStyleSheet("QListWidget { background: #1b1b1e; color: #e1e3e6; border: none; }"
                           "QListWidget::item:selected { border: 2px solid #58a6ff; }")


class CullView(QWidget):
    """Groups in rows, the pick first in each; P/X/U on the selected frame ask for an override.

    Args:
        loader: a ThumbnailLoader (request(path); ready(path, image), failed(path)) for the frames' pictures.
        parent: the Qt parent widget, if any.
    """

    flag_requested = Signal(str, str)  # path, "pick" | "reject" | "unflag"
    selected = Signal(str)  # a frame was selected (the window shows its critique)
    cancel_requested = Signal()
    rerun_requested = Signal()
    back_requested = Signal()

    def __init__(self, loader, parent=None):
        super().__init__(parent)
        self.loader = loader
        self.icon = QSize(160, 107)
        self.decisions: dict[str, dict] = {}  # by path: the cull's decision records
        self.flags: dict[str, str] = {}  # by path: the photographer's decision ("pick" | "keep" | "reject")
        self.rows: list[_Row] = []
        self._asked: set[int] = set()  # rows whose pictures were asked for (only rows scrolled into view are)
        self._items: dict[str, QListWidgetItem] = {}
        self._icons: dict[str, QIcon] = {}
        loader.ready.connect(self._on_thumb)
        self._build()

    def _build(self) -> None:
        top = QHBoxLayout()
        self.status = QLabel("Cull the folder: groups of similar frames, the best of each, the rejects with reasons.")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widen the window
        top.addWidget(self.status, 1)
        self.progress = QProgressBar()
        self.progress.setMinimumWidth(60)
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        top.addWidget(self.progress)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.cancel_button.hide()
        top.addWidget(self.cancel_button)
        self.rerun_button = QPushButton("Cull again")
        self.rerun_button.clicked.connect(self.rerun_requested)
        top.addWidget(self.rerun_button)
        for b in (self.cancel_button, self.rerun_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.keys = QLabel("P pick · X reject · U unflag · ←/→ frames · ↑/↓ groups · 0–5 stars · Esc or K back")
        self.keys.setStyleSheet("color: palette(mid);")
        self.keys.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(6, 6, 6, 6)
        self.body_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.body)
        self.scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.scroll.verticalScrollBar().valueChanged.connect(self._ask_visible)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addLayout(top)
        lay.addWidget(self.keys)
        lay.addWidget(self.scroll, 1)

    # ---- the run ---------------------------------------------------------------------------------------------------
    def show_running(self, running: bool) -> None:
        """Show the progress bar and Cancel while a cull runs.

        Args:
            running: whether one runs.
        """
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.rerun_button.setEnabled(not running)
        if running:
            self.progress.setRange(0, 0)  # busy until the first count
            self.status.setText("Culling…")

    def show_progress(self, stage: str, done: int, total: int) -> None:
        """A progress event of the cull.

        Args:
            stage: the daemon's stage ("accepted", "culling", "critiquing", "waiting for the model", ...).
            done: photos done (0 when the stage has no count).
            total: photos in all (0: unknown).
        """
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.status.setText(f"Culling… {done} / {total} photos ({stage})")
        else:
            self.status.setText(f"Culling… ({stage})")

    def show_message(self, text: str) -> None:
        """A line in the status (a failure, a cancel).

        Args:
            text: what to say.
        """
        self.status.setText(text)

    # ---- the groups --------------------------------------------------------------------------------------------------
    def clear(self) -> None:
        """No groups."""
        for row in self.rows:
            row.parentWidget().deleteLater()
        self.rows, self._items, self.decisions, self._asked = [], {}, {}, set()

    def show_result(self, result: dict, flags: dict[str, str] | None = None) -> None:
        """Show a cull: a row per group in capture order, the frames in rank order (the pick first).

        Args:
            result: the `cull` op's result (decisions, errors, counts).
            flags: decisions the photographer made earlier, by path (they win over the cull's).
        """
        self.clear()
        self.flags = dict(flags or {})
        groups: dict[int, list[dict]] = defaultdict(list)
        for d in result.get("decisions") or []:
            self.decisions[d["path"]] = d
            groups[int(d.get("group", 0))].append(d)
        for g in sorted(groups):
            self._add_row(g, sorted(groups[g], key=lambda d: (d.get("rank") or 0, d["path"])))
        counts = result.get("counts") or {}
        errors = result.get("errors") or []
        words = (f"{len(self.decisions)} photos in {len(groups)} groups: {counts.get('picks', 0)} picks, "
                 f"{counts.get('keeps', 0)} kept, {counts.get('rejects', 0)} rejects")
        if errors:
            words += f"; {len(errors)} unreadable ({', '.join(os.path.basename(e['path']) for e in errors[:3])})"
        self.status.setText(words if self.decisions else "No photos to cull here.")
        if self.rows:
            self.rows[0].setCurrentRow(0)
            self.rows[0].setFocus()
        QTimer.singleShot(0, self._ask_visible)  # once laid out: the pictures of the rows in view

    def _add_row(self, group: int, members: list[dict]) -> None:
        box = QWidget()
        v = QVBoxLayout(box)
        v.setContentsMargins(0, 4, 0, 4)
        n = members[0].get("group_size") or len(members)
        title = QLabel(f"<b>Group {group + 1}</b> · {n} frame{'s' if n != 1 else ''}")
        v.addWidget(title)
        row = _Row(self.icon)
        for d in members:
            item = QListWidgetItem()
            item.setData(PathRole, d["path"])
            item.setToolTip(f"{d['path']}\n{d.get('reason') or ''}")
            item.setIcon(self._icons.get(d["path"]) or self._placeholder())
            row.addItem(item)
            self._items[d["path"]] = item
            self._paint(d["path"])
        row.installEventFilter(self)
        row.currentItemChanged.connect(lambda cur, _prev: cur is not None and self.selected.emit(cur.data(PathRole)))
        v.addWidget(row)
        self.body_layout.insertWidget(self.body_layout.count() - 1, box)
        self.rows.append(row)

    def _ask_visible(self, *_) -> None:
        """Ask for the pictures of the rows in view (and one screen below): a shoot of thousands asks for what is
        seen, as the strip does, and the loader's bounded queue never drops what is on screen."""
        top = self.scroll.verticalScrollBar().value()
        bottom = top + 2 * max(self.scroll.viewport().height(), 400)
        for i, row in enumerate(self.rows):
            if i in self._asked:
                continue
            box = row.parentWidget().geometry()
            if box.bottom() >= top and box.top() <= bottom:
                self._asked.add(i)
                for k in range(row.count()):
                    path = row.item(k).data(PathRole)
                    if path not in self._icons:
                        self.loader.request(path)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, self._ask_visible)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._ask_visible()

    def _placeholder(self) -> QIcon:
        pm = QPixmap(self.icon)
        pm.fill(QColor(60, 60, 64))
        return QIcon(pm)

    def decision(self, path: str) -> str | None:
        """A frame's decision as shown: the photographer's override, else the cull's.

        Args:
            path: the photo.
        """
        d = self.decisions.get(path)
        return self.flags.get(path) or (d or {}).get("decision")

    def _paint(self, path: str) -> None:
        item, d = self._items.get(path), self.decisions.get(path)
        if item is None or d is None:
            return
        decision = self.decision(path)
        yours = path in self.flags and self.flags[path] != d.get("decision")
        item.setText(item_text(path, decision, d.get("reason") or "", yours))
        colour = QColor(DECISION_COLOURS.get(decision, DECISION_COLOURS["keep"]))
        colour.setAlpha(150 if decision != "keep" else 0)
        item.setBackground(QBrush(colour))

    def set_flag(self, path: str, decision: str) -> None:
        """Show the photographer's decision for a frame (written to its sidecar by the caller).

        Args:
            path: the photo.
            decision: "pick", "keep" or "reject".
        """
        self.flags[path] = decision
        self._paint(path)

    def select(self, path: str) -> bool:
        """Select a frame (and give its row the focus).

        Args:
            path: the photo.

        Returns:
            Whether the frame is in the view.
        """
        item = self._items.get(path)
        if item is None:
            return False
        row = item.listWidget()
        row.setCurrentItem(item)
        row.setFocus()
        self.scroll.ensureWidgetVisible(row.parentWidget())
        return True

    def _on_thumb(self, path: str, image: QImage) -> None:
        item = self._items.get(path)
        if item is not None:
            icon = QIcon(QPixmap.fromImage(image))
            self._icons[path] = icon
            item.setIcon(icon)

    # ---- keys --------------------------------------------------------------------------------------------------------
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.KeyPress or obj not in self.rows:
            return super().eventFilter(obj, event)
        key = event.key()
        if key in _KEYS and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            item = obj.currentItem()
            if item is not None:
                self.flag_requested.emit(item.data(PathRole), _KEYS[key])
            return True
        if key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            i = self.rows.index(obj) + (1 if key == Qt.Key.Key_Down else -1)
            if 0 <= i < len(self.rows):
                row = self.rows[i]
                row.setCurrentRow(max(0, row.currentRow()))
                row.setFocus()
                self.scroll.ensureWidgetVisible(row.parentWidget())
            return True
        if key == Qt.Key.Key_Escape:
            self.back_requested.emit()
            return True
        return super().eventFilter(obj, event)
