"""The personal critic wired into the product (issue 20): `ase-mllm learn` from real sidecars (exiftool's and
the project's XMP writer's), its refusals, `ase-mllm critique --profile`, a profile of another model, and
`ase-client profiles`. Everything under XDG_DATA_HOME=tmp: the real home is never touched.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys

import pytest
from PIL import ImageEnhance

from ase_model.cli import main as ase_mllm

GAINS = (0.35, 0.7, 1.0, 1.4)


def stars_of(name: str, k: int) -> int:
    """A photographer who likes bright frames (and two of them a bit more)."""
    return k + 1 + (1 if k == 3 and name in ("coffee", "china") else 0)


def write_rating(photo, stars: int, with_exiftool: bool) -> None:
    """A real sidecar with xmp:Rating = stars: exiftool's (darktable naming) or the project's own XMP writer."""
    if with_exiftool:
        subprocess.run(["exiftool", "-q", f"-XMP-xmp:Rating={stars}", f"{photo}.xmp"], check=True, timeout=60)
    else:
        from ase_daemon.xmp import SidecarOptions, rating_from_score, write_sidecar

        score = 2.0 * stars - 1.0  # the middle of the score band that maps to these stars
        assert rating_from_score(score) == stars
        result = {"text": "Exposure: fine.", "attributes": {}, "score": score, "tags": [], "model": "m",
                  "saliency": {}}
        write_sidecar(photo, result, SidecarOptions(write_rating=True))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """XDG_DATA_HOME in a temporary folder for the whole module; one torch thread (a busy 2-core box)."""
    import torch

    data = tmp_path_factory.mktemp("xdg-data")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(data))
        yield data
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rated_folder(env, photos, tmp_path_factory):
    """24 real photos (6 samples x 4 exposures) with sidecars: half by exiftool, half by the project's writer."""
    folder = tmp_path_factory.mktemp("rated")
    have_exiftool = shutil.which("exiftool") is not None
    for i, (name, im) in enumerate(photos.items()):
        small = im.copy()
        small.thumbnail((256, 256))
        for k, gain in enumerate(GAINS):
            path = folder / f"{name}-{k}.jpg"
            ImageEnhance.Brightness(small).enhance(gain).save(path, quality=90)
            write_rating(path, stars_of(name, k), with_exiftool=have_exiftool and i % 2 == 0)
    return folder


@pytest.fixture(scope="module")
def learnt(env, rated_folder):
    """`ase-mllm learn --from-xmp` run once: (exit status, stdout, stderr)."""
    import contextlib  # module-scoped: no capsys, capture by hand
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = ase_mllm(["learn", "--from-xmp", str(rated_folder), "--profile", "me", "--device", "cpu"])
    return rc, out.getvalue(), err.getvalue()


def test_learn_prints_both_agreements_and_saves_the_profile(env, learnt):
    from ase_model.personal import list_profiles, load_profile

    rc, out, err = learnt
    assert rc == 0, err
    assert "agreement with your 24 ratings" in out
    personal = float(next(line for line in out.splitlines() if "personal score" in line).split()[-1])
    generic = float(next(line for line in out.splitlines() if "generic score" in line).split()[-1])
    [info] = list_profiles()
    assert info.name == "me" and info.n_ratings == 24
    assert (info.personal_srcc, info.generic_srcc) == (pytest.approx(personal, abs=1e-3),
                                                        pytest.approx(generic, abs=1e-3))
    assert personal > 0.3  # brightness is plain in the features (the same set as tests/test_personal.py)
    assert info.path == env / "ase-mllm" / "profiles" / "me" and "saved profile 'me'" in out
    profile = load_profile("me")
    assert profile.meta["histogram"] == {"1": 6, "2": 6, "3": 6, "4": 4, "5": 2}
    # features are cached beside the daemon's store: a second learn computes nothing
    assert len(list((env / "ase-mllm" / "personal-features").rglob("*.npy"))) == 24


def test_too_few_ratings_no_profile(env, rated_folder, tmp_path, capsys):
    for photo in sorted(rated_folder.glob("*.jpg"))[:12]:
        shutil.copy(photo, tmp_path / photo.name)
        for side in rated_folder.glob(photo.name + ".xmp"):
            shutil.copy(side, tmp_path / side.name)
    rc = ase_mllm(["learn", "--from-xmp", str(tmp_path), "--profile", "few"])
    err = capsys.readouterr().err
    assert rc == 2 and "only 12 usable ratings" in err and "No profile was made" in err
    assert not (env / "ase-mllm" / "profiles" / "few").exists()


def test_all_equal_ratings_no_profile(env, rated_folder, tmp_path, capsys):
    from ase_daemon.xmp import SidecarOptions, write_sidecar

    for photo in sorted(rated_folder.glob("*.jpg")):
        shutil.copy(photo, tmp_path / photo.name)
        write_sidecar(tmp_path / photo.name, {"text": "", "attributes": {}, "score": 5.0, "tags": [], "model": "m",
                                              "saliency": {}}, SidecarOptions(write_rating=True))
    rc = ase_mllm(["learn", "--from-xmp", str(tmp_path), "--profile", "flat"])
    err = capsys.readouterr().err
    assert rc == 2 and "all 24 ratings are 3" in err and "No profile was made" in err
    assert not (env / "ase-mllm" / "profiles" / "flat").exists()


