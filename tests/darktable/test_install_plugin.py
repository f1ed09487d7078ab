"""plugin_darktable/install_plugin.py: copies the script and its modules, adds the require line once, keeps the
user's luarc; --uninstall takes it all away again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "plugin_darktable" / "install_plugin.py"
SCRIPT = REPO / "plugin_darktable" / "ase_critic.lua"
LIB = REPO / "plugin_darktable" / "lib"


def install(*args: str) -> str:
    r = subprocess.run([sys.executable, str(INSTALLER), *args], check=False, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_install_is_idempotent_and_keeps_the_users_luarc(tmp_path):
    cfg = tmp_path / "darktable config"
    cfg.mkdir()
    user_luarc = 'require "tools/script_manager"\n-- my own comment\nrequire "contrib/photils"'  # no final newline
    (cfg / "luarc").write_text(user_luarc)
    client = tmp_path / "venv with space" / "bin" / 'ase-"client"'
    client.parent.mkdir(parents=True)
    client.write_text("#!/bin/sh\n")

    out = install("--configdir", str(cfg), "--client", str(client))
    assert "added" in out
    installed = cfg / "lua" / "ase" / "ase_critic.lua"
    text = installed.read_text()
    # the script, unchanged but for its default client, written as a Lua string literal
    literal = '"' + str(client).replace('"', '\\"') + '"'
    source = SCRIPT.read_text().splitlines()
    changed = [(a, b) for a, b in zip(source, text.splitlines()) if a != b]
    assert len(text.splitlines()) == len(source)
    assert changed == [('local DEFAULT_CLIENT_CMD = "ase-client"', f"local DEFAULT_CLIENT_CMD = {literal}")]
    # the modules beside it, unchanged, where `require "ase/lib/<name>"` finds them
    modules = sorted(p.name for p in LIB.glob("*.lua"))
    assert "lines.lua" in modules and "api.lua" in modules
    lib = cfg / "lua" / "ase" / "lib"
    assert sorted(p.name for p in lib.iterdir()) == modules
    for name in modules:
        assert (lib / name).read_text() == (LIB / name).read_text(), name
    luarc = (cfg / "luarc").read_text()
    assert luarc == user_luarc + '\nrequire "ase/ase_critic"\n'

    # again: same files, the require line still once
    out = install("--configdir", str(cfg), "--client", str(client))
    assert "already loads" in out
    assert (cfg / "luarc").read_text() == luarc
    assert installed.read_text() == text
    assert luarc.count("ase/ase_critic") == 1


def test_install_into_an_empty_config_and_fix_a_stale_client_preference(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    stale = "a/b=1\nlua/ase_critic/client_cmd=/gone/ase-client\nlua/ase_critic/tag_root=mine\n"
    (cfg / "darktablerc").write_text(stale)
    install("--configdir", str(cfg), "--client", "/opt/ase/bin/ase-client")
    assert (cfg / "luarc").read_text() == 'require "ase/ase_critic"\n'
    rc = (cfg / "darktablerc").read_text()
    assert rc == "a/b=1\nlua/ase_critic/client_cmd=/opt/ase/bin/ase-client\nlua/ase_critic/tag_root=mine\n"
    # a working client path the user chose is left alone
    (cfg / "darktablerc").write_text(f"lua/ase_critic/client_cmd={sys.executable}\n")
    install("--configdir", str(cfg), "--client", "/opt/ase/bin/ase-client")
    assert (cfg / "darktablerc").read_text() == f"lua/ase_critic/client_cmd={sys.executable}\n"
    # an active require in another form counts; a commented one does not
    (cfg / "luarc").write_text("require('ase/ase_critic')\n")
    install("--configdir", str(cfg))
    assert (cfg / "luarc").read_text() == "require('ase/ase_critic')\n"
    (cfg / "luarc").write_text('-- require "ase/ase_critic"\n')
    install("--configdir", str(cfg))
    assert (cfg / "luarc").read_text() == '-- require "ase/ase_critic"\nrequire "ase/ase_critic"\n'


def test_reinstall_drops_stale_modules_and_uninstall_removes_everything(tmp_path):
    cfg = tmp_path / "cfg"
    lua = cfg / "lua"
    (lua / "contrib").mkdir(parents=True)
    (lua / "contrib" / "other.lua").write_text("-- someone else's script\n")
    (cfg / "luarc").write_text('require "contrib/other"\n')
    (cfg / "darktablerc").write_text("lua/ase_critic/tag_root=mine\n")
    install("--configdir", str(cfg), "--client", "/opt/ase/bin/ase-client")
    stale = lua / "ase" / "lib" / "gone_module.lua"  # a module an older version shipped
    stale.write_text("return {}\n")
    install("--configdir", str(cfg), "--client", "/opt/ase/bin/ase-client")
    assert not stale.exists()

    out = install("--configdir", str(cfg), "--uninstall")
    assert "removed" in out
    assert not (lua / "ase").exists()  # the script, its modules and their folders
    assert (cfg / "luarc").read_text() == 'require "contrib/other"\n'
    assert (lua / "contrib" / "other.lua").exists()
    assert (cfg / "darktablerc").read_text() == "lua/ase_critic/tag_root=mine\n"
    # a folder we did not empty stays; a second uninstall has nothing to do
    install("--configdir", str(cfg))
    (lua / "ase" / "notes.txt").write_text("mine\n")
    install("--configdir", str(cfg), "--uninstall")
    assert sorted(p.name for p in (lua / "ase").iterdir()) == ["notes.txt"]
    assert "not installed" in install("--configdir", str(cfg), "--uninstall")
