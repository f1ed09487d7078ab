"""The darktable plugin (plugin_darktable/ase_critic.lua) inside REAL darktable, against a REAL daemon.

Each test installs the plugin with plugin_darktable/install_plugin.py into a throw-away config dir, starts
darktable under Xvfb (`--library :memory:`, `-d lua`, always under `timeout`) with a driver script
(tests/darktable/drivers/*.lua) that imports photos, clicks the panel's buttons or calls the module's functions
in a background Lua thread, writes what it saw to a result file and quits. The assertions are made here, plus:
no `LUA ERROR` in the log, and the XMP sidecars darktable wrote carry our tags/rating/description (read back
with exiftool, an independent reader).

The daemon runs a tiny real model trained to say one tagged critique (tests/darktable/scripted_model.py):
the session's random tiny model writes gibberish without tags.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import dt_runner
import pytest
from conftest import DaemonProcess

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVERS = HERE / "drivers"
INSTALLER = REPO / "plugin_darktable" / "install_plugin.py"
CLIENT = Path(sys.executable).with_name("ase-client")
DT_TIMEOUT = 150  # seconds for one darktable run, start to quit

TEXT = "Exposure: The photo is underexposed.\nFocus: The image is sharp."
TAGS = ["exposure|underexposed", "focus|sharp"]  # what the daemon's tag matcher finds in TEXT, minus the root
SCORE = 7.2

_missing = [name for name in ("darktable", "xvfb-run", "exiftool") if shutil.which(name) is None]
pytestmark = [
    pytest.mark.darktable,
    pytest.mark.skipif(bool(_missing), reason=f"not installed: {', '.join(_missing)} "
                       "(apt-get install darktable xvfb xauth libimage-exiftool-perl; ./install.sh --test does it)"),
]


# ---- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, scripted_model):
    d = DaemonProcess(tmp_path_factory.mktemp("dt-daemon"), scripted_model, "dt", extra=["--max-new-tokens", "48"])
    d.start()
    yield d
    d.stop()


def expected_rating() -> int:
    from ase_daemon.xmp import rating_from_score

    return rating_from_score(SCORE)


# ---- helpers -------------------------------------------------------------------------------------------------
def save_photos(photos, folder: Path, names: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, filename in names.items():
        path = folder / filename
        photos[key].save(path, quality=90)
        paths.append(path)
    return paths


def install_plugin(cfg: Path) -> None:
    subprocess.run([sys.executable, str(INSTALLER), "--configdir", str(cfg), "--client", str(CLIENT)],
                   check=True, capture_output=True, text=True, timeout=60)


def run_darktable(work: Path, driver: str, env: dict, conf: dict, timeout: int = DT_TIMEOUT) -> dict:
    """darktable with the plugin and `driver` (tests/darktable/drivers); returns the driver's report."""
    cfg = work / "cfg"
    install_plugin(cfg)
    harness_env = {"ASE_DT_HARNESS": str(DRIVERS / "harness.lua"), **env}
    return dt_runner.run_darktable(work, cfg, DRIVERS / driver, harness_env, conf, timeout)[0]


def plugin_conf(**prefs) -> dict:
    out = {"ui_last/import_initial_rating": "1"}
    for key, value in prefs.items():
        if isinstance(value, bool):
            value = "TRUE" if value else "FALSE"
        out[f"lua/ase_critic/{key}"] = str(value)
    return out


