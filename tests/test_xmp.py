"""XMP sidecars (daemon/xmp.py): what a write puts in the sidecar and how it merges with what is there,
checked with exiftool as the independent reader (failures and atomicity: tests/test_xmp_failures.py).

exiftool checks are skipped (with the reason) only where exiftool is not installed; CI installs
libimage-exiftool-perl. The raw packet's array types (rdf:Bag) are checked with ElementTree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from ase_daemon import xmp
from ase_daemon.xmp import (
    NAMESPACE_URI,
    SidecarOptions,
    rating_from_score,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from xmp_helpers import (
    FOREIGN,
    NS,
    RESULT,
    array_type,
    as_list,
    dt_photo,
    exiftool,
    modify_sidecar,
    needs_exiftool,
    read_raw,
    temp_files,
)

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
        assert read_raw(side)["Xmp.xmp.Rating"] == "2"
    side = write_sidecar(img, dict(RESULT, score=9.0, text="better now"), opts)  # ours: updated
    raw = read_raw(side)
    assert raw["Xmp.xmp.Rating"] == "5" and raw["Xmp.dc.description"] == {'lang="x-default"': "better now"}
    modify_sidecar(side, {"Xmp.xmp.Rating": "1", "Xmp.dc.description": {'lang="x-default"': "the user's caption"}})
    side = write_sidecar(img, dict(RESULT, score=7.0, text="again"), opts)  # the user's now: kept
    raw = read_raw(side)
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
    modify_sidecar(side, {"Xmp.lr.hierarchicalSubject": ["aesthetics|a", "legacy|b", "aesthetics|user"]})
    write_sidecar(img, dict(RESULT, tags=["aesthetics|c"]))
    assert read_raw(side)["Xmp.lr.hierarchicalSubject"] == ["legacy|b", "aesthetics|user", "aesthetics|c"]


def test_write_tags_off_leaves_standard_tags_alone(tmp_path):
    img, side = dt_photo(tmp_path)
    before = read_raw(side)
    write_sidecar(img, RESULT, SidecarOptions(write_tags=False))
    after = read_raw(side)
    assert after["Xmp.dc.subject"] == before["Xmp.dc.subject"]
    assert after["Xmp.lr.hierarchicalSubject"] == before["Xmp.lr.hierarchicalSubject"]
    assert read_sidecar(side)["tags"] == RESULT["tags"]  # still recorded as suggestions
