"""The viewer's own widgets: the photo view (photo + overlay item) and the pieces the critique panel is made of.

    PhotoView   the photo with the overlay as a second item on top; Ctrl+wheel zooms, a message can be drawn over it
    FlowLayout  left-to-right, wrapping (tag chips)
    Prose       read-only text as tall as its content
    Legend      the overlay's colour scale
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPixmap, QTextOption
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QLayout,
    QSizePolicy,
    QTextBrowser,
    QWidget,
)

from .overlay import colormap, rgb_to_qimage

__all__ = ["FlowLayout", "Legend", "PhotoView", "Prose"]


class PhotoView(QGraphicsView):
    """The photo with its overlay as a second item on top; the overlay layer carries per-pixel alpha (from
    overlay_layer) and the item's opacity is the slider, so the opacity slider costs no recomputation — Qt's
    SourceOver blend is the same formula compose_overlay uses for export.

    Args:
        parent: the Qt parent widget, if any.
    """

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
        """Show a photo (and drop the overlay of the previous one).

        Args:
            image: the photo; None shows nothing.
        """
        self.photo_item.setPixmap(QPixmap.fromImage(image) if image is not None else QPixmap())
        self.overlay_item.setPixmap(QPixmap())
        self.scene().setSceneRect(QRectF(self.photo_item.pixmap().rect()))
        self.refit()

    def set_overlay(self, layer: QImage | None) -> None:
        """Put an overlay layer over the photo.

        Args:
            layer: an RGBA layer at the photo's size (see `overlay_layer`); None removes it.
        """
        self.overlay_item.setPixmap(QPixmap.fromImage(layer) if layer is not None else QPixmap())

    def refit(self) -> None:
        """Fit the photo to the view, or show it at 100 % centred, as `fit` says."""
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
        """Draw a message over the view.

        Args:
            text: the message ("Loading…", why a photo cannot be shown); "" draws none.
        """
        self.message = text
        self.viewport().update()


class FlowLayout(QLayout):
    """Left-to-right, wrapping: tag chips.

    Args:
        parent: the widget the layout lays out, if any.
        spacing: pixels between items, across and down.
    """

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
    wraps anywhere when it must (a model can write a 60-character "word"; the panel must not grow for it).

    Args:
        min_height: the least height in pixels, also when empty.
        parent: the Qt parent widget, if any.
    """

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
        """Take the height of the text at the current width."""
        doc = self.document()
        doc.setTextWidth(max(50, self.viewport().width()))
        self.setFixedHeight(max(self._min, int(doc.size().height()) + 4))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()


class Legend(QWidget):
    """The overlay's colour scale, from the same colormap: what the colours mean, at a glance.

    Args:
        parent: the Qt parent widget, if any.
    """

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
