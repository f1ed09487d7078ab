"""`ase-mllm cull` end to end: a shoot built from the package's real source photos, the shipped starter model, the
real store and the real XMP writer, sidecars read back by exiftool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import daemon_env
from PIL import Image, ImageFilter

T0 = 1_700_000_000  # capture times of the burst (file times; the singleton's too)
FOREIGN_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    darktable:xmp_version="5" darktable:history_end="3" xmp:Rating="%s">
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def _exposure(im: Image.Image, stops: float) -> Image.Image:
    lin = (np.asarray(im, dtype=np.float32) / 255.0) ** 2.2 * (2.0 ** stops)
    return Image.fromarray(np.clip(np.clip(lin, 0, 1) ** (1 / 2.2) * 255 + 0.5, 0, 255).astype(np.uint8))


def make_shoot(folder):
    """A burst of four frames of one scene (clean, shifted, blurred, two stops under), a singleton without EXIF,
    and a file that is no photo. The burst's clean frame carries EXIF DateTimeOriginal."""
    from ase_model.starter.dataset import source_photos

    folder.mkdir(parents=True, exist_ok=True)
    src = source_photos()
    coffee = src["coffee"].convert("RGB")
    w, h = coffee.size
    burst = [("IMG_0001.jpg", coffee), ("IMG_0002.jpg", coffee.crop((6, 4, w, h)).resize((w, h))),
             ("IMG_0003.jpg", coffee.filter(ImageFilter.GaussianBlur(4))), ("IMG_0004.jpg", _exposure(coffee, -2))]
    for i, (name, im) in enumerate(burst):
        im.save(folder / name, quality=92)
        os.utime(folder / name, (T0 + 0.4 * i, T0 + 0.4 * i))
    src["chelsea"].convert("RGB").save(folder / "IMG_0100.jpg", quality=92)
    os.utime(folder / "IMG_0100.jpg", (T0 + 300, T0 + 300))
    (folder / "IMG_0200.jpg").write_bytes(b"this is not a JPEG")
    # foreign sidecars: darktable's fields, the user's keyword; the dark frame has the user's 3 stars
    (folder / "IMG_0003.jpg.xmp").write_text(FOREIGN_XMP % "0", encoding="utf-8")
    (folder / "IMG_0004.jpg.xmp").write_text(FOREIGN_XMP % "3", encoding="utf-8")
    return folder


def run_cull(tmp, *args, timeout=900):
    env = daemon_env(tmp)
    r = subprocess.run([sys.executable, "-m", "ase_daemon.mllm_cli", "cull", "--db", str(tmp / "store.db"),
                        "--max-new-tokens", "8", *map(str, args)], env=env, capture_output=True, text=True,
                       timeout=timeout)
    return r


