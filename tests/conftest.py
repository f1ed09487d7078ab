"""Shared fixtures: offline Hugging Face, tiny real models built from configs, real sample photos."""

from __future__ import annotations

import io
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PIL import Image

try:
    from transformers.utils import logging as _hf_logging

    _hf_logging.disable_progress_bar()
    _hf_logging.set_verbosity_error()
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random ASE-MLLM (CLIP + Llama) saved the way real checkpoints are; gates slightly open."""
    from ase_model.testing import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-model"), open_gates=0.5)


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    """Real photographs shipped with scikit-image and scikit-learn (no download)."""
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    out = {name: Image.fromarray(getattr(data, name)()) for name in ("astronaut", "coffee", "chelsea", "rocket")}
    sample = load_sample_images()
    for name, arr in zip(("china", "flower"), sample.images):
        out[name] = Image.fromarray(arr)
    return {k: v.convert("RGB") for k, v in out.items()}


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    """skimage's cat as an array, 300x451: not square, so orientation errors show (the imageio tests)."""
    return pytest.importorskip("skimage.data").chelsea()


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    """skimage's coffee cup as an array, 400x600 (the imageio tests)."""
    return pytest.importorskip("skimage.data").coffee()


@pytest.fixture()
def photo_files(tmp_path, photos):
    """The sample photos as JPEG files in a temp folder: {name: path}."""
    paths = {}
    for name, im in photos.items():
        path = tmp_path / f"{name}.jpg"
        im.save(path, quality=90)
        paths[name] = path
    return paths


@pytest.fixture()
def one_torch_thread():
    """Tiny models train ~10x faster with one torch thread on a busy 2-core box (no OpenMP spinning)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def scripted_model():
    """A tiny real model trained to say one tagged critique for every photo, score 7.2 (the random tiny model's
    gibberish carries no tags): built once for the darktable tests (tests/darktable/scripted_model.py)."""
    import sys
    import tempfile
    from pathlib import Path

    here = Path(__file__).resolve().parent / "darktable"
    sys.path.insert(0, str(here))
    try:
        from scripted_model import DEFAULT_TEXT, build_scripted_model
    finally:
        sys.path.remove(str(here))
    with tempfile.TemporaryDirectory(prefix="scripted-model-") as tmp:
        yield build_scripted_model(Path(tmp), DEFAULT_TEXT, 7.2)


def random_image(seed: int, size=(48, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def random_jpeg(seed: int, size=(64, 48)) -> bytes:
    """random_image's pixels as JPEG bytes (quality 90): a distinct photo per seed for the daemon's tests."""
    buf = io.BytesIO()
    random_image(seed, size).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ---- ase-daemon: real daemon processes on the tiny model ---------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def non_loopback_ip() -> str | None:
    """This machine's own interface address if it has one that is not loopback (for the CURVE tests)."""
    import ipaddress
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the outgoing interface
            ip = s.getsockname()[0]
        with socket.socket() as s:
            s.bind((ip, 0))
    except OSError:
        return None
    return None if ipaddress.ip_address(ip).is_loopback else ip


class DaemonProcess:
    """`python -m ase_daemon.cli` in a subprocess with its own ipc + tcp endpoints, store and XDG dirs."""

    def __init__(self, root, model_dir, name: str = "d", extra=(), config: str | None = None):
        import sys
        from pathlib import Path

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ipc_path = self.root / f"{name}.sock"
        self.ipc = f"ipc://{self.ipc_path}"
        self.tcp = f"tcp://127.0.0.1:{free_port()}"
        self.db = self.root / f"{name}.db"
        self.log = self.root / f"{name}.log"
        self.env = daemon_env(self.root)
        self.cmd = [sys.executable, "-m", "ase_daemon.cli", "--model", str(model_dir), "--endpoint", self.ipc,
                    "--endpoint", self.tcp, "--db", str(self.db), "--threads", "1", "--max-new-tokens", "8",
                    *extra]
        if config is not None:
            cfg = self.root / f"{name}.toml"
            cfg.write_text(config)
            self.cmd += ["--config", str(cfg)]
        self.proc = None

    def start(self, wait_ready: bool = True, timeout: float = 120.0) -> DaemonProcess:
        import subprocess

        if getattr(self, "_log", None) is not None:
            self._log.close()
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        if wait_ready:
            import time

            from ase_daemon.client import Client, DaemonUnavailable

            deadline = time.monotonic() + timeout
            with Client(self.ipc, timeout=1.0, retries=0) as c:
                while True:
                    assert self.proc.poll() is None, f"daemon exited early:\n{self.log.read_text()[-3000:]}"
                    try:
                        if c.ping()["state"] == "ready":
                            break
                    except DaemonUnavailable:
                        pass
                    assert time.monotonic() < deadline, f"daemon not ready:\n{self.log.read_text()[-3000:]}"
                    time.sleep(0.1)
        return self

    def client(self, endpoint: str | None = None, timeout: float = 10.0, **kw):
        from ase_daemon.client import Client

        return Client(endpoint or self.ipc, timeout=timeout, **kw)

    def stop(self, sig=None, timeout: float = 30.0) -> int | None:
        import signal

        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc


def daemon_env(root) -> dict:
    """Environment for daemon/client subprocesses: offline, one torch thread, XDG dirs inside the test's folder."""
    import os
    from pathlib import Path

    root = Path(root)
    env = dict(os.environ)
    env.pop("ASE_ENDPOINT", None)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               XDG_CONFIG_HOME=str(root / "config"), XDG_DATA_HOME=str(root / "data"),
               XDG_RUNTIME_DIR=str(root / "run"), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="session")
def curve_keys(tmp_path_factory):
    """`ase-daemon keys` output: server pair, an authorized client pair, and a second, unauthorized pair."""
    import zmq.auth
    from ase_daemon.cli import main

    folder = tmp_path_factory.mktemp("curve")
    assert main(["keys", "--dir", str(folder)]) == 0
    stranger = folder / "stranger"
    stranger.mkdir()
    zmq.auth.create_certificates(stranger, "stranger")
    return folder


@pytest.fixture(scope="session")
def shared_daemon(tmp_path_factory, tiny_model_dir, curve_keys):
    """One daemon for the tests that don't need their own: ipc + tcp loopback + a CURVE endpoint (on this
    machine's own non-loopback address when it has one, else CURVE forced on a loopback port)."""
    ip = non_loopback_ip()
    curve_ep = f"tcp://{ip}:{free_port(ip)}" if ip else f"tcp://127.0.0.1:{free_port()}"
    config = f"""
[curve]
server_secret_key = "{curve_keys / 'server.key_secret'}"
authorized_keys = "{curve_keys / 'authorized_clients'}"
"""
    extra = ["--endpoint" if ip else "--curve-endpoint", curve_ep, "--max-message-mb", "1", "--batch-window-ms", "50"]
    d = DaemonProcess(tmp_path_factory.mktemp("shared-daemon"), tiny_model_dir, "shared", extra, config=config)
    d.curve = curve_ep
    d.curve_keys = curve_keys
    d.start()
    yield d
    d.stop()

