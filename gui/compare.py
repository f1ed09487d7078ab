"""Two frames side by side, each with its saliency overlay, name and score: which of two near-identical shots to
keep, and where each one's weight lies.

    compare = CompareView()
    compare.show_pair(left, right)     # Side(path, image, saliency, score) for each; decoded already
    compare.set_overlay(opacity, mode, on)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .overlay import overlay_layer, rgb_to_qimage
from .widgets import PhotoView

__all__ = ["CompareView", "Side"]


@dataclass
class Side:
    """One frame of the comparison.

    Args:
        path: the photo's path.
        image: the decoded photo (None: not decoded, a message shows instead).
        saliency: its saliency map, or None (no overlay).
        score: its critique's score, or None.
    """

    path: str
    image: QImage | None
    saliency: np.ndarray | None = None
    score: float | None = None


class CompareView(QWidget):
    """Two photo views side by side with a caption each (name, score); the overlay settings are the window's.

    Args:
        parent: the Qt parent widget, if any.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.views: list[PhotoView] = []
        self.captions: list[QLabel] = []
        self.sides: list[Side] = []
        for _ in range(2):
            col = QVBoxLayout()
            col.setSpacing(2)
            view = PhotoView()
            view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            caption = QLabel("")
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption.setStyleSheet("color: #e6edf3; background: #161618; padding: 4px;")
            col.addWidget(view, 1)
            col.addWidget(caption)
            lay.addLayout(col, 1)
            self.views.append(view)
            self.captions.append(caption)
        self._overlay = (0.6, "contour", True)

    def show_pair(self, left: Side, right: Side) -> None:
        """Show two frames.

        Args:
            left: the frame on the left (the one chosen first).
            right: the frame on the right (the one on screen).
        """
        self.sides = [left, right]
        for view, caption, side in zip(self.views, self.captions, self.sides):
            view.set_photo(side.image)
            view.set_message("" if side.image is not None else "Cannot show this photo")
            score = f"   {side.score:.1f}" if isinstance(side.score, (int, float)) else "   (no critique yet)"
            caption.setText(f"{os.path.basename(side.path)}{score}")
        self._draw_overlays()

    def set_overlay(self, opacity: float, mode: str, on: bool) -> None:
        """Use the window's overlay settings.

        Args:
            opacity: 0…1.
            mode: "heat" or "contour".
            on: whether overlays are shown.
        """
        changed = mode != self._overlay[1]
        self._overlay = (opacity, mode, on)
        if changed:
            self._draw_overlays()
        for view, side in zip(self.views, self.sides):
            view.overlay_item.setOpacity(opacity)
            view.overlay_item.setVisible(on and side.image is not None and side.saliency is not None)

    def _draw_overlays(self) -> None:
        opacity, mode, on = self._overlay
        for view, side in zip(self.views, self.sides):
            item = view.overlay_item
            if side.image is None or side.saliency is None:
                item.setVisible(False)
                continue
            view.set_overlay(rgb_to_qimage(overlay_layer(side.saliency, side.image.width(), side.image.height(),
                                                         mode)))
            item.setOpacity(opacity)
            item.setVisible(on)
