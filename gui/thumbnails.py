"""Listing folders and loading photos + thumbnails off the GUI thread, with caches.

* `list_images(paths)` lists files by extension only (no decoding, one scandir per folder): a folder of
  thousands opens at once.
* `ThumbnailModel` is a list model for a QListView. A thumbnail is asked for only when the view asks for its
  picture, i.e. when the item is painted (visible); until then the item shows a placeholder.
* `ThumbnailLoader` decodes in a small QThreadPool, newest request first (the user scrolled there last), with
  a bounded queue so flinging through 5000 files doesn't leave thousands of stale jobs.
* Caches: a memory LRU of pixmaps, and JPEGs on disk under $XDG_CACHE_HOME/ase-mllm/thumbs keyed by
  (path, mtime, size, thumbnail size): an edited file gets a new key, a second visit decodes nothing.

Photos are decoded by ase_model.imageio.load_image, the loader the model uses (EXIF orientation, 16-bit, CMYK,
RAW through the camera's preview or a demosaic).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from collections import OrderedDict, deque
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap

THUMB_SIZE = 160  # long side, pixels (the strip shows them at ~96; the extra is for HiDPI)


def model_module(name: str):
    """ase_model.<name> (imageio, attributes, overlay: the light modules, which import without torch).

    Args:
        name: the module's name inside ase_model.
    """
    return importlib.import_module(f"ase_model.{name}")


def imageio():
    """ase_model.imageio, THE image loader."""
    return importlib.import_module("ase_model.imageio")


def image_extensions() -> frozenset[str]:
    io = imageio()
    return frozenset(io.IMAGE_EXTENSIONS) | frozenset(io.RAW_EXTENSIONS)


def list_images(paths) -> tuple[list[str], str | None]:
    """Files to show, from files and folders (a folder: its supported images, by name, not recursive).
    Returns (files, the file to show first: the first file named explicitly, else None)."""
    exts = image_extensions()
    files: list[str] = []
    first = None
    for p in paths:
        p = os.path.abspath(os.fspath(p))
        if os.path.isdir(p):
            try:
                with os.scandir(p) as it:
                    found = [e.path for e in it if not e.name.startswith(".")
                             and os.path.splitext(e.name)[1].lower() in exts and e.is_file()]
            except OSError:
                continue
            files.extend(sorted(found, key=lambda s: os.path.basename(s).lower()))
        elif os.path.isfile(p):
            if len(paths) == 1:  # one file: show it among its folder's photos, so arrows move through them
                files, _ = list_images([os.path.dirname(p)])
                if p not in files:
                    files.insert(0, p)
                return files, p
            files.append(p)
            first = first or p
    seen = set()
    return [f for f in files if not (f in seen or seen.add(f))], first


def load_photo(path: str, max_side: int | None) -> QImage:
    """Decode a photo for display (downscaled so the long side <= max_side) -> QImage RGB888. Any thread."""
    im = imageio().load_image(path, max_side=max_side)
    return pil_to_qimage(im)


def pil_to_qimage(im) -> QImage:
    im = im.convert("RGB")
    data = im.tobytes()
    return QImage(data, im.width, im.height, im.width * 3, QImage.Format.Format_RGB888).copy()


# ---- disk cache ---------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "ase-mllm" / "thumbs"


def cache_key(path: str, size: int = THUMB_SIZE) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    raw = f"{os.path.abspath(path)}\0{st.st_mtime_ns}\0{st.st_size}\0{size}".encode("utf-8", "surrogateescape")
    return hashlib.sha1(raw).hexdigest()


def make_thumbnail(path: str, size: int = THUMB_SIZE, folder: Path | None = None) -> QImage:
    """The thumbnail of `path` (long side `size`): from the disk cache, or decoded and then cached. Any thread.
    Raises on an unreadable photo."""
    key = cache_key(path, size)
    folder = folder or cache_dir()
    cached = folder / key[:2] / f"{key}.jpg" if key else None
    if cached is not None and cached.exists():
        img = QImage(str(cached))
        if not img.isNull():
            return img
    # RAW: the embedded camera preview is plenty for a thumbnail (min_preview_side=0: never demosaic)
    im = imageio().load_image(path, max_side=size, min_preview_side=0)
    img = pil_to_qimage(im)
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            if img.save(str(tmp), "JPG", 85):
                os.replace(tmp, cached)  # atomic: a concurrent reader never sees half a file
        except OSError:  # a read-only or full cache is not an error, only slower next time
            pass
    return img


class ThumbnailLoader(QObject):
    """Decodes thumbnails in a thread pool; `ready(path, image)` / `failed(path)` arrive on the GUI thread."""

    ready = Signal(str, QImage)
    failed = Signal(str)

    def __init__(self, parent=None, threads: int = 2, max_pending: int = 256, size: int = THUMB_SIZE):
        super().__init__(parent)
        self.size = size
        self.max_pending = max_pending
        self.requested: list[str] = []  # every path ever requested (tests check that requests are lazy)
        self._pending: deque[str] = deque()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._running = 0
        self._threads = threads
        self._closed = False

    def request(self, path: str) -> None:
        with self._lock:
            if path in self._queued:
                return
            self.requested.append(path)
            self._queued.add(path)
            self._pending.appendleft(path)  # newest first: what the user is looking at now
            while len(self._pending) > self.max_pending:  # scrolled past long ago: drop (asked again if shown)
                self._queued.discard(self._pending.pop())
            start = self._running < self._threads
            if start:
                self._running += 1
        if start:
            self._pool.start(_Drain(self))

    def _next(self) -> str | None:
        with self._lock:
            if self._pending and not self._closed:
                return self._pending.popleft()
            self._running -= 1
            return None

    def _done(self, path: str, image: QImage | None) -> None:
        with self._lock:
            self._queued.discard(path)
        if self._closed:
            return
        try:
            if image is None:
                self.failed.emit(path)
            else:
                self.ready.emit(path, image)
        except RuntimeError:  # deleted while we worked
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
        self._pool.waitForDone(5000)


class _Drain(QRunnable):
    def __init__(self, loader: ThumbnailLoader):
        super().__init__()
        self.loader = loader

    def run(self) -> None:
        while (path := self.loader._next()) is not None:
            try:
                img = make_thumbnail(path, self.loader.size)
            except Exception:  # an unreadable file gets the "broken" placeholder, never a dead worker
                img = None
            self.loader._done(path, img)


class ThumbnailModel(QAbstractListModel):
    """Paths -> thumbnails (the name is the tooltip: a strip of captions cut to "IMG_12…" helps nobody), and the
    score badges' scores (ScoreRole). Thumbnails are requested from `data(DecorationRole)`, i.e. only for the
    items a view paints; the memory LRU keeps the last `memory_items` thumbnails."""

    PathRole = Qt.ItemDataRole.UserRole + 1
    ScoreRole = Qt.ItemDataRole.UserRole + 2  # the critique's score (float) for the badge, or None
    PersonalRole = Qt.ItemDataRole.UserRole + 3  # the personal profile's score (float) for the second badge, or None

    def __init__(self, parent=None, loader: ThumbnailLoader | None = None, memory_items: int = 600):
        super().__init__(parent)
        self.paths: list[str] = []
        self.scores: dict[str, float] = {}  # by path; kept across set_paths (a re-sort or filter keeps badges)
        self.personal: dict[str, float] = {}  # by path: the personal scores, as `scores`
        self._rows: dict[str, int] = {}
        self._cache: OrderedDict[str, QIcon] = OrderedDict()
        self._broken: set[str] = set()
        self._memory_items = memory_items
        self.loader = loader or ThumbnailLoader(self)
        self.loader.ready.connect(self._on_ready)
        self.loader.failed.connect(self._on_failed)
        self._placeholder = self._tile(QColor(60, 60, 64))
        self._broken_tile = self._tile(QColor(90, 40, 40))

    @staticmethod
    def _tile(color: QColor) -> QIcon:
        pm = QPixmap(THUMB_SIZE, THUMB_SIZE * 2 // 3)
        pm.fill(color)
        return QIcon(pm)

    def set_paths(self, paths: list[str]) -> None:
        self.beginResetModel()
        self.paths = list(paths)
        self._rows = {p: i for i, p in enumerate(self.paths)}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.paths)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.paths):
            return None
        path = self.paths[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            pm = self._cache.get(path)
            if pm is not None:
                self._cache.move_to_end(path)
                return pm
            if path in self._broken:
                return self._broken_tile
            self.loader.request(path)
            return self._placeholder
        if role == Qt.ItemDataRole.ToolTipRole:
            return path
        if role == self.PathRole:
            return path
        if role == self.ScoreRole:
            return self.scores.get(path)
        if role == self.PersonalRole:
            return self.personal.get(path)
        return None

    def set_score(self, path: str, score: float | None, personal: float | None = None) -> None:
        """The scores a thumbnail's badges show.

        Args:
            path: the photo.
            score: its critique's score, 0…10 (None: no badge).
            personal: its personal score, 0…10 (None: no second badge).
        """
        for table, value in ((self.scores, score), (self.personal, personal)):
            if value is None:
                table.pop(path, None)
            else:
                table[path] = float(value)
        row = self._rows.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [self.ScoreRole, self.PersonalRole])

    def clear_scores(self) -> None:
        """No badges (the scores are asked again, e.g. with another personal profile)."""
        self.scores.clear()
        self.personal.clear()
        if self.paths:
            self.dataChanged.emit(self.index(0), self.index(len(self.paths) - 1), [self.ScoreRole, self.PersonalRole])

    def _on_ready(self, path: str, image: QImage) -> None:
        # QIcon (not QPixmap): the view scales icons to its iconSize keeping the aspect; QPixmap is GUI-thread only
        self._cache[path] = QIcon(QPixmap.fromImage(image))
        self._cache.move_to_end(path)
        while len(self._cache) > self._memory_items:
            self._cache.popitem(last=False)
        self._changed(path)

    def _on_failed(self, path: str) -> None:
        self._broken.add(path)
        self._changed(path)

    def _changed(self, path: str) -> None:
        row = self._rows.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])
