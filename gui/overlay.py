"""Saliency overlays for Qt: the array functions of `ase_model.overlay` (THE overlay code, shared with the demo
report) plus QImage conversion.

    compose_overlay(photo, saliency, opacity=0.6, mode="heat")   # QImage in -> QImage out, ndarray -> ndarray
"""

from __future__ import annotations

import numpy as np

from .thumbnails import model_module

__all__ = ["CONTOUR_LEVELS", "MODES", "blend", "colormap", "compose_overlay", "overlay_layer", "qimage_to_rgb",
           "rgb_to_qimage", "upsample"]

_core = model_module("overlay")  # loaded without torch, like the image loader
MODES, CONTOUR_LEVELS = _core.MODES, _core.CONTOUR_LEVELS
colormap, upsample, overlay_layer, blend = _core.colormap, _core.upsample, _core.overlay_layer, _core.blend


# ---- QImage <-> numpy -------------------------------------------------------------------------------------------
def qimage_to_rgb(image) -> np.ndarray:
    """A QImage (any format) -> a new (H, W, 3) uint8 array.

    Args:
        image: the QImage.
    """
    from PySide6.QtGui import QImage

    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=stride * h).reshape(h, stride)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


def rgb_to_qimage(rgb: np.ndarray):
    """(H, W, 3) or (H, W, 4) uint8 -> a QImage that owns its pixels (RGB888 / RGBA8888).

    Args:
        rgb: the pixels.
    """
    from PySide6.QtGui import QImage

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, c = rgb.shape
    fmt = QImage.Format.Format_RGB888 if c == 3 else QImage.Format.Format_RGBA8888
    return QImage(rgb.data, w, h, w * c, fmt).copy()  # copy: the QImage must not borrow numpy's buffer


def compose_overlay(photo, saliency: np.ndarray, opacity: float = 0.6, mode: str = "heat"):
    """The photo with the saliency map drawn over it.

    Args:
        photo: QImage or (H, W, 3|4) uint8 array.
        saliency: the map (any resolution with the photo's aspect ratio).
        opacity: 0…1; 0 returns the photo's pixels unchanged.
        mode: "heat" or "contour".

    Returns:
        The same kind as `photo` (QImage RGB888 / uint8 RGB array), at the photo's size.
    """
    is_array = isinstance(photo, np.ndarray)
    out = _core.compose(np.asarray(photo) if is_array else qimage_to_rgb(photo), saliency, opacity, mode)
    return out if is_array else rgb_to_qimage(out)
