"""The viewer's main window: photo + saliency overlay, a thumbnail strip, and the critique panel.

MainWindow wires its parts together and keeps what is on screen (the photo, its critique) consistent:

    layout.py          ThumbnailStrip, ViewerToolbar (actions, shortcuts), central_splitter
    widgets.py         PhotoView, and the panel's FlowLayout, Prose, Legend
    navigation.py      Navigator (files, position), PhotoLoader (decoding off the GUI thread, last four kept)
    critiques.py       CritiqueController: the photo's critique from memory or the daemon, streamed into the panel
    critique_panel.py  CritiquePanel, and a critique as plain text
    daemon_state.py    DaemonStatus (toolbar dot, words, Start daemon), the panel's line while a critique is missing
    overlay_control.py OverlayControl: on/off, mode, opacity, the layer over the photo, export
    memory.py          ViewerMemory: geometry, splitter, overlay settings, last folder and photo, export folder
    shoot_control.py   ShootControl: background scores (badges), sort, filter, star keys, compare (compare.py)
    cull_control.py    CullControl: the culling view (cull_view.py), the daemon's cull, P/X/U into the sidecars
    profile_control.py ProfileControl: the personal profile critiques are asked with (the second score)
    photo_info.py      the histogram with clipping, the EXIF line (shown in the panel)

Threads: photos decode in PhotoLoader's one-thread pool, thumbnails in ThumbnailLoader's pool, the daemon is spoken
to by DaemonLink's threads. The GUI thread only composes and paints, so nothing here blocks on a file or a socket.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog, QMainWindow, QStackedWidget

from .compare import CompareView
from .critique_panel import CritiquePanel
from .critique_panel import critique_text as format_critique
from .critiques import CritiqueController
from .cull_control import CullControl
from .daemon_link import DaemonLink
from .daemon_state import DaemonStatus
from .layout import ThumbnailStrip, ViewerToolbar, central_splitter
from .memory import ViewerMemory
from .navigation import Navigator, PhotoLoader, display_max_side
from .overlay import qimage_to_rgb
from .overlay_control import OverlayControl, export
from .photo_info import exif_line, histogram
from .profile_control import ProfileControl
from .shoot_control import ShootControl
from .thumbnails import ThumbnailModel, imageio
from .widgets import PhotoView

__all__ = ["CritiquePanel", "MainWindow", "PhotoView"]


def _forward(part: str, name: str, doc: str) -> property:
    """A read-only attribute of the window that belongs to one of its parts (the part owns the state).

    Args:
        part: the window's attribute holding the part ("nav", "critiques", "overlay").
        name: the part's attribute.
        doc: what it is.
    """
    return property(lambda self: getattr(getattr(self, part), name), doc=doc)


class MainWindow(QMainWindow):
    """ase-viewer's window. `settings` None: remember nothing (screenshots, tests that don't care).

    Args:
        endpoint: the daemon's endpoint, for a link made here (None: the usual rule, see DaemonLink).
        settings: where geometry, overlay settings and the last folder are remembered; None remembers nothing.
        link: a link to the daemon made by the caller (then `endpoint` is not used).
        profile: a personal profile to ask critiques with (`personal_score`); None: the one remembered, if any.
        pick_rating: stars a pick (P, culling view) rated lower is raised to; None: the one remembered, else its
            stars stay.
        parent: the Qt parent widget, if any.
    """

    critique_shown = Signal(str)  # path, after a final critique is on screen (tests, --screenshot)
    photo_shown = Signal(str)

    files = _forward("nav", "files", "The photos opened, in order.")
    index = _forward("nav", "index", "The position of the photo on screen in `files` (-1: none).")
    current = _forward("nav", "current", "The path of the photo on screen, or None.")
    result = _forward("critiques", "result", "The critique on screen (the daemon's answer), or None.")
    saliency = _forward("critiques", "saliency", "The saliency map of the critique on screen, or None.")
    tokens_seen = _forward("critiques", "tokens_seen", "Streamed tokens received for the photo on screen.")
    opacity = _forward("overlay", "opacity", "The overlay's opacity, 0…1.")
    mode = _forward("overlay", "mode", 'The overlay\'s mode, "heat" or "contour".')
    overlay_on = _forward("overlay", "on", "Whether the overlay is shown.")
    profile = _forward("link", "profile", "The personal profile critiques are asked with (`personal_score`), or None.")

    def __init__(self, endpoint: str | None = None, settings: QSettings | None = None,
                 link: DaemonLink | None = None, profile: str | None = None, pick_rating: int | None = None,
                 parent=None):
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("ASE-MLLM viewer")
        self.setAcceptDrops(True)
        self.image: QImage | None = None  # the displayed (downscaled) photo
        self._max_side = display_max_side()
        self.photos = PhotoLoader(self._max_side, self)
        self.photos.loaded.connect(self._on_photo_loaded)
        self.photos.failed.connect(self._on_photo_failed)
        self.link = link or DaemonLink(endpoint, self)
        # load the image loader in the background now, so the first photo doesn't wait for it
        threading.Thread(target=imageio, name="ase-viewer-imageio", daemon=True).start()
        self._build()
        self.link.state_changed.connect(self._on_state)
        self.memory = ViewerMemory(settings)
        self.memory.restore(self, self.splitter, self.overlay)
        self._sync_controls()
        self.cull.pick_rating = pick_rating if pick_rating is not None else self.memory.pick_rating()
        self.profiles.set(profile or self.memory.profile())
        self._on_state(self.link.state, self.link.info)  # a link made earlier may know it already

    # ---- construction ----------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.view = PhotoView()
        self.view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.view.set_message("Open a photo or a folder (Ctrl+O), or drop it here.")
        self.overlay = OverlayControl(self.view)
        self.model = ThumbnailModel(self)
        self.strip = ThumbnailStrip(self.model)
        self.strip.clicked.connect(lambda idx: self.show_index(idx.row()))
        self.nav = Navigator(self.model, self.strip)

        self.panel = CritiquePanel()
        self.panel.copy_requested.connect(self.copy_critique)
        self.panel.start_requested.connect(self.start_daemon)
        self.critiques = CritiqueController(self.link, self.panel, lambda path: path in self.files, self)
        self.critiques.shown.connect(self._on_critique_shown)
        self.compare_view = CompareView()
        self.stack = QStackedWidget()  # one photo, or two side by side
        self.stack.addWidget(self.view), self.stack.addWidget(self.compare_view)
        self.shoot = ShootControl(self)
        self.cull = CullControl(self)
        self.profiles = ProfileControl(self)  # profiles.set(name): critiques with a personal score too
        self.splitter = central_splitter(self.stack, self.strip, self.panel)
        self.setCentralWidget(self.splitter)

        self.toolbar = ViewerToolbar(self)
        self.addToolBar(self.toolbar)
        self.actions, self.mode_box, self.slider = self.toolbar.named, self.toolbar.mode_box, self.toolbar.slider
        self.status = DaemonStatus(self.link, self.toolbar, self)
        self.status.start_requested.connect(self.start_daemon)
        self.status_dot, self.status_label = self.status.dot, self.status.label
        self.start_action = self.status.start_action
        self.statusBar().setSizeGripEnabled(False)
        self._sync_controls()

    @property
    def last_folder(self) -> str | None:
        """The folder of the last photo shown in a previous session (None without settings)."""
        return self.memory.last_folder

    def _sync_controls(self) -> None:
        self.toolbar.sync(self.overlay.opacity, self.overlay.mode, self.overlay.on, self.view.fit)

    # ---- opening and navigating ---------------------------------------------------------------------------------
    def open_paths(self, paths) -> int:
        """Show files/folders: lists (no decoding) and shows the first.

        Args:
            paths: files and/or folders; the first file named is shown first, else the list's first.

        Returns:
            How many photos were found.
        """
        first = self.nav.open(paths)
        self.shoot.opened(self.files)
        self.cull.opened(self.files)
        files = self.files
        if not files:
            self.show_index(-1)
            self.view.set_message("No photos there.")
            return 0
        self.show_index(files.index(first) if first in files else 0)
        return len(files)

    def restore_last(self) -> bool:
        """Reopen the last folder (at the last file) when the viewer starts without paths."""
        paths = self.memory.last_paths()
        return bool(paths) and self.open_paths(paths) > 0

    def open_dialog(self, folder: bool) -> None:
        """Ask for photos, or a folder, and open them.

        Args:
            folder: ask for a folder instead of files.
        """
        start = self.last_folder or str(Path.home())
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Open a folder of photos", start)
            paths = [path] if path else []
        else:
            paths, _ = QFileDialog.getOpenFileNames(self, "Open photos", start)
        if paths:
            self.open_paths(paths)

    def next(self) -> None:
        """Show the next photo (the last one stays)."""
        i = self.nav.step(+1)
        if i is not None:
            self.show_index(i)

    def prev(self) -> None:
        """Show the previous photo (the first one stays)."""
        i = self.nav.step(-1)
        if i is not None:
            self.show_index(i)

    def show_index(self, i: int) -> None:
        """Show a photo of the list: its pixels (decoded off the GUI thread) and its critique.

        Args:
            i: its index in `files` (clamped); below 0 or no files: show nothing.
        """
        if not self.nav.move_to(i):
            return
        path = self.current
        self.image = None
        self.critiques.select(path)
        if path is None:
            self.view.set_photo(None)
            self.panel.clear()
            return
        self.overlay.invalidate()
        name = os.path.basename(path)
        self.shoot.shown(path)
        self.setWindowTitle(f"{name} — ASE-MLLM viewer")
        self.statusBar().showMessage(f"{name}   {self.index + 1} / {len(self.files)}")
        self.panel.clear(name)
        self.view.set_photo(None)
        image = self.photos.request(path)
        if image is not None:
            self._set_image(image)
        else:
            self.view.set_message("Loading…")
        self.critiques.request()

    def _on_photo_loaded(self, path: str, image: QImage) -> None:
        self._set_image(image)

    def _on_photo_failed(self, path: str, error: str) -> None:
        self.view.set_message(f"Cannot show this photo:\n{error}")

    def _set_image(self, image: QImage) -> None:
        self.image = image
        self.view.set_message("")
        self.view.set_photo(image)
        self.panel.set_photo_info(histogram(qimage_to_rgb(image)[::2, ::2]), exif_line(self.current))
        self._update_overlay()
        self.photo_shown.emit(self.current)

    # ---- critique and daemon state --------------------------------------------------------------------------------
    def _on_critique_shown(self) -> None:
        self.overlay.invalidate()
        self._update_overlay()
        self.shoot.known(self.current, self.result)
        self.critique_shown.emit(self.current or "")

    def _on_state(self, state: str, info: dict) -> None:
        self.status.show_state(state, info)
        self.critiques.on_state(state)

    def start_daemon(self) -> None:
        """Start the daemon on the link's endpoint (detached); the viewer reconnects by itself."""
        if self.link.start_daemon():
            self.status.starting()
            self.panel.start_button.setVisible(False)

    def critique_text(self) -> str:
        """The critique on screen as plain text ("" without one)."""
        return format_critique(self.result, self.current)

    def copy_critique(self) -> None:
        """Copy the critique on screen to the clipboard, as plain text."""
        text = self.critique_text()
        if text:
            QGuiApplication.clipboard().setText(text)
            self.statusBar().showMessage("Critique copied", 3000)

    # ---- overlay -----------------------------------------------------------------------------------------------------
    def set_overlay_visible(self, on: bool) -> None:
        """Show or hide the overlay.

        Args:
            on: show it.
        """
        self.overlay.on = bool(on)
        self._sync_controls()
        self._update_overlay()

    def set_mode(self, mode: str) -> None:
        """Draw the overlay as a heat map or as contours.

        Args:
            mode: "heat" or "contour" (anything else is ignored).
        """
        if mode not in ("heat", "contour") or mode == self.overlay.mode:
            return
        self.overlay.mode = mode
        self._sync_controls()
        self._update_overlay()

    def set_opacity(self, value: float) -> None:
        """Set the overlay's opacity.

        Args:
            value: 0…1 (clipped).
        """
        self.overlay.set_opacity(value)
        self._sync_controls()
        if self.shoot.comparing:
            self.compare_view.set_overlay(self.overlay.opacity, self.overlay.mode, self.overlay.on)

    def toggle_fit(self) -> None:
        """Fit the photo to the window, or show it at 100 %."""
        self.view.fit = not self.view.fit
        self.view.refit()
        self._sync_controls()

    def _update_overlay(self) -> None:
        self.overlay.show(self.image, self.saliency)
        if self.shoot.comparing:  # a photo, a critique or the overlay's settings changed: the pair follows
            self.shoot.refresh_compare()

    def composed_image(self) -> QImage | None:
        """What the view shows, at the displayed photo's size: the photo, with the overlay when it is on."""
        return self.overlay.composed(self.image, self.saliency)

    def export_overlay(self, path: str | None = None) -> str | None:
        """Save photo + overlay (at the current mode and opacity, shown or not) as PNG (overlay_control.export).

        Args:
            path: where; None asks (starting in the last export folder).

        Returns:
            The path written, or None if there was nothing to save or it could not be written.
        """
        return export(self, path)

    # ---- drag and drop, closing --------------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_paths(paths)
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:
        self.memory.save(self, self.splitter, self.overlay, self.current)
        self.shoot.scores.stop()
        self.link.close()
        self.model.loader.close()
        super().closeEvent(event)
