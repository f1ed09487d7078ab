"""Learning from a darktable library.db that REAL darktable wrote (issue 20).

darktable (under Xvfb, with a library FILE instead of the harness's usual `:memory:`) imports a folder of
photos, and a Lua driver gives each stars or a reject through darktable's Lua API (`image.rating`), then
quits. The test then reads the closed library.db with ase_model.personal (read-only SQLite), checks every
rating against what darktable was told, and learns a profile from it with the starter model.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import dt_runner
import numpy as np
import pytest
from conftest import daemon_env
from PIL import ImageEnhance

HERE = Path(__file__).resolve().parent
DRIVERS = HERE / "drivers"
DT_TIMEOUT = 150

_missing = [name for name in ("darktable", "xvfb-run") if shutil.which(name) is None]
pytestmark = [
    pytest.mark.darktable,
    pytest.mark.skipif(bool(_missing), reason=f"not installed: {', '.join(_missing)} "
                       "(apt-get install darktable xvfb xauth)"),
]


def run_darktable_with_library(work: Path, library: Path, env: dict) -> dict:
    """dt_runner's run, but darktable keeps its library in `library` (a file that outlives the run)."""
    cfg = work / "cfg"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "luarc").write_text("")
    result, started, log = work / "result.txt", work / "result.txt.started", work / "darktable.log"
    full_env = {**daemon_env(work), "ASE_DT_RESULT": str(result), "ASE_DT_HARNESS": str(DRIVERS / "harness.lua"),
                "ASE_DT_DRIVER": str(DRIVERS / "personal_library.lua"), **env}
    cmd = ["timeout", "-k", "5", str(DT_TIMEOUT), "xvfb-run", "-a", "-n", str(dt_runner.display_base()),
           "-s", "-screen 0 1600x1000x24",
           "darktable", "--configdir", str(cfg), "--cachedir", str(work / "cache"), "--library", str(library),
           "--disable-opencl", "-d", "lua", "--luacmd", "dofile(os.getenv('ASE_DT_DRIVER'))"]
    with dt_runner.one_darktable():
        t0 = time.monotonic()
        for attempt in (1, 2):  # darktable 4.2 may hang before running any Lua: one retry on a fresh library
            # (its lock file too: the hung darktable, killed, can linger as a zombie whose pid looks alive)
            for f in (result, started, library, library.with_name(library.name + ".lock")):
                f.unlink(missing_ok=True)
            for stale in cfg.glob("data.db*"):
                stale.unlink()
            rc, outcome = dt_runner._darktable_once(cmd, full_env, log, started, DT_TIMEOUT)
            if not dt_runner.worth_a_retry(outcome, rc):
                break
            shutil.copy(log, work / f"darktable-{outcome}-rc{rc}-{attempt}.log")
    text = log.read_text(errors="replace")
    report = {}
    if result.exists():
        for line in result.read_text().splitlines():
            key, _, value = line.partition("\t")
            report[dt_runner.unescape(key)] = dt_runner.unescape(value)
    where = (f"(darktable {outcome}, rc={rc}, attempt {attempt}, {time.monotonic() - t0:.0f} s; log {log}):\n"
             f"{text[-4000:]}")
    assert report.get("driver") == "PASS", f"driver: {report.get('driver')!r} {where}"
    assert outcome == "ok" and rc == 0, f"darktable did not quit cleanly {where}"
    assert "LUA ERROR" not in text, where
    return report


def test_learn_from_a_real_darktable_library(tmp_path, photos, monkeypatch):
    import torch

    from ase_model.critic import Critic
    from ase_model.personal import (
        FeatureCache,
        learn,
        list_profiles,
        load_profile,
        photo_features,
        ratings_from_darktable,
        save_profile,
    )

    folder = tmp_path / "film"
    folder.mkdir()
    wanted = {}
    for name, im in photos.items():
        small = im.copy()
        small.thumbnail((256, 256))
        for k, gain in enumerate((0.35, 0.7, 1.0, 1.4)):
            path = folder / f"{name}-{k}.jpg"
            ImageEnhance.Brightness(small).enhance(gain).save(path, quality=90)
            wanted[path] = (-1, 2, 4, 5)[k]  # a photographer who likes bright frames and rejects the darkest
    wanted[folder / "rocket-2.jpg"] = 0  # one left without stars: not a rating
    (tmp_path / "ratings.tsv").write_text("".join(f"{p}\t{r}\n" for p, r in wanted.items()))
    library = tmp_path / "library.db"
    report = run_darktable_with_library(tmp_path / "dt", library, {"ASE_DT_RATINGS": str(tmp_path / "ratings.tsv")})
    assert report["count"] == str(len(wanted))
    assert {k[len("rated."):]: int(v) for k, v in report.items() if k.startswith("rated.")} == {
        p.name: r for p, r in wanted.items()}

    rated = ratings_from_darktable(library)
    assert {r.path: r.rating for r in rated} == {p.resolve(): r for p, r in wanted.items() if r != 0}
    assert {r.path: r.rating for r in ratings_from_darktable(library, include_unrated=True)} == {
        p.resolve(): r for p, r in wanted.items()}

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        critic = Critic.from_pretrained(device="cpu", dtype="float32")
        feats = photo_features(critic, [r.path for r in rated], cache=FeatureCache(tmp_path / "cache", critic.model_id))
    finally:
        torch.set_num_threads(before)
    result = learn(feats.vectors, feats.scores, np.array([r.rating for r in rated]), image_dims=feats.image_dims)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    save_profile("darktable", result, model=critic.model_id, sources=[f"darktable:{library}"])
    [info] = list_profiles()
    assert (info.name, info.n_ratings) == ("darktable", len(rated))
    profile = load_profile("darktable", model=critic.model_id)
    assert profile.meta["sources"] == [f"darktable:{library}"]
    assert result.personal_srcc > 0.3, result.summary()
