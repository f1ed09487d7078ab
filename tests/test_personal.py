"""The personal critic's core (issue 20): ratings from real sidecars, features through the real starter model,
learning with its refusals, profiles on disk. The darktable library.db test is tests/darktable/test_personal_library.py.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess

import numpy as np
import pytest
from PIL import ImageEnhance

from ase_model.personal import (
    FeatureCache,
    NotEnoughRatings,
    ProfileError,
    ProfileModelMismatch,
    feature_names,
    learn,
    list_profiles,
    load_profile,
    personal_score,
    photo_features,
    profiles_dir,
    ratings_from_darktable,
    ratings_from_xmp,
    save_profile,
    srcc,
)
from ase_model.personal.ratings import darktable_rating, read_sidecar_rating

exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")


@pytest.fixture(scope="module")
def critic():
    import torch

    from ase_model.critic import Critic

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Critic.from_pretrained(device="cpu", dtype="float32")
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rated_set(critic, photos, tmp_path_factory):
    """24 real photos (6 samples x 4 exposures) rated by how bright they are, with their features."""
    folder = tmp_path_factory.mktemp("rated")
    paths, ratings = [], []
    for name, im in photos.items():
        small = im.copy()
        small.thumbnail((256, 256))
        for k, gain in enumerate((0.35, 0.7, 1.0, 1.4)):
            path = folder / f"{name}-{k}.jpg"
            ImageEnhance.Brightness(small).enhance(gain).save(path, quality=90)
            paths.append(path)
            ratings.append(k + 1 + (1 if k == 3 and name in ("coffee", "china") else 0))
    feats = photo_features(critic, paths, cache=FeatureCache(folder / "cache", critic.model_id), batch_size=8)
    return paths, np.array(ratings), feats


# ---- ratings in -------------------------------------------------------------------------------------------


def test_ratings_from_the_projects_xmp_writer(photo_files):
    from ase_daemon.xmp import SidecarOptions, rating_from_score, write_sidecar

    folder = photo_files["astronaut"].parent
    result = {"text": "Exposure: fine.", "attributes": {}, "score": 8.4, "tags": [], "model": "m", "saliency": {}}
    write_sidecar(photo_files["astronaut"], result, SidecarOptions(write_rating=True))
    write_sidecar(photo_files["coffee"], {**result, "score": 3.1}, SidecarOptions(write_rating=True))
    write_sidecar(photo_files["chelsea"], result, SidecarOptions(write_rating=False))  # no xmp:Rating: unrated
    got = {r.path.name: r.rating for r in ratings_from_xmp([folder])}
    assert got == {"astronaut.jpg": rating_from_score(8.4), "coffee.jpg": rating_from_score(3.1)}
    assert all(r.source.endswith(".jpg.xmp") for r in ratings_from_xmp([folder]))


@exiftool
def test_ratings_from_exiftool_sidecars_both_namings(photo_files):
    folder = photo_files["astronaut"].parent

    def write(path, stars):
        subprocess.run(["exiftool", "-q", f"-XMP-xmp:Rating={stars}", str(path)], check=True, timeout=60)

    write(folder / "astronaut.jpg.xmp", 5)      # darktable's naming
    write(folder / "coffee.xmp", -1)            # Lightroom / digiKam naming: a reject
    write(folder / "chelsea.jpg.xmp", 2)        # both: darktable's wins
    write(folder / "chelsea.xmp", 4)
    write(folder / "rocket.jpg.xmp", 0)         # no stars: not a rating
    (folder / "china.jpg.xmp").write_text("<x:xmpmeta this is not xmp")  # broken: skipped, not fatal
    got = {r.path.name: r.rating for r in ratings_from_xmp([folder])}
    assert got == {"astronaut.jpg": 5, "coffee.jpg": -1, "chelsea.jpg": 2}
    assert read_sidecar_rating(folder / "china.jpg.xmp") is None
    with_unrated = {r.path.name: r.rating for r in ratings_from_xmp([folder], include_unrated=True)}
    assert with_unrated["rocket.jpg"] == 0
    # exiftool reads back what we read
    x = json.loads(subprocess.run(["exiftool", "-j", "-XMP-xmp:Rating", str(folder / "coffee.xmp")],
                                  capture_output=True, text=True, check=True, timeout=60).stdout)[0]
    assert x["Rating"] == -1


def test_darktable_flags():
    assert darktable_rating(3) == 3
    assert darktable_rating(0) == 0
    assert darktable_rating(8 | 4) == -1   # darktable >= 3.0: the rejected bit, stars kept underneath
    assert darktable_rating(6) == -1       # before 3.0: 6 stars meant rejected
    assert darktable_rating(0x100 | 5) == 5  # other flag bits do not matter
    assert darktable_rating(7) is None


def test_darktable_library_read_only(tmp_path):
    db = tmp_path / "library.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE film_rolls (id INTEGER PRIMARY KEY, access_timestamp INTEGER, folder VARCHAR(1024));"
        "CREATE TABLE images (id INTEGER PRIMARY KEY, film_id INTEGER, filename VARCHAR, version INTEGER,"
        " flags INTEGER);"
        "INSERT INTO film_rolls VALUES (1, 0, '/photos/a'), (2, 0, '/photos/b');"
        "INSERT INTO images VALUES (1, 1, 'x.jpg', 0, 4), (2, 1, 'x.jpg', 1, 1), (3, 1, 'y.nef', 0, 9),"
        " (4, 2, 'z.jpg', 0, 0);")
    con.commit()
    con.close()
    before = db.read_bytes()
    got = {str(r.path): r.rating for r in ratings_from_darktable(db)}
    assert got == {"/photos/a/x.jpg": 4, "/photos/a/y.nef": -1}  # the duplicate (version 1) does not count
    assert {str(r.path) for r in ratings_from_darktable(db, include_unrated=True, folders=["/photos/b"])} == {
        "/photos/b/z.jpg"}
    assert db.read_bytes() == before
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match="not a darktable library"):
        ratings_from_darktable(tmp_path / "junk.db")
    with pytest.raises(FileNotFoundError):
        ratings_from_darktable(tmp_path / "missing.db")


# ---- features ---------------------------------------------------------------------------------------------


def test_features_cached_by_content_and_model(critic, rated_set, tmp_path):
    paths, _, feats = rated_set
    assert feats.vectors.shape == (len(paths), len(feature_names(critic)))
    assert np.isfinite(feats.vectors).all()
    assert np.allclose(feats.scores, feats.vectors[:, -1]) and ((0 <= feats.scores) & (feats.scores <= 10)).all()
    # the score column is the critic's own score
    [c] = critic.critique([paths[0]], max_new_tokens=1)
    assert feats.scores[0] == pytest.approx(c.score, abs=1e-3)
    # a copy under another name is a cache hit: same vector, nothing recomputed
    copy = tmp_path / "renamed.jpg"
    shutil.copy(paths[3], copy)
    cache = FeatureCache(paths[0].parent / "cache", critic.model_id)
    assert np.array_equal(cache.get(__import__("ase_model.personal", fromlist=["x"]).content_hash(copy)),
                          feats.vectors[3])
    again = photo_features(critic, [copy], cache=cache)
    assert np.array_equal(again.vectors[0], feats.vectors[3])
    with pytest.raises(ValueError, match="feature cache of model"):
        photo_features(critic, [copy], cache=FeatureCache(tmp_path, "other@0000"))


# ---- learning ---------------------------------------------------------------------------------------------


def test_too_few_ratings(rated_set):
    _, ratings, feats = rated_set
    with pytest.raises(NotEnoughRatings, match="only 12 usable ratings.*No profile"):
        learn(feats.vectors[:12], feats.scores[:12], ratings[:12])


def test_all_equal_ratings(rated_set):
    _, ratings, feats = rated_set
    with pytest.raises(NotEnoughRatings, match="all 24 ratings are 3"):
        learn(feats.vectors, feats.scores, np.full(len(ratings), 3))


def test_learns_a_taste_and_round_trips_a_profile(critic, rated_set, tmp_path, monkeypatch):
    _, ratings, feats = rated_set
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    result = learn(feats.vectors, feats.scores, ratings, image_dims=feats.image_dims)
    assert result.n_ratings == 24 and sum(result.histogram.values()) == 24
    # brightness is easy to see in the features: held out (24 ratings, 5 folds) and on the ratings learnt from
    assert result.personal_srcc > 0.3
    assert srcc(result.model.predict(feats.vectors, feats.scores), ratings) > 0.8
    assert "personal" in result.summary() and "generic" in result.summary()

    folder = save_profile("alice", result, model=critic.model_id, sources=["/photos"])
    assert folder == profiles_dir() / "alice" == tmp_path / "data" / "ase-mllm" / "profiles" / "alice"
    [info] = list_profiles()
    assert (info.name, info.n_ratings, info.model) == ("alice", 24, critic.model_id)
    assert info.size == sum(f.stat().st_size for f in folder.iterdir()) and info.created
    assert info.personal_srcc == pytest.approx(result.personal_srcc, abs=1e-4)
    assert info.generic_srcc == pytest.approx(result.generic_srcc, abs=1e-4)

    profile = load_profile("alice", model=critic.model_id)
    got = personal_score(profile, feats)
    assert np.allclose(got, result.model.score(feats.vectors, feats.scores))
    assert ((0 < got) & (got < 10)).all()

    # replacing is atomic: one folder, no temporary left behind
    save_profile("alice", result, model=critic.model_id)
    assert [p.name for p in profiles_dir().iterdir()] == ["alice"]

    with pytest.raises(ProfileModelMismatch, match="learn it again"):
        load_profile("alice", model="starter_model@ffffffffffffffff")
    other = feats.__class__(feats.vectors, feats.scores, "another@1234")
    with pytest.raises(ProfileModelMismatch, match="learn it again"):
        personal_score(profile, other)
    with pytest.raises(ProfileError, match="no profile"):
        load_profile("bob")
    with pytest.raises(ProfileError, match="bad profile name"):
        save_profile("../evil", result, model=critic.model_id)


def test_ridge_path_equals_the_penalised_solve():
    """fit_path (score profiled out, one eigendecomposition) is the ridge with a free generic-score weight."""
    from scipy.stats import rankdata

    from ase_model.personal.learning import fit_path

    rng = np.random.default_rng(0)
    for n in (200, 40):  # more ratings than features, and fewer
        x, s = rng.normal(size=(n, 60)), rng.normal(size=n)
        r = np.clip(np.round(x[:, 0] + s + rng.normal(size=n)), -1, 5)
        [t] = fit_path(x, s, r, [10.0])
        xs, ss = (x - x.mean(0)) / x.std(0), (s - s.mean()) / s.std()
        y = rankdata(r)
        y = (y - y.mean()) / y.std()
        z = np.column_stack([ss, xs])
        penalty = np.full(61, 10.0)
        penalty[0] = 0.0
        beta = np.linalg.solve(z.T @ z + np.diag(penalty), z.T @ y)
        assert t.a == pytest.approx(beta[0], abs=1e-8)
        assert np.allclose(t.w, beta[1:], atol=1e-8)
