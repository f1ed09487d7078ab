"""The grounded starter dataset: layout, holdout, truthfulness (re-analysis), tags, determinism."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from ase_model.attributes import format_critique, parse_critique
from ase_model.starter import dataset as ds
from ase_model.starter.analytic import analyze
from ase_model.starter.known import corrected
from ase_model.tags import conflicts, suggest_tags, verdict_tags

N = 24


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("starter")
    summary = ds.generate(out, N, seed=3, progress=False, synthetic=3)
    return out, summary


def test_source_photos_are_real_and_offline():
    photos = ds.source_photos()
    assert len(photos) >= 8
    assert {"astronaut", "camera", "china", "coffee", "flower"} <= set(photos)
    assert list(photos) == sorted(photos)
    assert all(im.mode == "RGB" and min(im.size) >= 256 for im in photos.values())
    assert not set(ds.SKIPPED_SOURCES) & set(photos)
    assert {name.split(":", 1)[1] for name in ds.DEFAULT_HOLDOUT} <= set(photos)


def test_layout_and_records(generated):
    out, summary = generated
    train, test = read_jsonl(out / "train.jsonl"), read_jsonl(out / "test.jsonl")
    assert len(train) + len(test) == N == summary["n_images"]
    assert summary["n_train"] == len(train) and summary["n_test"] == len(test) and test
    assert len(list((out / "images").glob("*.jpg"))) == N + 3 == len(list((out / "saliency").glob("*.png")))
    keys = {"image", "critique", "attributes", "score", "verdicts", "tags", "source", "augment", "saliency",
            "measurements"}
    for r in train + test:
        assert keys <= set(r)
        img = Image.open(out / r["image"])
        assert img.format == "JPEG" and max(img.size) == 224
        sal = Image.open(out / r["saliency"])
        assert sal.mode == "L" and sal.size == img.size
        assert r["critique"] == format_critique(r["attributes"])
        assert parse_critique(r["critique"]) == r["attributes"]
        assert 25 <= len(r["critique"].split()) <= 85, r["critique"]
        assert 1.0 <= r["score"] <= 9.5
        json.dumps(r["augment"])  # plain JSON


def test_holdout_sources_only_in_test(generated):
    out, summary = generated
    train, test = read_jsonl(out / "train.jsonl"), read_jsonl(out / "test.jsonl")
    assert summary["holdout"] == list(ds.DEFAULT_HOLDOUT)
    assert not {r["source"] for r in train} & set(ds.DEFAULT_HOLDOUT)
    assert {r["source"] for r in test} == set(ds.DEFAULT_HOLDOUT)
    assert not any("view" in r["augment"] for r in test)  # test photos stay as they were made
    assert any("view" in r["augment"] for r in train)


def test_critiques_are_true_of_the_saved_images(generated):
    """Re-analysing each saved JPEG gives the record's verdicts (corrected where the item's edits determine one,
    known.py): the critique describes the image on disk."""
    out, _ = generated
    for r in read_jsonl(out / "train.jsonl") + read_jsonl(out / "test.jsonl"):
        a = analyze(Image.open(out / r["image"]).convert("RGB"))
        assert corrected(a.verdicts, r["augment"]) == r["verdicts"], r["image"]
        assert r.get("teacher_verdicts", r["verdicts"]) == a.verdicts
        if "teacher_verdicts" not in r:
            assert a.score == r["score"]


def test_tags_from_each_critique_include_the_verdict_tags(generated):
    out, _ = generated
    for r in read_jsonl(out / "train.jsonl") + read_jsonl(out / "test.jsonl"):
        tags = suggest_tags(r["critique"])
        assert tags == r["tags"]
        assert set(verdict_tags(r["verdicts"])) <= set(tags), (r["critique"], r["verdicts"])
        assert conflicts(tags) == [], r["critique"]


def test_same_seed_same_bytes_any_workers(generated, tmp_path):
    out, _ = generated
    again = tmp_path / "again"
    ds.generate(again, N, seed=3, progress=False)
    for name in ("train.jsonl", "test.jsonl"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    for p in sorted((out / "images").iterdir())[:4]:
        assert (again / "images" / p.name).read_bytes() == p.read_bytes()
    # Two worker processes, first 6 items: identical to the single-process run's first 6 items.
    par = tmp_path / "par"
    ds.generate(par, 6, seed=3, workers=2, progress=False)
    single = [r for r in read_jsonl(out / "train.jsonl") + read_jsonl(out / "test.jsonl") if int(r["image"][7:13]) < 6]
    parallel = read_jsonl(par / "train.jsonl") + read_jsonl(par / "test.jsonl")
    assert sorted(json.dumps(r) for r in parallel) == sorted(json.dumps(r) for r in single)
    other = tmp_path / "other"
    ds.generate(other, 6, seed=4, progress=False)
    assert (other / "train.jsonl").read_bytes() != (par / "train.jsonl").read_bytes()


def test_augment_records_params_and_leaves_many_clean():
    img = Image.new("RGB", (96, 64), (120, 110, 100))
    a1 = ds.augment(img, random.Random(11), size=48)
    a2 = ds.augment(img, random.Random(11), size=48)
    assert a1[1] == a2[1] and a1[0].tobytes() == a2[0].tobytes() and max(a1[0].size) == 48
    photometric = {"exposure_stops", "contrast", "saturation", "white_balance", "blur_sigma", "noise_sigma"}
    params = [ds.augment(img, random.Random(i), size=32)[1] for i in range(300)]
    clean = sum(not (photometric & set(p)) for p in params) / len(params)
    assert 0.3 <= clean <= 0.6, clean
    for key in photometric | {"rotate_deg", "crop"}:
        assert any(key in p for p in params), key
    assert not any("blur_sigma" in p and "noise_sigma" in p for p in params)


def test_synthetic_scenes_are_for_pretraining_only(generated):
    out, summary = generated
    pretrain = read_jsonl(out / "pretrain.jsonl")
    assert summary["n_synthetic"] == len(pretrain) == 3
    assert {r["source"] for r in pretrain} == {"synthetic"}
    others = read_jsonl(out / "train.jsonl") + read_jsonl(out / "test.jsonl")
    assert "synthetic" not in {r["source"] for r in others}
    for r in pretrain:  # judged by the teacher like any photo
        assert analyze(Image.open(out / r["image"]).convert("RGB")).verdicts == r["verdicts"]
    scene = np.asarray(ds.synthetic_scene(random.Random(5)).convert("L"), np.float32)
    assert scene.std() > 10  # many shapes, not a flat card
    assert np.array_equal(scene, np.asarray(ds.synthetic_scene(random.Random(5)).convert("L"), np.float32))


def test_new_views_turn_hue_keep_luminance_and_chroma():
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :16], rgb[:, 16:32], rgb[:, 32:] = (200, 60, 40), (40, 160, 70), (90, 90, 90)
    img = Image.fromarray(rgb)
    turned = ds.rotate_hue(img, 120.0)
    before, after = (np.asarray(i.convert("YCbCr"), np.float32) for i in (img, turned))
    assert np.abs(before[..., 0] - after[..., 0]).max() <= 2  # same luminance
    chroma = lambda a: np.hypot(a[..., 1] - 128, a[..., 2] - 128)  # noqa: E731
    assert np.abs(chroma(before) - chroma(after)).max() <= 3  # same chroma
    red = np.asarray(turned)[0, 0]
    assert red.argmax() != 0, red  # no longer red
    assert np.abs(np.asarray(turned)[0, 40].astype(int) - 90).max() <= 1  # grey stays grey
    views = [ds.new_view(img, random.Random(i))[1] for i in range(60)]
    assert all(any(k in v for k in ("flip", "zoom", "hue_deg")) for v in views if v)
    assert {"flip", "zoom", "hue_deg"} <= {k for v in views for k in v}


def test_cli_main(tmp_path, capsys):
    assert ds.main([str(tmp_path / "cli"), "--n", "3", "--seed", "1", "--quiet", "--holdout", "skimage:coffee"]) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["n_images"] == 3 and summary["holdout"] == ["skimage:coffee"]
    assert '"n_train"' in capsys.readouterr().out
