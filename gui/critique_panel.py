"""The side panel: the critique of the photo on screen (score, text streamed in, per-attribute notes, tags), and
the words that turn a critique's keys and tags into text.

    panel = CritiquePanel()
    panel.append_token("Strong ")      # while the model writes
    panel.show_result(result)          # the daemon's final answer
    critique_text(result, path)        # the same, as plain text for the clipboard
"""

from __future__ import annotations

import html
import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .photo_info import Histogram, HistogramWidget
from .thumbnails import model_module
from .widgets import FlowLayout, Legend, Prose

__all__ = ["CritiquePanel", "attribute_label", "attribute_order", "critique_text", "tag_words"]

_TAG_STYLE = ("QLabel#tag { background: #2d333b; color: #e6edf3; border: 1px solid #444c56;"
              " border-radius: 9px; padding: 2px 9px; }")


def attribute_label(key: str) -> str:
    """The words for an attribute key.

    Args:
        key: an attribute key of a critique ("exposure", "colour_harmony").

    Returns:
        The model's own label for it, else the key in words ("Colour harmony").
    """
    try:
        return model_module("attributes").ATTRIBUTES.get(key) or key.replace("_", " ").capitalize()
    except Exception:
        return key.replace("_", " ").capitalize()


def attribute_order(keys) -> list[str]:
    """Attribute keys in the model's canonical order (unknown keys last, by name), whatever the dict's order.

    Args:
        keys: attribute keys.
    """
    try:
        canon = list(model_module("attributes").ATTRIBUTES)
    except Exception:
        canon = []
    return sorted(keys, key=lambda k: (canon.index(k) if k in canon else len(canon), k))


def tag_words(tag: str) -> str:
    """"aesthetics|exposure|underexposed" -> "exposure › underexposed" (the root says nothing here).

    Args:
        tag: a hierarchical tag, levels separated by "|".
    """
    parts = [p for p in tag.split("|") if p]
    if len(parts) > 1 and parts[0] == "aesthetics":
        parts = parts[1:]
    return " › ".join(p.replace("_", " ") for p in parts)


def critique_text(result: dict | None, path: str | None) -> str:
    """A critique as plain text: the file's name, the score, the text, the attributes and the tags.

    Args:
        result: the daemon's critique (text, score, attributes, tags); None or empty gives "".
        path: the photo's path (only its name is written).
    """
    r = result
    if not r:
        return ""
    lines = [os.path.basename(path or "")]
    if isinstance(r.get("score"), (int, float)):
        lines.append(f"Score: {r['score']:.1f} / 10")
    if isinstance(r.get("personal_score"), (int, float)):
        lines.append(f"Personal score ({r.get('profile') or 'profile'}): {r['personal_score']:.1f} / 10")
    lines += ["", (r.get("text") or "").strip()]
    attrs = r.get("attributes") or {}
    if attrs:
        lines.append("")
        lines += [f"{attribute_label(k)}: {attrs[k]}" for k in attribute_order(attrs) if attrs[k]]
    if r.get("tags"):
        lines += ["", "Tags: " + ", ".join(tag_words(t) for t in r["tags"])]
    return "\n".join(lines)