def test_learn_from_a_darktable_library_dry_run(env, learnt, rated_folder, tmp_path, capsys):
    """--from-darktable with darktable's tables (film_rolls, images.flags: stars and the reject bit)."""
    db = tmp_path / "library.db"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE film_rolls (id INTEGER PRIMARY KEY, access_timestamp INTEGER, folder VARCHAR);"
                      "CREATE TABLE images (id INTEGER PRIMARY KEY, film_id INTEGER, filename VARCHAR,"
                      " version INTEGER, flags INTEGER);")
    con.execute("INSERT INTO film_rolls VALUES (1, 0, ?)", (str(rated_folder),))
    photos = sorted(rated_folder.glob("*.jpg"))
    for i, photo in enumerate(photos):
        k = int(photo.stem[-1])
        flags = 8 | 1 if k == 0 else k + 1  # the darkest rejected
        con.execute("INSERT INTO images VALUES (?, 1, ?, 0, ?)", (i + 1, photo.name, flags))
    con.execute("INSERT INTO images VALUES (100, 1, 'gone.jpg', 0, 5)")  # deleted since: left out, not fatal
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg" * 10)  # unreadable: left out too
    con.execute("INSERT INTO film_rolls VALUES (2, 0, ?)", (str(tmp_path),))
    con.execute("INSERT INTO images VALUES (101, 2, 'broken.jpg', 0, 5)")
    con.commit()
    con.close()
    rc = ase_mllm(["learn", "--from-darktable", str(db), "--profile", "dt", "--dry-run", "--json", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(captured.out)
    assert report["n_ratings"] == 24 and report["histogram"] == {"-1": 6, "2": 6, "3": 6, "4": 6}
    assert report["path"] is None and not (env / "ase-mllm" / "profiles" / "dt").exists()
    assert "1 rated photo(s) no longer exist" in captured.err
    assert f"{tmp_path / 'broken.jpg'}: cannot be read" in captured.err and "left out" in captured.err


def test_critique_with_a_profile_gives_personal_score(env, learnt, rated_folder, capsys):
    from ase_model.critic import Critic
    from ase_model.personal import load_profile, personal_score, photo_features

    photos = [str(rated_folder / "coffee-0.jpg"), str(rated_folder / "coffee-3.jpg")]
    rc = ase_mllm(["critique", *photos, "--profile", "me", "--json", "--max-new-tokens", "4", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["image"] for r in records] == photos
    critic = Critic.from_pretrained(device="cpu")
    expected = personal_score(load_profile("me", model=critic.model_id), photo_features(critic, photos))
    got = [r["personal_score"] for r in records]
    assert got == pytest.approx(expected.tolist(), abs=1e-2) and all(0 < g < 10 for g in got)
    assert got[1] > got[0]  # the bright frame over the dark one, as the photographer rated
    assert all("score" in r for r in records)

    rc = ase_mllm(["critique", photos[0], "--profile", "me", "--max-new-tokens", "4", "--device", "cpu"])
    header = capsys.readouterr().out.splitlines()[0]
    assert rc == 0 and header.startswith(f"== {photos[0]}  score ") and f"personal {got[0]:.1f}/10" in header


def test_profile_of_another_model_is_a_clear_error(env, learnt, rated_folder, tiny_model_dir, capsys):
    rc = ase_mllm(["critique", str(rated_folder / "coffee-0.jpg"), "--profile", "me", "--model", str(tiny_model_dir),
                   "--device", "cpu", "--max-new-tokens", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "profile 'me' was learnt with model starter_model@" in err and "learn it again" in err
    rc = ase_mllm(["critique", str(rated_folder / "coffee-0.jpg"), "--profile", "nobody", "--model",
                   str(tiny_model_dir), "--device", "cpu"])
    assert rc == 2 and "no profile 'nobody'" in capsys.readouterr().err


def test_ase_client_lists_profiles_without_torch_or_a_daemon(env, learnt):
    code = ("import sys\nfrom ase_daemon.client_cli import main\nrc = main(sys.argv[1:])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nsys.exit(rc)")
    run_env = {**__import__("os").environ, "XDG_DATA_HOME": str(env), "ASE_ENDPOINT": "ipc:///nonexistent/sock"}
    r = subprocess.run([sys.executable, "-c", code, "profiles"], env=run_env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "ratings", "personal"]
    row = next(line for line in lines if line.startswith("me "))
    from ase_model.personal import list_profiles

    [info] = list_profiles()
    assert f"{info.personal_srcc:+.3f}" in row and f"{info.generic_srcc:+.3f}" in row and " 24 " in row
    assert info.created[:10] in row and str(info.path.parent) in r.stdout
    assert "rm -r" in r.stdout  # how to delete one
    r = subprocess.run([sys.executable, "-c", code, "profiles", "--json"], env=run_env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    [record] = json.loads(r.stdout)
    assert record["name"] == "me" and record["size"] == info.size and record["n_ratings"] == 24
    empty = {**run_env, "XDG_DATA_HOME": str(env / "nothing-here")}
    r = subprocess.run([sys.executable, "-c", code, "profiles"], env=empty, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "no profiles" in r.stdout and "ase-mllm learn" in r.stdout


def test_bad_arguments(env, capsys):
    assert ase_mllm(["learn", "--from-xmp", "/nonexistent/folder"]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert ase_mllm(["learn", "--from-xmp", ".", "--profile", "../evil"]) == 2
    assert "bad profile name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ase_mllm(["learn"])  # a source is required
