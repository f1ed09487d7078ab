"""The viewer's main window: photo + saliency overlay, a thumbnail strip, and the critique panel.

Threads: photos decode in a one-thread pool, thumbnails in ThumbnailLoader's pool, the daemon is spoken to by
DaemonLink's threads. The GUI thread only composes and paints, so nothing here blocks on a file or a socket.
"""

from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QPoint, QRect, QRectF, QRunnable, QSettings, QSize, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QGuiApplication,
    QImage,
    QKeySequence,
    QPainter,
    QPalette,
    QPixmap,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QLayout,
    QListView,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSplitter,
    QTextBrowser,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from .daemon_link import DOWN, DaemonLink
from .overlay import colormap, compose_overlay, overlay_layer, rgb_to_qimage
from .thumbnails import ThumbnailModel, imageio, list_images, load_photo, model_module

OPACITY_STEP = 0.1
STATE_STYLE = {  # state -> (dot colour, words)
    "ready": ("#3fb950", "ready"),
    "loading": ("#d29922", "loading model…"),
    "unloaded": ("#d29922", "model unloaded"),
    "error": ("#f85149", "model failed"),
    DOWN: ("#f85149", "daemon down"),
    "unknown": ("#8b949e", "connecting…"),
}


def display_max_side() -> int:
    """Photos are shown from a copy no larger than the screen (a 50 MP file would cost ~150 MB as a QImage)."""
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return 2048
    size = screen.size() * screen.devicePixelRatio()
    return int(min(4096, max(1024, size.width(), size.height())))


def attribute_label(key: str) -> str:
    try:
        return model_module("attributes").ATTRIBUTES.get(key) or key.replace("_", " ").capitalize()
    except Exception:
        return key.replace("_", " ").capitalize()


def attribute_order(keys) -> list[str]:
    try:
        canon = list(model_module("attributes").ATTRIBUTES)
    except Exception:
        canon = []
    return sorted(keys, key=lambda k: (canon.index(k) if k in canon else len(canon), k))


def tag_words(tag: str) -> str:
    """"aesthetics|exposure|underexposed" -> "exposure › underexposed" (the root says nothing here)."""
    parts = [p for p in tag.split("|") if p]
    if len(parts) > 1 and parts[0] == "aesthetics":
        parts = parts[1:]
    return " › ".join(p.replace("_", " ") for p in parts)


