"""`ase-client`: commands, exit codes, the `lines` format (the darktable plugin's contract), --start."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from ase_daemon import protocol as P
from conftest import daemon_env, free_port
from PIL import Image


def ase_client(*args, env, timeout=60):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "ase_daemon.client_cli", *map(str, args)], env=env, capture_output=True,
                       text=True, timeout=timeout)
    r.seconds = time.monotonic() - t0
    return r


def write_jpeg(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path, "JPEG")
    return path


def test_ping_status_and_usage(shared_daemon, tmp_path):
    env = daemon_env(tmp_path)
    r = ase_client("--endpoint", shared_daemon.ipc, "ping", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "ready"
    r = ase_client("--endpoint", shared_daemon.tcp, "status", env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["counts"]["requests"] > 0
    env_ep = {**env, "ASE_ENDPOINT": shared_daemon.ipc}  # the environment names the endpoint
    assert ase_client("ping", env=env_ep).returncode == 0
    for bad in (["critique"], ["frobnicate"], ["critique", "x.jpg", "--format", "yaml"],
                ["critique", "x.jpg", "--max-new-tokens", "0"]):
        r = ase_client("--endpoint", shared_daemon.ipc, *bad, env=env)
        assert r.returncode == 2, (bad, r.stderr)


def test_critique_lines_format_and_exit_codes(shared_daemon, tmp_path):
    from ase_daemon.client import Client
    from ase_daemon.xmp import rating_from_score

    env = daemon_env(tmp_path)
    a = write_jpeg(tmp_path / "a photo.jpg", 1)
    b = write_jpeg(tmp_path / "b.jpg", 2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "sal"
    r = ase_client("--endpoint", shared_daemon.ipc, "critique", a, broken, b, missing, "--format", "lines",
                   "--saliency-out", out, env=env)
    assert r.returncode == 1, r.stderr  # some images failed
    blocks = P.parse_lines(r.stdout)
    assert [blk["image"] for blk in blocks] == [str(a), str(broken), str(b), str(missing)]  # the order given
    assert r.stdout.count("\nend\n") == 4 and r.stdout.endswith("end\n")
    good, bad_image, good2, not_found = blocks
    with Client(shared_daemon.ipc) as c:
        expected, _ = c.critique(path=a)
    assert good["text"] == expected["text"] and good["score"] == round(expected["score"], 3)
    assert good["tags"] == expected["tags"] and good["attributes"] == expected["attributes"]
    assert good["model"] == expected["model"] and good["rating"] == rating_from_score(expected["score"])
    assert good["saliency"] == str(out / "a photo.jpg.saliency.png")
    assert Image.open(good["saliency"]).mode == "L"
    assert "cached" in good and "error" not in good and "score" in good2
    assert bad_image["error"]["code"] == P.BAD_IMAGE and "broken.jpg" in bad_image["error"]["message"]
    assert not_found["error"]["code"] == P.NOT_FOUND and "score" not in not_found
    # every line is key<TAB>value (error lines: error<TAB>code<TAB>message), nothing else
    for line in r.stdout.splitlines():
        key = line.split("\t", 1)[0]
        assert key in {"image", "score", "rating", "tag", "text", "saliency", "cached", "model", "error", "end"} \
            or key.startswith("attr."), line
    # two photos of the same name from different folders keep their own saliency maps
    (tmp_path / "other").mkdir()
    b_twin = write_jpeg(tmp_path / "other" / "b.jpg", 3)
    r = ase_client("--endpoint", shared_daemon.ipc, "critique", b, b_twin, "--format", "lines", "--saliency-out", out,
                   env=env)
    assert r.returncode == 0, r.stderr
    paths = [blk["saliency"] for blk in P.parse_lines(r.stdout)]
    assert paths == [str(out / "b.jpg.saliency.png"), str(out / "b.jpg-2.saliency.png")]
    assert all(Path(p).exists() for p in paths)
    # all good -> 0; json format; bytes instead of paths
    r = ase_client("--endpoint", shared_daemon.ipc, "--send-bytes", "critique", a, b, "--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["image"] for x in records] == [str(a), str(b)] and records[0]["text"] == expected["text"]
    # streaming: token lines, then the block
    r = ase_client("--endpoint", shared_daemon.ipc, "critique", b, "--format", "lines", "--stream", "--force", env=env)
    assert r.returncode == 0, r.stderr
    tokens = [P.unescape(line.split("\t", 1)[1]) for line in r.stdout.splitlines() if line.startswith("token\t")]
    [block] = P.parse_lines(r.stdout)
    assert tokens and "".join(tokens).strip() == block["text"] and block["cached"] is False


def test_submit_job_cancel(shared_daemon, tmp_path):
    env = daemon_env(tmp_path)
    img = write_jpeg(tmp_path / "j.jpg", 3)
    r = ase_client("--endpoint", shared_daemon.ipc, "submit", img, env=env)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)["job"]
    deadline = time.monotonic() + 30
    while True:
        r = ase_client("--endpoint", shared_daemon.ipc, "job", job, "--saliency-out", tmp_path / "s", env=env)
        info = json.loads(r.stdout)
        if info["state"] == "done":
            break
        assert time.monotonic() < deadline
    assert r.returncode == 0 and info["result"]["text"] is not None
    assert (tmp_path / "s" / "j.jpg.saliency.png").exists()
    r = ase_client("--endpoint", shared_daemon.ipc, "cancel", job, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["cancelled"] is False
    r = ase_client("--endpoint", shared_daemon.ipc, "job", "no-such-job", env=env)
    assert r.returncode == 1 and "not_found" in r.stderr


def test_daemon_down_exits_3_within_timeout(tmp_path):
    env = daemon_env(tmp_path)
    r = ase_client("--endpoint", f"ipc://{tmp_path}/nobody.sock", "critique", "x.jpg", env=env)
    assert r.returncode == 3 and "no ase-daemon answering" in r.stderr and "ase-client --start" in r.stderr
    r = ase_client("--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1", "ping", env=env)
    assert r.returncode == 3 and "no ase-daemon answering" in r.stderr
    assert r.seconds < 1 + 3  # the timeout plus interpreter start-up


def test_start_launches_daemon_from_config_and_idle_unload(tmp_path, tiny_model_dir):
    """--start runs the daemon detached with the config file's settings; idle unload; auto-load on demand."""
    env = daemon_env(tmp_path)
    cfg = tmp_path / "config" / "ase-mllm" / "config.toml"
    cfg.parent.mkdir(parents=True)
    ep = f"ipc://{tmp_path}/run/ase-mllm/daemon.sock"  # the default endpoint for this XDG_RUNTIME_DIR
    cfg.write_text(f'model = "{tiny_model_dir}"\nthreads = 1\nidle_unload_s = 1.5\ndb = "{tmp_path}/s.db"\n'
                   f'endpoints = ["{ep}"]\n[limits]\nmax_new_tokens = 8\n')
    img = write_jpeg(tmp_path / "i.jpg", 4)
    try:
        r = ase_client("--start", "ping", env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["state"] == "ready" and "starting ase-daemon" in r.stderr
        assert (tmp_path / "run" / "ase-mllm" / "daemon.log").exists()
        time.sleep(2.5)
        r = ase_client("ping", env=env)
        assert json.loads(r.stdout)["state"] == "unloaded", r.stdout
        # an uncached critique brings the model back; the client waits for it
        r = ase_client("critique", img, "--format", "lines", env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert P.parse_lines(r.stdout)[0]["cached"] is False
    finally:
        r = ase_client("shutdown", env=env)
    assert r.returncode == 0
    deadline = time.monotonic() + 15
    while (tmp_path / "run" / "ase-mllm" / "daemon.sock").exists():
        assert time.monotonic() < deadline, "the daemon did not remove its socket"
        time.sleep(0.1)


def test_photos_sent_as_bytes_are_read_as_regular_files_only(tmp_path):
    """`ase-client --send-bytes` (and any remote endpoint) reads the photo itself: a FIFO must not block it, a
    device must not flood it, and each refusal names the problem with the protocol's code."""
    import os

    import pytest
    from ase_daemon import protocol as P
    from ase_daemon.client_cli import PhotoUnreadable, read_photo

    fifo = tmp_path / "f.jpg"
    os.mkfifo(fifo)
    (tmp_path / "dir.jpg").mkdir()
    (tmp_path / "ok.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cases = {str(fifo): (P.BAD_IMAGE, "FIFO"), "/dev/zero": (P.BAD_IMAGE, "device"),
             str(tmp_path / "dir.jpg"): (P.BAD_IMAGE, "directory"),
             str(tmp_path / "none.jpg"): (P.NOT_FOUND, "none.jpg")}
    for path, (code, word) in cases.items():
        with pytest.raises(PhotoUnreadable) as e:
            read_photo(path)
        assert e.value.code == code and word.lower() in e.value.message.lower(), e.value.message
    assert read_photo(str(tmp_path / "ok.jpg")).startswith(b"\xff\xd8")
