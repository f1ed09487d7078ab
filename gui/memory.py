"""What the viewer remembers between sessions, in QSettings (`~/.config/ase-mllm/viewer.conf`): the window's
geometry and splitter, the overlay settings, the last folder and photo, and the export folder.
With no settings (screenshots, tests that don't care) it remembers nothing.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMainWindow, QSplitter

from .overlay_control import OverlayControl

__all__ = ["DEFAULT_SIZE", "ViewerMemory"]

DEFAULT_SIZE = (1280, 820)


class ViewerMemory:
    """Reads and writes the viewer's settings.

    Args:
        settings: where to remember; None remembers nothing.
    """

    def __init__(self, settings: QSettings | None):
        self.settings = settings

    def restore(self, window: QMainWindow, splitter: QSplitter, overlay: OverlayControl) -> None:
        """Give the window its last geometry (else the default size), the splitter its state and the overlay its
        settings.

        Args:
            window: the viewer's window.
            splitter: the splitter between the photo and the panel.
            overlay: the overlay's settings.
        """
        s = self.settings
        if s is None:
            window.resize(*DEFAULT_SIZE)
            return
        geo = s.value("window/geometry")
        if geo is None or not window.restoreGeometry(geo):
            window.resize(*DEFAULT_SIZE)
        split = s.value("window/splitter")
        if split is not None:
            splitter.restoreState(split)
        overlay.restore(s)

    def save(self, window: QMainWindow, splitter: QSplitter, overlay: OverlayControl, current: str | None) -> None:
        """Remember the window, the overlay settings and the photo on screen (and its folder).

        Args:
            window: the viewer's window.
            splitter: the splitter between the photo and the panel.
            overlay: the overlay's settings.
            current: the photo on screen, if any.
        """
        s = self.settings
        if s is None:
            return
        s.setValue("window/geometry", window.saveGeometry())
        s.setValue("window/splitter", splitter.saveState())
        overlay.save(s)
        if current:
            s.setValue("last/folder", os.path.dirname(current))
            s.setValue("last/file", current)
        s.sync()

    @property
    def last_folder(self) -> str | None:
        """The folder of the last photo shown in a previous session (None without settings)."""
        return None if self.settings is None else self.settings.value("last/folder")

    def last_paths(self) -> list[str]:
        """What to reopen: the last photo if it is still there, else its folder if that is; else nothing."""
        if self.settings is None:
            return []
        last = self.settings.value("last/file")
        folder = self.settings.value("last/folder")
        if last and os.path.isfile(last):
            return [last]
        if folder and os.path.isdir(folder):
            return [folder]
        return []

    def export_folder(self, default: str) -> str:
        """Where an export starts: the folder of the last export, else `default`.

        Args:
            default: the folder to offer when none is remembered (the photo's).
        """
        return self.settings.value("export/folder", default) if self.settings else default

    def exported(self, path: str) -> None:
        """Remember an export's folder for the next one.

        Args:
            path: the file written.
        """
        if self.settings is not None:
            self.settings.setValue("export/folder", os.path.dirname(os.path.abspath(path)))

    def profile(self) -> str | None:
        """The personal profile chosen in a previous session (None: none, or no settings)."""
        value = self.settings.value("personal/profile") if self.settings is not None else None
        return str(value) if value else None

    def set_profile(self, name: str | None) -> None:
        """Remember the personal profile chosen (ase-viewer --profile, or the toolbar's box).

        Args:
            name: the profile's name, or None for none.
        """
        if self.settings is not None:
            self.settings.setValue("personal/profile", name or "")

    def pick_rating(self) -> int | None:
        """The stars a pick (P) rated lower is raised to (`cull/pick_rating`, 1..5; else None: its stars stay)."""
        value = self.settings.value("cull/pick_rating") if self.settings is not None else None
        try:
            stars = int(value)
        except (TypeError, ValueError):
            return None
        return stars if 1 <= stars <= 5 else None

    def set_pick_rating(self, stars: int | None) -> None:
        """Remember the pick rating (ase-viewer --pick-rating; 0 or None: leave a pick's stars).

        Args:
            stars: 1..5, or None.
        """
        if self.settings is not None:
            self.settings.setValue("cull/pick_rating", int(stars) if stars else 0)
