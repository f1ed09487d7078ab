"""Dataset loaders: each format's fixture is written in its published layout, with real tiny JPEGs, one
missing image and one malformed record, and the report's counts are checked exactly."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ase_model.attributes import format_critique
from ase_model.data import (
    FORMATS,
    clean_comment,
    hash_split,
    load_captions,
    load_saliency,
    read_fixation_map,
    read_fixations,
)


def jpeg(path: Path, color=(120, 80, 40), size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")
    return path


def ids_in(split: str, n: int, prefix: str = "", start: int = 1) -> list[str]:
    """The first n ids "<prefix><k>" that hash into `split`."""
    out, k = [], start
    while len(out) < n:
        if hash_split(f"{prefix}{k}") == split:
            out.append(f"{prefix}{k}")
        k += 1
    return out


def test_formats_and_spec_errors(tmp_path):
    assert FORMATS == ("pccd", "ava", "dpc", "dpc2022", "rpcd", "jsonl")
    with pytest.raises(ValueError):
        load_captions(f"flickr:{tmp_path}")
    with pytest.raises(ValueError):
        load_captions(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        load_captions(f"pccd:{tmp_path / 'nope'}")
    with pytest.raises(ValueError):
        load_captions(f"jsonl:{tmp_path}", split="holdout")


def test_hash_split_is_stable_and_balanced():
    # The documented rule (SHA-1 of the id), so the assignment cannot drift between versions or machines.
    import hashlib

    x = int.from_bytes(hashlib.sha1(b"12_choc-cherry-tart").digest()[:8], "big") / 2**64
    assert hash_split("12_choc-cherry-tart") == ("train" if x < 0.8 else "val" if x < 0.9 else "test")
    counts = {s: 0 for s in ("train", "val", "test")}
    for i in range(3000):
        counts[hash_split(str(i))] += 1
    assert 0.77 < counts["train"] / 3000 < 0.83 and 0.08 < counts["val"] / 3000 < 0.12


def test_clean_comment():
    assert clean_comment("Nice <b>light</b>!<br/>The crop&amp;tone work.") == "Nice light! The crop&tone work."
    assert clean_comment("See http://example.com/x?a=1. Also [this](https://y.org/z) and www.z.com here") == \
        "See. Also this and here"
    assert clean_comment("Great shot.The horizon is level.") == "Great shot. The horizon is level."
    assert clean_comment("f/2.8 at 1/200s, e.g. 3.5mm") == "f/2.8 at 1/200s, e.g. 3.5mm"  # left alone
    assert clean_comment("  [deleted] ") == "" and clean_comment(None) == "" and clean_comment(3) == ""


# ---------------------------------------------------------------------------------------------------- PCCD


def pccd_record(title, overall="7.5", **over):
    rec = {
        "category": "nature-photography", "title": title, "photographer": "A", "reviewer": "B",
        "description": "My own words about the shot.",
        "general_impression": f"General view of {title}.", "subject_of_photo": "A clear subject.",
        "composition": "Nice <i>thirds</i>.Good balance.", "use_of_camera": "Exposure is right.",
        "depth_of_field": "", "color_lighting": "Warm light &amp; colour.", "focus": "Sharp eyes.",
        "score": ["8", "7", "7", "8", "N", "7", "9"], "overall": overall,
        "image_url": f"http://reviews.gurushots.com/upload/full_size_{title}.jpg",
        "site": "http://reviews.gurushots.com/photo-critique/x",
    }
    rec.update(over)
    return rec


def test_pccd(tmp_path, caplog):
    root = tmp_path / "PCCD"
    good = ids_in("test", 3, "7_photo-")
    train_id = ids_in("train", 1, "7_photo-")[0]
    missing_id, bad_id = ids_in("test", 2, "9_gone-")
    recs = [pccd_record(good[0], "9.1"), pccd_record(good[1], "", score=["6", "7", "N", "9"]),
            pccd_record(good[2], "N", score=["N"]), pccd_record(train_id), pccd_record(missing_id),
            pccd_record(bad_id, **{k: "" for k in ("general_impression", "subject_of_photo", "composition",
                                                    "use_of_camera", "color_lighting", "focus")})]
    root.mkdir()
    (root / "guru.json").write_text(json.dumps(recs))
    full = root / "images" / "full"
    jpeg(full / f"{good[0]}.jpg")
    jpeg(full / f"{good[1]}.JPG")
    jpeg(full / good[2]).rename(full / good[2])  # the file named by the bare title, as Aestheval opens it
    jpeg(full / f"{train_id}.jpg")

    with caplog.at_level(logging.WARNING, logger="ase_model.data"):
        samples, rep = load_captions(f"pccd:{root}", "test")
    assert [s.id for s in samples] == sorted(good, key=lambda x: int(x.split("-")[1]))
    assert rep.loaded == 3 and len(rep.missing_images) == 1 and len(rep.malformed) == 1
    assert missing_id in rep.missing_images[0] and bad_id in rep.malformed[0][0]
    assert "no critique text" in rep.malformed[0][1]
    assert rep.summary().startswith(f"pccd:{root} test: 3 loaded, 1 missing image (first: {missing_id}")
    assert "1 malformed record (first: " in rep.summary()
    assert any("1 missing image" in r.getMessage() for r in caplog.records)

    by = {s.id: s for s in samples}
    s0 = by[good[0]]
    assert s0.image.is_absolute() and s0.image.is_file() and s0.split == "test"
    assert s0.score == pytest.approx(9.1)
    assert by[good[1]].score == pytest.approx((6 + 7 + 9) / 3)  # "overall" empty -> mean of numeric scores
    assert by[good[2]].score is None
    assert set(s0.attributes) == {"general_impression", "subject", "composition", "exposure", "color_lighting", "focus"}
    assert s0.attributes["composition"] == ["Nice thirds. Good balance."]
    assert s0.attributes["color_lighting"] == ["Warm light & colour."]
    assert len(s0.references) == 6 and "My own words" not in " ".join(s0.references)
    assert s0.target == format_critique({k: v[0] for k, v in s0.attributes.items()})
    assert s0.target.splitlines()[0].startswith("Composition: Nice thirds.")

    train, rep_train = load_captions(f"pccd:{root / 'guru.json'}", "train")
    assert [s.id for s in train] == [train_id] and rep_train.malformed == [] and rep_train.missing_images == []
    again, _ = load_captions(f"pccd:{root}", "test")
    assert again == samples  # deterministic


# ---------------------------------------------------------------------------------------------- AVA-Captions


def test_ava_captions(tmp_path):
    root = tmp_path / "ava"
    entries = [
        {"filename": "101.jpg", "split": "test", "imgid": 0,
         "sentences": [{"raw": "Nice colours.", "tokens": ["nice", "colours"]},
                       {"raw": "The horizon is tilted a little, straighten it."}]},
        {"filename": "102.jpg", "split": "test", "sentences": [{"tokens": ["great", "dof"]}]},
        {"filename": "103.jpg", "filepath": "extra", "split": "test", "sentences": [{"raw": "Soft focus."}]},
        {"filename": "104.jpg", "split": "test", "sentences": [{"raw": "Missing image."}]},
        {"filename": "105.jpg", "split": "test", "sentences": []},  # malformed
        {"filename": "106.jpg", "split": "restval", "sentences": [{"raw": "Train me."}]},
        {"filename": "107.jpg", "split": "val", "sentences": [{"raw": "Validate me."}]},
    ]
    root.mkdir()
    caption_json = root / "CLEAN_AVA_FULL_AFTER_SUBJECTIVE_CLEANING.json"
    caption_json.write_text(json.dumps({"images": entries, "dataset": "ava"}))
    for i in (101, 102, 106, 107):
        jpeg(root / "images" / f"{i}.jpg")
    jpeg(root / "extra" / "103.jpg")
    # AVA.txt: index, id, counts for ratings 1..10, two tags, challenge
    (root / "AVA.txt").write_text("1 101 0 0 0 0 1 1 0 0 0 0 1 2 3\n2 102 0 0 0 0 0 0 0 0 0 0 1 2 3\n")

    samples, rep = load_captions(f"ava:{root}", "test")
    assert [s.id for s in samples] == ["101", "102", "extra/103"]
    assert (rep.loaded, len(rep.missing_images), len(rep.malformed)) == (3, 1, 1)
    assert rep.missing_images[0].startswith("104 (") and rep.malformed[0][1] == "no sentences"
    s = samples[0]
    assert s.references == ["Nice colours.", "The horizon is tilted a little, straighten it."]
    assert s.target == s.references[1]  # the longest
    assert s.score == pytest.approx(5.5) and samples[1].score is None and s.attributes == {}
    assert samples[1].references == ["great dof"]
    assert samples[2].image == (root / "extra" / "103.jpg").resolve()

    train, _ = load_captions(f"ava:{root / 'CLEAN_AVA_FULL_AFTER_SUBJECTIVE_CLEANING.json'}", "train")
    val, _ = load_captions(f"ava:{root}", "validation")
    assert [s.id for s in train] == ["106"] and [s.id for s in val] == ["107"] and val[0].split == "val"


# ---------------------------------------------------------------------------------------------- DPC-Captions


def test_dpc_captions(tmp_path):
    root = tmp_path / "dpc"
    a, b, c, missing, bad = (int(x) for x in ids_in("val", 5, "", 1000))
    other = int(ids_in("train", 1, "", 1000)[0])
    shared = "Lovely light but the subject is soft."
    files = {
        "color_lighting": {f"{a}.jpg": ["Warm tones.", shared], f"{b}.jpg": ["Flat light."], f"{other}.jpg": ["x y"]},
        "composition": {f"{a}.jpg": ["Centred subject, try thirds."], f"{missing}.jpg": ["Tight crop."],
                        f"{bad}.jpg": 42},
        "depth_and_focus": {f"{a}.jpg": [shared, "Too shallow a depth of field for a group portrait."]},
        "impression_and_subject": {f"{c}.jpg": ["Interesting subject."]},
        "use_of_camera": {f"{b}.jpg": ["Underexposed by a stop."]},
    }
    root.mkdir()
    for name, data in files.items():
        (root / f"{name}.json").write_text(json.dumps(data))
    (root / "README.md").write_text("not data")
    for i in (a, b, c, other):
        jpeg(root / "images" / f"{i}.jpg")

    samples, rep = load_captions(f"dpc:{root}", "val")
    assert [s.id for s in samples] == [str(x) for x in sorted((a, b, c))]
    assert (rep.loaded, len(rep.missing_images), len(rep.malformed)) == (3, 1, 1)
    assert rep.missing_images[0].startswith(f"{missing} (")
    assert rep.malformed[0][0] == f"composition.json:{bad}.jpg"
    sa = {s.id: s for s in samples}[str(a)]
    assert sa.attributes == {
        "composition": ["Centred subject, try thirds."],
        "color_lighting": ["Warm tones.", shared],
        "depth_of_field": [shared, "Too shallow a depth of field for a group portrait."],
    }
    assert sa.references.count(shared) == 1 and len(sa.references) == 4  # filed twice, a reference once
    assert sa.target == format_critique({"composition": "Centred subject, try thirds.", "color_lighting": shared,
                                         "depth_of_field": "Too shallow a depth of field for a group portrait."})
    assert sa.score is None
    assert {s.id: s for s in samples}[str(b)].attributes == {"color_lighting": ["Flat light."],
                                                             "exposure": ["Underexposed by a stop."]}

    # An explicit split file wins over the hash split.
    (root / "test.txt").write_text(f"{other}.jpg\n{a}\n")
    test, rep_t = load_captions(f"dpc:{root}", "test")
    assert sorted(s.id for s in test) == sorted([str(other), str(a)]) and rep_t.malformed == []
    assert load_captions(f"dpc:{root}", "val")[0] == []


# ---------------------------------------------------------------------------------------------- DPC2022


def dpc2022_json(i, score=6.25, clean=None):
    return {
        "ID": str(i), "avg_all_users_score": score,
        "raw_comments": [f"RAW comment for {i} :)"],
        "clean_comments": clean if clean is not None else [f"nice colors on {i}", ["the crop is tight", "try wider"]],
        "score_comments": [
            {"comment": {"comment": "nice colors", "length": 2}, "sum_score": 1.5, "norm_sum_score": 0.2},
            {"comment": {"comment": "the crop is tight", "length": 4}, "sum_score": 3.25, "norm_sum_score": 0.5},
        ],
    }


def write_csv(path: Path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "score"])
        for i in ids:
            w.writerow([i, 5.0])


def test_dpc2022(tmp_path):
    root = tmp_path / "DPC2022"
    ann = root / "anotation" / "clean_and_all_score"
    ann.mkdir(parents=True)
    for i in (11, 12, 13, 14, 21, 31):
        (ann / f"{i}.json").write_text(json.dumps(dpc2022_json(i, score=-1 if i == 13 else 6.25)))
    (ann / "15.json").write_text("{not json")
    write_csv(root / "anotation" / "train" / "train.csv", [21])
    write_csv(root / "anotation" / "test_and_val" / "val.csv", [31])
    write_csv(root / "anotation" / "test_and_val" / "test.csv", [12, 11, 13, 14, 15])
    for i in (11, 12, 13, 21, 31):
        jpeg(root / "img_256x256" / f"{i}.jpg")

    samples, rep = load_captions(f"dpc2022:{root}", "test")
    assert [s.id for s in samples] == ["11", "12", "13"]
    assert (rep.loaded, len(rep.missing_images), len(rep.malformed)) == (3, 1, 1)
    assert rep.missing_images[0].startswith("14 (") and rep.malformed[0][0] == "15.json"
    s = samples[0]
    assert s.references == ["nice colors on 11", "the crop is tight try wider"]
    assert s.target == "the crop is tight"  # highest aesthetic-relevance sentence
    assert s.score == pytest.approx(6.25) and samples[2].score is None  # -1: unrated
    assert [x.id for x in load_captions(f"dpc2022:{root}", "train")[0]] == ["21"]
    assert [x.id for x in load_captions(f"dpc2022:{root}", "val")[0]] == ["31"]


# ---------------------------------------------------------------------------------------------- RPCD


def rpcd_record(i, score=0.62, comments=None):
    return {"im_id": i, "im_paths": f"images/{i}-image.jpg", "title": "Critique please",
            "first_level_comments_values": comments if comments is not None else
            [f"Crop the left side of {i}.", "[deleted]", "I like the mood, but the horizon is crooked. https://imgur.com/x"],
            "mean_score": score, "sentiment": {"x": 1}}


def test_rpcd(tmp_path):
    root = tmp_path / "RPCD"
    root.mkdir()
    test_recs = [rpcd_record("a1b2"), rpcd_record("zz9", 0.5, ["Good."]), rpcd_record("miss1"),
                 {"im_id": "bad1", "im_paths": "images/bad1-image.jpg", "first_level_comments_values": 5,
                  "mean_score": 0.3}]
    test_recs[2]["im_paths"] = "images/miss1-image.jpg"
    (root / "processed_info_test.json").write_text(json.dumps(test_recs))
    (root / "processed_info_validation.json").write_text(json.dumps([rpcd_record("v1")]))
    (root / "processed_info_train.json").write_text(json.dumps([rpcd_record("t1")]))
    for i in ("a1b2", "zz9", "v1", "t1", "bad1"):
        jpeg(root / "images" / f"{i}-image.jpg")

    samples, rep = load_captions(f"rpcd:{root}", "test")
    assert [s.id for s in samples] == ["a1b2", "zz9"]
    assert (rep.loaded, len(rep.missing_images), len(rep.malformed)) == (2, 1, 1)
    assert "miss1" in rep.missing_images[0] and "bad1" in rep.malformed[0][0]
    assert rep.malformed[0][1] == "first_level_comments_values is not a list"
    s = samples[0]
    assert s.references == ["Crop the left side of a1b2.", "I like the mood, but the horizon is crooked."]
    assert s.target == s.references[1] and s.score == pytest.approx(6.2) and samples[1].score == pytest.approx(5.0)
    assert [x.id for x in load_captions(f"rpcd:{root}", "val")[0]] == ["v1"]

    # Aestheval's column layout + id lists
    alt = tmp_path / "RPCD2"
    alt.mkdir()
    cols = {"im_paths": ["images/p1-image.jpg", "images/p2-image.png", "images/p3-image.jpg"],
            "first_level_comments_values": [["One."], ["Two."], ["Three."]],
            "aspect_prediction": [[], [], []]}
    (alt / "reddit_photocritique_image_comments.json").write_text(json.dumps(cols))
    (alt / "test_ids.csv").write_text("p1\np2\n")
    (alt / "train_ids.csv").write_text("p3\n")
    jpeg(alt / "images" / "p1-image.jpg")
    Image.new("RGB", (4, 4)).save(alt / "images" / "p2-image.png")
    test2, rep2 = load_captions(f"rpcd:{alt}", "test")
    assert [x.id for x in test2] == ["p1", "p2"] and test2[0].score is None and rep2.summary().endswith(
        "2 loaded, 0 missing images, 0 malformed records")
    assert load_captions(f"rpcd:{alt}", "train")[1].missing_images[0].startswith("p3 (")


# ---------------------------------------------------------------------------------------------- JSONL


def test_jsonl(tmp_path):
    root = tmp_path / "mine"
    img_a = jpeg(root / "imgs" / "a.jpg")
    img_b = jpeg(tmp_path / "elsewhere" / "b.jpg")
    lines = [
        json.dumps({"image": "imgs/a.jpg", "critique": "Strong leading lines.", "score": 7,
                    "attributes": {"composition": "Strong leading lines.", "colour": ["Muted", "tones"],
                                   "made_up": "ignored"}, "references": ["Another view."], "extra": {"k": 1}}),
        json.dumps({"image": str(img_b), "critique": "Good.", "id": "b"}),
        json.dumps({"image": "imgs/nope.jpg", "critique": "Where is it?"}),
        "{broken json",
        json.dumps({"image": "imgs/a.jpg"}),  # no critique
        "",
    ]
    (root / "test.jsonl").write_text("\n".join(lines) + "\n")
    samples, rep = load_captions(f"jsonl:{root}", "test")
    assert [s.id for s in samples] == ["b", "imgs/a.jpg"]
    assert (rep.loaded, len(rep.missing_images), len(rep.malformed)) == (2, 1, 2)
    assert [m[0] for m in rep.malformed] == ["test.jsonl:4", "test.jsonl:5"]
    a = samples[1]
    assert a.image == img_a.resolve() and samples[0].image == img_b.resolve()
    assert a.attributes == {"composition": ["Strong leading lines."], "color_lighting": ["Muted", "tones"]}
    assert a.references == ["Strong leading lines.", "Another view."] and a.target == "Strong leading lines."
    assert a.score == 7.0 and samples[0].score is None and a.split == "test"

    # one file with split keys
    f = tmp_path / "all.jsonl"
    f.write_text("\n".join(json.dumps({"image": str(img_b), "critique": f"c{i}", "id": f"r{i}", "split": s})
                           for i, s in enumerate(["train", "validation", "test", "train"])) + "\n")
    assert [s.id for s in load_captions(f"jsonl:{f}", "train")[0]] == ["r0", "r3"]
    assert [s.id for s in load_captions(f"jsonl:{f}", "val")[0]] == ["r1"]
    # score out of range -> malformed
    g = tmp_path / "bad.jsonl"
    g.write_text(json.dumps({"image": str(img_b), "critique": "x", "score": 57}) + "\n")
    assert load_captions(f"jsonl:{g}", "test")[1].malformed[0][1].startswith("score 57")


# ---------------------------------------------------------------------------------------------- saliency


def test_salicon(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "salicon"
    for stem in ("COCO_val2014_000000000001", "COCO_val2014_000000000002", "COCO_val2014_000000000003"):
        jpeg(root / "images" / "val" / f"{stem}.jpg", size=(16, 12))
    jpeg(root / "images" / "test" / "COCO_test2014_000000000009.jpg")
    (root / "maps" / "val").mkdir(parents=True)
    m = np.zeros((12, 16), np.uint8)
    m[3:6, 4:9] = 255
    Image.fromarray(m).save(root / "maps" / "val" / "COCO_val2014_000000000001.png")
    Image.fromarray(m).save(root / "maps" / "val" / "COCO_val2014_000000000002.png")
    Image.fromarray(m).save(root / "maps" / "val" / "COCO_val2014_000000000077.png")  # image missing
    (root / "fixations" / "val").mkdir(parents=True)
    gaze = np.zeros((2,), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
    gaze[0] = (np.array([[1.0, 1.0]]), np.array([[0]]), np.array([[5.0, 4.0], [1.0, 1.0]]))  # (x, y) 1-based
    gaze[1] = (np.array([[1.0, 1.0]]), np.array([[0]]), np.array([[16.0, 12.0], [99.0, 3.0]]))  # last one off-image
    savemat(root / "fixations" / "val" / "COCO_val2014_000000000001.mat",
            {"image": "COCO_val2014_000000000001", "resolution": np.array([[12, 16]]), "gaze": gaze.reshape(2, 1)})

    samples, rep = load_saliency(f"salicon:{root}", "val")
    assert [s.id[-1] for s in samples] == ["1", "2"]
    assert (rep.loaded, len(rep.missing_images), len(rep.malformed)) == (2, 1, 1)
    assert "000000000077" in rep.missing_images[0] and rep.malformed[0][0].endswith("3")
    assert samples[0].fixations is not None and samples[1].fixations is None
    fm = read_fixation_map(samples[0].saliency_map)
    assert fm.dtype == np.float32 and fm.shape == (12, 16) and fm.max() == 1.0 and fm.min() == 0.0
    fx = read_fixations(samples[0].fixations)
    assert fx.shape == (12, 16) and fx.dtype == bool
    assert sorted(zip(*np.nonzero(fx))) == [(0, 0), (3, 4), (11, 15)]

    test, rep_t = load_saliency(f"salicon:{root}", "test")  # no ground truth for test: not an error
    assert len(test) == 1 and test[0].saliency_map is None and rep_t.malformed == []


def test_mit1003_and_folder(tmp_path):
    root = tmp_path / "MIT1003"
    stems = ids_in("train", 2, "i05june05_static_") + ids_in("test", 1, "i05june05_static_")
    (root / "ALLFIXATIONMAPS").mkdir(parents=True)
    pts = np.zeros((6, 8), np.uint8)
    pts[2, 3] = 255
    for s in stems:
        jpeg(root / "ALLSTIMULI" / f"{s}.jpeg")
        Image.fromarray(pts).save(root / "ALLFIXATIONMAPS" / f"{s}_fixPts.jpg")
        Image.fromarray(pts).save(root / "ALLFIXATIONMAPS" / f"{s}_fixMap.jpg")
    train, rep = load_saliency(f"mit1003:{root}", "train")
    assert [s.id for s in train] == stems[:2] and rep.malformed == [] and rep.missing_images == []
    fx = read_fixations(train[0].fixations)  # JPEG-compressed single point survives the threshold
    assert fx[2, 3] and fx.sum() >= 1 and fx.sum() <= 4
    assert [s.id for s in load_saliency(f"mit1003:{root}", "test")[0]] == stems[2:]

    imgs, maps = tmp_path / "imgs", tmp_path / "maps"
    jpeg(imgs / "x.jpg")
    Image.new("RGB", (4, 3)).save(imgs / "y.png")
    maps.mkdir()
    np.save(maps / "x.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    samples, rep = load_saliency(f"folder:{imgs},{maps}", "test")
    assert [s.id for s in samples] == ["x"] and rep.malformed == [("y", "no saliency map or fixations")]
    fm = read_fixation_map(samples[0].saliency_map)
    assert fm.max() == pytest.approx(1.0) and fm[0, 0] == 0.0
