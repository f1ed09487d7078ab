"""Culling core (ase_model.culling): grouping, RAW+JPEG frames, ranking with reasons, capture times, JSON."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
import pytest
from PIL import Image, ImageFilter

from ase_model.culling import (
    CullConfig,
    CullDecision,
    CullFeatures,
    GroupingConfig,
    capture_time,
    cull,
    descriptor,
    features_for,
    features_from,
    group_frames,
    similarity,
)
from ase_model.starter.dataset import exposure

T0 = 1_777_000_000.0


def _save(im: Image.Image, path, t: float | None) -> None:
    exif = Image.Exif()
    if t is not None:
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(int(t)))
        sub[0x9291] = f"{round((t % 1) * 1000):03d}"
    im.save(path, "JPEG", quality=92, exif=exif)


def _shift(im: Image.Image, dx: int, dy: int) -> Image.Image:
    w, h = im.size
    return im.crop((20 + dx, 20 + dy, w - 20 + dx, h - 20 + dy))


def _background_focus(im: Image.Image, saliency: np.ndarray) -> Image.Image:
    """The most salient third of the frame (per the critique's own map) blurred, the rest sharp."""
    sal = np.asarray(Image.fromarray(saliency).resize(im.size, Image.BILINEAR))
    mask = Image.fromarray(((sal >= np.percentile(sal, 67)) * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(8))
    return Image.composite(im.filter(ImageFilter.GaussianBlur(6)), im, mask)


@pytest.fixture(scope="module")
def tiny_critic(tiny_model_dir):
    import torch

    from ase_model.critic import Critic

    torch.set_num_threads(1)
    return Critic.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def starter_critic():
    import torch

    from ase_model.critic import Critic

    torch.set_num_threads(1)
    return Critic.from_pretrained(device="cpu")


def _record(path: str, im: Image.Image, t: float) -> CullFeatures:
    """Features for grouping only (descriptor and time); no critique needed for that."""
    return CullFeatures(path=path, capture_time=t, time_source="exif", descriptor=descriptor(im), score=5.0)


def test_burst_and_singletons_grouped_by_time_and_similarity(photos):
    astro, coffee, cat = photos["astronaut"], photos["coffee"], photos["chelsea"]
    recs = [
        _record("a1.jpg", _shift(astro, 0, 0), T0),
        _record("a2.jpg", _shift(astro, 12, -8), T0 + 0.2),
        _record("a3.jpg", exposure(_shift(astro, -10, 5), -1.7), T0 + 0.4),
        # another scene 1.5 s later: within the time gap, so only similarity keeps it apart
        _record("c1.jpg", _shift(coffee, 0, 0), T0 + 1.9),
        _record("c2.jpg", _shift(coffee, 6, 6).filter(ImageFilter.GaussianBlur(3)), T0 + 2.1),
        _record("cat.jpg", cat, T0 + 60),
        # the first scene again, minutes later: a new group (time), not the old burst
        _record("a4.jpg", _shift(astro, 4, 4), T0 + 300),
    ]
    assert similarity(recs[0].descriptor, recs[2].descriptor) > 0.9  # two stops under: still the same scene
    assert similarity(recs[0].descriptor, recs[3].descriptor) < 0.8
    labels = group_frames(recs)
    assert labels[0] == labels[1] == labels[2]
    assert labels[3] == labels[4] != labels[0]
    assert len({labels[0], labels[3], labels[5], labels[6]}) == 4
    # configurable: with no similarity demanded, the 1.5 s pause no longer separates the two scenes
    loose = group_frames(recs, GroupingConfig(max_gap_s=5.0, min_similarity=-1.0))
    assert loose[0] == loose[3]
    # with a 0.1 s gap every frame is alone
    assert len(set(group_frames(recs, GroupingConfig(max_gap_s=0.1)))) == len(recs)


def test_empty_and_one_photo(tmp_path, photos, tiny_critic):
    assert cull([]) == []
    path = tmp_path / "only.jpg"
    _save(photos["coffee"], path, T0)
    [feat] = features_for(tiny_critic, [path])
    [d] = cull([feat])
    assert (d.decision, d.group, d.group_size, d.rank) == ("pick", 0, 1, 1)
    assert d.reason.startswith("only frame")


def test_capture_time_exif_subseconds_and_file_time(tmp_path, photos):
    with_exif, without = tmp_path / "a.jpg", tmp_path / "b.jpg"
    _save(photos["coffee"], with_exif, T0 + 0.25)
    photos["coffee"].save(without, quality=90)
    os.utime(without, (T0 + 42.0, T0 + 42.0))
    assert capture_time(with_exif) == (pytest.approx(T0 + 0.25), "exif")
    assert capture_time(without) == (pytest.approx(T0 + 42.0), "mtime")
    assert capture_time(tmp_path / "gone.jpg") == (0.0, "none")


def test_photos_without_exif_are_grouped_by_file_time(tmp_path, photos, tiny_critic):
    paths = []
    for k, (name, dt) in enumerate((("astronaut", 0.0), ("astronaut", 0.5), ("coffee", 100.0))):
        p = tmp_path / f"IMG_{k}.jpg"
        _shift(photos[name], 3 * k, 0).save(p, quality=90)  # no EXIF at all
        os.utime(p, (T0 + dt, T0 + dt))
        paths.append(p)
    feats = features_for(tiny_critic, paths)
    assert [f.time_source for f in feats] == ["mtime"] * 3
    decisions = cull(feats)
    assert decisions[0].group == decisions[1].group != decisions[2].group
    assert sorted(d.decision for d in decisions[:2]) in (["keep", "pick"], ["pick", "reject"])


def test_raw_and_jpeg_of_one_frame_count_once(tmp_path, photos, tiny_critic):
    folder = tmp_path / "shoot"
    folder.mkdir()
    for k in range(3):
        _save(_shift(photos["chelsea"], 4 * k, 0), folder / f"IMG_{k}.jpg", T0 + 0.3 * k)
    feats = features_for(tiny_critic, sorted(folder.iterdir()))
    # the camera's RAW beside IMG_1.jpg: the same frame (its features as the store would hold them)
    raw = dataclasses.replace(feats[1], path=str(folder / "IMG_1.CR2"))
    decisions = cull(feats + [raw])
    assert {d.group_size for d in decisions} == {3}
    assert (decisions[3].group, decisions[3].decision, decisions[3].reason) == \
        (decisions[1].group, decisions[1].decision, decisions[1].reason)
    assert [d.decision for d in decisions[:3]].count("pick") == 1


def test_unreadable_files_reported_rest_featured(tmp_path, photos, tiny_critic):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    _save(photos["coffee"], good, T0)
    bad.write_bytes(b"not a photo at all")
    errors: dict[str, str] = {}
    feats = features_for(tiny_critic, [bad, good], errors=errors)
    assert [f.path for f in feats] == [str(good)]
    assert list(errors) == [str(bad)] and errors[str(bad)]


def test_picks_sharp_subject_over_background_focus_with_reasons(tmp_path, photos, starter_critic):
    cat = photos["chelsea"]
    [ref] = starter_critic.critique([cat])
    frames = {
        "clean": _shift(cat, 0, 0),
        "shift": _shift(cat, 8, -6),
        "background": _shift(_background_focus(cat, ref.saliency), 0, 0),
        "noise": Image.fromarray(np.clip(np.asarray(_shift(cat, 0, 0), np.float32) + np.random.default_rng(0).normal(
            0, 25, (cat.height - 40, cat.width - 40, 3)), 0, 255).astype(np.uint8)),
        "under": exposure(_shift(cat, 0, 0), -2.0),
    }
    paths = []
    for k, (kind, im) in enumerate(frames.items()):
        p = tmp_path / f"{k}_{kind}.jpg"
        _save(im, p, T0 + 0.2 * k)
        paths.append(p)
    decisions = {d.path.split("_")[-1][:-4]: d for d in cull(features_for(starter_critic, paths))}
    assert len({d.group for d in decisions.values()}) == 1
    assert {d.group_size for d in decisions.values()} == {5}
    picked = [k for k, d in decisions.items() if d.decision == "pick"]
    assert picked in (["clean"], ["shift"])
    assert decisions["background"].decision == "reject"
    assert "soft on the subject" in decisions["background"].reason, decisions["background"]
    assert decisions["noise"].decision == "reject" and "noisy" in decisions["noise"].reason
    assert decisions["under"].decision == "reject" and "two stops under" in decisions["under"].reason
    assert all(decisions[k].decision in ("pick", "keep") for k in ("clean", "shift"))  # clean: never rejected
    assert "of 5" in decisions[picked[0]].reason
    assert all(d.reason for d in decisions.values())


def test_features_and_decisions_json_round_trip(tmp_path, photos, tiny_critic):
    p = tmp_path / "x.jpg"
    _save(photos["astronaut"], p, T0)
    [feat] = features_for(tiny_critic, [p])
    again = CullFeatures.from_dict(json.loads(json.dumps(feat.to_dict())))
    assert again == feat
    assert set(feat.grid) == {"g2", "y", "y2", "saliency"}
    [d] = cull([feat])
    assert CullDecision.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    with pytest.raises(ValueError):
        CullDecision.from_dict({**d.to_dict(), "decision": "maybe"})
    assert cull([again]) == [d]


def test_features_from_a_critique(photos, tiny_critic, tmp_path):
    p = tmp_path / "c.jpg"
    _save(photos["rocket"], p, T0)
    im = Image.open(p).convert("RGB")
    [c] = tiny_critic.critique([im])
    f = features_from(p, im, c)
    assert f.score == pytest.approx(c.score, abs=1e-3)
    for key in ("subject_detail", "motion_anisotropy", "noise_sigma", "highlight_clip", "exposure_ev"):
        assert np.isfinite(f.measurements[key])
    assert len(f.descriptor) == 256 and abs(np.linalg.norm(f.descriptor) - 1) < 0.01


def test_culling_1000_known_photos_is_fast(photos, tiny_critic, tmp_path):
    feats = []
    for k, (name, im) in enumerate(photos.items()):
        p = tmp_path / f"{name}.jpg"
        _save(im, p, T0 + 100 * k)
        feats.append(p)
    known = features_for(tiny_critic, feats)
    many = [dataclasses.replace(known[k % len(known)], path=f"/s/{k}.jpg", capture_time=T0 + 0.3 * k)
            for k in range(1000)]
    t0 = time.perf_counter()
    decisions = cull(many, CullConfig())
    assert time.perf_counter() - t0 < 5.0
    assert len(decisions) == 1000 and all(d.reason for d in decisions)
