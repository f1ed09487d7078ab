"""The daemon's `cull` op end to end: a real daemon on the tiny model over real ZeroMQ, progress events, cancel,
decisions kept in the store, a second cull answered from the store, and `ase-mllm cull` sharing the daemon's store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import pytest
from ase_daemon.client import DaemonError
from conftest import DaemonProcess, daemon_env
from PIL import Image
from test_cull_cli import make_shoot


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_model_dir):
    d = DaemonProcess(tmp_path_factory.mktemp("cull-daemon"), tiny_model_dir).start()
    yield d
    d.stop()


def test_cull_sends_progress_and_keeps_the_decisions(daemon, tmp_path):
    shoot = make_shoot(tmp_path / "shoot")
    events = []
    with daemon.client(timeout=30) as c:
        result = c.cull([shoot], on_progress=events.append)
        assert result["state"] == "done" and len(result["decisions"]) == 5
        assert [e["path"] for e in result["errors"]] == [str(shoot / "IMG_0200.jpg")]
        burst = [d for d in result["decisions"] if d["path"].endswith(("0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg"))]
        assert len({d["group"] for d in burst}) == 1 and sum(d["decision"] == "pick" for d in burst) == 1
        assert all(d["reason"] and d["decision"] in ("pick", "keep", "reject") for d in result["decisions"])
        assert result["counts"]["critiqued"] == 5 and result["counts"]["known"] == 0
        job = result["job"]
        assert events[0] == {"stage": "accepted", "job": job}
        culling = [e for e in events if e["stage"] == "culling"]
        assert culling[0]["done"] == 0 and culling[-1]["done"] == culling[-1]["total"] == 6
        # kept in the store: `job` gives them back
        stored, _ = c.job(job)
        assert stored["state"] == "done" and stored["kind"] == "cull"
        assert sorted(d["path"] for d in stored["decisions"]) == sorted(d["path"] for d in result["decisions"])
        # a second cull (new names, same content) is answered from the store: no critique, no measurement
        again = tmp_path / "again"
        shutil.copytree(shoot, again)
        critiques_before = c.status()["counts"]["critiques"]
        second = c.cull([again], apply=True)
        assert second["counts"]["known"] == 5 and second["counts"]["critiqued"] == 0
        assert c.status()["counts"]["critiques"] == critiques_before
        assert {d["decision"] for d in second["decisions"]} == {d["decision"] for d in result["decisions"]}
        rejects = [d for d in second["decisions"] if d["decision"] == "reject"]
        for d in rejects:  # -1, but for the frame the user gave 3 stars (make_shoot's IMG_0004.jpg.xmp)
            assert d["rating"] == "-1" or (d["kept_rating"] and d["rating"] == "3")
            assert (again / (d["path"].rsplit("/", 1)[1] + ".xmp")).exists()


def test_cancel_stops_a_cull(daemon, tmp_path):
    from ase_model.starter.dataset import source_photos

    folder = tmp_path / "many"
    folder.mkdir()
    src = list(source_photos().values())
    for i in range(40):  # 40 different crops: nothing the store knows
        im = src[i % len(src)].convert("RGB")
        w, h = im.size
        im.crop((i, i, w - 2 * i, h - i)).save(folder / f"IMG_{i:04d}.jpg", quality=85)
    seen = threading.Event()
    job = {}

    def progress(data):
        job.setdefault("id", data.get("job"))
        if data.get("stage") == "culling" and data.get("done", 0) >= 1:
            seen.set()

    outcome = {}

    def run():
        try:
            with daemon.client(timeout=30) as c:
                outcome["result"] = c.cull([folder], on_progress=progress)
        except DaemonError as e:
            outcome["error"] = e

    t = threading.Thread(target=run)
    t.start()
    assert seen.wait(120), "no progress from the cull"
    with daemon.client() as c:
        assert c.cancel(job["id"])["cancelled"]
    t.join(120)
    assert outcome["error"].code == "cancelled", outcome
    with daemon.client() as c:
        state, _ = c.job(job["id"])
        assert state["state"] == "cancelled" and "decisions" not in state
        # the daemon goes on: another cull runs
        one = tmp_path / "one"
        one.mkdir()
        Image.new("RGB", (320, 240), (40, 90, 160)).save(one / "a.png")
        assert len(c.cull([one])["decisions"]) == 1


def test_bad_arguments_and_the_cli_sharing_the_daemons_store(daemon, tmp_path, tiny_model_dir):
    with daemon.client() as c:
        with pytest.raises(DaemonError) as e:
            c.request("cull", {"paths": ["relative/folder"]})
        assert e.value.code == "bad_request"
        with pytest.raises(DaemonError) as e:
            c.request("cull", {"paths": []})
        assert e.value.code == "bad_request"
    # `ase-mllm cull` on the daemon's store and model: its critiques are the daemon's cache hits
    shoot = tmp_path / "cli"
    shoot.mkdir()
    from ase_model.starter.dataset import source_photos

    source_photos()["moon"].convert("RGB").save(shoot / "moon.jpg", quality=90)
    r = subprocess.run([sys.executable, "-m", "ase_daemon.mllm_cli", "cull", str(shoot), "--json", "--db",
                        str(daemon.db), "--model", str(tiny_model_dir), "--max-new-tokens", "8"],
                       env=daemon_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["decision"] == "pick"
    with daemon.client(timeout=30) as c:
        result, _ = c.critique(path=shoot / "moon.jpg")
        assert result["cached"] is True
        assert c.cull([shoot])["counts"]["known"] == 1
    # `ase-client cull`: the daemon's op, the same listing
    r = subprocess.run([sys.executable, "-m", "ase_daemon.client_cli", "--endpoint", daemon.ipc, "cull", str(shoot)],
                       env=daemon_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "group 1: 1 frame" in r.stdout and "PICK" in r.stdout and "moon.jpg" in r.stdout