class CritiquePanel(QWidget):
    """The critique of one photo, as one scrolling page. `state` is a rich-text line for what the daemon is doing
    (its owner writes it); `copy_requested`/`start_requested` are the panel's two buttons.

    Args:
        parent: the Qt parent widget, if any.
    """

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

        self.title = self._small_label()
        lay.addWidget(self.title)
        self.exif = self._small_label()  # camera · lens · exposure
        lay.addWidget(self.exif)
        self.histogram = HistogramWidget()
        lay.addWidget(self.histogram)
        self.clipping = QLabel("")
        self.clipping.setStyleSheet("color: #f85149; font-size: 11px;")
        lay.addWidget(self.clipping)
        lay.addLayout(self._score_row())
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

        self.meta = self._small_label()
        lay.addWidget(self.meta)
        self.copy_button = QPushButton("Copy critique")
        self.copy_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.copy_button.clicked.connect(self.copy_requested)
        lay.addWidget(self.copy_button)
        lay.addStretch(1)
        self.clear()

    def _score_row(self) -> QHBoxLayout:
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
        # the personal profile's score (issue 20), beside the generic one; hidden without a profile
        self.personal = QLabel("")
        self.personal.setObjectName("personal")
        self.personal.setFont(f)
        self.personal.setStyleSheet("color: #a27ce0;")
        self.personal_caption = QLabel("")
        self.personal_caption.setStyleSheet("color: palette(mid);")
        pcol = QVBoxLayout()
        pcol.addStretch(1)
        pcol.addWidget(self.personal_caption)
        pcol.addStretch(1)
        row.addWidget(self.personal)
        row.addLayout(pcol)
        return row

    @staticmethod
    def _small_label() -> QLabel:
        lab = QLabel("")
        lab.setWordWrap(True)
        lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # wrap, never widen
        lab.setStyleSheet("color: palette(mid); font-size: 11px;")
        return lab

    @staticmethod
    def _heading(text: str) -> QLabel:
        h = QLabel(text.upper())
        h.setStyleSheet("color: palette(mid); font-size: 11px; font-weight: bold; letter-spacing: 1px;")
        return h

    def clear(self, title: str = "") -> None:
        """Empty the panel for a new photo.

        Args:
            title: the line at the top (the photo's file name).
        """
        self.title.setText(title)
        self.set_photo_info(None, "")
        self.score.setText("–")
        self.score_bar.setValue(0)
        self.personal.hide()
        self.personal_caption.hide()
        self.text.clear()
        self.text_heading.hide()  # shown with the first streamed word: no empty box while waiting
        self.text.hide()
        self.attributes.clear()
        self.attr_heading.hide()
        self.attributes.hide()
        self.set_tags([])
        self.meta.clear()
        self.copy_button.setEnabled(False)

    def set_photo_info(self, hist: Histogram | None, exif: str) -> None:
        """Show the photo's histogram, its clipping warning and its EXIF line.

        Args:
            hist: the displayed photo's histogram (None: not decoded yet).
            exif: "camera · lens · exposure" ("" hides the line).
        """
        self.histogram.set_histogram(hist)
        self.histogram.setVisible(hist is not None)
        warning = hist.warning() if hist is not None else ""
        self.clipping.setText(f"⚠ {warning}" if warning else "")
        self.clipping.setVisible(bool(warning))
        self.exif.setText(exif)
        self.exif.setVisible(bool(exif))

    def append_token(self, text: str) -> None:
        """Add streamed text at the end of the critique.

        Args:
            text: the piece the model just wrote.
        """
        self.text_heading.show()
        self.text.show()
        cursor = self.text.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(text)

    def set_tags(self, tags: list[str]) -> None:
        """Show tags as chips (their words; the full tag in the tooltip).

        Args:
            tags: hierarchical tags ("aesthetics|exposure|underexposed"); empty hides the section.
        """
        for lab in self.tag_labels:
            self.tags_layout.removeWidget(lab)
            lab.deleteLater()
        self.tag_labels = []
        for tag in tags:
            lab = QLabel(tag_words(tag))
            lab.setToolTip(tag)
            lab.setObjectName("tag")
            lab.setStyleSheet(_TAG_STYLE)
            self.tags_layout.addWidget(lab)
            self.tag_labels.append(lab)
        self.tags_heading.setVisible(bool(tags))
        self.tags_box.setVisible(bool(tags))
        self.tags_box.updateGeometry()

    def show_result(self, result: dict) -> None:
        """Show a final critique: it replaces the streamed text.

        Args:
            result: the daemon's critique (text, score, attributes, tags, model, cached, timings).
        """
        score = result.get("score")
        if isinstance(score, (int, float)):
            self.score.setText(f"{score:.1f}")
            self.score_bar.setValue(int(round(score * 10)))
        personal = result.get("personal_score")
        if isinstance(personal, (int, float)):
            self.personal.setText(f"{personal:.1f}")
            self.personal_caption.setText(f"personal\n({result.get('profile') or 'profile'})")
        self.personal.setVisible(isinstance(personal, (int, float)))
        self.personal_caption.setVisible(isinstance(personal, (int, float)))
        self.text.setPlainText((result.get("text") or "").strip())
        attrs = {k: v for k, v in (result.get("attributes") or {}).items() if v}
        parts = [f"<p style='margin:0 0 8px 0'><b>{html.escape(attribute_label(k))}</b>"
                 f"<br>{html.escape(str(attrs[k]))}</p>" for k in attribute_order(attrs)]
        self.attributes.setHtml("".join(parts))
        # the critique once: by attribute when the model gave them (the paragraph says the same), else the paragraph
        self.text_heading.setVisible(not parts)
        self.text.setVisible(not parts)
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