# ---- photo view ---------------------------------------------------------------------------------------------------
class PhotoView(QGraphicsView):
    """The photo with its overlay as a second item on top; the overlay layer carries per-pixel alpha (from
    overlay_layer) and the item's opacity is the slider, so the opacity slider costs no recomputation — Qt's
    SourceOver blend is the same formula compose_overlay uses for export."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QColor(24, 24, 27))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform | QPainter.RenderHint.Antialiasing)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.photo_item = QGraphicsPixmapItem()
        self.photo_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.overlay_item = QGraphicsPixmapItem()
        self.overlay_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.overlay_item.setZValue(1)
        self.scene().addItem(self.photo_item)
        self.scene().addItem(self.overlay_item)
        self.fit = True
        self.message = ""

    def set_photo(self, image: QImage | None) -> None:
        self.photo_item.setPixmap(QPixmap.fromImage(image) if image is not None else QPixmap())
        self.overlay_item.setPixmap(QPixmap())
        self.scene().setSceneRect(QRectF(self.photo_item.pixmap().rect()))
        self.refit()

    def set_overlay(self, layer: QImage | None) -> None:
        self.overlay_item.setPixmap(QPixmap.fromImage(layer) if layer is not None else QPixmap())

    def refit(self) -> None:
        if self.photo_item.pixmap().isNull():
            self.resetTransform()
        elif self.fit:
            self.fitInView(self.photo_item, Qt.AspectRatioMode.KeepAspectRatio)
        else:
            self.resetTransform()
            self.centerOn(self.photo_item)
        self.viewport().update()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.fit:
            self.refit()

    def wheelEvent(self, event) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier and not self.photo_item.pixmap().isNull():
            self.fit = False
            factor = 1.25 if event.angleDelta().y() > 0 else 0.8
            self.scale(factor, factor)
        else:
            super().wheelEvent(event)

    def drawForeground(self, painter: QPainter, rect) -> None:
        if self.message:  # "Loading…", "cannot read …": drawn over the view, in view coordinates
            painter.save()
            painter.resetTransform()
            painter.setPen(QColor(200, 200, 205))
            f = painter.font()
            f.setPointSizeF(f.pointSizeF() * 1.3)
            painter.setFont(f)
            painter.drawText(self.viewport().rect().adjusted(20, 20, -20, -20),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
            painter.restore()

    def set_message(self, text: str) -> None:
        self.message = text
        self.viewport().update()


# ---- side panel --------------------------------------------------------------------------------------------------
class FlowLayout(QLayout):
    """Left-to-right, wrapping: tag chips."""

    def __init__(self, parent=None, spacing: int = 6):
        super().__init__(parent)
        self._items: list = []
        self._spacing = spacing

    def addItem(self, item) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, i):
        return self._items[i] if 0 <= i < len(self._items) else None

    def takeAt(self, i):
        return self._items.pop(i) if 0 <= i < len(self._items) else None

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), apply=False)

    def setGeometry(self, rect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, apply=True)

    def sizeHint(self) -> QSize:
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        size = QSize()
        for it in self._items:
            size = size.expandedTo(it.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _arrange(self, rect, apply: bool) -> int:
        m = self.contentsMargins()
        x, y, line = rect.x() + m.left(), rect.y() + m.top(), 0
        right = rect.right() - m.right()
        for it in self._items:
            hint = it.sizeHint()
            if x + hint.width() > right and line > 0:
                x, y, line = rect.x() + m.left(), y + line + self._spacing, 0
            if apply:
                it.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self._spacing
            line = max(line, hint.height())
        return y + line - rect.y() + m.bottom()


class Prose(QTextBrowser):
    """Read-only text that is as tall as its content (the panel scrolls as one page, not boxes in a box) and
    wraps anywhere when it must (a model can write a 60-character "word"; the panel must not grow for it)."""

    def __init__(self, min_height: int = 0, parent=None):
        super().__init__(parent)
        self._min = min_height
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to navigation, not to a text cursor
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.document().setDocumentMargin(2)
        self.document().contentsChanged.connect(self.fit)

    def fit(self) -> None:
        doc = self.document()
        doc.setTextWidth(max(50, self.viewport().width()))
        self.setFixedHeight(max(self._min, int(doc.size().height()) + 4))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()


class Legend(QWidget):
    """The overlay's colour scale, from the same colormap: what the colours mean, at a glance."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFixedHeight(26)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setToolTip("Overlay colours: where the photo's aesthetic weight lies, low to high")
        self._ramp = rgb_to_qimage(colormap(np.linspace(0, 1, 256, dtype=np.float32))[None])

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(QRect(0, 0, self.width(), 8), self._ramp)
        p.setPen(self.palette().color(QPalette.ColorRole.Mid))
        f = p.font()
        f.setPointSizeF(max(6.0, f.pointSizeF() * 0.85))
        p.setFont(f)
        p.drawText(QRect(0, 10, self.width(), 16), Qt.AlignmentFlag.AlignLeft, "low")
        p.drawText(QRect(0, 10, self.width(), 16), Qt.AlignmentFlag.AlignHCenter, "aesthetic weight")
        p.drawText(QRect(0, 10, self.width(), 16), Qt.AlignmentFlag.AlignRight, "high")
        p.end()


