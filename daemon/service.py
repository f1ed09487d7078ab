"""The systemd user unit for ase-daemon: `ase-daemon install-service` writes it with the right ExecStart.

The template is `ase-daemon.service` next to this file (shipped as package data); ExecStart runs this
interpreter (`python -m ase_daemon.cli`), so the unit keeps working inside a virtual environment.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("ase-daemon.service")


def unit_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "systemd" / "user" / "ase-daemon.service"


def exec_start(extra_args: list[str] = ()) -> str:
    return shlex.join([sys.executable, "-m", "ase_daemon.cli", *extra_args])


def unit_text(extra_args: list[str] = ()) -> str:
    return TEMPLATE.read_text().replace("@EXEC_START@", exec_start(extra_args))


def install(extra_args: list[str] = (), force: bool = False, path: Path | None = None) -> Path:
    """Write the unit; never runs systemctl (the caller prints how to enable it)."""
    path = path or unit_path()
    if path.exists() and not force:
        raise FileExistsError(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit_text(extra_args))
    return path