def exiftool(path) -> dict:
    r = subprocess.run(["exiftool", "-j", "-G1", "-a", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


@pytest.fixture(scope="module")
def culled(tmp_path_factory):
    """The shoot culled once with --json --apply: (tmp, shoot, records by file name, the run)."""
    tmp = tmp_path_factory.mktemp("cull")
    shoot = make_shoot(tmp / "shoot")
    r = run_cull(tmp, shoot, "--json", "--apply")
    assert r.returncode == 0, r.stdout + r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    return tmp, shoot, {os.path.basename(d["path"]): d for d in records}, r


def test_json_records_one_per_photo(culled):
    _, shoot, records, r = culled
    assert set(records) == {"IMG_0001.jpg", "IMG_0002.jpg", "IMG_0003.jpg", "IMG_0004.jpg", "IMG_0100.jpg",
                            "IMG_0200.jpg"}
    burst = [records[f"IMG_000{i}.jpg"] for i in range(1, 5)]
    for d in burst + [records["IMG_0100.jpg"]]:
        assert {"path", "group", "decision", "reason"} <= set(d) and d["decision"] in ("pick", "keep", "reject")
        assert d["reason"]
    assert len({d["group"] for d in burst}) == 1 and all(d["group_size"] == 4 for d in burst)
    assert sum(d["decision"] == "pick" for d in burst) == 1
    assert records["IMG_0001.jpg"]["decision"] in ("pick", "keep")  # the clean frames are never rejected
    assert records["IMG_0002.jpg"]["decision"] in ("pick", "keep")
    assert records["IMG_0003.jpg"]["decision"] == "reject" and "soft" in records["IMG_0003.jpg"]["reason"]
    assert records["IMG_0004.jpg"]["decision"] == "reject" and "under" in records["IMG_0004.jpg"]["reason"]
    lone = records["IMG_0100.jpg"]
    assert lone["group"] != burst[0]["group"] and lone["decision"] == "pick" and lone["reason"].startswith("only")


def test_unreadable_file_is_reported_and_the_rest_culled(culled):
    _, _, records, r = culled
    bad = records["IMG_0200.jpg"]
    assert bad["error"]["code"] == "bad_image" and "decision" not in bad
    assert "IMG_0200.jpg" in r.stderr and "5 culled, 1 unreadable" in r.stderr


def test_apply_writes_sidecars_exiftool_reads(culled):
    _, shoot, records, _ = culled
    blurred = exiftool(shoot / "IMG_0003.jpg.xmp")
    assert blurred["XMP-xmp:Rating"] == -1
    assert blurred["XMP-asecritic:CullDecision"] == "reject"
    assert blurred["XMP-asecritic:CullReason"] == records["IMG_0003.jpg"]["reason"]
    assert str(blurred["XMP-asecritic:CullGroup"]) == str(records["IMG_0003.jpg"]["group"])
    pick = next(n for n, d in records.items() if d.get("decision") == "pick" and d["group_size"] == 4)
    assert blurred["XMP-asecritic:CullLeader"] == pick
    # foreign content intact: darktable's fields and the user's keyword
    assert blurred["XMP-darktable:Xmp_version"] == 5 and blurred["XMP-darktable:History_end"] == 3
    assert blurred["XMP-dc:Subject"] == "holiday"
    # the user's own 3 stars on the dark frame are kept (the decision is still written)
    dark = exiftool(shoot / "IMG_0004.jpg.xmp")
    assert dark["XMP-xmp:Rating"] == 3 and dark["XMP-asecritic:CullDecision"] == "reject"
    assert records["IMG_0004.jpg"]["kept_rating"] is True
    assert dark["XMP-dc:Subject"] == "holiday"
    # the pick's rating is untouched (it had none)
    picked = exiftool(shoot / f"{pick}.xmp")
    assert picked["XMP-asecritic:CullDecision"] == "pick" and "XMP-xmp:Rating" not in picked
    assert not (shoot / "IMG_0200.jpg.xmp").exists()


def test_recull_reuses_the_store_and_critiques_only_new_photos(culled, tmp_path):
    tmp, shoot, records, _ = culled
    again = tmp_path / "shoot"
    shutil.copytree(shoot, again)  # new names, same content: the store keys by content
    r = run_cull(tmp, again)
    assert r.returncode == 0, r.stderr
    assert "5 known to the store" in r.stderr and "0 critiqued now" in r.stderr
    assert "group 1: 4 frames" in r.stdout and "REJECT" in r.stdout and "only frame" in r.stdout
    from ase_model.starter.dataset import source_photos

    source_photos()["rocket"].convert("RGB").save(again / "IMG_0300.jpg", quality=90)
    r = run_cull(tmp, again, "--json")
    assert r.returncode == 0, r.stderr
    assert "5 known to the store" in r.stderr and "1 critiqued now" in r.stderr
    assert any(json.loads(line)["path"].endswith("IMG_0300.jpg") for line in r.stdout.splitlines())


def test_empty_folder_one_photo_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cull(tmp_path, tmp_path / "empty")
    assert r.returncode == 0 and "no photos in" in r.stderr and r.stdout == ""
    r = run_cull(tmp_path, tmp_path / "nowhere")
    assert r.returncode == 2 and "no such file or folder" in r.stderr
    one = tmp_path / "one"
    one.mkdir()
    Image.new("RGB", (320, 240), (90, 120, 160)).save(one / "flat.png")
    r = run_cull(tmp_path, one, "--json")
    assert r.returncode == 0, r.stderr
    [d] = [json.loads(line) for line in r.stdout.splitlines()]
    assert d["decision"] == "pick" and d["group_size"] == 1 and "one photo" in r.stderr


# ---- the sidecar writer on its own (no model) -------------------------------------------------------------------
def test_a_recull_that_no_longer_rejects_puts_the_rating_back(tmp_path):
    from ase_daemon.xmp import SidecarOptions, rating_from_score, read_sidecar, write_sidecar
    from ase_daemon.xmp_cull import CullSidecarOptions, read_cull, write_cull

    photo = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48)).save(photo)
    write_sidecar(photo, {"text": "Exposure: fine.", "score": 6.1, "tags": ["aesthetics|exposure|fine"]},
                  SidecarOptions(write_rating=True))
    stars = rating_from_score(6.1)
    assert exiftool(tmp_path / "a.jpg.xmp")["XMP-xmp:Rating"] == stars  # the critic's stars
    d = {"path": str(photo), "group": 2, "decision": "reject", "reason": "motion blur", "rank": 3, "group_size": 3}
    assert write_cull(photo, d)["rating"] == "-1"  # the critic's own rating may be replaced
    assert read_cull(photo)["rating"] == "-1"
    # a re-critique (the watcher) keeps the cull's keys and the reject
    write_sidecar(photo, {"text": "Exposure: fine.", "score": 6.3}, SidecarOptions(write_rating=True))
    got = read_cull(photo)
    assert got["decision"] == "reject" and got["reason"] == "motion blur" and got["rating"] == "-1"
    assert read_sidecar(photo)["score"] == 6.3
    # culled again as a keep: the rating from before the reject comes back
    assert write_cull(photo, {**d, "decision": "keep", "reason": "clean"})["rating"] == str(stars)
    assert exiftool(tmp_path / "a.jpg.xmp")["XMP-xmp:Rating"] == stars
    # a pick raised per option, and back again (to no rating at all)
    other = tmp_path / "b.jpg"
    Image.new("RGB", (64, 48)).save(other)
    assert write_cull(other, {**d, "decision": "pick", "rank": 1}, CullSidecarOptions(pick_rating=5))["rating"] == "5"
    assert exiftool(tmp_path / "b.jpg.xmp")["XMP-xmp:Rating"] == 5
    assert write_cull(other, {**d, "decision": "keep"})["rating"] is None
    assert "XMP-xmp:Rating" not in exiftool(tmp_path / "b.jpg.xmp")


