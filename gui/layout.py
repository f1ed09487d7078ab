"""The window's layout: the photo view over the thumbnail strip, beside the critique panel (a splitter), and the
toolbar with its actions and shortcuts.

    strip = ThumbnailStrip(model)
    window.setCentralWidget(central_splitter(view, strip, panel))
    toolbar = ViewerToolbar(window)    # its actions call the window's public methods
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QSizePolicy,
    QSlider,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from .badges import BadgeDelegate
from .overlay_control import OPACITY_STEP
from .shoot import SORT_KEYS
from .thumbnails import ThumbnailModel

__all__ = ["ProfileBox", "ThumbnailStrip", "ViewerToolbar", "central_splitter"]


class ProfileBox(QComboBox):
    """The personal profile chooser; `opening` fires before its list drops down, so a profile learnt while the viewer
    runs is offered without a restart."""

    opening = Signal()

    def showPopup(self) -> None:
        self.opening.emit()
        super().showPopup()


class ThumbnailStrip(QListView):
    """One row of thumbnails under the photo. Items have uniform sizes, so Qt lays the strip out from one item's
    size and asks for the pictures of the visible items only. Hidden until there is more than one photo.

    Args:
        model: the thumbnail model it shows.
    """

    def __init__(self, model: ThumbnailModel):
        super().__init__()
        self.setModel(model)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setUniformItemSizes(True)  # layout from one item's size: no data() call per item for 5000 files
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setIconSize(QSize(96, 64))
        self.setGridSize(QSize(104, 72))
        self.setMovement(QListView.Movement.Static)
        self.setFixedHeight(92)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setItemDelegate(BadgeDelegate(self))  # the score on each thumbnail
        self.setStyleSheet("QListView { background: #161618; border: none; }"
                           "QScrollBar:horizontal { height: 8px; }")
        model.dataChanged.connect(lambda *a: self.viewport().update())
        self.hide()

    def select(self, row: int) -> None:
        """Mark a photo as the current one and scroll it to the middle.

        Args:
            row: its index in the model.
        """
        idx = self.model().index(row)
        self.setCurrentIndex(idx)
        self.scrollTo(idx, QAbstractItemView.ScrollHint.PositionAtCenter)


def central_splitter(view: QWidget, strip: QWidget, panel: QWidget) -> QSplitter:
    """The photo view over the strip on the left, the panel on the right; the photo side takes the extra width.

    Args:
        view: the photo view.
        strip: the thumbnail strip.
        panel: the critique panel.
    """
    left = QWidget()
    lv = QVBoxLayout(left)
    lv.setContentsMargins(0, 0, 0, 0)
    lv.setSpacing(0)
    lv.addWidget(view, 1)
    lv.addWidget(strip)
    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.addWidget(left)
    splitter.addWidget(panel)
    splitter.setStretchFactor(0, 1)
    splitter.setStretchFactor(1, 0)
    splitter.setSizes([900, 380])
    return splitter


class ViewerToolbar(QToolBar):
    """The viewer's actions (toolbar buttons and keyboard shortcuts), the overlay's mode box and opacity slider,
    and a spacer after which the daemon's status goes. Every action is also added to the window, so its shortcut
    works with the toolbar hidden and whatever has focus.

    Args:
        window: the viewer's window; the actions call its open_dialog, set_overlay_visible, set_mode,
            set_opacity, toggle_fit, export_overlay, copy_critique, next, prev, show_index and close, its `shoot`'s
            set_sort, set_filter, rate, toggle_compare and leave_compare, and read its mode, opacity and files.
    """

    def __init__(self, window: QMainWindow):
        super().__init__("Main")
        self.setMovable(False)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._owner = window
        self.named: dict[str, QAction] = {}
        w = window
        self._add("open", "Open…", ["Ctrl+O"], lambda: w.open_dialog(folder=False))
        self._add("open_folder", "Folder…", ["Ctrl+Shift+O"], lambda: w.open_dialog(folder=True))
        self.addSeparator()
        self._add("overlay", "Overlay", ["O"], w.set_overlay_visible, checkable=True, checked=True)
        self.mode_box = QComboBox()
        self.mode_box.addItems(["heat", "contour"])
        self.mode_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.mode_box.setToolTip("Overlay mode (C)")
        self.mode_box.currentTextChanged.connect(w.set_mode)
        self.addWidget(self.mode_box)
        self._add("mode", "Contour/heat", ["C"], lambda: w.set_mode("contour" if w.mode == "heat" else "heat"),
                  toolbar=False)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setFixedWidth(120)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setToolTip("Overlay opacity (+ / -)")
        self.slider.valueChanged.connect(lambda v: w.set_opacity(v / 100))
        self.addWidget(QLabel(" opacity "))
        self.addWidget(self.slider)
        self.opacity_label = QLabel("60 %")  # the slider's value, in words
        self.opacity_label.setMinimumWidth(40)
        self.addWidget(self.opacity_label)
        self._add("more", "More opacity", ["+", "=", "Ctrl++"], lambda: w.set_opacity(w.opacity + OPACITY_STEP),
                  toolbar=False)
        self._add("less", "Less opacity", ["-", "Ctrl+-"], lambda: w.set_opacity(w.opacity - OPACITY_STEP),
                  toolbar=False)
        self.addSeparator()
        self._add("fit", "Fit / 100%", ["F"], w.toggle_fit)
        self._add("export", "Export…", ["Ctrl+E"], lambda: w.export_overlay())
        self._add("copy", "Copy critique", ["Ctrl+Shift+C"], w.copy_critique)
        self._add("next", "Next", ["Right", "Space", "PgDown"], w.next, toolbar=False)
        self._add("prev", "Previous", ["Left", "Backspace", "Shift+Space", "PgUp"], w.prev, toolbar=False)
        self._add("first", "First", ["Home"], lambda: w.show_index(0), toolbar=False)
        self._add("last", "Last", ["End"], lambda: w.show_index(len(w.files) - 1), toolbar=False)
        self._add("quit", "Quit", ["Ctrl+Q"], w.close, toolbar=False)
        self._add("compare", "Compare", ["X"], w.shoot.toggle_compare)
        self._add("culling", "Cull", ["K"], w.cull.toggle)  # the culling view (cull_control.py): P / X / U there
        self._add("leave_compare", "Leave compare", ["Escape"], w.shoot.leave_compare, toolbar=False)
        for n in range(6):  # darktable's keys: 0 clears the stars, 1…5 set them
            self._add(f"rate{n}", f"{n} stars", [str(n)], lambda _=False, n=n: w.shoot.rate(n), toolbar=False)
        self.addSeparator()
        self.sort_box = QComboBox()
        self.sort_box.addItems(list(SORT_KEYS))
        self.sort_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.sort_box.setToolTip("Sort the photos by name, date, score or personal score (best first)")
        self.sort_box.currentTextChanged.connect(w.shoot.set_sort)
        self.addWidget(QLabel(" sort "))
        self.addWidget(self.sort_box)
        self.filter_box = QLineEdit()
        self.filter_box.setPlaceholderText("filter: tag words, >=7")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.setFixedWidth(170)
        self.filter_box.setToolTip("Show only photos whose tags contain every word, within score bounds (>=7, <5)")
        self.filter_box.textChanged.connect(w.shoot.set_filter)
        self.addWidget(self.filter_box)
        self.profile_box = ProfileBox()  # the personal profile the critiques are asked with (issue 20)
        self.profile_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.profile_box.setToolTip("Personal profile (ase-mllm learn): a second score, your taste, beside the "
                                    "critic's")
        self.profile_box.currentIndexChanged.connect(lambda i: w.profiles.set(self.profile_box.itemData(i)))
        self.profile_box.opening.connect(lambda: w.profiles.set(w.profile))  # lists the profiles on disk again
        self.addWidget(QLabel(" profile "))
        self.addWidget(self.profile_box)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.addWidget(spacer)

    def _add(self, name, text, keys, slot, checkable=False, toolbar=True, checked=False) -> QAction:
        a = QAction(text, self._owner)
        seqs = [QKeySequence(k) for k in keys]
        a.setShortcuts(seqs)
        a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if seqs:
            a.setToolTip(f"{text} ({seqs[0].toString(QKeySequence.SequenceFormat.NativeText)})")
        a.setCheckable(checkable)
        a.setChecked(checked)  # before connecting: the slots need the whole window built
        (a.toggled if checkable else a.triggered).connect(slot)
        self._owner.addAction(a)  # shortcuts work with the toolbar hidden and whatever has focus
        if toolbar:
            self.addAction(a)
        self.named[name] = a
        return a

    def set_profiles(self, names: list[str], current: str | None) -> None:
        """Offer these profiles (and "none": the generic score only), `current` chosen, without the signal firing.

        Args:
            names: the profiles' names.
            current: the one in use, or None.
        """
        box = self.profile_box
        box.blockSignals(True)
        box.clear()
        box.addItem("none", None)
        for name in names:
            box.addItem(name, name)
        if current and current not in names:  # asked for on the command line, not (or no longer) on disk here
            box.addItem(current, current)
        box.setCurrentIndex(max(0, box.findData(current)) if current else 0)
        box.blockSignals(False)

    def sync(self, opacity: float, mode: str, overlay_on: bool, fit: bool) -> None:
        """Show the overlay settings and the fit mode in the controls, without their signals firing.

        Args:
            opacity: the overlay's opacity, 0…1.
            mode: "heat" or "contour".
            overlay_on: whether the overlay is shown.
            fit: whether the photo is fitted to the view (the Fit action then offers 100 %).
        """
        overlay = self.named["overlay"]
        for w in (self.slider, self.mode_box, overlay):
            w.blockSignals(True)
        self.slider.setValue(int(round(opacity * 100)))
        self.opacity_label.setText(f"{int(round(opacity * 100))} %")
        self.mode_box.setCurrentText(mode)
        overlay.setChecked(overlay_on)
        for w in (self.slider, self.mode_box, overlay):
            w.blockSignals(False)
        self.named["fit"].setText("Fit" if not fit else "100%")