class CritiquePanel(QWidget):
    copy_requested = Signal()
    start_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumWidth(300)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(16, 14, 16, 14)
        lay.setSpacing(10)

        self.title = QLabel("")
        self.title.setWordWrap(True)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # wrap, never widen
        self.title.setStyleSheet("color: palette(mid); font-size: 11px;")
        lay.addWidget(self.title)

        row = QHBoxLayout()
        self.score = QLabel("–")
        self.score.setObjectName("score")
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 3.2)
        f.setBold(True)
        self.score.setFont(f)
        row.addWidget(self.score)
        col = QVBoxLayout()
        col.addStretch(1)
        self.score_caption = QLabel("aesthetic score / 10")
        self.score_caption.setStyleSheet("color: palette(mid);")
        col.addWidget(self.score_caption)
        self.score_bar = QProgressBar()
        self.score_bar.setRange(0, 100)
        self.score_bar.setTextVisible(False)
        self.score_bar.setFixedHeight(8)
        col.addWidget(self.score_bar)
        col.addStretch(1)
        row.addLayout(col, 1)
        lay.addLayout(row)

        self.legend = Legend()
        lay.addWidget(self.legend)

        self.state = QLabel("")
        self.state.setWordWrap(True)
        self.state.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # wrap, never widen
        self.state.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.state)
        self.start_button = QPushButton("Start the daemon")
        self.start_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.start_button.clicked.connect(self.start_requested)
        self.start_button.hide()
        lay.addWidget(self.start_button)

        self.text_heading = self._heading("Critique")
        lay.addWidget(self.text_heading)
        self.text = Prose(min_height=24)
        lay.addWidget(self.text)

        self.attr_heading = self._heading("By attribute")
        lay.addWidget(self.attr_heading)
        self.attributes = Prose()
        lay.addWidget(self.attributes)

        self.tags_heading = self._heading("Tags")
        lay.addWidget(self.tags_heading)
        self.tags_box = QWidget()
        self.tags_layout = FlowLayout(self.tags_box)
        self.tags_layout.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.tags_box)
        self.tag_labels: list[QLabel] = []

        self.meta = QLabel("")
        self.meta.setWordWrap(True)
        self.meta.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # wrap, never widen
        self.meta.setStyleSheet("color: palette(mid); font-size: 11px;")
        lay.addWidget(self.meta)
        self.copy_button = QPushButton("Copy critique")
        self.copy_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.copy_button.clicked.connect(self.copy_requested)
        lay.addWidget(self.copy_button)
        lay.addStretch(1)
        self.clear()

    @staticmethod
    def _heading(text: str) -> QLabel:
        h = QLabel(text.upper())
        h.setStyleSheet("color: palette(mid); font-size: 11px; font-weight: bold; letter-spacing: 1px;")
        return h

    def clear(self, title: str = "") -> None:
        self.title.setText(title)
        self.score.setText("–")
        self.score_bar.setValue(0)
        self.text.clear()
        self.text_heading.hide()  # shown with the first streamed word: no empty box while waiting
        self.text.hide()
        self.attributes.clear()
        self.attr_heading.hide()
        self.attributes.hide()
        self.set_tags([])
        self.meta.clear()
        self.copy_button.setEnabled(False)

    def append_token(self, text: str) -> None:
        self.text_heading.show()
        self.text.show()
        cursor = self.text.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(text)

    def set_tags(self, tags: list[str]) -> None:
        for lab in self.tag_labels:
            self.tags_layout.removeWidget(lab)
            lab.deleteLater()
        self.tag_labels = []
        for tag in tags:
            lab = QLabel(tag_words(tag))
            lab.setToolTip(tag)
            lab.setObjectName("tag")
            lab.setStyleSheet("QLabel#tag { background: #2d333b; color: #e6edf3; border: 1px solid #444c56;"
                              " border-radius: 9px; padding: 2px 9px; }")
            self.tags_layout.addWidget(lab)
            self.tag_labels.append(lab)
        self.tags_heading.setVisible(bool(tags))
        self.tags_box.setVisible(bool(tags))
        self.tags_box.updateGeometry()

    def show_result(self, result: dict) -> None:
        score = result.get("score")
        if isinstance(score, (int, float)):
            self.score.setText(f"{score:.1f}")
            self.score_bar.setValue(int(round(score * 10)))
        self.text.setPlainText((result.get("text") or "").strip())
        self.text_heading.show()
        self.text.show()
        attrs = {k: v for k, v in (result.get("attributes") or {}).items() if v}
        parts = [f"<p style='margin:0 0 8px 0'><b>{html.escape(attribute_label(k))}</b><br>{html.escape(str(attrs[k]))}</p>"
                 for k in attribute_order(attrs)]
        self.attributes.setHtml("".join(parts))
        self.attr_heading.setVisible(bool(parts))
        self.attributes.setVisible(bool(parts))
        self.set_tags(list(result.get("tags") or []))
        bits = []
        if result.get("model"):
            bits.append(f"model {result['model']}")
        if result.get("cached"):
            bits.append("from the daemon's store")
        total = (result.get("timings") or {}).get("total_ms")
        if isinstance(total, (int, float)) and not result.get("cached"):
            bits.append(f"{total / 1000:.2f} s")
        self.meta.setText(" · ".join(bits))
        self.copy_button.setEnabled(True)


