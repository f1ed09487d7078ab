"""The viewer's culling view (issue 19) and personal score (issue 20): offscreen Qt (pytest-qt) against a real daemon
on the tiny model. The culling view runs the daemon's `cull` op on the folder and shows its groups, the pick first;
P / X / U write the override into the sidecar (read back by exiftool). A profile learnt with `ase-mllm learn --model`
on the tiny model (in the daemon's XDG_DATA_HOME) gives every critique a second score: the panel, the badges and the
sort by it."""

from __future__ import annotations

import contextlib
import io
import os
import shutil

import pytest
from PIL import ImageEnhance

pytest.importorskip("pytestqt")
from ase_gui.cull_flags import NAMESPACE_URI, flag, read_flag  # noqa: E402
from ase_gui.cull_view import CullView  # noqa: E402
from ase_gui.daemon_link import DaemonLink  # noqa: E402
from ase_gui.thumbnails import ThumbnailModel  # noqa: E402
from ase_gui.window import MainWindow  # noqa: E402
from conftest import DaemonProcess  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from test_cull_cli import FOREIGN_XMP, make_shoot  # noqa: E402
from test_personal_cli import GAINS, stars_of, write_rating  # noqa: E402
from test_viewer_shoot import exiftool  # noqa: E402

CULL_MS = 240_000
DOCS_IMG = os.environ.get("ASE_VIEWER_SHOTS")  # set: the culling view's screenshot is saved there (docs/img)
needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool reads the sidecars back")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ASE_ENDPOINT", raising=False)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_model_dir, photos):
    """A daemon on the tiny model, and profile 'tiny' learnt on that model in the daemon's data folder."""
    import torch

    from ase_model.cli import main as ase_mllm

    root = tmp_path_factory.mktemp("viewer-cull")
    data = root / "data"
    rated = root / "rated"
    rated.mkdir()
    for name, im in photos.items():
        small = im.copy()
        small.thumbnail((128, 128))
        for k, gain in enumerate(GAINS):
            path = rated / f"{name}-{k}.jpg"
            ImageEnhance.Brightness(small).enhance(gain).save(path, quality=90)
            write_rating(path, stars_of(name, k), with_exiftool=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("XDG_DATA_HOME", str(data))
        rc = ase_mllm(["learn", "--from-xmp", str(rated), "--profile", "tiny", "--model", str(tiny_model_dir),
                       "--device", "cpu"])
    torch.set_num_threads(before)
    assert rc == 0, err.getvalue()
    d = DaemonProcess(root, tiny_model_dir, "viewcull")
    assert d.env["XDG_DATA_HOME"] == str(data)
    d.data = data
    d.start()
    yield d
    d.stop()


def open_window(qtbot, endpoint, **kw) -> MainWindow:
    w = MainWindow(link=DaemonLink(endpoint, ping_interval=0.5, max_backoff=1.0), **kw)
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    w.activateWindow()
    assert QTest.qWaitForWindowActive(w, 5000)
    return w


# ---- the override keys' sidecar writes, without a window ------------------------------------------------------------
@needs_exiftool
def test_flags_written_as_lightroom_keys_do(tmp_path, photos):
    from ase_daemon.xmp import NAMESPACE_URI as DAEMONS
    from ase_daemon.xmp_cull import CullSidecarOptions, write_cull

    assert NAMESPACE_URI == DAEMONS  # the viewer writes the cull's own keys
    photo = tmp_path / "IMG_1.jpg"
    photos["coffee"].save(photo)
    (tmp_path / "IMG_1.jpg.xmp").write_text(FOREIGN_XMP % "3", encoding="utf-8")
    assert flag(photo, "reject")["rating"] == -1
    tags = exiftool(f"{photo}.xmp")
    assert tags["XMP-xmp:Rating"] == -1 and tags["XMP-asecritic:CullDecision"] == "reject"
    assert tags["XMP-dc:Subject"] == "holiday" and tags["XMP-darktable:History_end"] == 3  # foreign content kept
    assert flag(photo, "unflag") == {"sidecar": f"{photo}.xmp", "decision": "keep", "rating": 3}  # its stars back
    assert exiftool(f"{photo}.xmp")["XMP-xmp:Rating"] == 3
    assert flag(photo, "pick")["rating"] == 3  # the pick keeps its stars...
    assert flag(photo, "pick", pick_rating=5)["rating"] == 5  # ...or is raised, as the cull's --pick-rating
    assert read_flag(photo) == {"decision": "pick", "rating": 5}

    # a reject the cull wrote (its prior rating recorded): U gives the stars back, and the -1 is the user's after X
    other = tmp_path / "IMG_2.jpg"
    photos["chelsea"].save(other)
    (tmp_path / "IMG_2.jpg.xmp").write_text(FOREIGN_XMP % "2", encoding="utf-8")
    write_cull(other, {"path": str(other), "group": 0, "decision": "reject", "reason": "soft on the subject",
                       "rank": 2, "group_size": 2}, CullSidecarOptions(overwrite_rating=True))
    assert exiftool(f"{other}.xmp")["XMP-xmp:Rating"] == -1
    assert flag(other, "unflag")["rating"] == 2
    flag(other, "reject")
    tags = exiftool(f"{other}.xmp")
    assert tags["XMP-xmp:Rating"] == -1 and "XMP-asecritic:CullWroteRating" not in tags  # the user's now
    assert flag(other, "pick")["rating"] == 2
    # no sidecar yet: one is made; unflag of a reject without a prior rating: no stars
    fresh = tmp_path / "IMG_3.jpg"
    photos["rocket"].save(fresh)
    flag(fresh, "reject")
    assert flag(fresh, "unflag")["rating"] == 0
    with pytest.raises(ValueError):
        flag(fresh, "maybe")


# ---- the culling view against the daemon ----------------------------------------------------------------------------
@needs_exiftool
def test_culling_view_groups_pick_reasons_and_override_keys(qtbot, daemon, tmp_path):
    shoot = make_shoot(tmp_path / "shoot")
    w = open_window(qtbot, daemon.ipc)
    assert w.open_paths([shoot]) == 6  # 5 photos and a file that is no JPEG
    qtbot.keyClick(w, Qt.Key.Key_K)
    assert w.cull.active and w.stack.currentWidget() is w.cull.view
    view: CullView = w.cull.view
    qtbot.waitUntil(lambda: w.cull.result is not None, timeout=CULL_MS)
    result = w.cull.result
    decisions = {os.path.basename(d["path"]): d for d in result["decisions"]}
    assert len(decisions) == 5 and "IMG_0200.jpg" not in decisions
    groups = sorted({d["group"] for d in decisions.values()})
    assert len(view.rows) == len(groups) == 2  # the burst and the singleton, one row each
    burst = next(r for r in view.rows if r.count() == 4)
    first = burst.item(0)
    assert "PICK" in first.text() and decisions[os.path.basename(first.data(Qt.ItemDataRole.UserRole + 1))][
        "decision"] == "pick"
    for i in range(burst.count()):  # each frame: its decision and its reason under it
        path = burst.item(i).data(Qt.ItemDataRole.UserRole + 1)
        d = decisions[os.path.basename(path)]
        assert d["reason"] and d["reason"] in burst.item(i).text()
        assert {"pick": "PICK", "keep": "keep", "reject": "REJECT"}[d["decision"]] in burst.item(i).text()
    assert "unreadable" in view.status.text() and "IMG_0200.jpg" in view.status.text()
    if DOCS_IMG:
        QTest.qWait(1500)  # the thumbnails
        w.grab().save(os.path.join(DOCS_IMG, "viewer-cull.png"))

    # the keys on the selected frame: the window's X (compare) is off here, the view's X rejects
    dark = str(shoot / "IMG_0004.jpg")  # the user's 3 stars in its sidecar
    assert view.select(dark)
    qtbot.waitUntil(lambda: w.current == dark, timeout=5000)  # the panel follows the frame selected
    row = view._items[dark].listWidget()
    qtbot.keyClick(row, Qt.Key.Key_X)
    tags = exiftool(dark + ".xmp")
    assert tags["XMP-xmp:Rating"] == -1 and tags["XMP-asecritic:CullDecision"] == "reject"
    assert tags["XMP-dc:Subject"] == "holiday"  # foreign content kept
    assert view.decision(dark) == "reject" and not w.shoot.comparing
    qtbot.keyClick(row, Qt.Key.Key_U)
    tags = exiftool(dark + ".xmp")
    assert tags["XMP-xmp:Rating"] == 3 and tags["XMP-asecritic:CullDecision"] == "keep"
    qtbot.keyClick(row, Qt.Key.Key_P)
    assert exiftool(dark + ".xmp")["XMP-asecritic:CullDecision"] == "pick" and view.decision(dark) == "pick"
    if decisions["IMG_0004.jpg"]["decision"] != "pick":
        assert "(yours)" in view._items[dark].text()
    # the cull's pick rejected by the photographer
    pick = first.data(Qt.ItemDataRole.UserRole + 1)
    assert view.select(pick)
    qtbot.keyClick(burst, Qt.Key.Key_X)
    assert exiftool(pick + ".xmp")["XMP-xmp:Rating"] == -1 and "REJECT (yours)" in first.text()
    # Down moves to the next group's row; Esc goes back to the photo, X compares again
    qtbot.keyClick(burst if view.rows[0] is burst else view.rows[0], Qt.Key.Key_Down)
    qtbot.keyClick(view.rows[-1], Qt.Key.Key_Escape)
    assert not w.cull.active and w.actions["compare"].isEnabled()

    # back in the view: an earlier override read from the sidecar shows as the photographer's
    qtbot.keyClick(w, Qt.Key.Key_K)
    view.rerun_requested.emit()
    qtbot.waitUntil(lambda: not w.cull.run.running, timeout=CULL_MS)
    qtbot.waitUntil(lambda: bool(view.rows), timeout=5000)
    assert view.decision(pick) == "reject"


def test_cull_cancel_reports(qtbot, daemon, tmp_path):
    """Cancel from the view: the daemon stops the job and the view says so (or it finished first)."""
    from ase_model.starter.dataset import source_photos

    folder = tmp_path / "many"
    folder.mkdir()
    src = list(source_photos().values())
    for i in range(16):
        im = src[i % len(src)].convert("RGB")
        im.thumbnail((160, 160))
        im.save(folder / f"IMG_{i:04d}.jpg", quality=85)
    w = open_window(qtbot, daemon.ipc)
    w.open_paths([folder])
    w.cull.enter()
    view = w.cull.view
    assert view.cancel_button.isVisible() or w.cull.result is not None
    qtbot.waitUntil(lambda: w.cull.run._job is not None or w.cull.result is not None, timeout=CULL_MS)
    view.cancel_button.click()
    qtbot.waitUntil(lambda: not w.cull.run.running and not view.cancel_button.isVisible(), timeout=CULL_MS)
    assert "cancelled" in view.status.text().lower() or w.cull.result is not None
    assert not view.cancel_button.isVisible()


# ---- the personal score -------------------------------------------------------------------------------------------
def test_personal_score_in_panel_badges_and_sort(qtbot, daemon, photo_files, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(daemon.data))  # the viewer lists the profiles the daemon has
    folder = photo_files["astronaut"].parent
    n = len(photo_files)
    w = open_window(qtbot, daemon.ipc)
    assert [w.toolbar.profile_box.itemData(i) for i in range(w.toolbar.profile_box.count())] == [None, "tiny"]
    w.open_paths([folder])
    qtbot.waitUntil(lambda: len(w.shoot.results) == n, timeout=CULL_MS)
    assert not any("personal_score" in r for r in w.shoot.results.values())
    assert not w.panel.personal.isVisible()

    w.toolbar.profile_box.setCurrentIndex(1)  # choose "tiny": everything is asked again, with the second score
    assert w.profile == "tiny" and w.link.profile == "tiny"
    qtbot.waitUntil(lambda: len(w.shoot.results) == n and all("personal_score" in r for r in w.shoot.results.values()),
                    timeout=CULL_MS)
    personal = {p: r["personal_score"] for p, r in w.shoot.results.items()}
    model = w.model
    for row, p in enumerate(model.paths):
        assert model.data(model.index(row), ThumbnailModel.PersonalRole) == pytest.approx(personal[p])
        assert model.data(model.index(row), ThumbnailModel.ScoreRole) == pytest.approx(w.shoot.results[p]["score"])
    qtbot.waitUntil(lambda: w.result is not None and "personal_score" in w.result, timeout=CULL_MS)
    assert w.panel.personal.isVisible() and w.panel.personal.text() == f"{w.result['personal_score']:.1f}"
    assert "tiny" in w.panel.personal_caption.text()
    assert "Personal score (tiny)" in w.critique_text()

    w.toolbar.sort_box.setCurrentText("personal")
    assert [personal[p] for p in w.files] == sorted(personal.values(), reverse=True)
    w.toolbar.sort_box.setCurrentText("score")
    assert [w.shoot.results[p]["score"] for p in w.files] == sorted((r["score"] for r in w.shoot.results.values()),
                                                                     reverse=True)
    w.toolbar.profile_box.setCurrentIndex(0)  # none: the generic score only
    assert w.link.profile is None and w.model.personal == {}


def test_profile_option_is_remembered(qtbot, tmp_path, monkeypatch):
    from ase_gui.app import parse_args
    from PySide6.QtCore import QSettings

    assert parse_args(["--profile", "me", "--pick-rating", "4"]).profile == "me"
    settings = QSettings(str(tmp_path / "viewer.conf"), QSettings.Format.IniFormat)
    w = MainWindow(endpoint=f"ipc://{tmp_path}/nobody.sock", settings=settings, profile="me", pick_rating=4)
    qtbot.addWidget(w)
    assert w.link.profile == "me" and w.toolbar.profile_box.currentData() == "me" and w.cull.pick_rating == 4
    w.close()
    again = MainWindow(endpoint=f"ipc://{tmp_path}/nobody.sock", settings=settings)
    qtbot.addWidget(again)
    assert again.link.profile == "me"
    again.close()
