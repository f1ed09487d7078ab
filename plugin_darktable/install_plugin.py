"""Install the ASE critic plugin into a darktable config folder.

    python plugin_darktable/install_plugin.py [--configdir DIR] [--client PATH]
    python plugin_darktable/install_plugin.py [--configdir DIR] --uninstall

* copies ase_critic.lua to <configdir>/lua/ase/ase_critic.lua, with PATH (default: the ase-client beside this
  Python, else the one on $PATH, else plain "ase-client") as the script's default `client_cmd`, and its modules
  (lib/*.lua) to <configdir>/lua/ase/lib/, removing modules there that this version no longer has;
* adds `require "ase/ase_critic"` to <configdir>/luarc once, keeping everything else in the file;
* where darktable already stored a `lua/ase_critic/client_cmd` preference that cannot work (empty, the bare
  default, or a path that no longer exists), points it at PATH too. Run it while darktable is closed: darktable
  rewrites darktablerc when it quits.

Running it again is harmless (it only refreshes the script). --uninstall removes the script, its modules, the
folders if that leaves them empty, and the require line; the preferences darktable stored stay in darktablerc.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["add_require", "fix_client_pref", "install_script", "lib_dir", "main", "script_path", "uninstall"]

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "ase_critic.lua"
LIB = HERE / "lib"  # the script's modules, required as "ase/lib/<name>"
FOLDER, NAME = "ase", "ase_critic"
REQUIRE_LINE = f'require "{FOLDER}/{NAME}"'
_REQUIRE_RE = re.compile(r"""^\s*require\s*\(?\s*["']""" + re.escape(f"{FOLDER}/{NAME}") + r"""["']""")
_DEFAULT_RE = re.compile(r'^local DEFAULT_CLIENT_CMD = .*$', re.MULTILINE)
PREF_KEY = f"lua/{NAME}/client_cmd"


def default_configdir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "darktable"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "darktable"


def default_client() -> str:
    beside = Path(sys.executable).with_name("ase-client")
    if beside.exists():
        return str(beside)
    return shutil.which("ase-client") or "ase-client"


def lua_string(s: str) -> str:
    """A Lua double-quoted string literal holding exactly `s`."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03d}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        if path.exists():
            shutil.copymode(path, tmp)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def script_path(configdir: Path) -> Path:
    """Where the entry script goes: <configdir>/lua/ase/ase_critic.lua."""
    return configdir / "lua" / FOLDER / f"{NAME}.lua"


def lib_dir(configdir: Path) -> Path:
    """Where the modules go: <configdir>/lua/ase/lib (the plugin's own folder: script_manager skips lib/)."""
    return configdir / "lua" / FOLDER / "lib"


def install_script(configdir: Path, client: str) -> Path:
    """Write the modules, then the entry script with `client` as its default client; returns the script's path.

    Args:
        configdir: darktable's config folder.
        client: the ase-client the script runs unless the `client_cmd` preference says otherwise.
    """
    source = SCRIPT.read_text(encoding="utf-8")
    line = f"local DEFAULT_CLIENT_CMD = {lua_string(client)}"
    text, n = _DEFAULT_RE.subn(lambda _m: line, source, count=1)
    if n != 1:
        raise SystemExit(f"install_plugin: no DEFAULT_CLIENT_CMD line in {SCRIPT}")
    modules = sorted(LIB.glob("*.lua"))
    if not modules:
        raise SystemExit(f"install_plugin: no modules in {LIB}")
    lib = lib_dir(configdir)
    for module in modules:
        write_atomic(lib / module.name, module.read_text(encoding="utf-8"))
    shipped = {m.name for m in modules}
    for stale in lib.glob("*.lua"):  # a module an older version had
        if stale.name not in shipped:
            stale.unlink()
    dest = script_path(configdir)
    write_atomic(dest, text)
    return dest


def uninstall(configdir: Path) -> list[Path]:
    """Remove the script, its modules, the folders they leave empty and the require line; returns what went.

    Args:
        configdir: darktable's config folder.
    """
    removed = []
    lib = lib_dir(configdir)
    for path in [script_path(configdir), *sorted(lib.glob("*.lua"))]:
        if path.exists():
            path.unlink()
            removed.append(path)
    for folder in (lib, lib.parent):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            removed.append(folder)
    luarc = configdir / "luarc"
    if luarc.exists():
        lines = luarc.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not _REQUIRE_RE.match(line)]
        if kept != lines:
            write_atomic(luarc, "".join(kept))
            removed.append(luarc)
    return removed


def add_require(configdir: Path) -> bool:
    """Append the require line to luarc unless an active one is there; True when luarc changed."""
    luarc = configdir / "luarc"
    text = luarc.read_text(encoding="utf-8") if luarc.exists() else ""
    if any(_REQUIRE_RE.match(line) for line in text.splitlines()):
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    write_atomic(luarc, text + REQUIRE_LINE + "\n")
    return True


def fix_client_pref(configdir: Path, client: str) -> bool:
    """Point a stored client_cmd preference that cannot work at `client`; True when darktablerc changed."""
    rc = configdir / "darktablerc"
    if not rc.exists():
        return False
    lines = rc.read_text(encoding="utf-8", errors="surrogateescape").splitlines(keepends=True)
    changed = False
    for i, line in enumerate(lines):
        key, sep, value = line.rstrip("\r\n").partition("=")
        if sep and key == PREF_KEY:
            value = value.strip()
            broken = value in ("", "ase-client") or ("/" in value and not Path(value).exists())
            if broken and value != client:
                lines[i] = f"{PREF_KEY}={client}\n"
                changed = True
    if changed:
        rc.write_text("".join(lines), encoding="utf-8", errors="surrogateescape")
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Install the ASE critic darktable plugin.")
    p.add_argument("--configdir", type=Path, default=None,
                   help=f"darktable's config folder (default: {default_configdir()})")
    p.add_argument("--client", help=f"path of ase-client to use by default (default: {default_client()})")
    p.add_argument("--uninstall", action="store_true",
                   help="remove the plugin (script, modules, require line) from the config folder")
    a = p.parse_args(argv)
    configdir = (a.configdir or default_configdir()).expanduser()
    if a.uninstall:
        removed = uninstall(configdir)
        for path in removed:
            print(f"removed {path}" if path.name != "luarc" else f"removed `{REQUIRE_LINE}` from {path}")
        if not removed:
            print(f"the plugin is not installed in {configdir}")
        return 0
    client = a.client or default_client()
    if os.sep in client or "/" in client:
        client = os.path.abspath(os.path.expanduser(client))
    dest = install_script(configdir, client)
    print(f"installed {dest} and its modules in {lib_dir(configdir)}")
    if add_require(configdir):
        print(f"added `{REQUIRE_LINE}` to {configdir / 'luarc'}")
    else:
        print(f"{configdir / 'luarc'} already loads the plugin")
    if fix_client_pref(configdir, client):
        print(f"set {PREF_KEY}={client} in {configdir / 'darktablerc'}")
    print(f"ase-client: {client}  (darktable: preferences > lua options > ASE critic)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