# ---- workers ------------------------------------------------------------------------------------------------------
class _PhotoSignals(QObject):
    loaded = Signal(int, str, QImage, str)  # generation, path, image (null on error), error


class _LoadPhoto(QRunnable):
    def __init__(self, signals: _PhotoSignals, gen: int, path: str, max_side: int, current):
        super().__init__()
        self.signals, self.gen, self.path, self.max_side, self.current = signals, gen, path, max_side, current

    def run(self) -> None:
        if self.current() != self.gen:  # the user moved on while this waited: don't decode
            return
        try:
            img, err = load_photo(self.path, self.max_side), ""
        except Exception as e:  # ImageLoadError carries a human reason
            img, err = QImage(), str(e)
        try:
            self.signals.loaded.emit(self.gen, self.path, img, err)
        except RuntimeError:  # window gone
            pass


# ---- the window ----------------------------------------------------------------------------------------------------
class MainWindow(QMainWindow):
    """ase-viewer's window. `settings` None: remember nothing (screenshots, tests that don't care)."""

    critique_shown = Signal(str)  # path, after a final critique is on screen (tests, --screenshot)
    photo_shown = Signal(str)

    def __init__(self, endpoint: str | None = None, settings: QSettings | None = None,
                 link: DaemonLink | None = None, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("ASE-MLLM viewer")
        self.setAcceptDrops(True)
        self.files: list[str] = []
        self.index = -1
        self.current: str | None = None
        self.image: QImage | None = None  # the displayed (downscaled) photo
        self.saliency: np.ndarray | None = None
        self.result: dict | None = None
        self.opacity = 0.6
        self.mode = "heat"
        self.overlay_on = True
        self.tokens_seen = 0  # streamed tokens received for the current photo (tests check streaming)
        self._gen = 0
        self._rid: str | None = None
        self._critiques: OrderedDict[tuple, tuple[dict, np.ndarray | None]] = OrderedDict()  # (path, mtime, size)
        self._photos: OrderedDict[str, QImage] = OrderedDict()  # a few decoded photos: back-and-forth is instant
        self._layer_key = None
        self._max_side = display_max_side()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._photo_signals = _PhotoSignals(self)
        self._photo_signals.loaded.connect(self._on_photo_loaded)

        self.link = link or DaemonLink(endpoint, self)
        self.link.state_changed.connect(self._on_state)
        self.link.token.connect(self._on_token)
        self.link.critique_ready.connect(self._on_critique)
        self.link.critique_failed.connect(self._on_critique_failed)

        # load the image loader in the background now, so the first photo doesn't wait for it
        threading.Thread(target=imageio, name="ase-viewer-imageio", daemon=True).start()
        self._build()
        self._restore()
        self._on_state(self.link.state, self.link.info)  # a link made earlier may know it already

    # ---- construction ----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.view = PhotoView()
        self.view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.view.set_message("Open a photo or a folder (Ctrl+O), or drop it here.")

        self.model = ThumbnailModel(self)
        self.strip = QListView()
        self.strip.setModel(self.model)
        self.strip.setViewMode(QListView.ViewMode.IconMode)
        self.strip.setFlow(QListView.Flow.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setUniformItemSizes(True)  # layout from one item's size: no data() call per item for 5000 files
        self.strip.setLayoutMode(QListView.LayoutMode.Batched)
        self.strip.setIconSize(QSize(96, 64))
        self.strip.setGridSize(QSize(104, 72))
        self.strip.setMovement(QListView.Movement.Static)
        self.strip.setFixedHeight(92)
        self.strip.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.strip.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.strip.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.strip.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.strip.setStyleSheet("QListView { background: #161618; border: none; }"
                                 "QScrollBar:horizontal { height: 8px; }")
        self.model.dataChanged.connect(lambda *a: self.strip.viewport().update())
        self.strip.clicked.connect(lambda idx: self.show_index(idx.row()))
        self.strip.hide()

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.setSpacing(0)
        lv.addWidget(self.view, 1)
        lv.addWidget(self.strip)

        self.panel = CritiquePanel()
        self.panel.copy_requested.connect(self.copy_critique)
        self.panel.start_requested.connect(self.start_daemon)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.panel)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setSizes([900, 380])
        self.setCentralWidget(self.splitter)

        tb = QToolBar("Main")
        tb.setMovable(False)
        tb.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.addToolBar(tb)
        self.actions: dict[str, QAction] = {}

        def act(name, text, keys, slot, checkable=False, toolbar=True, checked=False):
            a = QAction(text, self)
            seqs = [QKeySequence(k) for k in keys]
            a.setShortcuts(seqs)
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            if seqs:
                a.setToolTip(f"{text} ({seqs[0].toString(QKeySequence.SequenceFormat.NativeText)})")
            a.setCheckable(checkable)
            a.setChecked(checked)  # before connecting: the slots need the whole window built
            (a.toggled if checkable else a.triggered).connect(slot)
            self.addAction(a)  # shortcuts work with the toolbar hidden and whatever has focus
            if toolbar:
                tb.addAction(a)
            self.actions[name] = a
            return a

        act("open", "Open…", ["Ctrl+O"], lambda: self.open_dialog(folder=False))
        act("open_folder", "Folder…", ["Ctrl+Shift+O"], lambda: self.open_dialog(folder=True))
        tb.addSeparator()
        act("overlay", "Overlay", ["O"], self.set_overlay_visible, checkable=True, checked=True)
        self.mode_box = QComboBox()
        self.mode_box.addItems(["heat", "contour"])
        self.mode_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.mode_box.setToolTip("Overlay mode (C)")
        self.mode_box.currentTextChanged.connect(self.set_mode)
        tb.addWidget(self.mode_box)
        act("mode", "Contour/heat", ["C"], lambda: self.set_mode("contour" if self.mode == "heat" else "heat"),
            toolbar=False)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setFixedWidth(120)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setToolTip("Overlay opacity (+ / -)")
        self.slider.valueChanged.connect(lambda v: self.set_opacity(v / 100))
        tb.addWidget(QLabel(" opacity "))
        tb.addWidget(self.slider)
        act("more", "More opacity", ["+", "=", "Ctrl++"], lambda: self.set_opacity(self.opacity + OPACITY_STEP),
            toolbar=False)
        act("less", "Less opacity", ["-", "Ctrl+-"], lambda: self.set_opacity(self.opacity - OPACITY_STEP),
            toolbar=False)
        tb.addSeparator()
        act("fit", "Fit / 100%", ["F"], self.toggle_fit)
        act("export", "Export…", ["Ctrl+E"], lambda: self.export_overlay())
        act("copy", "Copy critique", ["Ctrl+Shift+C"], self.copy_critique)
        act("next", "Next", ["Right", "Space", "PgDown"], self.next, toolbar=False)
        act("prev", "Previous", ["Left", "Backspace", "Shift+Space", "PgUp"], self.prev, toolbar=False)
        act("first", "First", ["Home"], lambda: self.show_index(0), toolbar=False)
        act("last", "Last", ["End"], lambda: self.show_index(len(self.files) - 1), toolbar=False)
        act("quit", "Quit", ["Ctrl+Q"], self.close, toolbar=False)

        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        self.status_dot = QLabel("●")
        self.status_label = QLabel("")
        tb.addWidget(self.status_dot)
        tb.addWidget(self.status_label)
        self.start_action = QAction("Start daemon", self)
        self.start_action.triggered.connect(self.start_daemon)
        tb.addAction(self.start_action)
        self.statusBar().setSizeGripEnabled(False)
        self._sync_controls()

    def _restore(self) -> None:
        s = self.settings
        if s is None:
            self.resize(1280, 820)
            return
        geo = s.value("window/geometry")
        if geo is not None and not self.restoreGeometry(geo):
            self.resize(1280, 820)
        elif geo is None:
            self.resize(1280, 820)
        split = s.value("window/splitter")
        if split is not None:
            self.splitter.restoreState(split)
        self.opacity = float(s.value("overlay/opacity", self.opacity))
        self.mode = str(s.value("overlay/mode", self.mode))
        self.overlay_on = str(s.value("overlay/on", "true")).lower() == "true"
        self._sync_controls()

    def _save(self) -> None:
        s = self.settings
        if s is None:
            return
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/splitter", self.splitter.saveState())
        s.setValue("overlay/opacity", self.opacity)
        s.setValue("overlay/mode", self.mode)
        s.setValue("overlay/on", "true" if self.overlay_on else "false")
        if self.current:
            s.setValue("last/folder", os.path.dirname(self.current))
            s.setValue("last/file", self.current)
        s.sync()

    @property
    def last_folder(self) -> str | None:
        return None if self.settings is None else self.settings.value("last/folder")

    def _sync_controls(self) -> None:
        for w in (self.slider, self.mode_box, self.actions["overlay"]):
            w.blockSignals(True)
        self.slider.setValue(int(round(self.opacity * 100)))
        self.mode_box.setCurrentText(self.mode)
        self.actions["overlay"].setChecked(self.overlay_on)
        for w in (self.slider, self.mode_box, self.actions["overlay"]):
            w.blockSignals(False)
        self.actions["fit"].setText("Fit" if not self.view.fit else "100%")

    # ---- opening and navigating ---------------------------------------------------------------------------------
    def open_paths(self, paths) -> int:
        """Show files/folders: lists (no decoding) and shows the first. Returns how many photos were found."""
        files, first = list_images([os.fspath(p) for p in paths])
        self.files = files
        self.model.set_paths(files)
        self.strip.setVisible(len(files) > 1)
        if not files:
            self.show_index(-1)
            self.view.set_message("No photos there.")
            return 0
        self.show_index(files.index(first) if first else 0)
        return len(files)

    def restore_last(self) -> bool:
        """Reopen the last folder (at the last file) when the viewer starts without paths."""
        if self.settings is None:
            return False
        last = self.settings.value("last/file")
        folder = self.settings.value("last/folder")
        if last and os.path.isfile(last):
            return self.open_paths([last]) > 0
        if folder and os.path.isdir(folder):
            return self.open_paths([folder]) > 0
        return False

    def open_dialog(self, folder: bool) -> None:
        start = self.last_folder or str(Path.home())
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Open a folder of photos", start)
            paths = [path] if path else []
        else:
            paths, _ = QFileDialog.getOpenFileNames(self, "Open photos", start)
        if paths:
            self.open_paths(paths)

    def next(self) -> None:
        if self.files:
            self.show_index(min(self.index + 1, len(self.files) - 1))

    def prev(self) -> None:
        if self.files:
            self.show_index(max(self.index - 1, 0))

    def show_index(self, i: int) -> None:
        if not self.files or i < 0:
            self.index, self.current, self.image, self.saliency, self.result = -1, None, None, None, None
            self.view.set_photo(None)
            self.panel.clear()
            return
        i = max(0, min(i, len(self.files) - 1))
        if i == self.index and self.current == self.files[i]:
            return
        self.index, self.current = i, self.files[i]
        self.image, self.saliency, self.result, self._layer_key = None, None, None, None
        self.tokens_seen = 0
        self._gen += 1
        idx = self.model.index(i)
        self.strip.setCurrentIndex(idx)
        self.strip.scrollTo(idx, QAbstractItemView.ScrollHint.PositionAtCenter)
        name = os.path.basename(self.current)
        self.setWindowTitle(f"{name} — ASE-MLLM viewer")
        self.statusBar().showMessage(f"{name}   {i + 1} / {len(self.files)}")
        self.panel.clear(name)
        self.view.set_photo(None)
        cached = self._photos.get(self.current)
        if cached is not None:
            self._photos.move_to_end(self.current)
            self._set_image(cached)
        else:
            self.view.set_message("Loading…")
            gen = self._gen
            self._pool.start(_LoadPhoto(self._photo_signals, gen, self.current, self._max_side, lambda: self._gen))
        self._request_critique()

    @staticmethod
    def _key(path: str):
        """A critique is of the file's content: an edited file (new mtime/size) is critiqued again."""
        try:
            st = os.stat(path)
            return path, st.st_mtime_ns, st.st_size
        except OSError:
            return path, None, None

    def _request_critique(self) -> None:
        path = self.current
        if path is None:
            return
        hit = self._critiques.get(self._key(path))
        if hit is not None:
            self._critiques.move_to_end(self._key(path))
            self._rid = None
            self.link.cancel()
            self._show_critique(*hit)
            return
        self.panel.text.clear()
        if self.link.state == DOWN:
            self._rid = None
            self._show_state_in_panel()
            return
        self._rid = self.link.critique(path)
        self._show_state_in_panel()

    def _on_photo_loaded(self, gen: int, path: str, image: QImage, error: str) -> None:
        if gen != self._gen:
            return
        if image.isNull():
            self.view.set_message(f"Cannot show this photo:\n{error}")
            return
        self._photos[path] = image
        while len(self._photos) > 4:
            self._photos.popitem(last=False)
        self._set_image(image)

    def _set_image(self, image: QImage) -> None:
        self.image = image
        self.view.set_message("")
        self.view.set_photo(image)
        self._update_overlay()
        self.photo_shown.emit(self.current)

    # ---- critique -------------------------------------------------------------------------------------------------
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
            if path in self.files:
                self._remember(path, result, saliency)
            return
        self._rid = None
        self._remember(self.current, result, saliency)
        self._show_critique(result, saliency)

    def _remember(self, path, result, saliency) -> None:
        self._critiques[self._key(path)] = (result, saliency)
        while len(self._critiques) > 64:
            self._critiques.popitem(last=False)

    def _show_critique(self, result: dict, saliency) -> None:
        self.result, self.saliency = result, saliency
        self._layer_key = None
        self.panel.show_result(result)
        self._show_state_in_panel()
        self._update_overlay()
        self.critique_shown.emit(self.current or "")

    def _on_critique_failed(self, rid: str, code: str, message: str) -> None:
        if rid != self._rid:
            return
        self._rid = None
        if code == DOWN:
            # asked again when the daemon is back (_on_state); if the pinger has seen it back already, now
            if self.link.state == "ready":
                QTimer.singleShot(300, self._critique_if_missing)
            self._show_state_in_panel()
            return
        self.panel.state.setText(f"<span style='color:#f85149'>No critique: {html.escape(message)}</span>")

    # ---- daemon state ----------------------------------------------------------------------------------------------
    def _on_state(self, state: str, info: dict) -> None:
        colour, words = STATE_STYLE.get(state, STATE_STYLE["error"])
        model = info.get("model") or ""
        self.status_dot.setStyleSheet(f"color: {colour}; font-size: 16px;")
        self.status_label.setText(f"{words}  " + (f"· {model.split('@')[0]}  " if model and state == "ready" else ""))
        self.status_label.setToolTip(info.get("message") or self.link.endpoint)
        self.start_action.setVisible(state == DOWN and self.link.can_start)
        if state == "ready":  # the daemon is back and the photo on screen has no critique yet: ask now
            self._critique_if_missing()
        self._show_state_in_panel()

    def _critique_if_missing(self) -> None:
        if self.current and self.result is None and self._rid is None and self.link.state == "ready":
            self._request_critique()

    def _show_state_in_panel(self) -> None:
        state = self.link.state
        down = state == DOWN
        self.panel.start_button.setVisible(down and self.link.can_start)
        if self.current is None:
            self.panel.state.setText("")
        elif self.result is not None:
            self.panel.state.setText("")
        elif down:
            self.panel.state.setText(
                "<span style='color:#f85149'><b>daemon down</b></span> — no ase-daemon answers at "
                f"<code>{html.escape(self.link.endpoint)}</code>. The critique will appear once it is running "
                "(<code>ase-daemon</code>, or the button below).")
        elif state in ("loading", "unloaded"):
            self.panel.state.setText("<span style='color:#d29922'>The model is loading; the critique follows.</span>")
        elif state == "error":
            self.panel.state.setText("<span style='color:#f85149'>The daemon's model failed to load "
                                     "(see <code>ase-client status</code>).</span>")
        elif self.tokens_seen == 0:
            self.panel.state.setText("<span style='color:#8b949e'>asking the critic…</span>")

    def start_daemon(self) -> None:
        if self.link.start_daemon():
            self.status_label.setText("starting the daemon…  ")
            self.start_action.setVisible(False)
            self.panel.start_button.setVisible(False)

    # ---- overlay -----------------------------------------------------------------------------------------------------
    def set_overlay_visible(self, on: bool) -> None:
        self.overlay_on = bool(on)
        self._sync_controls()
        self._update_overlay()

    def set_mode(self, mode: str) -> None:
        if mode not in ("heat", "contour") or mode == self.mode:
            return
        self.mode = mode
        self._sync_controls()
        self._update_overlay()

    def set_opacity(self, value: float) -> None:
        self.opacity = round(float(np.clip(value, 0.0, 1.0)), 3)
        self._sync_controls()
        self.view.overlay_item.setOpacity(self.opacity)

    def toggle_fit(self) -> None:
        self.view.fit = not self.view.fit
        self.view.refit()
        self._sync_controls()

    def _update_overlay(self) -> None:
        if self.image is None or self.saliency is None or not self.overlay_on:
            self.view.overlay_item.setVisible(False)
            return
        key = (id(self.image), id(self.saliency), self.mode)
        if key != self._layer_key:  # the layer depends on photo size, map and mode, not on opacity
            layer = overlay_layer(self.saliency, self.image.width(), self.image.height(), self.mode)
            self.view.set_overlay(rgb_to_qimage(layer))
            self._layer_key = key
        self.view.overlay_item.setOpacity(self.opacity)
        self.view.overlay_item.setVisible(True)

    def composed_image(self) -> QImage | None:
        """What the view shows, at the displayed photo's size: the photo, with the overlay when it is on."""
        if self.image is None:
            return None
        if self.saliency is None or not self.overlay_on:
            return self.image.copy()
        return compose_overlay(self.image, self.saliency, self.opacity, self.mode)

    def export_overlay(self, path: str | None = None) -> str | None:
        """Save photo + overlay (at the current mode and opacity, shown or not) as PNG; None if nothing to save."""
        if self.image is None or self.saliency is None:
            self.statusBar().showMessage("Nothing to export yet: the photo has no saliency map.", 4000)
            return None
        if path is None:
            stem = Path(self.current).stem
            start = os.path.join(self.settings.value("export/folder", os.path.dirname(self.current))
                                 if self.settings else os.path.dirname(self.current), f"{stem}.saliency.png")
            path, _ = QFileDialog.getSaveFileName(self, "Export the overlay", start, "PNG (*.png)")
            if not path:
                return None
        opacity = self.opacity if self.opacity > 0 else 0.6  # an export of an invisible overlay is no export
        img = compose_overlay(self.image, self.saliency, opacity, self.mode)
        if not img.save(path, "PNG"):
            self.statusBar().showMessage(f"Could not write {path}", 6000)
            return None
        if self.settings is not None:
            self.settings.setValue("export/folder", os.path.dirname(os.path.abspath(path)))
        self.statusBar().showMessage(f"Exported {path}", 4000)
        return path

    def critique_text(self) -> str:
        r = self.result
        if not r:
            return ""
        lines = [os.path.basename(self.current or "")]
        if isinstance(r.get("score"), (int, float)):
            lines.append(f"Score: {r['score']:.1f} / 10")
        lines += ["", (r.get("text") or "").strip()]
        attrs = r.get("attributes") or {}
        if attrs:
            lines.append("")
            lines += [f"{attribute_label(k)}: {attrs[k]}" for k in attribute_order(attrs) if attrs[k]]
        if r.get("tags"):
            lines += ["", "Tags: " + ", ".join(tag_words(t) for t in r["tags"])]
        return "\n".join(lines)

    def copy_critique(self) -> None:
        text = self.critique_text()
        if text:
            QGuiApplication.clipboard().setText(text)
            self.statusBar().showMessage("Critique copied", 3000)

    # ---- drag and drop, closing --------------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_paths(paths)
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:
        self._save()
        self.link.close()
        self.model.loader.close()
        super().closeEvent(event)
