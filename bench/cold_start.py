"""Cold start of the command-line tools: this tree against an earlier commit, side by side in one run.

    .venv/bin/python bench/cold_start.py [--before 4c3e3be] [--repeats 7]

The earlier commit's packages are extracted with `git archive` into a temporary folder and put first on
PYTHONPATH (ase_model, and the daemon/ and gui/ folders under their installed names ase_daemon and ase_gui), so
both trees run with the same interpreter and the same installed libraries. Each command starts a fresh Python
process; the runs of the two trees alternate, and the median wall time of each is printed with the ratio.

Commands timed:
  * `ase-mllm --help`
  * `ase-client ping` against a warm daemon (started once, from this tree, with the built-in model)
  * `ase-client --send-bytes critique PHOTO` of a photo the daemon has already critiqued (a cache hit): what a
    client costs to start when it has to read the photo itself
Whether the process imported torch is printed too (from `python -X importtime`).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"ase_model": "ase_model", "ase_daemon": "daemon", "ase_gui": "gui"}  # import name -> folder
BEFORE = "4c3e3be"  # the last commit before issue 16's light `ase_model`

# (label, python code run as `python -c`): the console scripts' own entry points
COMMANDS = {
    "ase-mllm --help": "import sys; sys.argv = ['ase-mllm', '--help']\n{mllm}",
    "ase-client ping":
        "import sys; from ase_daemon.client_cli import main; sys.exit(main(['--endpoint', {ep!r}, 'ping']))",
    "ase-client --send-bytes critique (cache hit)":
        "import sys; from ase_daemon.client_cli import main; "
        "sys.exit(main(['--endpoint', {ep!r}, '--send-bytes', 'critique', {photo!r}]))",
}


def extract(commit: str, dest: Path) -> Path:
    """The commit's packages under their import names, in dest/<commit>."""
    tree = dest / commit
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, *PACKAGES.values()], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree / "src", filter="data")
    for name, folder in PACKAGES.items():
        (tree / name).symlink_to(tree / "src" / folder)
    return tree


def mllm_entry(tree: Path | None) -> str:
    """How the tree's `ase-mllm` script starts (the console script's target, read from its pyproject)."""
    pyproject = (ROOT / "pyproject.toml").read_text() if tree is None else subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{tree.name}:pyproject.toml"], check=True, capture_output=True,
        text=True).stdout
    target = next(line.split("=", 1)[1].strip().strip('"') for line in pyproject.splitlines()
                  if line.startswith("ase-mllm"))
    module, func = target.split(":")
    return f"from {module} import {func}; sys.exit({func}())"


def run(tree: Path | None, code: str) -> tuple[float, bool, int]:
    """Wall seconds of one fresh process, whether it imported torch, its exit code."""
    env = dict(os.environ, PYTHONPATH=str(tree) if tree else "", HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    # a neutral working folder: `python -c` puts it first on sys.path, where the repository's own ase_model would win
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True,
                       cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    torch = any(line.rsplit("|", 1)[-1].strip() == "torch" for line in r.stderr.splitlines())
    return wall, torch, r.returncode


def start_daemon(folder: Path) -> tuple[subprocess.Popen, str]:
    endpoint = f"ipc://{folder}/d.sock"
    proc = subprocess.Popen([sys.executable, "-m", "ase_daemon.cli", "--endpoint", endpoint, "--db",
                             str(folder / "store.db"), "--threads", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=""))
    for _ in range(600):
        if run(None, COMMANDS["ase-client ping"].format(ep=endpoint))[2] == 0:
            return proc, endpoint
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("cold_start: the daemon did not come up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default=BEFORE, help="the earlier commit (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="ase-cold-") as tmp:
        tmp = Path(tmp)
        before = extract(args.before, tmp)
        where = subprocess.run([sys.executable, "-c", "import ase_model; print(ase_model.__file__)"], text=True,
                               env=dict(os.environ, PYTHONPATH=str(before)), capture_output=True,
                               cwd=tempfile.gettempdir()).stdout
        assert where.startswith(str(before)), f"the earlier tree is not the one imported: {where}"
        photo = tmp / "photo.jpg"
        Image.new("RGB", (640, 480), (120, 90, 60)).save(photo, quality=90)
        daemon, endpoint = start_daemon(tmp)
        try:
            run(None, COMMANDS["ase-client --send-bytes critique (cache hit)"].format(ep=endpoint, photo=str(photo)))
            print(f"cold start, median of {args.repeats} fresh processes each ({args.before} vs this tree)\n")
            print(f"| command | {args.before} | this tree | faster | torch imported (before / now) |")
            print("|---|---|---|---|---|")
            for label, template in COMMANDS.items():
                walls: dict[str, list[float]] = {"before": [], "now": []}
                torch = {}
                for _ in range(args.repeats):
                    for key, tree in (("before", before), ("now", None)):
                        code = template.format(ep=endpoint, photo=str(photo), mllm=mllm_entry(tree))
                        wall, torch[key], rc = run(tree, code)
                        if rc != 0:
                            raise SystemExit(f"cold_start: {label} ({key}) exited {rc}")
                        walls[key].append(wall)
                b, n = statistics.median(walls["before"]), statistics.median(walls["now"])
                print(f"| `{label}` | {b:.2f} s | {n:.2f} s | {b / n:.1f}x | "
                      f"{'yes' if torch['before'] else 'no'} / {'yes' if torch['now'] else 'no'} |")
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
