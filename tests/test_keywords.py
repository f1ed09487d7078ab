"""Keyword hygiene in sidecars: our tags in the hierarchical list under the root, the flat list (dc:subject) left to
the photographer unless a folder asks for readable leaves, old sidecars cleaned, and the watcher's switches set by
`ase-client watch add` and shown by `watch list`. Sidecars are read back with exiftool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase_daemon.keywords import READABLE_LEAVES, flat_keywords, rooted
from ase_daemon.xmp import SidecarOptions, write_sidecar
from conftest import DaemonProcess, daemon_env
from PIL import Image

from ase_model.tags import load_vocabulary

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed "
                                    "(apt-get install libimage-exiftool-perl); it is the independent reader")
RESULT = {"text": "Too dark.", "score": 6.9, "model": "m@1",
          "tags": ["aesthetics|exposure|underexposed", "aesthetics|noise|clean", "aesthetics|contrast|balanced",
                   "aesthetics|color|natural", "aesthetics|focus|sharp", "lighting|golden hour"]}

# A sidecar as the version before keyword hygiene wrote it: every part of every tag in dc:subject, recorded as ours.
OLD_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/" xmlns:asecritic="https://github.com/ase-mllm/ns/critic/1.0/">
   <dc:subject><rdf:Bag><rdf:li>family</rdf:li><rdf:li>aesthetics</rdf:li><rdf:li>exposure</rdf:li>
    <rdf:li>underexposed</rdf:li><rdf:li>noise</rdf:li><rdf:li>clean</rdf:li><rdf:li>color</rdf:li></rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>family</rdf:li><rdf:li>places|color</rdf:li>
    <rdf:li>aesthetics|exposure|underexposed</rdf:li><rdf:li>aesthetics|noise|clean</rdf:li></rdf:Bag>
   </lr:hierarchicalSubject>
   <asecritic:AddedTags><rdf:Seq><rdf:li>aesthetics|exposure|underexposed</rdf:li>
    <rdf:li>aesthetics|noise|clean</rdf:li></rdf:Seq></asecritic:AddedTags>
   <asecritic:AddedKeywords><rdf:Seq><rdf:li>aesthetics</rdf:li><rdf:li>exposure</rdf:li><rdf:li>underexposed</rdf:li>
    <rdf:li>noise</rdf:li><rdf:li>clean</rdf:li><rdf:li>color</rdf:li></rdf:Seq></asecritic:AddedKeywords>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def exiftool(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", "-a", str(path)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return json.loads(out)[0]


def as_list(v) -> list[str]:
    return [] if v is None else [str(x) for x in (v if isinstance(v, list) else [v])]


def test_readable_leaves_come_from_the_vocabulary_and_leave_out_the_clutter():
    vocab = set(load_vocabulary())
    assert READABLE_LEAVES <= vocab, sorted(READABLE_LEAVES - vocab)
    leaves = {t.split("|")[-1] for t in READABLE_LEAVES}
    assert not leaves & {"clean", "balanced", "natural", "sharp", "color", "soft", "flat", "competent"}
    assert {"underexposed", "golden hour", "long exposure", "bokeh", "rule of thirds"} <= leaves
    assert flat_keywords(RESULT["tags"], "aesthetics") == ["underexposed", "golden hour"]
    assert rooted("exposure|dark", "aesthetics") == "aesthetics|exposure|dark"
    assert rooted("aesthetics|x", "aesthetics|") == "aesthetics|x" and rooted("x|y", "") == "x|y"


@needs_exiftool
def test_default_sidecar_has_no_flat_keywords_and_tags_under_the_root(tmp_path):
    side = write_sidecar(tmp_path / "a.jpg", RESULT)
    et = exiftool(side)
    assert "XMP-dc:Subject" not in et  # the photographer's flat list is theirs
    hier = as_list(et["XMP-lr:HierarchicalSubject"])
    assert hier == [*RESULT["tags"][:5], "aesthetics|lighting|golden hour"]  # a tag without the root gains it
    assert all(t.startswith("aesthetics|") for t in hier)


@needs_exiftool
def test_flat_keywords_option_writes_only_readable_leaves(tmp_path):
    side = write_sidecar(tmp_path / "a.jpg", RESULT, SidecarOptions(flat_keywords=True))
    assert as_list(exiftool(side)["XMP-dc:Subject"]) == ["underexposed", "golden hour"]
    # the next critique's leaves replace ours; switching the option off takes ours back out
    write_sidecar(tmp_path / "a.jpg", dict(RESULT, tags=["aesthetics|technique|long exposure"]),
                  SidecarOptions(flat_keywords=True))
    assert as_list(exiftool(side)["XMP-dc:Subject"]) == ["long exposure"]
    write_sidecar(tmp_path / "a.jpg", RESULT)
    assert "XMP-dc:Subject" not in exiftool(side)


@needs_exiftool
@pytest.mark.parametrize("flat", [False, True])
def test_an_old_sidecars_keyword_clutter_is_cleaned_and_the_users_kept(tmp_path, flat):
    img = tmp_path / "old.jpg"
    side = tmp_path / "old.jpg.xmp"
    side.write_text(OLD_SIDECAR, encoding="utf-8")
    write_sidecar(img, dict(RESULT, tags=RESULT["tags"][:2]), SidecarOptions(flat_keywords=flat))
    et = exiftool(side)
    # "family" was the user's; "color" was recorded as ours but the user's own places|color holds it: kept
    assert as_list(et["XMP-dc:Subject"]) == (["family", "underexposed", "color"] if flat else ["family", "color"])
    assert as_list(et["XMP-lr:HierarchicalSubject"]) == ["family", "places|color", *RESULT["tags"][:2]]


def ase_client(*args, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "ase_daemon.client_cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


@needs_exiftool
def test_watch_add_sets_rating_description_and_keyword_switches_and_list_shows_them(tmp_path, tiny_model_dir):
    root = tmp_path / "d"
    d = DaemonProcess(root, tiny_model_dir, "kw", config="[watch]\nsettle_s = 0.3\npoll_interval_s = 0.3\n").start()
    env = daemon_env(root)
    shoot, plain = tmp_path / "shoot", tmp_path / "plain"
    shoot.mkdir()
    plain.mkdir()
    try:
        r = ase_client("--endpoint", d.ipc, "watch", "add", shoot, "--rating", "--description", "--flat-keywords",
                       "--polling", env=env)
        assert r.returncode == 0, r.stderr
        assert "writes tags+description+rating+flat keywords" in r.stdout
        assert ase_client("--endpoint", d.ipc, "watch", "add", plain, env=env).returncode == 0
        listed = ase_client("--endpoint", d.ipc, "watch", "list", env=env).stdout
        lines = listed.splitlines()
        shoot_at = next(i for i, line in enumerate(lines) if str(shoot) in line)
        plain_at = next(i for i, line in enumerate(lines) if str(plain) in line)
        assert lines[shoot_at + 1].strip() == "writes tags+description+rating+flat keywords"
        assert lines[plain_at + 1].strip() == "writes tags"  # the defaults: no rating, no description, no flat list
        folders = json.loads(ase_client("--endpoint", d.ipc, "watch", "list", "--json", env=env).stdout)["folders"]
        by_path = {f["path"]: f for f in folders}
        assert by_path[str(shoot)]["write_rating"] and by_path[str(shoot)]["flat_keywords"]
        assert not by_path[str(plain)]["write_rating"] and not by_path[str(plain)]["flat_keywords"]
        rng = np.random.default_rng(1)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(shoot / "p.jpg", quality=90)
        side = shoot / "p.jpg.xmp"
        deadline = time.monotonic() + 90
        while not side.exists():
            assert time.monotonic() < deadline, "no sidecar"
            time.sleep(0.2)
        time.sleep(0.3)
        et = exiftool(side)
        assert 1 <= et["XMP-xmp:Rating"] <= 5 and et["XMP-dc:Description"]
        hier = as_list(et.get("XMP-lr:HierarchicalSubject"))
        assert all(t.startswith("aesthetics|") for t in hier)
        assert set(as_list(et.get("XMP-dc:Subject"))) <= {t.split("|")[-1] for t in READABLE_LEAVES}
    finally:
        d.stop()
