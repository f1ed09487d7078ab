"""Culling by a personal profile (issues 19 + 20): `ase-mllm cull --profile` and the daemon's `cull` op with
`profile` rank a burst's clean frames by the profile's personal score instead of the critic's, the records carry
`personal_score` and the reasons say which score ranked.

A photographer who loves dark frames rates 24 real photos (6 samples x 4 exposures, darker = more stars); a
profile is learnt from those sidecars with `ase-mllm learn` on the tiny model, as tests/test_personal_daemon.py
does. The burst: one scene four times, the clean frame, a darker frame (0.8 stops under, a touch softer), a
brighter one and a blurred one. By the critic's score (flat on the tiny model) the sharpest clean frame wins; by
the dark lover's profile the darker frame does; the blurred frame is rejected either way.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import numpy as np
import pytest
from ase_daemon import protocol as P
from ase_daemon.client import DaemonError
from conftest import DaemonProcess
from PIL import Image, ImageEnhance, ImageFilter
from test_personal_cli import GAINS, write_rating

from ase_model.cli import main as ase_mllm

T0 = 1_700_000_000
CLEAN, DARK, BRIGHT, BLURRED = "IMG_0001.jpg", "IMG_0002.jpg", "IMG_0003.jpg", "IMG_0004.jpg"


def dark_stars(name: str, k: int) -> int:
    """The darkest exposure gets the most stars (and two photos' darkest one more)."""
    return len(GAINS) - k + (1 if k == 0 and name in ("coffee", "china") else 0)


def learn_dark(data, model_dir, photos, folder, name: str = "dark") -> None:
    """Rate the sample photos like a lover of dark frames (real sidecars) and learn profile `name` from them with
    `ase-mllm learn` into XDG_DATA_HOME=`data`; also profile 'other', the same taste said to be another model's."""
    import torch

    folder.mkdir(parents=True)
    for name_, im in photos.items():
        small = im.copy()
        small.thumbnail((128, 128))
        for k, gain in enumerate(GAINS):
            path = folder / f"{name_}-{k}.jpg"
            ImageEnhance.Brightness(small).enhance(gain).save(path, quality=90)
            write_rating(path, dark_stars(name_, k), with_exiftool=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("XDG_DATA_HOME", str(data))
        rc = ase_mllm(["learn", "--from-xmp", str(folder), "--profile", name, "--model", str(model_dir),
                       "--device", "cpu"])
    torch.set_num_threads(before)
    assert rc == 0, err.getvalue()
    profiles = data / "ase-mllm" / "profiles"
    shutil.copytree(profiles / name, profiles / "other")
    meta = json.loads((profiles / "other" / "profile.json").read_text())
    (profiles / "other" / "profile.json").write_text(json.dumps({**meta, "model": "starter_model@0123456789abcdef"}))


def _exposure(im: Image.Image, stops: float) -> Image.Image:
    lin = (np.asarray(im, dtype=np.float32) / 255.0) ** 2.2 * (2.0 ** stops)
    return Image.fromarray(np.clip(np.clip(lin, 0, 1) ** (1 / 2.2) * 255 + 0.5, 0, 255).astype(np.uint8))


def make_burst(folder):
    """Four frames of one real scene (not among the rated photos), 0.4 s apart."""
    from ase_model.starter.dataset import source_photos

    folder.mkdir(parents=True)
    scene = source_photos()["motorcycle"].convert("RGB")
    scene.thumbnail((512, 512))
    frames = {CLEAN: scene, DARK: _exposure(scene, -0.8).filter(ImageFilter.GaussianBlur(0.5)),
              BRIGHT: _exposure(scene, 0.5), BLURRED: scene.filter(ImageFilter.GaussianBlur(4))}
    for i, (name, im) in enumerate(frames.items()):
        im.save(folder / name, quality=92)
        os.utime(folder / name, (T0 + 0.4 * i, T0 + 0.4 * i))
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir, photos):
    """A folder whose data/ (the daemon's and the CLI's XDG_DATA_HOME) holds profiles 'dark' and 'other'."""
    root = tmp_path_factory.mktemp("personal-cull")
    learn_dark(root / "data", tiny_model_dir, photos, root / "rated")
    return root


def cull_cli(root, model_dir, *args) -> tuple[int, str, str]:
    """`ase-mllm cull` in this process (torch is loaded once), with the root's data folder and store."""
    from ase_daemon.cull_cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("XDG_DATA_HOME", str(root / "data"))
        rc = main(["--db", str(root / "cli.db"), "--model", str(model_dir), "--device", "cpu", "--max-new-tokens",
                   "8", "--no-progress", *map(str, args)])
    return rc, out.getvalue(), err.getvalue()


def by_name(decisions) -> dict:
    return {os.path.basename(d["path"]): d for d in decisions}


def check_generic(d: dict) -> None:
    assert d[CLEAN]["decision"] == "pick" and d[DARK]["decision"] == "keep" and d[BLURRED]["decision"] == "reject"
    assert all("personal_score" not in r and "personal" not in r["reason"] for r in d.values())


def check_personal(d: dict) -> None:
    """The dark frame is the pick; every record has its personal score; the reasons say it ranked."""
    assert d[DARK]["decision"] == "pick" and d[CLEAN]["decision"] == "keep"
    assert d[BLURRED]["decision"] == "reject"  # a profile does not rescue a defective frame
    assert all(0 <= r["personal_score"] <= 10 for r in d.values())
    assert d[DARK]["personal_score"] > d[CLEAN]["personal_score"] > d[BRIGHT]["personal_score"]
    assert f"(personal score {d[DARK]['personal_score']:.1f})" in d[DARK]["reason"]
    assert f"personal score {d[CLEAN]['personal_score']:.1f} vs the pick's" in d[CLEAN]["reason"]


def test_cli_ranks_by_the_personal_score(root, tiny_model_dir, tmp_path):
    shoot = make_burst(tmp_path / "shoot")
    rc, out, err = cull_cli(root, tiny_model_dir, shoot, "--json")
    assert rc == 0, err
    check_generic(by_name(json.loads(line) for line in out.splitlines()))
    # the critiques are in the store now; the profile's features are computed for these photos and cached
    rc, out, err = cull_cli(root, tiny_model_dir, shoot, "--json", "--profile", "dark")
    assert rc == 0, err
    assert "4 known to the store" in err and "0 critiqued now" in err
    mine = by_name(json.loads(line) for line in out.splitlines())
    check_personal(mine)
    # the listing says it too; a second run reads every personal score from the feature cache
    rc, out, err = cull_cli(root, tiny_model_dir, shoot, "--profile", "dark")
    assert rc == 0, err
    assert f"PICK   {DARK}  best of 4 (personal score" in out


def test_cli_new_photos_get_their_personal_score_in_the_same_pass(root, tiny_model_dir, tmp_path):
    shoot = make_burst(tmp_path / "fresh")
    Image.open(shoot / BRIGHT).rotate(180).save(shoot / BRIGHT, quality=91)  # content the store has not seen
    os.utime(shoot / BRIGHT, (T0 + 0.8, T0 + 0.8))
    rc, out, err = cull_cli(root, tiny_model_dir, shoot, "--json", "--profile", "dark")
    assert rc == 0, err
    assert "1 critiqued now" in err
    assert all("personal_score" in json.loads(line) for line in out.splitlines())


def test_cli_refuses_a_missing_or_foreign_profile(root, tiny_model_dir, tmp_path):
    shoot = make_burst(tmp_path / "shoot")
    rc, out, err = cull_cli(root, tiny_model_dir, shoot, "--profile", "nobody")
    assert rc == 2 and out == "" and "no profile 'nobody'" in err
    rc, out, err = cull_cli(root, tiny_model_dir, shoot, "--profile", "other")
    assert rc == 2 and out == "" and "learn it again" in err
    rc, out, err = cull_cli(root, tiny_model_dir, shoot, "--profile", "../etc")
    assert rc == 2 and "bad profile name" in err


@pytest.fixture(scope="module")
def daemon(root, tiny_model_dir):
    d = DaemonProcess(root, tiny_model_dir, "cull").start()
    assert d.env["XDG_DATA_HOME"] == str(root / "data")
    yield d
    d.stop()


def test_op_ranks_by_the_personal_score(daemon, tmp_path):
    shoot = make_burst(tmp_path / "shoot")
    with daemon.client(timeout=60) as c:
        plain = c.cull([shoot])
        check_generic(by_name(plain["decisions"]))
        # the critiques are stored: only the profile's features are computed (through the worker)
        mine = c.cull([shoot], profile="dark")
        assert mine["counts"]["known"] == 4 and mine["counts"]["critiqued"] == 0
        check_personal(by_name(mine["decisions"]))
        stored, _ = c.job(mine["job"])  # kept in the store with the personal scores
        assert by_name(stored["decisions"]) == by_name(mine["decisions"])
        # new photos: their critiques carry the profile, so no second pass
        again = tmp_path / "again"
        shutil.copytree(shoot, again)
        Image.open(again / BRIGHT).rotate(180).save(again / BRIGHT, quality=91)
        runs = c.status()["counts"]["critiques"]
        fresh = c.cull([again], profile="dark")
        assert fresh["counts"]["critiqued"] == 1 and c.status()["counts"]["critiques"] == runs + 1
        assert all("personal_score" in d for d in fresh["decisions"])


def test_op_refuses_a_missing_or_foreign_profile(daemon, tmp_path):
    shoot = make_burst(tmp_path / "shoot")
    with daemon.client(timeout=60) as c:
        for name, code, said in (("nobody", P.NOT_FOUND, "no profile 'nobody'"),
                                 ("other", P.BAD_REQUEST, "learn it again"),
                                 ("../etc", P.BAD_REQUEST, "bad profile name")):
            with pytest.raises(DaemonError) as e:
                c.cull([shoot], profile=name)
            assert e.value.code == code and said in e.value.message
        with pytest.raises(DaemonError) as e:
            c.request(P.OP_CULL, {"paths": [str(shoot)], "profile": 7})
        assert e.value.code == P.BAD_REQUEST


def test_rank_by_personal_scores_without_a_model(photos):
    """ase_model.culling alone: the personal scores replace the critic's among clean frames, defects still come
    first, a group with a photo lacking a personal score is ranked by the critic's score, and the records keep
    their old form without a profile."""
    from ase_model.culling import CullDecision, CullFeatures, cull, descriptor

    clean = {"subject_detail": 1.0, "background_detail": 1.0, "frame_detail": 1.0, "motion_anisotropy": 0.1,
             "noise_sigma": 1.0, "highlight_clip": 0.0, "exposure_ev": 0.0}
    scene = descriptor(photos["coffee"])
    soft = {"subject_detail": 0.3, "frame_detail": 0.3, "background_detail": 0.3}
    recs = [CullFeatures(path=f"f{i}.jpg", capture_time=T0 + i, time_source="exif", descriptor=scene, score=score,
                         measurements={**clean, **extra})
            for i, (score, extra) in enumerate([(7.0, {}), (5.0, {}), (6.0, {}), (4.0, soft)])]
    plain = cull(recs)
    assert [d.decision for d in plain] == ["pick", "keep", "keep", "reject"]
    assert "personal_score" not in plain[0].to_dict() and "score 5.0 vs the pick's 7.0" in plain[1].reason
    mine = cull(recs, personal=[3.0, 8.0, 5.0, 9.9])
    assert [d.decision for d in mine] == ["keep", "pick", "keep", "reject"]  # the soft frame stays rejected
    assert mine[1].reason == "best of 4 (personal score 8.0); 1 soft on the subject"
    assert "personal score 3.0 vs the pick's 8.0" in mine[0].reason
    assert [d.personal_score for d in mine] == [3.0, 8.0, 5.0, 9.9]
    assert CullDecision.from_dict(mine[1].to_dict()) == mine[1]
    mixed = cull(recs, personal=[3.0, None, 5.0, 9.9])  # one scale per group: the critic's
    assert [d.decision for d in mixed] == ["pick", "keep", "keep", "reject"] and "personal" not in mixed[0].reason
    assert mixed[1].personal_score is None and mixed[0].personal_score == 3.0
