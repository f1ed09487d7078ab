"""Which photo is shown, and getting its pixels: the files opened (listed by name, never decoded), the position
in them (mirrored by the thumbnail strip), and photos decoded off the GUI thread with the last few kept.

    nav = Navigator(model, strip)
    first = nav.open(paths)          # files and folders -> the list; the file named first, if any
    nav.move_to(i)                   # True if the photo on screen changes
    photos = PhotoLoader(max_side)
    image = photos.request(path)     # at once if decoded lately, else None and `loaded`/`failed` later
"""

from __future__ import annotations

import os
from collections import OrderedDict

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QGuiApplication, QImage

from .layout import ThumbnailStrip
from .thumbnails import ThumbnailModel, list_images, load_photo

__all__ = ["Navigator", "PhotoLoader", "display_max_side"]


def display_max_side() -> int:
    """Photos are shown from a copy no larger than the screen (a 50 MP file would cost ~150 MB as a QImage).

    Returns:
        The screen's long side in device pixels, within 1024…4096 (2048 without a screen).
    """
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return 2048
    size = screen.size() * screen.devicePixelRatio()
    return int(min(4096, max(1024, size.width(), size.height())))


class Navigator:
    """The photos opened and which one is on screen; the strip shows the list and follows the position.

    Args:
        model: the strip's thumbnail model (it gets the list).
        strip: the thumbnail strip (shown only for more than one photo).
    """

    def __init__(self, model: ThumbnailModel, strip: ThumbnailStrip):
        self.model, self.strip = model, strip
        self.files: list[str] = []
        self.index = -1
        self.current: str | None = None

    def open(self, paths) -> str | None:
        """List files and folders (no decoding) as the photos to move through.

        Args:
            paths: files and/or folders (a folder: its supported photos, by name).

        Returns:
            The file to show first (the first file named), or None: the first of the list.
        """
        files, first = list_images([os.fspath(p) for p in paths])
        self.files = files
        self.model.set_paths(files)
        self.strip.setVisible(len(files) > 1)
        return first

    def arrange(self, files: list[str]) -> int:
        """Show the photos in another order, or fewer of them (a sort, a filter); the photo on screen stays.

        Args:
            files: the new list (paths from the opened ones).

        Returns:
            The index of the photo on screen in the new list, -1 if it is not in it.
        """
        self.files = list(files)
        self.model.set_paths(self.files)
        self.strip.setVisible(len(self.files) > 1)
        if self.current in self.files:
            self.index = self.files.index(self.current)
            self.strip.select(self.index)
            return self.index
        self.index = -1
        return -1

    def move_to(self, i: int) -> bool:
        """Go to a photo.

        Args:
            i: its index in `files` (clamped); below 0, or no files: no photo.

        Returns:
            Whether the photo on screen changes.
        """
        if not self.files or i < 0:
            self.index, self.current = -1, None
            return True
        i = max(0, min(i, len(self.files) - 1))
        if i == self.index and self.current == self.files[i]:
            return False
        self.index, self.current = i, self.files[i]
        self.strip.select(i)
        return True

    def step(self, delta: int) -> int | None:
        """The index `delta` photos on (within the list), or None when there are no photos.

        Args:
            delta: +1 for the next photo, -1 for the previous one.
        """
        if not self.files:
            return None
        return max(0, min(self.index + delta, len(self.files) - 1))


class _PhotoSignals(QObject):
    loaded = Signal(int, str, QImage, str)  # generation, path, image (null on error), error


class _LoadPhoto(QRunnable):
    def __init__(self, signals: _PhotoSignals, gen: int, path: str, max_side: int, current):
        super().__init__()
        self.signals, self.gen, self.path, self.max_side, self.current = signals, gen, path, max_side, current

    def run(self) -> None:
        if self.current() != self.gen:  # the user moved on while this waited: don't decode
            return
        try:
            img, err = load_photo(self.path, self.max_side), ""
        except Exception as e:  # ImageLoadError carries a human reason
            img, err = QImage(), str(e)
        try:
            self.signals.loaded.emit(self.gen, self.path, img, err)
        except RuntimeError:  # window gone
            pass


class PhotoLoader(QObject):
    """Decodes photos in a one-thread pool, newest wins (a photo the user has left is not decoded, or not shown),
    and keeps the last four decoded: going back and forth is instant.

    Args:
        max_side: the longest side a photo is decoded at (see `display_max_side`).
        parent: the Qt parent object, if any.
    """

    loaded = Signal(str, QImage)  # path, the decoded photo (of the latest request only)
    failed = Signal(str, str)  # path, why it cannot be shown
    KEPT = 4

    def __init__(self, max_side: int, parent=None):
        super().__init__(parent)
        self.max_side = max_side
        self._gen = 0
        self._photos: OrderedDict[str, QImage] = OrderedDict()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._signals = _PhotoSignals(self)
        self._signals.loaded.connect(self._on_loaded)

    def peek(self, path: str) -> QImage | None:
        """A photo if it was decoded lately, else None (nothing is asked).

        Args:
            path: the photo's path.
        """
        return self._photos.get(path)

    def request(self, path: str) -> QImage | None:
        """Ask for a photo; what was asked before and is not decoded yet is dropped.

        Args:
            path: the photo's path.

        Returns:
            The photo at once if it was decoded lately; else None, and `loaded` or `failed` follow.
        """
        self._gen += 1
        cached = self._photos.get(path)
        if cached is not None:
            self._photos.move_to_end(path)
            return cached
        self._pool.start(_LoadPhoto(self._signals, self._gen, path, self.max_side, lambda: self._gen))
        return None

    def _on_loaded(self, gen: int, path: str, image: QImage, error: str) -> None:
        if gen != self._gen:
            return
        if image.isNull():
            self.failed.emit(path, error)
            return
        self._photos[path] = image
        while len(self._photos) > self.KEPT:
            self._photos.popitem(last=False)
        self.loaded.emit(path, image)
