"""Score badges on the thumbnails: the critique's score in a small pill at the thumbnail's bottom-right corner,
coloured from red (weak) through amber to green (strong), so a sorted strip reads at a glance.

    strip.setItemDelegate(BadgeDelegate(strip))    # reads ThumbnailModel.ScoreRole
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QStyledItemDelegate

from .thumbnails import ThumbnailModel

__all__ = ["BadgeDelegate", "badge_color", "badge_text"]


def badge_text(score: float) -> str:
    """The badge's words for a score ("7.4").

    Args:
        score: 0…10.
    """
    return f"{score:.1f}"


def badge_color(score: float) -> QColor:
    """Red below 4, amber around 5.5, green from 7: the colour says the band before the number is read.

    Args:
        score: 0…10.
    """
    if score >= 7:
        return QColor(46, 160, 67)
    if score >= 4:
        return QColor(210, 153, 34)
    return QColor(218, 54, 51)


class BadgeDelegate(QStyledItemDelegate):
    """Paints the thumbnail as usual, then its score badge (when the model has a score for it).

    Args:
        parent: the view.
    """

    def paint(self, painter: QPainter, option, index) -> None:
        super().paint(painter, option, index)
        score = index.data(ThumbnailModel.ScoreRole)
        if score is None:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        f = QFont(option.font)
        f.setBold(True)
        f.setPixelSize(11)
        painter.setFont(f)
        text = badge_text(score)
        w = painter.fontMetrics().horizontalAdvance(text) + 10
        r = option.rect
        box = QRectF(r.right() - w - 3, r.bottom() - 19, w, 16)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(badge_color(score))
        painter.drawRoundedRect(box, 8, 8)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()
