"""The viewer for a whole shoot (issue 18): sort, filter, score badges, compare, star keys written to the sidecar (read
back by exiftool), the histogram with clipping, the EXIF line, the critique once, the opacity value. Offscreen Qt
(pytest-qt) against a real daemon on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")
from ase_gui.badges import badge_color, badge_text  # noqa: E402
from ase_gui.critique_panel import CritiquePanel  # noqa: E402
from ase_gui.daemon_link import DaemonLink  # noqa: E402
from ase_gui.photo_info import exif_line, histogram  # noqa: E402
from ase_gui.rating import RatingError, read_rating, sidecar_path, write_rating  # noqa: E402
from ase_gui.shoot import Query, filter_paths, parse_query, sort_paths  # noqa: E402
from ase_gui.thumbnails import ThumbnailModel  # noqa: E402
from ase_gui.window import MainWindow  # noqa: E402
from conftest import DaemonProcess  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

CRITIQUE_MS = 90_000
DOCS_IMG = os.environ.get("ASE_VIEWER_SHOTS")  # set: the tests also save their screenshots there (docs/img)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ASE_ENDPOINT", raising=False)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_model_dir):
    d = DaemonProcess(tmp_path_factory.mktemp("shoot-daemon"), tiny_model_dir, "shoot").start()
    yield d
    d.stop()


def exiftool(path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-a", "-G1", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


# ---- pure parts ---------------------------------------------------------------------------------------------------
def test_sort_and_filter_over_result_dicts(tmp_path):
    paths = []
    for i, name in enumerate(["b.jpg", "A.jpg", "c.jpg", "d.jpg"]):
        p = tmp_path / name
        p.write_bytes(b"x")
        os.utime(p, (1000 + 10 * (3 - i), 1000 + 10 * (3 - i)))  # b oldest… d newest reversed: d is oldest
        paths.append(str(p))
    results = {paths[0]: {"score": 5.0, "tags": ["aesthetics|exposure|underexposed"]},
               paths[1]: {"score": 8.5, "tags": ["aesthetics|composition|diagonal"]},
               paths[2]: {"score": 6.0, "tags": ["aesthetics|exposure|underexposed", "aesthetics|color|muted"]}}
    base = [os.path.basename(p) for p in paths]
    name = lambda ps: [os.path.basename(p) for p in ps]  # noqa: E731
    assert name(sort_paths(paths, results, "name")) == ["A.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert name(sort_paths(paths, results, "score")) == ["A.jpg", "c.jpg", "b.jpg", "d.jpg"]  # unscored last
    assert name(sort_paths(paths, results, "date")) == ["d.jpg", "c.jpg", "A.jpg", "b.jpg"]  # oldest first
    assert sorted(base) == sorted(name(sort_paths(paths, results, "date")))

    q = parse_query("exposure|underexposed >=5.5")
    assert q == Query(["exposure|underexposed"], 5.5, None)
    assert name(filter_paths(paths, results, q)) == ["c.jpg"]
    assert name(filter_paths(paths, results, parse_query("score<6"))) == ["b.jpg"]
    assert name(filter_paths(paths, results, parse_query("EXPOSURE"))) == ["b.jpg", "c.jpg"]  # case-insensitive
    assert filter_paths(paths, results, parse_query("")) == paths  # empty: all, unscored too
    assert filter_paths(paths, results, parse_query("nothing-like-it")) == []


def test_badges_colour_by_band():
    assert badge_text(7.25) in ("7.2", "7.3")
    assert badge_color(8).green() > badge_color(8).red()
    assert badge_color(2).red() > badge_color(2).green()
    assert badge_color(5).red() > 150 and badge_color(5).green() > 100  # amber


def test_histogram_clipping_and_exif_line(tmp_path):
    rgb = np.full((100, 100, 3), 128, np.uint8)
    rgb[:10] = 255  # 10 % blown
    h = histogram(rgb)
    assert h.counts.shape == (4, 256) and h.counts[0].sum() == 10_000 and h.counts[3].sum() == 10_000
    assert h.highlights == pytest.approx(0.10) and h.shadows == 0
    assert "highlights clipped 10.0%" in h.warning() and "shadows" not in h.warning()
    assert histogram(np.full((10, 10, 3), 128, np.uint8)).warning() == ""

    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R5"
    sub = exif.get_ifd(0x8769)
    sub[0xA434] = "RF24-70mm F2.8 L IS USM"
    sub[0x829A], sub[0x829D], sub[0x8827], sub[0x920A] = 1 / 250, 4.0, 400, 50.0
    path = tmp_path / "exif.jpg"
    im.save(path, exif=exif)
    assert exif_line(str(path)) == "Canon EOS R5 · RF24-70mm F2.8 L IS USM · 1/250 s · f/4 · ISO 400 · 50 mm"
    plain = tmp_path / "plain.png"
    im.save(plain)
    assert exif_line(str(plain)) == "" and exif_line(str(tmp_path / "missing.jpg")) == ""


def test_critique_once_by_attribute(qtbot):
    panel = CritiquePanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_result({"text": "Strong lines. Dark.", "score": 6.0,
                       "attributes": {"composition": "Strong lines.", "exposure": "Dark."}, "tags": []})
    assert panel.attributes.isVisible() and not panel.text.isVisible()  # once: by attribute
    assert "Strong lines." in panel.attributes.toPlainText()
    panel.show_result({"text": "Only a paragraph.", "score": 6.0, "attributes": {}, "tags": []})
    assert panel.text.isVisible() and not panel.attributes.isVisible()


# ---- the sidecar's rating -----------------------------------------------------------------------------------------
FOREIGN = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmp:Rating="1" darktable:history_end="2" darktable:xmp_version="5">
   <dc:subject><rdf:Bag><rdf:li>Iceland</rdf:li><rdf:li>glacier</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def test_write_rating_creates_and_preserves(tmp_path, photos):
    photo = tmp_path / "IMG_1.jpg"
    photos["coffee"].save(photo)
    path = write_rating(photo, 4)
    assert path == sidecar_path(photo) == str(photo) + ".xmp"
    assert exiftool(path)["XMP-xmp:Rating"] == 4 and read_rating(photo) == 4
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # the temp file was renamed

    other = tmp_path / "IMG_2.jpg"
    photos["coffee"].save(other)
    with open(str(other) + ".xmp", "w", encoding="utf-8") as f:
        f.write(FOREIGN)
    write_rating(other, 5)
    tags = exiftool(str(other) + ".xmp")
    assert tags["XMP-xmp:Rating"] == 5
    assert tags["XMP-dc:Subject"] == ["Iceland", "glacier"]  # the user's keywords are kept
    assert tags["XMP-darktable:History_end"] == 2 and tags["XMP-darktable:Xmp_version"] == 5  # darktable's, kept
    write_rating(other, 0)
    assert exiftool(str(other) + ".xmp")["XMP-xmp:Rating"] == 0

    with pytest.raises(ValueError):
        write_rating(photo, 6)
    # a symlink named like a sidecar is refused, never followed; its target is untouched
    target = tmp_path / "elsewhere.xmp"
    target.write_text(FOREIGN, encoding="utf-8")
    linked = tmp_path / "IMG_3.jpg"
    photos["coffee"].save(linked)
    os.symlink(target, str(linked) + ".xmp")
    with pytest.raises(RatingError):
        write_rating(linked, 3)
    assert target.read_text(encoding="utf-8") == FOREIGN and os.path.islink(str(linked) + ".xmp")


# ---- the window against the real daemon ------------------------------------------------------------------------
def open_window(qtbot, endpoint) -> MainWindow:
    w = MainWindow(link=DaemonLink(endpoint, ping_interval=0.5, max_backoff=1.0))
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    w.activateWindow()
    assert QTest.qWaitForWindowActive(w, 5000)
    return w


def save_shot(w: MainWindow, name: str) -> None:
    if DOCS_IMG:
        QTest.qWait(300)
        w.grab().save(os.path.join(DOCS_IMG, name))


def test_shoot_sort_filter_badges_stars_compare(qtbot, daemon, photo_files, tmp_path):
    folder = photo_files["astronaut"].parent
    n = len(photo_files)
    w = open_window(qtbot, daemon.ipc)
    assert w.open_paths([folder]) == n
    # the background pass scores the whole folder; the badges follow
    qtbot.waitUntil(lambda: len(w.shoot.results) == n, timeout=CRITIQUE_MS * 2)
    scores = {p: r["score"] for p, r in w.shoot.results.items()}
    model = w.model
    for row, p in enumerate(model.paths):
        assert model.data(model.index(row), ThumbnailModel.ScoreRole) == pytest.approx(scores[p])

    # sort by score: best first, the photo on screen stays on screen
    on_screen = w.current
    w.toolbar.sort_box.setCurrentText("score")
    assert [scores[p] for p in w.files] == sorted(scores.values(), reverse=True)
    assert w.current == on_screen and w.files[w.index] == on_screen
    qtbot.waitUntil(lambda: w.image is not None and w.result is not None, timeout=CRITIQUE_MS)
    save_shot(w, "viewer-sorted.png")
    w.toolbar.sort_box.setCurrentText("name")
    assert [os.path.basename(p) for p in w.files] == sorted(os.path.basename(p) for p in w.files)

    # filter: score bounds and a tag term, typed into the box
    middle = sorted(scores.values())[n // 2]
    w.toolbar.filter_box.setText(f">={middle}")
    assert set(w.files) == {p for p, s in scores.items() if s >= middle} and w.current in w.files
    tag = w.shoot.results[w.files[0]]["tags"][0] if w.shoot.results[w.files[0]].get("tags") else None
    if tag:
        w.toolbar.filter_box.setText(tag.split("|")[-1])
        assert w.files and all(any(tag.split("|")[-1].lower() in t.lower() for t in w.shoot.results[p]["tags"])
                               for p in w.files)
    w.toolbar.filter_box.setText("no-such-tag-anywhere")
    assert w.files == [] and w.current is None
    w.toolbar.filter_box.clear()
    assert len(w.files) == n
    w.setFocus()

    # star keys: 3 on the photo on screen, into its sidecar (read back by exiftool)
    qtbot.waitUntil(lambda: w.current is not None, timeout=5000)
    photo = w.current
    qtbot.keyClick(w, Qt.Key.Key_3)
    assert exiftool(photo + ".xmp")["XMP-xmp:Rating"] == 3
    qtbot.keyClick(w, Qt.Key.Key_0)
    assert exiftool(photo + ".xmp")["XMP-xmp:Rating"] == 0

    # compare: the photo shown before on the left, the one on screen on the right, each with its saliency
    w.show_index(0)
    qtbot.waitUntil(lambda: w.image is not None and w.saliency is not None, timeout=CRITIQUE_MS)
    w.show_index(1)
    qtbot.waitUntil(lambda: w.image is not None and w.saliency is not None, timeout=CRITIQUE_MS)
    qtbot.keyClick(w, Qt.Key.Key_X)
    assert w.shoot.comparing and w.stack.currentWidget() is w.compare_view
    left, right = w.compare_view.sides
    assert (left.path, right.path) == (w.files[0], w.files[1])
    assert left.image is not None and right.image is not None
    assert left.saliency is not None and right.saliency is not None
    assert all(v.overlay_item.isVisible() for v in w.compare_view.views)
    assert os.path.basename(w.files[0]) in w.compare_view.captions[0].text()
    assert f"{scores[w.files[1]]:.1f}" in w.compare_view.captions[1].text()
    w.set_opacity(0.8)  # the window's overlay settings apply to both sides
    assert all(v.overlay_item.opacity() == pytest.approx(0.8) for v in w.compare_view.views)
    save_shot(w, "viewer-compare.png")
    if DOCS_IMG:  # heat | contour of the photo on screen, at the default opacity, for choosing the default mode
        from ase_gui.overlay import compose_overlay, qimage_to_rgb
        photo = qimage_to_rgb(w.image)
        pair = [compose_overlay(photo, w.saliency, 0.6, m) for m in ("heat", "contour")]
        gap = np.full((photo.shape[0], 12, 3), 24, np.uint8)
        Image.fromarray(np.concatenate([pair[0], gap, pair[1]], 1)).save(os.path.join(DOCS_IMG, "overlay-modes.png"))
    qtbot.keyClick(w, Qt.Key.Key_Escape)
    assert not w.shoot.comparing


def test_opacity_value_and_photo_info_shown(qtbot, daemon, photo_files, tmp_path):
    w = open_window(qtbot, daemon.ipc)
    w.open_paths([photo_files["astronaut"]])
    qtbot.waitUntil(lambda: w.image is not None, timeout=20_000)
    w.set_opacity(0.3)
    assert w.toolbar.opacity_label.text() == "30 %"
    qtbot.keyClick(w, Qt.Key.Key_Plus)
    assert w.toolbar.opacity_label.text() == "40 %"
    assert w.panel.histogram.hist is not None and w.panel.histogram.isVisible()
    assert w.panel.histogram.hist.counts[3].sum() > 0
    # a photo with EXIF shows its line
    shot = tmp_path / "withexif.jpg"
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "NIKON CORPORATION", "NIKON Z 6"
    exif.get_ifd(0x8769)[0x829A] = 2.0
    photo = photo_files["coffee"]
    Image.open(photo).save(shot, exif=exif)
    w.open_paths([shot])
    qtbot.waitUntil(lambda: w.current == str(shot) and w.image is not None, timeout=20_000)
    assert w.panel.exif.text() == "NIKON Z 6 · 2 s"  # the make is not said twice