def read_sidecar(image: Path) -> dict:
    xmp = image.with_name(image.name + ".xmp")
    assert xmp.exists(), f"darktable wrote no sidecar for {image}"
    out = subprocess.run(["exiftool", "-j", "-XMP-lr:HierarchicalSubject", "-XMP-dc:Subject",
                          "-XMP-dc:Description", "-XMP-xmp:Rating", str(xmp)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    data = json.loads(out)[0]

    def as_list(v):
        return [] if v is None else [str(x) for x in (v if isinstance(v, list) else [v])]

    return {"hierarchical": as_list(data.get("HierarchicalSubject")), "subject": as_list(data.get("Subject")),
            "description": data.get("Description"), "rating": data.get("Rating")}


# ---- tests ---------------------------------------------------------------------------------------------------
def test_critique_selection_and_buttons(tmp_path, photos, daemon):
    root = "photo critic"
    files = save_photos(photos, tmp_path / "photos", {"astronaut": "it's a test.jpg", "coffee": "coffee $(x).jpg"})
    viewer_args = tmp_path / "viewer-args.txt"
    viewer = tmp_path / "fake viewer"
    viewer.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{viewer_args}"\n')
    viewer.chmod(0o755)
    r = run_darktable(
        tmp_path, "critique.lua",
        {"ASE_DT_IMAGES": "\n".join(map(str, files)), "ASE_DT_TAG_ROOT": root, "ASE_DT_VIEWER_ARGS": str(viewer_args)},
        plugin_conf(endpoint=daemon.ipc, tag_root=root, viewer_cmd=viewer, apply_tags_auto=False,
                    write_description_auto=False, set_rating_auto=False),
    )
    rating = expected_rating()
    want_tags = ";".join(sorted(f"{root}|{t}" for t in TAGS))
    assert r["lib"] == "true"
    # the click returned at once and the work went on in the background
    assert int(r["click_returned_s"]) <= 1 and r["busy_after_click"] == "true"
    assert r["text_view"] == TEXT  # the critique of the selected image, newlines unescaped
    assert r["score_label"].startswith(f"score {SCORE:.1f} / 10")
    assert "exposure: The photo is underexposed." in r["attributes_label"]
    assert r["tags_label"].splitlines() == sorted(f"{root}|{t}" for t in TAGS)
    assert "2 image(s) critiqued" in r["status"]
    for i in (1, 2):
        # critiqued, nothing applied yet (the *_auto preferences are off)
        assert r[f"before{i}.critiqued"] == "true" and r[f"before{i}.text"] == TEXT
        assert float(r[f"before{i}.score"]) == pytest.approx(SCORE, abs=0.01)
        assert r[f"before{i}.saliency_exists"] == "true"
        assert r[f"before{i}.tags"] == "" and r[f"before{i}.description"] == "" and r[f"before{i}.rating"] == "1"
        # the buttons
        assert r[f"after{i}.tags"] == want_tags
        assert r[f"after{i}.description"] == TEXT
        assert r[f"after{i}.rating"] == str(rating)
    assert r["recritique.tags"] == want_tags
    # import overlay: the saliency map beside the photo, grouped with it
    overlay = Path(r["overlay.file"])
    assert r["group_size"] == "2" and overlay == files[0].with_name(files[0].name + ".saliency.png")
    assert overlay.exists()
    # show saliency: ase-viewer (here a fake) got the image path as one argument
    assert r["viewer_ran"] == "true"
    assert viewer_args.read_text().splitlines()[-1] == str(files[0])
    # the line parser
    assert r["parse.n"] == "3" and r["parse.garbage"] == "1"
    assert r["parse.1.image"] == "/x/a\tb.jpg" and r["parse.1.text"] == "line one\nline two \\ done"
    assert r["parse.1.rating"] == "5" and r["parse.1.cached"] == "true"
    assert r["parse.2.error"] == "not_found|/x/c.jpg: no such file"
    assert r["parse.3.error"] == "bad_output"
    assert r["reroot"] == "critic|ase|exposure|underexposed"
    from ase_daemon.xmp import rating_from_score

    scores = [0, 1.999, 1.9951, 2, 5.5, 7.999, 8, 10, 11, -1]
    assert r["ratings"] == ",".join(str(rating_from_score(s)) for s in scores)
    # script_manager's hooks
    assert (r["destroyed.visible"], r["restarted.visible"], r["destroy_method"]) == ("false", "true", "hide")
    # the sidecars darktable wrote
    for f in files:
        x = read_sidecar(f)
        assert sorted(x["hierarchical"]) == sorted(f"{root}|{t}" for t in TAGS)
        assert {root, "exposure", "underexposed", "focus", "sharp"} <= set(x["subject"])
        assert x["description"] == TEXT
        assert x["rating"] == rating


def test_auto_mode_tags_every_imported_photo(tmp_path, photos, daemon):
    folder = tmp_path / "import"
    files = save_photos(photos, folder, {k: f"{k}.jpg" for k in photos})
    r = run_darktable(
        tmp_path, "auto.lua",
        {"ASE_DT_FOLDER": str(folder), "ASE_DT_COUNT": str(len(files)), "ASE_DT_TAG_ROOT": "aesthetics"},
        plugin_conf(endpoint=daemon.ipc, auto_on_import=True, apply_tags_auto=True, set_rating_auto=True,
                    write_description_auto=True),
    )
    assert r["imported"] == str(len(files))
    assert r["all_critiqued"] == "true"
    want_tags = ";".join(sorted(f"aesthetics|{t}" for t in TAGS))
    seen = set()
    for i in range(1, len(files) + 1):
        assert r[f"img{i}.tags"] == want_tags, r
        assert r[f"img{i}.rating"] == str(expected_rating())
        assert r[f"img{i}.description"] == TEXT
        seen.add(Path(r[f"img{i}.file"]).name)
    assert seen == {f.name for f in files}
    for f in files:
        x = read_sidecar(f)
        assert sorted(x["hierarchical"]) == sorted(f"aesthetics|{t}" for t in TAGS)
        assert x["rating"] == expected_rating()


def test_failures_give_a_message_and_apply_nothing(tmp_path, photos):
    (image,) = save_photos(photos, tmp_path / "photos", {"chelsea": "chelsea.jpg"})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def script(name: str, body: str) -> Path:
        p = bin_dir / name
        p.write_text("#!/bin/sh\n" + body + "\n")
        p.chmod(0o755)
        return p

    garbage = script("garbage-client", "echo 'Traceback (most recent call last):'; echo 'oops'; exit 0")
    badblock = script("badblock-client",  # a block with no usable score for the last argument (the image)
                      "for last; do :; done\nprintf 'image\\t%s\\nscore\\tNaN?\\nrating\\t9\\nend\\n' \"$last\"")
    slow = script("slow-client", "exec sleep 60")
    # a TCP port that accepts connections and never answers: the client must give up after its timeout
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        r = run_darktable(
            tmp_path, "failures.lua",
            {"ASE_DT_IMAGE": str(image), "ASE_DT_TAG_ROOT": "aesthetics",
             "ASE_DT_DOWN_ENDPOINT": f"ipc://{tmp_path}/no-daemon.sock",
             "ASE_DT_SILENT_ENDPOINT": f"tcp://127.0.0.1:{silent.getsockname()[1]}",
             "ASE_DT_MISSING_CLIENT": str(tmp_path / "no such dir" / "ase-client"),
             "ASE_DT_GARBAGE_CLIENT": str(garbage), "ASE_DT_BADBLOCK_CLIENT": str(badblock),
             "ASE_DT_SLOW_CLIENT": str(slow)},
            plugin_conf(timeout_s=2, apply_tags_auto=True, write_description_auto=True, set_rating_auto=True),
        )
    finally:
        silent.close()
    for case in ("down", "silent", "missing", "garbage", "badblock"):
        assert r[f"{case}.results"] == "0" and r[f"{case}.failures"] == "1", (case, r)
        assert "critique failed" in r[f"{case}.text_view"], (case, r)
        assert int(r[f"{case}.seconds"]) <= 15, (case, r)
    assert "daemon is not available" in r["down.message"] and "no-daemon.sock" in r["down.message"]
    assert "daemon is not available" in r["down.status"]
    assert "daemon is not available" in r["silent.message"]
    assert "ase-client not found" in r["missing.message"]
    assert "unexpected output" in r["garbage.message"]
    assert r["badblock.message"] == ""  # the run was fine; the one image's block was not
    assert "no score" in r["badblock.text_view"]
    assert int(r["gui_responsive_s"]) <= 2  # the GUI thread answered while ase-client ran
    assert r["cancel.finished"] == "true" and int(r["cancel.seconds"]) <= 5
    assert r["cancel.message"] == "cancelled"
    # nothing was applied
    assert r["image.critiqued"] == "false"
    assert r["image.tags"] == "" and r["image.description"] == "" and r["image.rating"] == "1"
    x = read_sidecar(image)
    assert x["hierarchical"] == [] and not x["description"] and x["rating"] == 1
