"""The daemon's `profile` argument (issue 20): `critique` and `submit` with a personal profile answer a
`personal_score` next to `score`, from the model run or from the store plus the cached features; a profile that
does not exist or was learnt with another model is refused before anything is queued.

A real daemon (subprocess, the tiny model) and a profile learnt with `ase-mllm learn --model` on that model from
real sidecars, all under the daemon's own XDG_DATA_HOME.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import time

import pytest
from ase_daemon import protocol as P
from ase_daemon.client import DaemonError
from conftest import DaemonProcess, daemon_env
from PIL import ImageEnhance
from test_personal_cli import GAINS, stars_of, write_rating

from ase_model.cli import main as ase_mllm


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_model_dir, photos):
    """A daemon on the tiny model, and profile 'tiny' learnt on that model in the daemon's data folder."""
    import torch

    root = tmp_path_factory.mktemp("personal-daemon")
    data = root / "data"
    folder = root / "rated"
    folder.mkdir()
    exiftool = shutil.which("exiftool") is not None
    for i, (name, im) in enumerate(photos.items()):
        small = im.copy()
        small.thumbnail((128, 128))
        for k, gain in enumerate(GAINS):
            path = folder / f"{name}-{k}.jpg"
            ImageEnhance.Brightness(small).enhance(gain).save(path, quality=90)
            write_rating(path, stars_of(name, k), with_exiftool=exiftool and i % 2 == 1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("XDG_DATA_HOME", str(data))
        rc = ase_mllm(["learn", "--from-xmp", str(folder), "--profile", "tiny", "--model", str(tiny_model_dir),
                       "--device", "cpu"])
    torch.set_num_threads(before)
    assert rc == 0, err.getvalue()
    # a profile of another model: the same profile as if learnt on a model with other weights
    other = data / "ase-mllm" / "profiles" / "other"
    shutil.copytree(data / "ase-mllm" / "profiles" / "tiny", other)
    meta = json.loads((other / "profile.json").read_text())
    (other / "profile.json").write_text(json.dumps({**meta, "model": "starter_model@0123456789abcdef"}))

    d = DaemonProcess(root, tiny_model_dir, "personal")
    assert d.env["XDG_DATA_HOME"] == str(data)
    d.folder, d.data = folder, data
    d.start()
    yield d
    d.stop()


def expected_scores(tiny_model_dir, data, paths, as_the_daemon_decodes: bool = False) -> list[float]:
    """What ase_model.personal gives for these photos with profile 'tiny' (features computed afresh): from the
    full photo as `ase-mllm learn` reads it, or decoded as the daemon does (to twice the model's input size,
    worker_model.py), which the tiny model's 32 px input makes matter."""
    from ase_model.critic import Critic
    from ase_model.imageio import load_image
    from ase_model.personal import load_profile, personal_score, photo_features

    critic = Critic.from_pretrained(tiny_model_dir, device="cpu", dtype="float32")
    profile = load_profile("tiny", model=critic.model_id, root=data / "ase-mllm" / "profiles")
    photos = [str(p) for p in paths]
    if as_the_daemon_decodes:
        side = max(2 * critic.processor.image_size(), 256 if critic.processor.use_saliency_prior else 64)
        photos = [load_image(p.read_bytes(), max_side=side) for p in paths]
    return personal_score(profile, photo_features(critic, photos)).tolist()


def test_critique_with_a_profile(daemon, tiny_model_dir, photo_files):
    rated = daemon.folder / "coffee-3.jpg"  # features cached by `learn`
    fresh = photo_files["rocket"]  # never seen
    [want_rated] = expected_scores(tiny_model_dir, daemon.data, [rated])
    [want_fresh] = expected_scores(tiny_model_dir, daemon.data, [fresh], as_the_daemon_decodes=True)
    with daemon.client(timeout=60) as c:
        plain, _ = c.critique(path=str(fresh))
        assert "personal_score" not in plain and "profile" not in plain
        # stored critique, features not cached yet: the model runs again, then both are there
        first, _ = c.critique(path=str(fresh), profile="tiny")
        assert first["personal_score"] == pytest.approx(want_fresh, abs=1e-2) and first["profile"] == "tiny"
        assert first["score"] == plain["score"] and first["text"] == plain["text"]
        again, _ = c.critique(path=str(fresh), profile="tiny")
        assert again["cached"] and again["personal_score"] == pytest.approx(first["personal_score"], abs=1e-4)
        # a photo the profile learnt from: its features were cached by `ase-mllm learn`
        r, _ = c.critique(data=rated.read_bytes(), name="rated.jpg", profile="tiny")
        assert r["personal_score"] == pytest.approx(want_rated, abs=1e-2)
        # the store keeps the critique, not the personal score
        again_plain, _ = c.critique(path=str(fresh))
        assert again_plain["cached"] and "personal_score" not in again_plain


def test_submit_with_a_profile(daemon, tiny_model_dir):
    photo = daemon.folder / "chelsea-1.jpg"
    [want] = expected_scores(tiny_model_dir, daemon.data, [photo])
    with daemon.client(timeout=60) as c:
        job = c.submit(path=str(photo), profile="tiny")["job"]
        deadline = time.monotonic() + 60
        while (info := c.job(job)[0])["state"] not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, info
            time.sleep(0.05)
        assert info["state"] == "done" and info["profile"] == "tiny"
        assert info["result"]["personal_score"] == pytest.approx(want, abs=1e-2)
        plain = c.submit(path=str(photo))["job"]
        while (info := c.job(plain)[0])["state"] not in ("done", "failed", "cancelled"):
            time.sleep(0.05)
        assert "personal_score" not in info["result"] and "profile" not in info


def test_unknown_and_other_model_profiles_are_refused(daemon):
    photo = str(daemon.folder / "coffee-0.jpg")
    with daemon.client(timeout=60) as c:
        for call in (lambda p: c.critique(path=photo, profile=p), lambda p: c.submit(path=photo, profile=p)):
            with pytest.raises(DaemonError) as e:
                call("nobody")
            assert e.value.code == P.NOT_FOUND and "no profile 'nobody'" in e.value.message
            assert str(daemon.data) not in e.value.message  # a guest may ask: no folder of the owner's
            with pytest.raises(DaemonError) as e:
                call("other")
            assert e.value.code == P.BAD_REQUEST and "learn it again" in e.value.message
            with pytest.raises(DaemonError) as e:
                call("../etc")
            assert e.value.code == P.BAD_REQUEST and "bad profile name" in e.value.message
        with pytest.raises(DaemonError) as e:
            c.request(P.OP_CRITIQUE, {"path": photo, "profile": 3})
        assert e.value.code == P.BAD_REQUEST


def test_ase_client_critique_with_a_profile(daemon, tmp_path):
    photo = str(daemon.folder / "astronaut-2.jpg")
    env = {**daemon_env(tmp_path), "XDG_DATA_HOME": str(daemon.data)}
    r = subprocess.run([sys.executable, "-m", "ase_daemon.client_cli", "--endpoint", daemon.ipc, "critique", photo,
                        "--profile", "tiny"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"== {photo}  score ") and "personal " in r.stdout.splitlines()[0]
    r = subprocess.run([sys.executable, "-m", "ase_daemon.client_cli", "--endpoint", daemon.ipc, "critique", photo,
                        "--profile", "tiny", "--format", "json"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and 0 < json.loads(r.stdout)["personal_score"] < 10
    r = subprocess.run([sys.executable, "-m", "ase_daemon.client_cli", "--endpoint", daemon.ipc, "critique", photo,
                        "--profile", "other"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "learn it again" in r.stderr
