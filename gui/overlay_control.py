"""The overlay as the viewer shows it: on/off, heat or contour, and its opacity, over the photo view.

On screen the overlay is a layer (`overlay_layer`: colour + weight as RGBA) in a second item over the photo, and
the item's opacity is the slider; the layer is rebuilt only when the photo, the map or the mode change. Exports
and `composed` use `compose_overlay`, the same blend in one call.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage

from .overlay import compose_overlay, overlay_layer, rgb_to_qimage
from .widgets import PhotoView

__all__ = ["OPACITY_STEP", "OverlayControl", "export"]

OPACITY_STEP = 0.1
EXPORT_OPACITY = 0.6  # an export of an invisible overlay (opacity 0) is no export


class OverlayControl:
    """The overlay's settings and its layer in the photo view.

    Args:
        view: the photo view whose overlay item shows the layer.
    """

    def __init__(self, view: PhotoView):
        self.view = view
        self.opacity = 0.6
        self.mode = "contour"  # reads better than heat side by side (docs/img/overlay-modes.png): lines, not a haze
        self.on = True
        self._layer_key = None

    def set_opacity(self, value: float) -> None:
        """Set the opacity (clipped to 0…1); it costs no recomputation.

        Args:
            value: the new opacity.
        """
        self.opacity = round(float(np.clip(value, 0.0, 1.0)), 3)
        self.view.overlay_item.setOpacity(self.opacity)

    def invalidate(self) -> None:
        """Build the layer anew at the next `show` (a new photo or map may reuse an old one's id)."""
        self._layer_key = None

    def show(self, image: QImage | None, saliency: np.ndarray | None) -> None:
        """Show the overlay of `saliency` over `image` as the settings say (hidden when off or either is missing).

        Args:
            image: the displayed photo.
            saliency: the photo's saliency map (any resolution with the photo's aspect ratio).
        """
        item = self.view.overlay_item
        if image is None or saliency is None or not self.on:
            item.setVisible(False)
            return
        key = (id(image), id(saliency), self.mode)
        if key != self._layer_key:  # the layer depends on photo size, map and mode, not on opacity
            layer = overlay_layer(saliency, image.width(), image.height(), self.mode)
            self.view.set_overlay(rgb_to_qimage(layer))
            self._layer_key = key
        item.setOpacity(self.opacity)
        item.setVisible(True)

    def composed(self, image: QImage | None, saliency: np.ndarray | None) -> QImage | None:
        """What the view shows, at the displayed photo's size: the photo, with the overlay when it is on.

        Args:
            image: the displayed photo; None gives None.
            saliency: the photo's saliency map, if it has one.
        """
        if image is None:
            return None
        if saliency is None or not self.on:
            return image.copy()
        return compose_overlay(image, saliency, self.opacity, self.mode)

    def for_export(self, image: QImage, saliency: np.ndarray) -> QImage:
        """Photo + overlay at the current mode and opacity, shown or not (opacity 0 exports at 60 %).

        Args:
            image: the displayed photo.
            saliency: its saliency map.
        """
        opacity = self.opacity if self.opacity > 0 else EXPORT_OPACITY
        return compose_overlay(image, saliency, opacity, self.mode)

    def restore(self, settings: QSettings) -> None:
        """Take the overlay settings a previous session saved.

        Args:
            settings: the viewer's settings.
        """
        self.opacity = float(settings.value("overlay/opacity", self.opacity))
        self.mode = str(settings.value("overlay/mode", self.mode))
        self.on = str(settings.value("overlay/on", "true")).lower() == "true"

    def save(self, settings: QSettings) -> None:
        """Remember the overlay settings.

        Args:
            settings: the viewer's settings.
        """
        settings.setValue("overlay/opacity", self.opacity)
        settings.setValue("overlay/mode", self.mode)
        settings.setValue("overlay/on", "true" if self.on else "false")


def export(window, path: str | None = None) -> str | None:
    """Save the window's photo + overlay (at the current mode and opacity, shown or not) as PNG.

    Args:
        window: the viewer's MainWindow (its image, saliency, current, overlay, memory and status bar are used).
        path: where; None asks (starting in the last export folder).

    Returns:
        The path written, or None if there was nothing to save or it could not be written.
    """
    import os
    from pathlib import Path

    from PySide6.QtWidgets import QFileDialog

    w = window
    if w.image is None or w.saliency is None:
        w.statusBar().showMessage("Nothing to export yet: the photo has no saliency map.", 4000)
        return None
    if path is None:
        folder = w.memory.export_folder(os.path.dirname(w.current))
        start = os.path.join(folder, f"{Path(w.current).stem}.saliency.png")
        path, _ = QFileDialog.getSaveFileName(w, "Export the overlay", start, "PNG (*.png)")
        if not path:
            return None
    if not w.overlay.for_export(w.image, w.saliency).save(path, "PNG"):
        w.statusBar().showMessage(f"Could not write {path}", 6000)
        return None
    w.memory.exported(path)
    w.statusBar().showMessage(f"Exported {path}", 4000)
    return path
