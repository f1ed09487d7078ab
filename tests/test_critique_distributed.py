"""`ase-mllm critique --distributed` (daemon/critique_distributed.py) with the tiny model: as one process (no
launcher) and under `accelerate launch --multi_gpu --num_processes 2` on CPU (a gloo group), a run killed with its
shards part written, then resumed: every frame critiqued exactly once, the merged records equal to the plain
single-process `ase-mllm critique`, the store filled under the daemon's keys.

The plain run and the one-process run run in this process (their records are what the command prints); the two
launches are real subprocess trees."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from conftest import daemon_env
from imageio_helpers import pidng_dng
from PIL import Image, ImageEnhance

N_JPEGS = 15  # frames: 15, one of them a JPEG+DNG pair; ranks 0 and 1 take 8 and 7
MNT = 6
BATCH = 2


@pytest.fixture(scope="module")
def shoot(tmp_path_factory):
    from ase_model.starter.dataset import source_photos

    src = source_photos()
    names = sorted(src)
    folder = tmp_path_factory.mktemp("distributed") / "shoot"
    folder.mkdir()
    for i in range(N_JPEGS):
        im = src[names[i % len(names)]].convert("RGB")
        w, h = im.size
        im = im.crop((i % 5 * 3, i % 3 * 2, w - i % 4, h - i % 2)).resize((96, 64))
        im = ImageEnhance.Brightness(im).enhance(0.7 + 0.03 * i)
        im.save(folder / f"IMG_{i:04d}.jpg", quality=90)
        if i == 1:
            pidng_dng(folder / "IMG_0001.dng", np.asarray(im))
    (folder.parent / "config.toml").write_text("")
    return folder


def critique_args(shoot, model, db, *extra) -> list[str]:
    return ["--model", str(model), "--db", str(db), "--config", str(shoot.parent / "config.toml"),
            "--max-new-tokens", str(MNT), "--batch-size", str(BATCH), "--format", "jsonl", "--no-progress",
            *map(str, extra), str(shoot)]


def in_process(capsys, argv) -> tuple[int, list[dict], str]:
    from ase_daemon import critique_cli

    status = critique_cli.main(argv)
    out, err = capsys.readouterr()
    return status, [json.loads(line) for line in out.splitlines()], err


def essentials(records) -> list[tuple]:
    return [(r["image"], r.get("companions"), r["text"], round(r["score"], 3), r["tags"]) for r in records]


@pytest.fixture(scope="module")
def reference(shoot, tiny_model_dir):
    """The plain single-process `ase-mllm critique` (no --distributed), in this process."""
    import contextlib
    import io

    from ase_daemon import critique_cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = critique_cli.main(critique_args(shoot, tiny_model_dir, shoot.parent / "reference.db"))
    assert status == 0, err.getvalue()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == N_JPEGS and records[1]["companions"] == [str(shoot / "IMG_0001.dng")]
    return records


def shard_lines(folder) -> list[dict]:
    """The complete lines of the shard files (a kill may have cut the last one short)."""
    out = []
    for path in sorted(folder.glob("rank-*.jsonl")):
        for line in path.read_bytes().split(b"\n"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def assert_in_store(db, records, model):
    from ase_daemon.store import Store

    store = Store(db)
    try:
        for r in records:
            stored = store.get_critique(r["hash"], model, MNT)  # the daemon's key: it answers these photos
            assert stored is not None and stored.result.text == r["text"], r["image"]
            assert stored.saliency_png
    finally:
        store.close()


def test_one_process_without_a_launcher(shoot, tiny_model_dir, reference, capsys):
    db = shoot.parent / "one.db"
    status, records, err = in_process(capsys, critique_args(shoot, tiny_model_dir, db, "--distributed"))
    assert status == 0, err
    assert essentials(records) == essentials(reference)
    assert all(r["cached"] is False for r in records)
    assert f"rank 0 of 1: {N_JPEGS} frames, {N_JPEGS} critiqued now" in err
    assert_in_store(db, records, reference[0]["model"])
    assert not any((shoot.parent / "shards").iterdir())  # the default shards folder goes once merged
    # again, with the sidecars: all from the store, no model; rank 0 writes both sidecars of the pair
    status, again, err = in_process(capsys, critique_args(shoot, tiny_model_dir, db, "--distributed", "--write-xmp"))
    assert status == 0 and essentials(again) == essentials(reference) and all(r["cached"] for r in again)
    assert f"0 critiqued now, {N_JPEGS} done before" in err
    pair = [str(shoot / "IMG_0001.jpg.xmp"), str(shoot / "IMG_0001.dng.xmp")]
    assert again[1]["sidecars"] == pair and all(os.path.exists(p) for p in pair)
    from ase_daemon.xmp import read_sidecar

    assert float(read_sidecar(pair[1])["score"]) == pytest.approx(again[1]["score"], abs=0.006)
    for r in again:
        for p in r["sidecars"]:
            os.remove(p)


def test_one_process_with_a_profile_gives_the_plain_runs_personal_scores(shoot, tiny_model_dir, capsys,
                                                                         tmp_path, monkeypatch):
    """`--profile` under --distributed: each record's personal_score equals the plain CLI's; a rerun that finds
    every critique in its shards (kept with --shards) reads the scores there too, and a profile learnt again
    scores afresh."""
    from ase_model.critic import Critic
    from ase_model.personal import FeatureCache, learn, photo_features, save_profile

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    critic = Critic.from_pretrained(tiny_model_dir, device="cpu")
    paths = sorted(shoot.glob("*.jpg"))
    rated = []
    for k, gain in enumerate((0.4, 0.8, 1.2, 1.6)):  # 15 frames x 4 exposures, rated by how bright they are
        for p in paths:
            out = tmp_path / "rated" / f"{p.stem}-{k}.jpg"
            out.parent.mkdir(exist_ok=True)
            ImageEnhance.Brightness(Image.open(p)).enhance(gain).save(out, quality=90)
            rated.append((out, k + 1))
    feats = photo_features(critic, [p for p, _ in rated], cache=FeatureCache(tmp_path / "cache", critic.model_id))
    save_profile("me", learn(feats.vectors, feats.scores, np.array([r for _, r in rated])), model=critic.model_id)

    plain = in_process(capsys, critique_args(shoot, tiny_model_dir, tmp_path / "plain.db", "--profile", "me"))
    assert plain[0] == 0, plain[2]
    shards, db = tmp_path / "shards", tmp_path / "dist.db"
    status, records, err = in_process(capsys, critique_args(shoot, tiny_model_dir, db, "--distributed",
                                                            "--shards", shards, "--profile", "me"))
    assert status == 0, err
    want = [(r["image"], r["personal_score"]) for r in plain[1]]
    assert [(r["image"], r["personal_score"]) for r in records] == want
    assert all(isinstance(s, float) for _, s in want) and len({s for _, s in want}) > 1
    lines = [line for line in shard_lines(shards) if line["kind"] == "personal"]
    assert len(lines) == N_JPEGS  # one a frame

    status, again, err = in_process(capsys, critique_args(shoot, tiny_model_dir, db, "--distributed",
                                                          "--shards", shards, "--profile", "me"))
    assert status == 0 and [(r["image"], r["personal_score"]) for r in again] == want
    assert len([line for line in shard_lines(shards) if line["kind"] == "personal"]) == N_JPEGS  # none again

    save_profile("me", learn(feats.vectors, feats.scores, np.array([5 - r for _, r in rated])),
                 model=critic.model_id)  # replaces the first
    status, flipped, err = in_process(capsys, critique_args(shoot, tiny_model_dir, db, "--distributed",
                                                            "--shards", shards, "--profile", "me"))
    assert status == 0, err
    assert len([line for line in shard_lines(shards) if line["kind"] == "personal"]) == 2 * N_JPEGS
    assert [r["personal_score"] for r in flipped] != [s for _, s in want]
    status, _, err = in_process(capsys, critique_args(shoot, tiny_model_dir, db, "--distributed",
                                                      "--profile", "nobody"))
    assert status == 2 and "nobody" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(shoot, model, db, shards) -> list[str]:
    # `--cpu` would start ONE process (accelerate 1.x without MPI); --multi_gpu starts torchrun's N processes and,
    # with no GPU, critique_distributed asks accelerate for a gloo CPU group
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(free_port()), "-m", "ase_daemon.mllm_cli", "critique", "--distributed", "--shards", str(shards),
            *critique_args(shoot, model, db)]


def kill_tree(proc) -> None:
    import psutil

    parent = psutil.Process(proc.pid)
    for p in [*parent.children(recursive=True), parent]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)


@pytest.mark.slow
def test_two_processes_killed_then_resumed(shoot, tiny_model_dir, reference):
    tmp = shoot.parent
    db, shards = tmp / "two.db", tmp / "two-shards"
    env = {**daemon_env(tmp), "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    proc = subprocess.Popen(launch(shoot, tiny_model_dir, db, shards), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and not any(p.stat().st_size for p in shards.glob("rank-*.jsonl")):
            time.sleep(0.005)
    finally:
        kill_tree(proc)  # a batch or a few in: killed before the merge
    killed = time.perf_counter() - t0
    first = shard_lines(shards)
    assert 0 < len(first) < N_JPEGS, f"not killed part way: {len(first)} lines"
    assert all(line["kind"] == "made" for line in first)

    t0 = time.perf_counter()
    r = subprocess.run(launch(shoot, tiny_model_dir, db, shards), env=env, capture_output=True, text=True,
                       timeout=600)
    resumed = time.perf_counter() - t0
    print(f"killed run {killed:.1f} s ({len(first)} of {N_JPEGS} frames in its shards), resumed run {resumed:.1f} s")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert essentials(records) == essentials(reference)  # the order, the pair, text, score and tags of one process
    lines = shard_lines(shards)
    assert all(line in lines for line in first)  # what the killed run wrote stays
    made = Counter(line["image"] for line in lines if line["kind"] == "made")
    assert made == Counter(str(r["image"]) for r in reference)  # every frame by the model exactly once, all runs
    assert len({line["run"] for line in lines}) == 2 and {line["rank"] for line in lines} == {0, 1}
    done_before = sum(int(part.split(" done before")[0].rsplit(", ", 1)[1]) for part in r.stderr.splitlines()
                      if " done before" in part)
    assert done_before == len(first)  # the resumed ranks skipped exactly what the killed run had written
    assert sum(not x["cached"] for x in records) == N_JPEGS - len(first)
    assert_in_store(db, records, reference[0]["model"])
    assert f"{N_JPEGS} critiqued ({len(first)} from the store, {N_JPEGS - len(first)} by the model now)" in r.stderr


def test_shard_line_cut_by_a_kill_is_dropped_on_reopen(tmp_path):
    from ase_daemon.critique_shards import ShardIndex, ShardWriter, read_shards

    key = {"model": "m", "max_new_tokens": MNT, "kind": "made", "record": {}}
    w = ShardWriter(tmp_path, 3, "run1")
    w.add({**key, "image": "a.jpg", "hash": "ha"})
    w.close()
    with open(w.path, "ab") as f:  # a kill in the middle of the next batch's write
        f.write(b'{"image": "b.jpg", "ha')
    w = ShardWriter(tmp_path, 3, "run2")
    w.add({**key, "image": "b.jpg", "hash": "hb"})
    w.add({**key, "image": "c.jpg", "hash": "hc", "model": "another"})
    w.close()
    lines = read_shards(tmp_path)
    assert [(x["image"], x["run"], x["rank"]) for x in lines] == [("a.jpg", "run1", 3), ("b.jpg", "run2", 3),
                                                                  ("c.jpg", "run2", 3)]
    index = ShardIndex(lines, "m", MNT)  # another model's line is not done for this one
    assert index.done("ha") and index.done("hb") and not index.done("hc")
