"""The panel's "cull selection" (issue 19) and the personal critic's preference and "learn from my ratings" button
(issue 20), inside REAL darktable against a REAL daemon (the scripted tiny model, as tests/darktable/test_plugin.py).

Culling: first a cull cancelled at once (nothing applied; the daemon's job, if it got one, cancelled), then a
burst of three frames of one scene (the clean frame, one far under-exposed, one blurred) and a photo of another scene
taken minutes later; after the click darktable's own Lua API must show one group led by the clean frame, the two
defective frames rejected (rating -1), the other photo alone and kept, and the panel the reason.

Learning: 24 photos rated through darktable's Lua API (darktable writes the stars into the sidecars), the button
runs ase-mllm learn on the collection's rated images into the daemon user's data folder (XDG_DATA_HOME in the
test's folder), the figures show in the panel, the profile preference is set, and the next critique carries a
personal score shown next to the score.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from ase_daemon.client import Client
from conftest import DaemonProcess
from PIL import ImageEnhance, ImageFilter
from test_plugin import plugin_conf, pytestmark, read_sidecar, run_darktable

__all__ = ["pytestmark"]  # test_plugin's marks: darktable, and skipped without darktable/xvfb/exiftool


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, scripted_model):
    d = DaemonProcess(tmp_path_factory.mktemp("dt-cull-daemon"), scripted_model, "dtc",
                      extra=["--max-new-tokens", "48"])
    d.start()
    yield d
    d.stop()


def test_cull_selection_groups_the_burst_and_rejects_the_defects(tmp_path, photos, daemon):
    folder = tmp_path / "shoot"
    folder.mkdir()
    scene = photos["astronaut"].copy()
    scene.thumbnail((384, 384))
    frames = {"burst-1.jpg": scene, "burst-2.jpg": ImageEnhance.Brightness(scene).enhance(0.25),
              "burst-3.jpg": scene.filter(ImageFilter.GaussianBlur(4))}
    other = photos["coffee"].copy()
    other.thumbnail((384, 384))
    frames["other.jpg"] = other
    t0 = time.time() - 3600
    files = []
    for k, (name, im) in enumerate(frames.items()):  # no EXIF: the file times are the capture times
        path = folder / name
        im.save(path, quality=92)
        when = t0 + (k if name.startswith("burst") else 600)
        os.utime(path, (when, when))
        files.append(path)
    r = run_darktable(tmp_path, "cull.lua", {"ASE_DT_IMAGES": "\n".join(map(str, files))},
                      plugin_conf(endpoint=daemon.ipc, apply_tags_auto=False))
    assert (r["cancel.status"], r["cancel.applied"]) == ("cancelled", "0")
    with Client(daemon.ipc) as c:  # the daemon may have finished the cancelled cull (a fast machine) or never
        jobs = c.status()["jobs"]    # got it; the panel applied nothing of it either way (above)
    assert 1 <= jobs.get("done", 0) <= 2 and not jobs.get("running") and not jobs.get("queued"), jobs
    assert r["busy_after_click"] == "true"  # the click returned while the cull was still running: not blocking
    got = {name: {k: r[f"img.{name}.{k}"] for k in ("decision", "reason", "rating", "leader", "group_size", "panel")}
           for name in frames}
    assert got["burst-1.jpg"]["decision"] == "pick", got
    assert [got[f"burst-{k}.jpg"]["decision"] for k in (2, 3)] == ["reject", "reject"], got
    for k in (1, 2, 3):  # darktable's grouping: one group of the burst, led by the pick
        assert (got[f"burst-{k}.jpg"]["leader"], got[f"burst-{k}.jpg"]["group_size"]) == ("burst-1.jpg", "3"), got
    assert [got[f"burst-{k}.jpg"]["rating"] for k in (2, 3)] == ["-1", "-1"]  # darktable's rejected flag
    assert got["burst-1.jpg"]["rating"] != "-1"
    assert (got["other.jpg"]["decision"], got["other.jpg"]["leader"], got["other.jpg"]["group_size"]) == (
        "pick", "other.jpg", "1")
    assert got["other.jpg"]["rating"] != "-1"
    assert "under" in got["burst-2.jpg"]["reason"], got
    for name, g in got.items():  # the panel shows the hovered image's decision and reason
        assert g["reason"] and g["reason"] in g["panel"], (name, g)
    assert got["burst-1.jpg"]["panel"].startswith("PICK (#1 of 3): ")
    assert got["burst-2.jpg"]["panel"].startswith("REJECT")
    assert "2 group" not in r["status"] and "2 rejected" in r["status"], r["status"]
    # darktable wrote the rejects into its sidecars (exiftool reads them back)
    assert read_sidecar(folder / "burst-2.jpg")["rating"] == -1
    assert r["json.a"] == "1,-25.0,true,null" and r["json.s"] == 'x"y\né\U0001F600' and r["json.bad"] == "true"


def test_learn_button_makes_a_profile_and_critiques_carry_the_personal_score(tmp_path, photos, daemon,
                                                                             scripted_model):
    folder = tmp_path / "film"
    folder.mkdir()
    lines = []
    for name, im in photos.items():
        small = im.copy()
        small.thumbnail((192, 192))
        for k, gain in enumerate((0.35, 0.7, 1.0, 1.4)):
            path = folder / f"{name}-{k}.jpg"
            ImageEnhance.Brightness(small).enhance(gain).save(path, quality=90)
            lines.append(f"{path}\t{(-1, 2, 4, 5)[k]}\n")  # likes bright frames, rejects the darkest
    ratings = tmp_path / "ratings.tsv"
    ratings.write_text("".join(lines))
    data_home = daemon.env["XDG_DATA_HOME"]  # where the daemon looks for profiles
    r = run_darktable(tmp_path, "learn.lua", {"ASE_DT_RATINGS": str(ratings), "XDG_DATA_HOME": data_home},
                      plugin_conf(endpoint=daemon.ipc, apply_tags_auto=False, learn_model=scripted_model),
                      timeout=300)
    assert r["profile_before"] == "" and r["rated_in_collection"] == str(len(lines))
    assert r["busy_after_click"] == "true"
    assert "learnt from 24 ratings" in r["learn_result"], r["learn_result"]
    assert re.search(r"personal score [-+]\d\.\d{3}\ngeneric score [-+]\d\.\d{3}", r["learn_result"]), r["learn_result"]
    assert r["profile_after"] == "default"
    meta = json.loads((Path(data_home) / "ase-mllm" / "profiles" / "default" / "profile.json").read_text())
    assert meta["n_ratings"] == 24, meta
    score = float(r["personal_score"])
    assert 0.0 <= score <= 10.0
    assert f"personal {score:.1f} / 10" in r["score_label"], r["score_label"]


def test_lines_format_carries_the_personal_score():
    """The plugin's contract (docs/protocol.md): `personal_score` after `score`, only when the result has one."""
    from ase_daemon.contract import format_lines, parse_lines

    result = {"score": 7.2, "personal_score": 4.7931, "text": "t", "tags": [], "attributes": {}, "model": "m"}
    text = format_lines("/p/a.jpg", result)
    assert text.splitlines()[1:3] == ["score\t7.200", "personal_score\t4.793"]
    assert parse_lines(text)[0]["personal_score"] == 4.793
    assert "personal_score" not in format_lines("/p/a.jpg", {**result, "personal_score": None})
