"""`ase-mllm demo` end to end: a real daemon started by the demo, sidecars and the HTML report."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from ase_daemon.client import Client
from ase_daemon.xmp import read_sidecar
from conftest import daemon_env


def test_demo_writes_report_and_sidecars(tmp_path, tiny_model_dir):
    env = daemon_env(tmp_path)
    env["ASE_MODEL"] = str(tiny_model_dir)  # the daemon the demo starts uses it as its default model
    endpoint = f"ipc://{tmp_path}/demo.sock"
    out = tmp_path / "out"
    demo = [sys.executable, "-m", "ase_daemon.mllm_cli", "demo", "--out", str(out), "--endpoint", endpoint]
    try:
        r = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        rows = json.loads((out / "results.json").read_text())
        assert len(rows) >= 6
        page = (out / "report.html").read_text()
        for row in rows:
            photo = out / row["photo"]
            assert photo.exists() and row["name"] in page
            assert (out / row["overlay"]).exists() and row["overlay"] in page
            sidecar = read_sidecar(photo)
            # XML cannot carry C0 control characters: the writer turns them into spaces (the tiny model's
            # random text has some)
            assert sidecar["text"] == re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f]", " ", row["result"]["text"])
            assert abs(sidecar["score"] - row["result"]["score"]) < 0.01
        assert "Open the report" in r.stdout and "ase-viewer" in r.stdout
        # a second run reuses the running daemon (and its stored critiques)
        r2 = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=600)
        assert r2.returncode == 0, r2.stderr
        assert "starting ase-daemon" not in r2.stdout + r2.stderr
    finally:
        try:
            with Client(endpoint, timeout=5, retries=0) as c:
                c.shutdown()
        except Exception:
            pass
