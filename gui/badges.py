"""Score badges on the thumbnails: the critique's score in a small pill at the thumbnail's bottom-right corner,
coloured from red (weak) through amber to green (strong), so a sorted strip reads at a glance. With a personal
profile, its score is a second pill at the bottom-left, violet with the band's colour as its outline.

    strip.setItemDelegate(BadgeDelegate(strip))    # reads ThumbnailModel.ScoreRole and PersonalRole
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QStyledItemDelegate

from .thumbnails import ThumbnailModel

__all__ = ["PERSONAL_COLOR", "BadgeDelegate", "badge_color", "badge_text"]

PERSONAL_COLOR = QColor(124, 77, 196)  # the personal score's pill: not a band colour, so the two never mix up


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
        personal = index.data(ThumbnailModel.PersonalRole)
        if score is None and personal is None:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        f = QFont(option.font)
        f.setBold(True)
        f.setPixelSize(11)
        painter.setFont(f)
        r = option.rect
        if score is not None:
            _pill(painter, badge_text(score), badge_color(score), None, r.right() - 3, r.bottom(), right=True)
        if personal is not None:
            _pill(painter, badge_text(personal), PERSONAL_COLOR, badge_color(personal), r.left() + 3, r.bottom(),
                  right=False)
        painter.restore()


def _pill(painter: QPainter, text: str, fill: QColor, outline: QColor | None, x: int, bottom: int, right: bool) -> None:
    """One pill at the bottom of an item: its right edge at x (right) or its left edge at x."""
    w = painter.fontMetrics().horizontalAdvance(text) + 10
    box = QRectF(x - w if right else x, bottom - 19, w, 16)
    painter.setPen(Qt.PenStyle.NoPen if outline is None else QPen(outline, 2))
    painter.setBrush(fill)
    painter.drawRoundedRect(box, 8, 8)
    painter.setPen(QColor(255, 255, 255))
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