def test_a_link_in_place_of_the_sidecar_is_refused(tmp_path):
    from ase_daemon.xmp import SidecarError
    from ase_daemon.xmp_cull import write_cull

    photo = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48)).save(photo)
    elsewhere = tmp_path / "elsewhere.xmp"
    elsewhere.write_text("keep me")
    (tmp_path / "a.jpg.xmp").symlink_to(elsewhere)
    with pytest.raises(SidecarError):
        write_cull(photo, {"path": str(photo), "group": 0, "decision": "reject", "reason": "x"})
    assert elsewhere.read_text() == "keep me"


def test_raw_and_jpeg_of_one_frame_are_one_frame(tmp_path):
    from imageio_helpers import pidng_dng

    from ase_model.starter.dataset import source_photos

    shoot = tmp_path / "pair"
    shoot.mkdir()
    cat = source_photos()["chelsea"].convert("RGB")
    cat = cat.crop((0, 0, cat.width // 4 * 4, cat.height // 4 * 4))  # the 12-bit packer wants even sides
    pidng_dng(shoot / "IMG_0500.dng", np.asarray(cat))
    cat.save(shoot / "IMG_0500.jpg", quality=90)
    r = run_cull(tmp_path, shoot, "--json")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(os.path.basename(d["path"]) for d in records) == ["IMG_0500.dng", "IMG_0500.jpg"]
    assert {d["group"] for d in records} == {records[0]["group"]} and all(d["group_size"] == 1 for d in records)
    assert {d["decision"] for d in records} == {"pick"} and records[0]["reason"] == records[1]["reason"]
