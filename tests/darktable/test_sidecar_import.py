"""A sidecar written by the folder watcher, read by independent readers: exiftool, and REAL darktable importing the
photo (darktable reads `IMG.jpg.xmp` when it imports `IMG.jpg`).

The chain is the real one: a daemon watching a folder (`ase-daemon --watch`), a photo dropped in, the sidecar the
watcher wrote. The photo and its sidecar are then copied into a fresh folder and imported by darktable under Xvfb
(`--library :memory:`), whose Lua reports the tags, description and rating it sees. The daemon runs the tiny model
trained to say one tagged critique (scripted_model.py): the random tiny model writes text without tags.

No plugin involved: a driver written into the test's folder, run by dt_runner (under `timeout`, one retry when
darktable 4.2 hangs before running any Lua).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import dt_runner
import pytest
from conftest import DaemonProcess

HERE = Path(__file__).resolve().parent
TEXT = "Exposure: The photo is underexposed.\nFocus: The image is sharp."
SCORE = 7.2
TAGS = ["aesthetics|exposure|underexposed", "aesthetics|focus|sharp"]
DT_TIMEOUT = 120

_missing = [name for name in ("darktable", "xvfb-run", "exiftool") if shutil.which(name) is None]
pytestmark = [
    pytest.mark.darktable,
    pytest.mark.skipif(bool(_missing), reason=f"not installed: {', '.join(_missing)} "
                       "(apt-get install darktable xvfb xauth libimage-exiftool-perl)"),
]

DRIVER = r"""
local dt = require "darktable"
local out = assert(io.open(os.getenv("ASE_DT_RESULT"), "w"))
local started = assert(io.open(os.getenv("ASE_DT_RESULT") .. ".started", "w"))
started:write("started\n")
started:close()
local function report(k, v)
  out:write(k, "\t", (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub("\t", "\\t")), "\n")
  out:flush()
end
dt.control.dispatch(function()
  local ok, err = pcall(function()
    local img = dt.database.import(os.getenv("ASE_DT_IMAGE"))
    report("imported", img ~= nil)
    local names = {}
    for _, t in ipairs(dt.tags.get_tags(img)) do table.insert(names, t.name) end
    table.sort(names)
    report("tags", table.concat(names, ";"))
    report("description", img.description or "")
    report("rating", img.rating)
  end)
  report("driver", ok and "PASS" or ("FAIL " .. tostring(err)))
  out:close()
  dt.control.sleep(200)
  dt.gui.action("global/quit", 0, "", "", 1.0)
end)
"""


def run_darktable(work: Path, image: Path) -> dict:
    cfg = work / "cfg"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "luarc").write_text("")  # no plugin: darktable only runs the driver
    driver = work / "driver.lua"
    driver.write_text(DRIVER)
    return dt_runner.run_darktable(work, cfg, driver, {"ASE_DT_IMAGE": str(image)}, timeout=DT_TIMEOUT)[0]


def test_darktable_imports_a_watched_photos_sidecar(tmp_path, photos, scripted_model):
    from ase_daemon.xmp import rating_from_score, read_sidecar, sidecar_path

    watched = tmp_path / "watched"
    watched.mkdir()
    d = DaemonProcess(tmp_path / "daemon", scripted_model, "dt", ["--max-new-tokens", "48", "--watch", str(watched)],
                      config="[watch]\nsettle_s = 0.3\nwrite_description = true\nwrite_rating = true\n")
    d.start()
    try:
        photos["astronaut"].save(watched / "astronaut.jpg", quality=90)
        deadline = time.monotonic() + 60
        with d.client(timeout=30) as c:
            while c.status()["watch"]["done"] < 1:
                assert time.monotonic() < deadline, c.status()["watch"]
                time.sleep(0.1)
    finally:
        assert d.stop() == 0
    ours = read_sidecar(watched / "astronaut.jpg")
    assert ours["text"] == TEXT and ours["score"] == pytest.approx(SCORE, abs=0.01)
    assert sorted(ours["tags"]) == TAGS

    # exiftool: our namespace and the standard keys
    side = sidecar_path(watched / "astronaut.jpg")
    x = json.loads(subprocess.run(["exiftool", "-j", "-G1", "-a", str(side)], capture_output=True, text=True,
                                  check=True, timeout=60).stdout)[0]
    assert float(x["XMP-asecritic:Score"]) == pytest.approx(SCORE, abs=0.01)
    assert x["XMP-asecritic:Critique"] == TEXT
    assert sorted(x["XMP-lr:HierarchicalSubject"]) == TAGS
    assert "XMP-dc:Subject" not in x  # no flat keywords by default (docs/watcher.md): darktable reads the tags above
    assert x["XMP-dc:Description"] == TEXT
    assert x["XMP-xmp:Rating"] == rating_from_score(SCORE)

    # darktable imports the photo with its sidecar from a fresh folder
    library = tmp_path / "library"
    library.mkdir()
    shutil.copy(watched / "astronaut.jpg", library / "astronaut.jpg")
    shutil.copy(side, library / "astronaut.jpg.xmp")
    report = run_darktable(tmp_path / "dt", library / "astronaut.jpg")
    assert report["imported"] == "true"
    tags = report["tags"].split(";")
    assert set(TAGS) <= set(tags), tags
    assert report["description"] == TEXT
    assert report["rating"] == str(rating_from_score(SCORE))
