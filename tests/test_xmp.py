"""XMP sidecars (daemon/xmp.py), checked with exiftool as the independent reader.

exiftool checks are skipped (with the reason) only where exiftool is not installed; CI installs
libimage-exiftool-perl. The raw packet's array types (rdf:Bag) are checked with ElementTree.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import threading
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

import pytest
from ase_daemon import xmp
from ase_daemon.xmp import (
    NAMESPACE_URI,
    SidecarError,
    SidecarOptions,
    rating_from_score,
    read_sidecar,
    remove_stale_temp_files,
    sidecar_path,
    write_sidecar,
)

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed "
                                    "(apt-get install libimage-exiftool-perl); it is the independent reader")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

NS = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "dc": "http://purl.org/dc/elements/1.1/",
      "lr": "http://ns.adobe.com/lightroom/1.0/", "asecritic": NAMESPACE_URI}

# A sidecar as darktable 4.x writes it, plus a foreign namespace (with a struct) another tool added.
DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:foo="http://example.com/ns/foo/1.0/"
   exif:DateTimeOriginal="2023:01:15 10:20:30.000"
   exif:GPSLatitude="48,51.400000N"
   exif:GPSLongitude="2,21.050000E"
   xmp:Rating="RATING"
   xmpMM:DerivedFrom="IMG_0001.JPG"
   darktable:import_timestamp="63810884430000000"
   darktable:change_timestamp="-1"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="2"
   darktable:iop_order_version="4"
   foo:Note="keep me — ünïcode">
   <darktable:masks_history>
    <rdf:Seq/>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="0000000000000000000080bf"
      darktable:multi_name=""
      darktable:multi_priority="0"/>
     <rdf:li
      darktable:num="1"
      darktable:operation="colorbalancergb"
      darktable:enabled="1"
      darktable:modversion="5"
      darktable:params="gz02eJxjYIAAAAAUAAE="
      darktable:multi_name=""
      darktable:multi_priority="0"/>
    </rdf:Seq>
   </darktable:history>
   <foo:Info>
    <rdf:Description foo:Camera="X100V" foo:Frames="36"/>
   </foo:Info>
   <dc:description>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">my own words</rdf:li>
    </rdf:Alt>
   </dc:description>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>family</rdf:li>
     <rdf:li>Ürlaub</rdf:li>
     <rdf:li>beach</rdf:li>
     <rdf:li>aesthetics</rdf:li>
     <rdf:li>mine</rdf:li>
     <rdf:li>exposure</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>family</rdf:li>
     <rdf:li>Ürlaub|beach</rdf:li>
     <rdf:li>aesthetics|mine</rdf:li>
     <rdf:li>exposure</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

RESULT = {
    "text": "Composition: strong diagonal.\nExposure: a little dark — lift the shadows. 日本語 ✓ 📷",
    "attributes": {"composition": "strong diagonal", "exposure": "a little dark", "color_lighting": "warm évening"},
    "score": 6.4,
    "tags": ["aesthetics|exposure|underexposed", "aesthetics|composition|diagonal"],
    "model": "ase-mllm-7b@sha256:0123abcd",
    "saliency": {"centroid": [0.512, 0.43], "peak": [0.6, 0.25], "spread": 0.1875},
    "created": "2024-05-01T12:34:56+00:00",
}

# Keys outside our namespace and the four standard ones we may touch: must survive exactly.
FOREIGN = ["XMP-exif:DateTimeOriginal", "XMP-exif:GPSLatitude", "XMP-exif:GPSLongitude", "XMP-xmpMM:DerivedFrom",
           "XMP-darktable:Import_timestamp", "XMP-darktable:Xmp_version", "XMP-darktable:History_end",
           "XMP-darktable:History", "XMP-darktable:Iop_order_version", "XMP-foo:Note", "XMP-foo:Info"]


def exiftool(path: Path) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-struct", "-n", str(path)], capture_output=True, check=True,
                         timeout=60)
    return json.loads(out.stdout)[0]


def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def array_type(path: Path, prop: str) -> str | None:
    """rdf:Bag / rdf:Seq of an array property in the raw packet (ElementTree, not exiv2)."""
    el = ET.parse(path).getroot().find(f".//{prop}", NS)
    if el is None:
        return None
    return next(iter(el)).tag.split("}")[1]


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def dt_photo(folder: Path, rating: str = "0") -> tuple[Path, Path]:
    img = folder / "IMG_0001.JPG"
    img.write_bytes(b"\xff\xd8\xff\xd9")
    side = sidecar_path(img)
    side.write_text(DARKTABLE_SIDECAR.replace("RATING", rating), encoding="utf-8")
    return img, side


# ------------------------------------------------------------------------------------- basics


def test_sidecar_path_is_darktable_naming(tmp_path):
    assert sidecar_path(tmp_path / "IMG_0001.JPG") == tmp_path / "IMG_0001.JPG.xmp"
    assert sidecar_path("a/b.c.nef").name == "b.c.nef.xmp"


@pytest.mark.parametrize("score,stars", [(0, 1), (1.99, 1), (1.999, 2), (2, 2), (3.99, 2), (4, 3), (5.5, 3),
                                         (6, 4), (7.99, 4), (8, 5), (10, 5), (-3, 1), (12, 5)])
def test_rating_mapping_table(score, stars):
    # 1.999 is stored as "2.00": the stars follow the stored score.
    assert rating_from_score(score) == stars


def test_rating_never_unrated_or_rejected():
    assert {rating_from_score(s / 100) for s in range(0, 1001)} == {1, 2, 3, 4, 5}
    with pytest.raises(ValueError):
        rating_from_score(float("nan"))


@needs_exiftool
def test_fresh_sidecar_exiftool_reads_everything(tmp_path):
    img = tmp_path / "IMG_0002.JPG"
    img.write_bytes(b"\xff\xd8\xff\xd9")
    side = write_sidecar(img, dict(RESULT, score=7.5))
    assert side == tmp_path / "IMG_0002.JPG.xmp"
    et = exiftool(side)
    assert et["XMP-asecritic:Critique"] == RESULT["text"]
    assert et["XMP-asecritic:Composition"] == "strong diagonal"
    assert et["XMP-asecritic:Exposure"] == "a little dark"
    assert et["XMP-asecritic:ColorLighting"] == "warm évening"
    assert et["XMP-asecritic:Model"] == RESULT["model"]
    # exiftool shows anything date-like in EXIF style; the packet holds the ISO string.
    assert et["XMP-asecritic:Date"].replace(":", "-", 2).replace(" ", "T") == RESULT["created"]
    assert as_list(et["XMP-asecritic:Tags"]) == RESULT["tags"]
    assert et["XMP-asecritic:SaliencyCentroidX"] == pytest.approx(0.512)
    assert et["XMP-asecritic:SaliencyCentroidY"] == pytest.approx(0.43)
    assert et["XMP-asecritic:SaliencyPeakY"] == pytest.approx(0.25)
    assert et["XMP-asecritic:SaliencySpread"] == pytest.approx(0.1875)
    # Score: a string with two decimals in the packet.
    score_attr = ET.parse(side).getroot().find(".//rdf:Description", NS).get(f"{{{NAMESPACE_URI}}}Score")
    assert score_attr == "7.50"
    # Default options: hierarchical tags yes; flat keywords, description and rating no (tests/test_keywords.py).
    assert as_list(et["XMP-lr:HierarchicalSubject"]) == RESULT["tags"]
    assert "XMP-dc:Subject" not in et
    assert "XMP-dc:Description" not in et and "XMP-xmp:Rating" not in et
    assert array_type(side, "lr:hierarchicalSubject") == "Bag"
    assert temp_files(tmp_path) == []


@needs_exiftool
def test_fresh_sidecar_description_and_rating_when_enabled(tmp_path):
    img = tmp_path / "a.jpg"
    side = write_sidecar(img, RESULT, SidecarOptions(write_description=True, write_rating=True))
    et = exiftool(side)
    assert et["XMP-dc:Description"] == RESULT["text"]
    assert et["XMP-xmp:Rating"] == 4  # 6.4 -> [6, 8) -> 4 stars


def test_read_sidecar_round_trip(tmp_path):
    side = write_sidecar(tmp_path / "a.jpg", RESULT)
    back = read_sidecar(side)
    assert read_sidecar(tmp_path / "a.jpg") == back  # the image path works too
    assert back["text"] == RESULT["text"]
    assert back["attributes"] == RESULT["attributes"]
    assert back["score"] == 6.4 and back["model"] == RESULT["model"] and back["created"] == RESULT["created"]
    assert back["tags"] == RESULT["tags"]
    assert back["saliency"] == {"centroid": pytest.approx([0.512, 0.43]), "peak": pytest.approx([0.6, 0.25]),
                                "spread": pytest.approx(0.1875)}


@needs_exiftool
def test_non_ascii_newlines_and_odd_text_survive(tmp_path):
    text = ("type=Bag is not a marker here\r\nÉté à Zürich — 東京の夜景 🌃🎞️\n\n\tindented line\n"
            "lang=\"de\" neither  ")
    attrs = {"composition": "type=Struct\nzweite Zeile ✓", "focus": "焦点 👍"}
    tags = ["aesthetics|lumière|contre-jour", "aesthetics|構図|日の丸", "aesthetics|mood|😀"]
    side = write_sidecar(tmp_path / "photo été.jpg", dict(RESULT, text=text, attributes=attrs, tags=tags,
                                                          model="type=weird ✓"))
    back = read_sidecar(side)
    assert back["text"] == text and back["attributes"] == attrs and back["tags"] == tags
    assert back["model"] == "type=weird ✓"
    et = exiftool(side)
    assert et["XMP-asecritic:Critique"] == text.replace("\r\n", "\n") or et["XMP-asecritic:Critique"] == text
    assert et["XMP-asecritic:Focus"] == "焦点 👍"
    assert set(as_list(et["XMP-lr:HierarchicalSubject"])) == set(tags)
    assert "XMP-dc:Subject" not in et  # no flat keywords by default
    # Characters XML cannot carry become spaces / U+FFFD rather than a broken file.
    side = write_sidecar(tmp_path / "b.jpg", dict(RESULT, text="bell\x07 and \ud800 lone"))
    assert read_sidecar(side)["text"] == "bell  and \ufffd lone"


# --------------------------------------------------------------------------- merging with old


@needs_exiftool
def test_existing_content_is_kept_and_tags_merged(tmp_path):
    img, side = dt_photo(tmp_path)
    before = exiftool(side)
    # One suggestion equals a tag the user already has ("exposure" is also a dc:subject word already).
    tags = RESULT["tags"] + ["aesthetics|mine"]
    write_sidecar(img, dict(RESULT, tags=tags), SidecarOptions(write_description=True, write_rating=True))
    after = exiftool(side)
    for key in FOREIGN:
        assert after[key] == before[key], key
    hier = as_list(after["XMP-lr:HierarchicalSubject"])
    assert hier == ["family", "Ürlaub|beach", "aesthetics|mine", "exposure",
                    "aesthetics|exposure|underexposed", "aesthetics|composition|diagonal"]
    subject = as_list(after["XMP-dc:Subject"])  # the user's flat keywords, untouched (no flat_keywords)
    assert subject == ["family", "Ürlaub", "beach", "aesthetics", "mine", "exposure"]
    assert len(set(subject)) == len(subject) and len(set(hier)) == len(hier)
    # The user's description and rating (0 = unrated is a value too) stay.
    assert after["XMP-dc:Description"] == "my own words"
    assert after["XMP-xmp:Rating"] == 0
    assert array_type(side, "dc:subject") == "Bag" and array_type(side, "lr:hierarchicalSubject") == "Bag"
    assert after["XMP-asecritic:Critique"] == RESULT["text"]


@needs_exiftool
@pytest.mark.parametrize("rating", ["-1", "0", "3"])
def test_user_rating_kept_unless_overwrite(tmp_path, rating):
    img, side = dt_photo(tmp_path, rating)
    write_sidecar(img, RESULT, SidecarOptions(write_rating=True))
    assert exiftool(side)["XMP-xmp:Rating"] == int(rating)
    write_sidecar(img, RESULT, SidecarOptions(write_rating=True, overwrite_rating=True))
    assert exiftool(side)["XMP-xmp:Rating"] == 4


@needs_exiftool
def test_user_description_kept_unless_overwrite(tmp_path):
    img, side = dt_photo(tmp_path)
    write_sidecar(img, RESULT, SidecarOptions(write_description=True))
    assert exiftool(side)["XMP-dc:Description"] == "my own words"
    write_sidecar(img, RESULT, SidecarOptions(write_description=True, overwrite_description=True))
    et = exiftool(side)
    assert et["XMP-dc:Description"] == RESULT["text"]
    assert et["XMP-foo:Note"] == "keep me — ünïcode"


def test_our_own_rating_and_description_follow_a_recritique_but_a_users_edit_wins(tmp_path):
    img = tmp_path / "a.jpg"
    opts = SidecarOptions(write_description=True, write_rating=True)
    side = write_sidecar(img, dict(RESULT, score=3.0), opts)
    with xmp.PYEXIV2_LOCK:
        assert _raw(side)["Xmp.xmp.Rating"] == "2"
    side = write_sidecar(img, dict(RESULT, score=9.0, text="better now"), opts)  # ours: updated
    raw = _raw(side)
    assert raw["Xmp.xmp.Rating"] == "5" and raw["Xmp.dc.description"] == {'lang="x-default"': "better now"}
    _modify(side, {"Xmp.xmp.Rating": "1", "Xmp.dc.description": {'lang="x-default"': "the user's caption"}})
    side = write_sidecar(img, dict(RESULT, score=7.0, text="again"), opts)  # the user's now: kept
    raw = _raw(side)
    assert raw["Xmp.xmp.Rating"] == "1" and raw["Xmp.dc.description"] == {'lang="x-default"': "the user's caption"}
    assert read_sidecar(side)["text"] == "again"


@needs_exiftool
def test_recritique_removes_only_our_stale_tags_and_replaces_our_values(tmp_path):
    img, side = dt_photo(tmp_path)
    first = dict(RESULT, tags=["aesthetics|exposure|underexposed", "aesthetics|composition|diagonal",
                               "aesthetics|mine"],  # the user already had this one: not ours
                 attributes={"composition": "x", "focus": "soft"}, saliency={"centroid": [0.1, 0.2], "blob": 3})
    write_sidecar(img, first)
    second = dict(RESULT, tags=["aesthetics|exposure|well exposed", "aesthetics|composition|diagonal"],
                  attributes={"composition": "better"}, saliency={"spread": 0.5}, score=8.25)
    write_sidecar(img, second)
    et = exiftool(side)
    hier = as_list(et["XMP-lr:HierarchicalSubject"])
    assert hier == ["family", "Ürlaub|beach", "aesthetics|mine", "exposure", "aesthetics|composition|diagonal",
                    "aesthetics|exposure|well exposed"]
    subject = as_list(et["XMP-dc:Subject"])
    assert "underexposed" not in subject  # no flat keywords by default: the user's list stays as it was
    assert subject == ["family", "Ürlaub", "beach", "aesthetics", "mine", "exposure"]
    # Our namespace is replaced, not merged.
    assert "XMP-asecritic:Focus" not in et and "XMP-asecritic:SaliencyBlob" not in et
    assert "XMP-asecritic:SaliencyCentroidX" not in et
    assert et["XMP-asecritic:Composition"] == "better" and et["XMP-asecritic:Score"] == 8.25
    assert as_list(et["XMP-asecritic:Tags"]) == second["tags"]
    assert read_sidecar(side)["attributes"] == {"composition": "better"}
    for key in FOREIGN:
        assert key in et, key


def test_recritique_keeps_our_old_tags_outside_the_root_and_the_users_under_it(tmp_path):
    img = tmp_path / "a.jpg"
    side = write_sidecar(img, dict(RESULT, tags=["aesthetics|a", "legacy|b"]))
    _modify(side, {"Xmp.lr.hierarchicalSubject": ["aesthetics|a", "legacy|b", "aesthetics|user"]})
    write_sidecar(img, dict(RESULT, tags=["aesthetics|c"]))
    assert _raw(side)["Xmp.lr.hierarchicalSubject"] == ["legacy|b", "aesthetics|user", "aesthetics|c"]


def test_write_tags_off_leaves_standard_tags_alone(tmp_path):
    img, side = dt_photo(tmp_path)
    before = _raw(side)
    write_sidecar(img, RESULT, SidecarOptions(write_tags=False))
    after = _raw(side)
    assert after["Xmp.dc.subject"] == before["Xmp.dc.subject"]
    assert after["Xmp.lr.hierarchicalSubject"] == before["Xmp.lr.hierarchicalSubject"]
    assert read_sidecar(side)["tags"] == RESULT["tags"]  # still recorded as suggestions


# ----------------------------------------------------------------------------- failures, atomicity


@pytest.mark.parametrize("corrupt", [
    pytest.param(lambda s: s[: len(s) // 2], id="truncated"),
    pytest.param(lambda s: s.replace(b"</dc:subject>", b"</dc:subjec>"), id="bad-xml"),
    pytest.param(lambda s: b"\x00\x01binary junk" * 20, id="binary"),
    pytest.param(lambda s: b"<?xml version='1.0'?><html><body>not xmp</body></html>", id="not-xmp"),
])
def test_corrupt_sidecar_is_never_replaced(tmp_path, corrupt):
    img, side = dt_photo(tmp_path)
    side.write_bytes(corrupt(side.read_bytes()))
    old = side.read_bytes()
    with pytest.raises(SidecarError) as info:
        write_sidecar(img, RESULT)
    assert info.value.path == side and "XMP" in info.value.reason
    assert side.read_bytes() == old
    assert temp_files(tmp_path) == []


def test_empty_sidecar_is_replaced(tmp_path):
    img = tmp_path / "a.jpg"
    sidecar_path(img).write_bytes(b"")
    assert read_sidecar(write_sidecar(img, RESULT))["score"] == 6.4


@pytest.mark.skipif(IS_ROOT, reason="running as root: permission bits do not stop root's writes "
                    "(the read-only mount and simulated-failure tests cover this)")
def test_read_only_folder_chmod(tmp_path):
    img, side = dt_photo(tmp_path)
    old = side.read_bytes()
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(SidecarError) as info:
            write_sidecar(img, RESULT)
        assert info.value.errno in (errno.EACCES, errno.EPERM)
    finally:
        tmp_path.chmod(0o755)
    assert side.read_bytes() == old and temp_files(tmp_path) == []


@contextmanager
def tmpfs(mountpoint: Path, size: str):
    """A tiny tmpfs at `mountpoint`, or skip: needs root (CAP_SYS_ADMIN), as in the dev container."""
    mountpoint.mkdir()
    if not IS_ROOT or shutil.which("mount") is None:
        pytest.skip("cannot mount a tmpfs here (needs root); simulated-failure tests cover this")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)],
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


def test_read_only_folder_mount(tmp_path):
    # A read-only filesystem stops root too: the honest read-only folder when tests run as root.
    with tmpfs(tmp_path / "ro", "1m") as folder:
        img, side = dt_photo(folder)
        old = side.read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=30)
        with pytest.raises(SidecarError) as info:
            write_sidecar(img, RESULT)
        assert info.value.errno == errno.EROFS
        assert side.read_bytes() == old and temp_files(folder) == []


def test_disk_full_on_a_tiny_tmpfs(tmp_path):
    with tmpfs(tmp_path / "full", "64k") as folder:
        img, side = dt_photo(folder)
        old = side.read_bytes()
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)  # fill the filesystem up
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        with pytest.raises(SidecarError) as info:
            write_sidecar(img, RESULT)
        assert info.value.errno == errno.ENOSPC
        assert side.read_bytes() == old and temp_files(folder) == []


def test_simulated_disk_full_and_failed_rename(tmp_path, monkeypatch):
    # Works everywhere (and as root): a full disk surfaces at write/fsync, a broken rename at replace.
    img, side = dt_photo(tmp_path)
    old = side.read_bytes()

    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(SidecarError) as info:
        write_sidecar(img, RESULT)
    assert info.value.errno == errno.ENOSPC and "No space" in str(info.value)
    assert side.read_bytes() == old and temp_files(tmp_path) == []
    monkeypatch.undo()

    def eio(*a, **k):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", eio)
    with pytest.raises(SidecarError):
        write_sidecar(img, RESULT)
    assert side.read_bytes() == old and temp_files(tmp_path) == []


def test_missing_folder_is_a_sidecar_error(tmp_path):
    with pytest.raises(SidecarError):
        write_sidecar(tmp_path / "no-such-dir" / "a.jpg", RESULT)
    with pytest.raises(SidecarError) as info:
        read_sidecar(tmp_path / "nothing.jpg.xmp")
    assert info.value.errno == errno.ENOENT


def test_bad_result_raises_before_touching_the_file(tmp_path):
    img, side = dt_photo(tmp_path)
    old = side.read_bytes()
    for bad in (dict(RESULT, score=float("nan")), dict(RESULT, attributes={"1st": "x"}),
                dict(RESULT, attributes={"score": "x"})):
        with pytest.raises(ValueError):
            write_sidecar(img, bad)
    assert side.read_bytes() == old and temp_files(tmp_path) == []


def test_refuses_when_exiv2_would_change_foreign_values(tmp_path, monkeypatch):
    # The post-write check: anything beyond what we asked for means nothing is written.
    img, side = dt_photo(tmp_path)
    old = side.read_bytes()
    real = xmp._expected_after
    monkeypatch.setattr(xmp, "_expected_after", lambda cur, ch: dict(real(cur, ch), **{"Xmp.foo.Note": "other"}))
    with pytest.raises(SidecarError) as info:
        write_sidecar(img, RESULT)
    assert "Xmp.foo.Note" in info.value.reason
    assert side.read_bytes() == old and temp_files(tmp_path) == []


def test_a_concurrent_writer_is_not_overwritten(tmp_path, monkeypatch):
    # darktable rewrites the sidecar (in place) between our read and our rename: we start over from it.
    img, side = dt_photo(tmp_path)
    real = xmp._build
    calls = []

    def build_then_darktable_writes(old, result, options, target):
        data = real(old, result, options, target)
        if not calls:
            _modify(side, {"Xmp.xmp.Label": "Red"})
        calls.append(1)
        return data

    monkeypatch.setattr(xmp, "_build", build_then_darktable_writes)
    write_sidecar(img, RESULT)
    raw = _raw(side)
    assert len(calls) == 2 and raw["Xmp.xmp.Label"] == "Red" and "Xmp.asecritic.Critique" in raw


def test_mode_and_no_temp_files_after_success(tmp_path):
    img, side = dt_photo(tmp_path)
    side.chmod(0o640)
    write_sidecar(img, RESULT)
    assert (side.stat().st_mode & 0o777) == 0o640
    assert temp_files(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == [img.name, side.name]


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file to another user")
def test_root_keeps_the_owner_of_a_users_sidecar(tmp_path):
    img, side = dt_photo(tmp_path)
    os.chown(side, 65534, 65534)
    write_sidecar(img, RESULT)
    assert (side.stat().st_uid, side.stat().st_gid) == (65534, 65534)


def test_new_sidecar_gets_a_normal_mode_and_a_symlinked_one_is_refused_and_left_alone(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # what open() gives under this process's umask
    side = write_sidecar(tmp_path / "a.jpg", RESULT)
    assert (side.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real = elsewhere / "other.xmp"
    real.write_text(DARKTABLE_SIDECAR.replace("RATING", "2"), encoding="utf-8")
    before = real.read_bytes()
    link = sidecar_path(tmp_path / "b.jpg")
    link.symlink_to(real)
    with pytest.raises(SidecarError, match="symbolic link .*not followed") as e:
        write_sidecar(tmp_path / "b.jpg", RESULT)
    assert e.value.errno == errno.ELOOP
    assert link.is_symlink() and os.readlink(link) == str(real) and real.read_bytes() == before
    assert temp_files(tmp_path) == [] and os.listdir(elsewhere) == ["other.xmp"]
    dangling = sidecar_path(tmp_path / "c.jpg")  # a link to a file that does not exist yet: never created
    dangling.symlink_to(elsewhere / "new.xmp")
    with pytest.raises(SidecarError, match="symbolic link"):
        write_sidecar(tmp_path / "c.jpg", RESULT)
    assert not (elsewhere / "new.xmp").exists()


def test_stale_temp_files_of_ours_are_removed_and_nothing_else(tmp_path):
    ours = tmp_path / ".IMG.jpg.xmp.asecritic-k3j9x_2a.tmp"
    theirs = [tmp_path / ".IMG.jpg.xmp.k3j9x_2a.tmp", tmp_path / "IMG.jpg.xmp.asecritic-k3j9x_2a.tmp",
              tmp_path / ".IMG.jpg.asecritic-k3j9x_2a.tmp"]
    for p in [ours, *theirs]:
        p.write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    deep = sub / ".b.png.xmp.asecritic-AAAAAAAA.tmp"
    deep.write_bytes(b"x")
    assert remove_stale_temp_files(tmp_path) == [ours]
    assert all(p.exists() for p in theirs) and deep.exists()
    assert remove_stale_temp_files(tmp_path, recursive=True) == [deep]


def test_threads(tmp_path):
    errors = []

    def work(n):
        try:
            for k in range(3):
                img = tmp_path / f"img{n}.jpg"
                write_sidecar(img, dict(RESULT, score=n + k / 10, tags=[f"aesthetics|t{n}|{k}"]))
                assert read_sidecar(img)["score"] == pytest.approx(n + k / 10)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for n in range(6):
        assert _raw(tmp_path / f"img{n}.jpg.xmp")["Xmp.lr.hierarchicalSubject"] == [f"aesthetics|t{n}|2"]


# --------------------------------------------------------------------------- helpers (pyexiv2)


def _raw(side: Path) -> dict:
    import pyexiv2
    with xmp.PYEXIV2_LOCK:
        img = pyexiv2.ImageData(side.read_bytes())
        try:
            return img.read_xmp()
        finally:
            img.close()


def _modify(side: Path, changes: dict) -> None:
    """Stand-in for the user / darktable editing the sidecar."""
    import pyexiv2
    with xmp.PYEXIV2_LOCK:
        img = pyexiv2.ImageData(side.read_bytes())
        try:
            img.clear_exif()
            img.clear_iptc()
            img.modify_xmp(changes)
            side.write_bytes(img.get_bytes())
        finally:
            img.close()

