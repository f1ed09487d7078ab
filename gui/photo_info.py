"""What a photographer reads off a photo before the critique: a histogram (R, G, B and luminance) with the share of
clipped pixels, and an EXIF line (camera, lens, exposure).

    h = histogram(rgb)                 # counts per channel, clipped shares
    exif_line("/shoot/IMG_0042.JPG")   # "Canon EOS R5 · RF24-70mm F2.8 L · 1/250 s · f/4 · ISO 400 · 50 mm"
    widget = HistogramWidget(); widget.set_histogram(h)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRect
from PySide6.QtGui import QColor, QPainter, QPainterPath
from PySide6.QtWidgets import QSizePolicy, QWidget

__all__ = ["CLIP_WARN", "Histogram", "HistogramWidget", "exif_line", "histogram"]

CLIP_WARN = 0.005  # a share of clipped pixels worth a warning (0.5 %: a highlight gone, not a specular glint)


@dataclass
class Histogram:
    """A photo's histogram.

    Args:
        counts: (4, 256) int: R, G, B, luminance (Rec. 709).
        shadows: share of pixels with any channel at 0, 0…1.
        highlights: share of pixels with any channel at 255, 0…1.
    """

    counts: np.ndarray
    shadows: float
    highlights: float

    def warning(self) -> str:
        """Words for the clipping, "" when there is little."""
        bits = []
        if self.highlights >= CLIP_WARN:
            bits.append(f"highlights clipped {self.highlights:.1%}")
        if self.shadows >= CLIP_WARN:
            bits.append(f"shadows clipped {self.shadows:.1%}")
        return " · ".join(bits)


def histogram(rgb: np.ndarray) -> Histogram:
    """The histogram of an 8-bit RGB photo.

    Args:
        rgb: (H, W, 3) uint8.
    """
    px = np.ascontiguousarray(rgb[..., :3]).reshape(-1, 3)
    counts = np.zeros((4, 256), np.int64)
    for c in range(3):
        counts[c] = np.bincount(px[:, c], minlength=256)[:256]
    lum = (px @ np.array([0.2126, 0.7152, 0.0722])).round().clip(0, 255).astype(np.int64)
    counts[3] = np.bincount(lum, minlength=256)[:256]
    n = max(1, len(px))
    return Histogram(counts, float((px == 0).any(1).sum() / n), float((px == 255).any(1).sum() / n))


def _ratio(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _exposure_time(t: float) -> str:
    return f"1/{round(1 / t)} s" if 0 < t < 0.5 else f"{t:g} s"


def exif_line(path: str) -> str:
    """Camera, lens, shutter, aperture, ISO and focal length from the photo's EXIF, joined by " · " ("" if none).
    RAW files are read by Pillow where it can (their TIFF structure), else give "".

    Args:
        path: the photo's path.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(0x8769)  # the Exif sub-IFD: exposure, lens
    except Exception:
        return ""
    make, model = str(exif.get(0x010F) or "").strip(), str(exif.get(0x0110) or "").strip()
    camera = model if make and model.lower().startswith(make.split()[0].lower()) else f"{make} {model}".strip()
    bits = [camera, str(sub.get(0xA434) or "").strip()]  # LensModel
    t = _ratio(sub.get(0x829A))
    if t:
        bits.append(_exposure_time(t))
    f = _ratio(sub.get(0x829D))
    if f:
        bits.append(f"f/{f:g}")
    iso = sub.get(0x8827)
    if isinstance(iso, tuple):
        iso = iso[0] if iso else None
    if iso:
        bits.append(f"ISO {iso}")
    fl = _ratio(sub.get(0x920A))
    if fl:
        bits.append(f"{fl:g} mm")
    return " · ".join(b.replace("\x00", "") for b in bits if b)


class HistogramWidget(QWidget):
    """The histogram drawn as luminance (grey fill) under the three channels (lines); a red edge marks clipping.

    Args:
        parent: the Qt parent widget, if any.
    """

    COLORS = (QColor(235, 80, 80), QColor(90, 200, 90), QColor(90, 140, 245))

    def __init__(self, parent=None):
        super().__init__(parent)
        self.hist: Histogram | None = None
        self.setFixedHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def set_histogram(self, hist: Histogram | None) -> None:
        """Show a histogram (None: empty).

        Args:
            hist: from `histogram`.
        """
        self.hist = hist
        self.setToolTip(hist.warning() if hist is not None else "")
        self.update()

    def _path(self, counts: np.ndarray, w: int, h: int, peak: float, closed: bool) -> QPainterPath:
        ys = h - np.sqrt(counts / peak).clip(0, 1) * (h - 2)  # sqrt: the shape shows, not one tall spike
        path = QPainterPath(QPointF(0, h) if closed else QPointF(0, ys[0]))
        for i, y in enumerate(ys):
            path.lineTo(QPointF(i * (w - 1) / 255, float(y)))
        if closed:
            path.lineTo(QPointF(w - 1, h))
            path.closeSubpath()
        return path

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(QRect(0, 0, w, h), QColor(24, 24, 27))
        if self.hist is None:
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        counts = self.hist.counts.astype(np.float64)
        peak = max(1.0, float(counts[:, 1:255].max()))  # the ends would flatten everything when clipped
        p.fillPath(self._path(counts[3], w, h, peak, True), QColor(150, 150, 155, 110))
        for c, color in enumerate(self.COLORS):
            p.setPen(color)
            p.drawPath(self._path(counts[c], w, h, peak, False))
        red = QColor(255, 60, 60)
        if self.hist.shadows >= CLIP_WARN:
            p.fillRect(QRect(0, 0, 3, h), red)
        if self.hist.highlights >= CLIP_WARN:
            p.fillRect(QRect(w - 3, 0, 3, h), red)
        p.end()

