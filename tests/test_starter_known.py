"""Verdicts the dataset's own edits determine outrank the teacher's reading (ase_model.starter.known)."""

from __future__ import annotations

import json
import random

import pytest

from ase_model.starter import known
from ase_model.starter.analytic import analyze
from ase_model.starter.checker import check
from ase_model.starter.dataset import source_photos
from ase_model.starter.edits import EDIT_KINDS, apply_edit
from ase_model.tags import tag_for_verdict

PHOTO = source_photos()["coffee"].resize((320, 240))


def test_every_defect_edit_determines_one_verdict():
    assert set(known.EDIT_VERDICTS) == set(EDIT_KINDS)
    for kind in EDIT_KINDS:
        attribute, labels = known.EDIT_VERDICTS[kind]
        _, params = apply_edit(PHOTO, kind, random.Random(kind))  # the parameters a real edit records
        assert known.known_verdicts({"edit": {"kind": kind, **params}}) == {attribute: labels}
        assert all(tag_for_verdict(attribute, label) for label in labels)  # the vocabulary can say each


@pytest.mark.parametrize("augment, expected", [
    ({"rotate_deg": 9.0}, {"tilt": ("tilted",)}),
    ({"rotate_deg": -5.0}, {"tilt": ("tilted",)}),
    ({"rotate_deg": 3.0}, {}),  # a slight lean: the teacher's call stands
    ({"cut_crop": {"keep": 0.6, "side": "left"}}, {"framing": ("cut off",)}),
    ({"crop": [0.1, 0.1, 0.8]}, {}),  # a crop that keeps the subject says nothing
    ({"exposure_stops": -2.0, "edit": {"kind": "overexpose", "stops": 2.1}}, {}),  # the edit undid the augment
    ({"exposure_stops": 0.5, "edit": {"kind": "overexpose", "stops": 1.6}}, {"exposure": ("overexposed",)}),
    ({"white_balance": {"kind": "warm"}, "edit": {"kind": "cool_cast"}}, {}),  # blue over warm: not known
    ({"white_balance": {"kind": "cool"}, "edit": {"kind": "cool_cast"}}, {"white_balance": ("cool cast",)}),
])
def test_known_verdicts_only_where_the_edit_decides(augment, expected):
    assert known.known_verdicts(augment) == expected


def test_corrected_keeps_an_accepted_teacher_label():
    teacher = {"saturation": "monochrome", "tilt": "n/a", "exposure": "well exposed"}
    out = known.corrected(teacher, {"edit": {"kind": "desaturate"}, "rotate_deg": 7.0})
    assert out == {"saturation": "monochrome", "tilt": "tilted", "exposure": "well exposed"}
    assert teacher["tilt"] == "n/a"  # not changed in place


def _record(image, augment):
    a = analyze(image)
    return {"image": "images/x.jpg", "verdicts": a.verdicts, "score": a.score, "measurements": a.measurements,
            "augment": augment, "critique": "", "attributes": {}, "tags": []}


def test_relabel_rewrites_score_critique_and_tags_from_the_corrected_verdicts():
    photo = source_photos()["astronaut"].resize((384, 384))
    cut, params = apply_edit(photo, "cut_crop", random.Random(1))
    record = _record(cut, {"cut_crop": params})
    if record["verdicts"]["framing"] == "cut off":  # the teacher saw it: relabel must leave the record alone
        assert known.relabel(record, 0) is record
        record["verdicts"]["framing"] = "n/a"
    new = known.relabel(record, 0)
    assert new["verdicts"]["framing"] == "cut off" and new["teacher_verdicts"]["framing"] == "n/a"
    assert new["score"] < record["score"]  # the cut costs what the teacher's own terms charge for it
    assert tag_for_verdict("framing", "cut off") in new["tags"]
    report = check(new["critique"], new["verdicts"], new["score"])
    assert report.ok and not report.missing, report
    assert known.relabel(new, 0)["critique"] == new["critique"]  # idempotent
    assert known.relabel(record, 0) == new  # seeded by the item: the same wording every time


def test_relabel_dataset_in_place(tmp_path):
    photo = PHOTO
    tilted = _record(photo, {"rotate_deg": 10.0})
    tilted["verdicts"]["tilt"] = "n/a"  # as a teacher without lines would say
    plain = _record(photo, {})
    lines = [json.dumps(tilted), json.dumps(plain)]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "summary.json").write_text(json.dumps({"n_images": 2}))
    assert known.relabel_dataset(tmp_path, seed=0) == {"train": 1}
    out = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert out[0]["verdicts"]["tilt"] == "tilted" and out[1] == plain
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["known_verdicts"] is True and summary["n_images"] == 2
    assert not list(tmp_path.glob("*.tmp"))
