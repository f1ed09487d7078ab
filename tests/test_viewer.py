"""ase-viewer against a real daemon on the tiny model: offscreen Qt (pytest-qt), real ZeroMQ, real photos."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")
from ase_gui.daemon_link import DOWN, DaemonLink  # noqa: E402
from ase_gui.overlay import compose_overlay, overlay_layer, qimage_to_rgb, rgb_to_qimage, upsample  # noqa: E402
from ase_gui.thumbnails import make_thumbnail  # noqa: E402
from ase_gui.window import MainWindow  # noqa: E402
from conftest import DaemonProcess, daemon_env, free_port  # noqa: E402
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent, QImage  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

CRITIQUE_MS = 90_000  # the tiny model answers in well under a second; the margin is for a loaded 2-core box


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # thumbnails cache
    monkeypatch.delenv("ASE_ENDPOINT", raising=False)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_model_dir, curve_keys):
    """One daemon for the module, with a CURVE endpoint on loopback (a 'remote' client: paths are forbidden)."""
    curve = f"tcp://127.0.0.1:{free_port()}"
    config = f"""
[curve]
server_secret_key = "{curve_keys / 'server.key_secret'}"
authorized_keys = "{curve_keys / 'authorized_clients'}"
"""
    d = DaemonProcess(tmp_path_factory.mktemp("viewer-daemon"), tiny_model_dir, "viewer",
                      ["--curve-endpoint", curve], config=config).start()
    d.curve, d.curve_keys = curve, curve_keys
    yield d
    d.stop()


@pytest.fixture()
def settings(tmp_path):
    return QSettings(str(tmp_path / "viewer.ini"), QSettings.Format.IniFormat)


def open_window(qtbot, endpoint, settings=None, **link_kw) -> MainWindow:
    link = DaemonLink(endpoint, ping_interval=0.5, max_backoff=1.0, **link_kw)  # quick to notice, for tests
    w = MainWindow(settings=settings, link=link)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    w.activateWindow()
    assert QTest.qWaitForWindowActive(w, 5000)  # shortcuts (WindowShortcut) need the active window
    return w


def unique_copy(path, folder, seed: int):
    """The photo with one pixel changed: new content hash, so the daemon really generates (and streams)."""
    im = Image.open(path).convert("RGB")
    im.putpixel((0, 0), tuple(int(v) for v in np.random.default_rng(seed).integers(0, 255, 3)))
    out = folder / f"u{seed}_{os.path.basename(path)}"
    im.save(out, quality=92)
    return out


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).sum(-1)


# ---- overlay: pure functions -----------------------------------------------------------------------------------
def blob(h=12, w=18, cy=0.3, cx=0.7) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.exp(-(((ys + 0.5) / h - cy) ** 2 + ((xs + 0.5) / w - cx) ** 2) / 0.02).astype(np.float32)


def test_compose_overlay(photos):
    photo = np.asarray(photos["chelsea"])  # 451x300, landscape
    h, w = photo.shape[:2]
    sal = blob()
    m = upsample(sal, w, h)
    assert m.shape == (h, w) and m.max() == pytest.approx(1.0) and m.min() >= 0
    hi, lo = m > 0.8, m < 0.02  # heat mode's log scale leaves the photo clear under ~2 % of the peak
    peak = np.unravel_index(np.argmax(m), m.shape)
    assert abs(peak[0] / h - 0.3) < 0.06 and abs(peak[1] / w - 0.7) < 0.06  # upsampled in place, not stretched off

    out = compose_overlay(photo, sal, 0.6, "heat")
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert diff(out, photo)[hi].mean() > 30  # visibly coloured where the weight is
    assert np.array_equal(out[lo], photo[lo])  # untouched where there is none
    assert np.array_equal(compose_overlay(photo, sal, 0.0, "heat"), photo)  # overlay off = the photo

    # opacity: every pixel moves away from the photo monotonically
    steps = [diff(compose_overlay(photo, sal, a, "heat"), photo) for a in (0.0, 0.25, 0.5, 0.75, 1.0)]
    means = [s[hi].mean() for s in steps]
    assert all(b > a for a, b in zip(means, means[1:])), means
    for a, b in zip(steps, steps[1:]):
        assert (b >= a - 1).all()  # -1: rounding

    # smooth: neighbouring pixels of the layer's weight never jump (bicubic, not blocky nearest-neighbour)
    alpha = overlay_layer(sal, w, h, "heat")[..., 3].astype(np.int16)
    assert np.abs(np.diff(alpha, axis=1)).max() < 40

    contour = compose_overlay(photo, sal, 1.0, "contour")
    changed = diff(contour, photo) > 0
    assert 0.003 < changed.mean() < 0.2  # thin lines, not a fill
    assert not changed[m < 0.15].any() or changed[m < 0.15].mean() < 0.01

    # QImage in, QImage out; a flat map draws nothing
    q = rgb_to_qimage(photo)
    out_q = compose_overlay(q, sal, 0.6, "heat")
    assert isinstance(out_q, QImage) and (out_q.width(), out_q.height()) == (w, h)
    assert np.array_equal(qimage_to_rgb(out_q), out)
    assert np.array_equal(compose_overlay(photo, np.full((4, 6), 0.5, np.float32), 1.0), photo)
    with pytest.raises(ValueError):
        compose_overlay(photo, sal, 0.5, "sparkles")


# ---- the window against the real daemon ------------------------------------------------------------------------
def test_critique_streams_into_the_panel(qtbot, daemon, photo_files, tmp_path):
    photo = unique_copy(photo_files["coffee"], tmp_path, 1)
    w = open_window(qtbot, daemon.ipc)
    events = []
    w.link.token.connect(lambda rid, text: events.append(("token", rid, text)))
    w.link.critique_ready.connect(lambda rid, result, sal: events.append(("final", rid, result)))
    with qtbot.waitSignal(w.critique_shown, timeout=CRITIQUE_MS):
        w.open_paths([photo])
    qtbot.waitUntil(lambda: w.link.state == "ready", timeout=10_000)  # the first ping may trail the critique
    # each receiver of a cross-thread signal gets its own queued event: ours may come after the window's
    qtbot.waitUntil(lambda: any(e[0] == "final" for e in events), timeout=10_000)
    assert "ready" in w.status_label.text()
    kinds = [e[0] for e in events]
    assert "token" in kinds and kinds.index("token") < kinds.index("final"), kinds
    assert w.tokens_seen > 0
    result = events[-1][2]
    assert "".join(e[2] for e in events if e[0] == "token").strip() == result["text"]
    assert w.panel.text.toPlainText().strip() == result["text"].strip() != ""
    assert w.panel.score.text() == f"{result['score']:.1f}"
    assert len(w.panel.tag_labels) == len(result["tags"])
    assert w.saliency is not None and w.saliency.dtype == np.float32
    w.copy_critique()
    from PySide6.QtGui import QGuiApplication

    assert result["text"].strip()[:20] in QGuiApplication.clipboard().text()


def test_panel_lists_attributes_and_tags(qtbot):
    from ase_gui.window import CritiquePanel

    panel = CritiquePanel()
    qtbot.addWidget(panel)
    panel.show_result({"text": "Strong diagonal lines. Slightly underexposed.", "score": 7.25,
                       "attributes": {"exposure": "Slightly underexposed.", "composition": "Strong diagonal lines."},
                       "tags": ["aesthetics|composition|diagonal", "aesthetics|exposure|underexposed"],
                       "model": "tiny@1", "cached": True, "timings": {"total_ms": 12.0}})
    assert panel.score.text() == "7.2" or panel.score.text() == "7.3"
    assert [t.text() for t in panel.tag_labels] == ["composition › diagonal", "exposure › underexposed"]
    text = panel.attributes.toPlainText()
    assert text.index("Composition") < text.index("Exposure")  # canonical order, whatever the dict order


def test_window_parts_without_a_daemon(qtbot, tmp_path):
    """The window's parts on their own: the position in a folder, the panel's line while a critique is missing,
    a critique as plain text."""
    from ase_gui.critique_panel import critique_text
    from ase_gui.daemon_state import waiting_message
    from ase_gui.layout import ThumbnailStrip
    from ase_gui.navigation import Navigator
    from ase_gui.thumbnails import ThumbnailModel

    for name in ("b.jpg", "a.jpg", "c.png"):
        Image.new("RGB", (8, 6)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a photo")
    model = ThumbnailModel()
    strip = ThumbnailStrip(model)
    qtbot.addWidget(strip)
    nav = Navigator(model, strip)
    try:
        assert nav.step(+1) is None and strip.isHidden()
        first = nav.open([tmp_path / "b.jpg"])  # one file: among its folder's photos, by name
        assert [os.path.basename(f) for f in nav.files] == ["a.jpg", "b.jpg", "c.png"]
        assert first == str(tmp_path / "b.jpg") and not strip.isHidden()
        assert nav.move_to(nav.files.index(first)) and nav.current == first and strip.currentIndex().row() == 1
        assert not nav.move_to(1)  # already there: nothing changes
        assert nav.step(+1) == 2 and nav.step(-1) == 0
        assert nav.move_to(99) and nav.index == 2 and nav.step(+1) == 2  # clamped at the end
        assert nav.move_to(-1) and (nav.index, nav.current) == (-1, None)
    finally:
        model.loader.close()

    down = waiting_message(DOWN, "ipc:///run/<me>/ase.sock", 0)
    assert "daemon down" in down and "&lt;me&gt;" in down  # the endpoint is named, escaped
    assert "loading" in waiting_message("loading", "e", 0) and "failed" in waiting_message("error", "e", 0)
    assert "asking" in waiting_message("ready", "e", 0)
    assert waiting_message("ready", "e", 3) is None  # text is streaming in: the line stays as it is

    assert critique_text(None, "/p/x.jpg") == ""
    text = critique_text({"text": " Tight framing. ", "score": 7.5, "tags": ["aesthetics|exposure|underexposed"],
                          "attributes": {"exposure": "Dark.", "composition": "Tight.", "focus": ""}}, "/p/x.jpg")
    assert text.splitlines() == ["x.jpg", "Score: 7.5 / 10", "", "Tight framing.", "", "Composition: Tight.",
                                 "Exposure: Dark.", "", "Tags: exposure › underexposed"]


def test_overlay_toggle_opacity_and_export(qtbot, daemon, photo_files, tmp_path, monkeypatch):
    w = open_window(qtbot, daemon.ipc)
    with qtbot.waitSignal(w.critique_shown, timeout=CRITIQUE_MS):
        w.open_paths([photo_files["astronaut"]])
    qtbot.waitUntil(lambda: w.image is not None, timeout=20_000)
    assert w.mode == "contour"  # the default (issue 18: it reads better than heat, side by side)
    w.set_mode("heat")  # the fill: its strength is measurable where the map is high
    photo = qimage_to_rgb(w.image)
    h, w_ = photo.shape[:2]
    m = upsample(w.saliency, w_, h)
    hi = m > 0.8
    assert hi.any()

    def shown():
        return qimage_to_rgb(w.composed_image())

    assert w.overlay_on and w.view.overlay_item.isVisible()
    assert diff(shown(), photo)[hi].mean() > 20
    qtbot.keyClick(w, Qt.Key.Key_O)  # overlay off: exactly the photo
    assert not w.overlay_on and not w.view.overlay_item.isVisible()
    assert np.array_equal(shown(), photo)
    qtbot.keyClick(w, Qt.Key.Key_O)
    assert w.overlay_on

    strengths = []
    w.set_opacity(0.2)
    for _ in range(4):
        strengths.append(diff(shown(), photo)[hi].mean())
        qtbot.keyClick(w, Qt.Key.Key_Plus)
    assert w.opacity == pytest.approx(0.6) and w.view.overlay_item.opacity() == pytest.approx(0.6)
    assert all(b > a for a, b in zip(strengths, strengths[1:])), strengths
    qtbot.keyClick(w, Qt.Key.Key_Minus)
    assert w.opacity == pytest.approx(0.5)

    qtbot.keyClick(w, Qt.Key.Key_C)
    assert w.mode == "contour" and w.mode_box.currentText() == "contour"
    qtbot.keyClick(w, Qt.Key.Key_C)
    assert w.mode == "heat"
    qtbot.keyClick(w, Qt.Key.Key_F)
    assert not w.view.fit
    qtbot.keyClick(w, Qt.Key.Key_F)
    assert w.view.fit

    out = tmp_path / "export.png"
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "PNG (*.png)")))
    qtbot.keyClick(w, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert out.is_file()
    exported = np.asarray(Image.open(out).convert("RGB"))
    assert exported.shape == photo.shape  # the displayed photo's size
    assert diff(exported, photo)[hi].mean() > 20  # the overlay is in it
    assert np.array_equal(exported[m < 0.02], photo[m < 0.02])  # heat's log scale: clear under ~2 % of the peak


def test_navigation_keys_and_drop(qtbot, daemon, photo_files, settings):
    folder = photo_files["astronaut"].parent
    w = open_window(qtbot, daemon.ipc, settings)
    assert w.open_paths([folder]) == len(photo_files)
    names = [os.path.basename(p) for p in w.files]
    assert names == sorted(names) and w.index == 0
    for key, expected in ((Qt.Key.Key_Right, 1), (Qt.Key.Key_Space, 2), (Qt.Key.Key_Left, 1),
                          (Qt.Key.Key_End, len(names) - 1), (Qt.Key.Key_Home, 0), (Qt.Key.Key_Left, 0)):
        qtbot.keyClick(w, key)
        assert w.index == expected, (key, w.index)
    qtbot.keyClick(w.view, Qt.Key.Key_Right)  # with the photo view focused too (it would scroll otherwise)
    assert w.index == 1
    with qtbot.waitSignal(w.critique_shown, timeout=CRITIQUE_MS):
        qtbot.keyClick(w, Qt.Key.Key_Right)
    assert w.current == w.files[2] and w.result is not None
    qtbot.waitUntil(lambda: w.image is not None, timeout=20_000)

    # drop one file: its folder opens at that file
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photo_files["rocket"]))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    w.dropEvent(drop)
    assert w.current == str(photo_files["rocket"])

    # geometry and the last folder are remembered (in the test's own settings file)
    w.resize(720, 540)  # within the offscreen screen (800x600): restoreGeometry keeps windows on screen
    w.close()
    w2 = MainWindow(settings=QSettings(settings.fileName(), QSettings.Format.IniFormat),
                    link=DaemonLink(daemon.ipc))
    qtbot.addWidget(w2)
    assert w2.restore_last() and w2.current == str(photo_files["rocket"])
    assert (w2.width(), w2.height()) == (720, 540)
    w2.close()


def test_remote_endpoint_sends_bytes(qtbot, daemon, photo_files, tmp_path):
    """A CURVE endpoint counts as remote: the daemon refuses paths (forbidden) and the viewer sends the bytes."""
    photo = unique_copy(photo_files["rocket"], tmp_path, 2)
    keys = daemon.curve_keys
    w = open_window(qtbot, daemon.curve, server_key=keys / "server.key", client_keys=keys / "client.key_secret")
    with qtbot.waitSignal(w.critique_shown, timeout=CRITIQUE_MS):
        w.open_paths([photo])
    assert w.link.local  # loopback: the path was tried first, refused (forbidden), then the bytes went
    assert w.result["image"] == photo.name  # sent as bytes with its name, not as a path
    assert w.link._send_bytes


def test_big_folder_lists_without_decoding_and_thumbnails_lazily(qtbot, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    tiny = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(tiny)
    data = tiny.read_bytes()
    for i in range(2000):
        (folder / f"IMG_{i:04d}.jpg").write_bytes(data)
    (folder / "notes.txt").write_text("not a photo")
    w = open_window(qtbot, f"ipc://{tmp_path}/nobody.sock")  # no daemon: the folder must not care
    assert w.open_paths([folder]) == 2000  # listing only: no photo is decoded to list the folder
    loader = w.model.loader
    qtbot.waitUntil(lambda: len(loader.requested) > 0, timeout=10_000)
    qtbot.wait(300)
    first = len(loader.requested)
    assert first < 60, first  # only what the strip shows, not 2000
    qtbot.keyClick(w, Qt.Key.Key_End)
    qtbot.waitUntil(lambda: str(folder / "IMG_1999.jpg") in loader.requested, timeout=10_000)
    assert len(loader.requested) < 150
    assert not any(f"IMG_{i:04d}" in p for p in loader.requested for i in range(200, 1800, 97))
    # decoded thumbnails land in the disk cache: a second request decodes nothing
    qtbot.waitUntil(lambda: any((tmp_path / "cache" / "ase-mllm" / "thumbs").rglob("*.jpg")), timeout=20_000)
    from ase_gui import thumbnails

    path = str(folder / "IMG_1999.jpg")
    qtbot.waitUntil(lambda: path in w.model._cache, timeout=20_000)
    real = thumbnails.imageio

    def no_decode():
        raise AssertionError("decoded although cached")

    try:
        thumbnails.imageio = no_decode
        assert not make_thumbnail(path).isNull()
    finally:
        thumbnails.imageio = real


# ---- --screenshot (a real process) -------------------------------------------------------------------------------
def run_viewer(args, tmp_path, timeout):
    env = daemon_env(tmp_path)
    env.update(QT_QPA_PLATFORM="offscreen", XDG_CACHE_HOME=str(tmp_path / "cache"))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ase_gui.app", *args], env=env, capture_output=True, text=True,
                          timeout=timeout + 30)
    return proc, time.monotonic() - t0


def test_screenshot_cli_up_and_down(daemon, photo_files, tmp_path):
    out = tmp_path / "up.png"
    proc, took = run_viewer([str(photo_files["flower"]), "--endpoint", daemon.ipc, "--screenshot", str(out),
                             "--timeout", "60"], tmp_path, 60)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (1400, 900) and took < 60
    down = tmp_path / "down.png"
    proc, took = run_viewer([str(photo_files["flower"]), "--endpoint", f"ipc://{tmp_path}/none.sock",
                             "--screenshot", str(down), "--timeout", "15"], tmp_path, 15)
    assert proc.returncode == 2, proc.stderr
    assert "daemon is down" in proc.stderr
    assert Image.open(down).size == (1400, 900) and took < 15
    # the two pictures differ (the critique panel vs the "daemon down" panel)
    a, b = (np.asarray(Image.open(p).convert("L"), dtype=np.int16) for p in (out, down))
    assert np.abs(a - b)[:, -380:].mean() > 1


def test_large_photo_and_raw_through_the_model_loader(qtbot, tmp_path, photos):
    """A 24 MP JPEG is shown from a copy no larger than the screen; a DNG is listed and shown (same loader as the
    model: rawpy, the camera's embedded preview)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_bench_raw", Path(__file__).parents[1] / "bench" / "raw_decode.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    folder = tmp_path / "shoot"
    folder.mkdir()
    big = np.empty((4000, 6000, 3), np.uint8)
    big[..., 0] = (np.arange(6000) // 24 % 256).astype(np.uint8)[None, :]
    big[..., 1] = (np.arange(4000) // 16 % 256).astype(np.uint8)[:, None]
    big[..., 2] = 128
    Image.fromarray(big).save(folder / "a_big.jpg", quality=75)
    cat = np.asarray(photos["chelsea"])[:300, :450]
    bench.write_dng(folder / "b_cat.dng", cat, preview=cat)
    w = open_window(qtbot, f"ipc://{tmp_path}/nobody.sock")
    assert w.open_paths([folder]) == 2
    qtbot.waitUntil(lambda: w.image is not None, timeout=30_000)
    assert max(w.image.width(), w.image.height()) <= w._max_side < 6000
    assert abs(w.image.width() / w.image.height() - 1.5) < 0.01
    qtbot.keyClick(w, Qt.Key.Key_Right)
    assert w.current.endswith("b_cat.dng")
    qtbot.waitUntil(lambda: w.image is not None, timeout=30_000)
    assert (w.image.width(), w.image.height()) == (450, 300)


def test_daemon_down_responsive_then_recovers(qtbot, daemon, photo_files, tmp_path, monkeypatch):
    w = open_window(qtbot, daemon.ipc)
    with qtbot.waitSignal(w.critique_shown, timeout=CRITIQUE_MS):
        w.open_paths([photo_files["astronaut"].parent])
    daemon.stop(signal.SIGKILL)  # a crash: the socket file stays, so every request has to time out
    qtbot.waitUntil(lambda: w.link.state == DOWN, timeout=15_000)
    assert "daemon down" in w.status_label.text()
    assert w.start_action.isVisible()

    # the event loop keeps running: timer ticks stay close together and keys are handled while it is down
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    new_photo = unique_copy(photo_files["china"], photo_files["china"].parent, 3)  # not in any cache
    w.open_paths([new_photo.parent])
    w.show_index(w.files.index(str(new_photo)))
    before = w.index
    qtbot.keyClick(w, Qt.Key.Key_Left)
    assert w.index == before - 1
    qtbot.keyClick(w, Qt.Key.Key_Right)
    assert w.index == before
    qtbot.wait(1500)
    timer.stop()
    gaps = np.diff(ticks)
    # a Client call on the GUI thread would stall it for a whole ping timeout (1.5 s) or critique timeout (5 s)
    assert len(ticks) > 20 and gaps.max() < 1.5, (len(ticks), gaps.max())  # a frozen window would stall for seconds
    qtbot.waitUntil(lambda: "daemon down" in w.panel.state.text(), timeout=15_000)
    assert w.result is None

    # "Start the daemon": `ase-client --start ping`, detached, brings a daemon back on the same endpoint (its
    # model, store and log come from this test's XDG folders); the photo on screen gets its critique by itself
    root = tmp_path / "started"
    (root / "config" / "ase-mllm").mkdir(parents=True)
    (root / "config" / "ase-mllm" / "config.toml").write_text(
        f'model = "{daemon.cmd[daemon.cmd.index("--model") + 1]}"\nthreads = 1\n[limits]\nmax_new_tokens = 8\n')
    (root / "run").mkdir(mode=0o700)
    for key, value in daemon_env(root).items():
        if key.startswith(("XDG_", "OMP_")):
            monkeypatch.setenv(key, value)
    assert w.panel.start_button.isVisible()
    try:
        with qtbot.waitSignal(w.critique_shown, timeout=CRITIQUE_MS):
            w.panel.start_button.click()
        assert w.link.state == "ready" and "ready" in w.status_label.text()
        assert w.current == str(new_photo) and w.result is not None and w.panel.text.toPlainText()
        assert not w.panel.start_button.isVisible()
    finally:
        from ase_daemon.client import Client

        try:
            with Client(daemon.ipc, timeout=5, retries=0) as c:
                pid = c.ping()["pid"]
                c.shutdown()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
                time.sleep(0.1)
        except Exception:
            log = root / "run" / "ase-mllm" / "daemon.log"
            print(log.read_text()[-3000:] if log.exists() else "no daemon log")
