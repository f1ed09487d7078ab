"""The plugin's Lua modules (plugin_darktable/lib) inside REAL darktable: the lines parser and the score ->
stars mapping on the golden fixture the Python tests share (tests/fixtures/lines_golden.*), the API check's
version comparison, and refusing to load on a Lua API older than the plugin needs.

No standalone Lua interpreter is installed (darktable bundles its own Lua), so the modules run where they run
for users: a driver (tests/darktable/drivers/*.lua) loaded into darktable with the installed plugin.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dt_runner
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVERS = HERE / "drivers"
FIXTURES = REPO / "tests" / "fixtures"
INSTALLER = REPO / "plugin_darktable" / "install_plugin.py"

_missing = [name for name in ("darktable", "xvfb-run") if shutil.which(name) is None]
pytestmark = [
    pytest.mark.darktable,
    pytest.mark.skipif(bool(_missing), reason=f"not installed: {', '.join(_missing)} "
                       "(apt-get install darktable xvfb xauth; ./install.sh --test does it)"),
]


def install_plugin(cfg: Path) -> Path:
    subprocess.run([sys.executable, str(INSTALLER), "--configdir", str(cfg), "--client", "ase-client"],
                   check=True, capture_output=True, text=True, timeout=60)
    return cfg / "lua" / "ase" / "ase_critic.lua"


def attributes_as_dict(block: dict) -> dict:
    """The Lua parser keeps attributes as a list of {name, value} in output order; the fixture as an object."""
    out = dict(block)
    out["attributes"] = {a["name"]: a["value"] for a in block["attributes"]}
    return out


def test_lines_parser_and_stars_match_the_golden_fixture(tmp_path):
    golden = json.loads((FIXTURES / "lines_golden.json").read_text(encoding="utf-8"))
    scores = [score for score, _stars in golden["ratings_from_score"]]
    cfg = tmp_path / "cfg"
    install_plugin(cfg)
    env = {"ASE_DT_HARNESS": str(DRIVERS / "harness.lua"), "ASE_DT_GOLDEN": str(FIXTURES / "lines_golden.txt"),
           "ASE_DT_SCORES": "\n".join(repr(s) for s in scores)}
    r, _log = dt_runner.run_darktable(tmp_path, cfg, DRIVERS / "golden.lua", env)

    for key in ("blocks", "fed"):
        blocks = json.loads(r[key])
        assert [attributes_as_dict(b) for b in blocks] == golden["blocks"], key
        # the attributes in the order ase-client printed them, as the fixture lists them
        assert [[a["name"] for a in b["attributes"]] for b in blocks] == [list(b["attributes"])
                                                                          for b in golden["blocks"]], key
    assert json.loads(r["garbage"]) == []  # token lines before the first block are not garbage
    assert r["stars"] == ",".join(str(stars) for _score, stars in golden["ratings_from_score"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", r["api.current"])
    assert r["api.compare"] == "1,0,0,-1,1"
    assert (r["api.at_least_9"], r["api.at_least_99"]) == ("true", "false")


def test_refuses_to_load_on_an_older_lua_api(tmp_path):
    cfg = tmp_path / "cfg"
    script = install_plugin(cfg)
    # this darktable stands in for an old one: the installed plugin asks for an API no darktable has
    text = script.read_text(encoding="utf-8")
    assert text.count('local MIN_API = "9.0.0"') == 1
    script.write_text(text.replace('local MIN_API = "9.0.0"', 'local MIN_API = "99.0.0"'), encoding="utf-8")
    env = {"ASE_DT_HARNESS": str(DRIVERS / "harness.lua")}
    r, log = dt_runner.run_darktable(tmp_path, cfg, DRIVERS / "old_api.lua", env, lua_errors_ok=True)
    assert r["loaded_modules"] == "ase/lib/api"  # nothing past the check was loaded
    # the script_manager table with its metadata, and nothing else: no functions, no setup, no panel
    assert r["has_ready"] == "false" and r["metadata.name"] == "ase_critic"
    assert "ase_critic needs Lua API 99.0.0 or later; this darktable has" in log
    # no other Lua error: the refusal is the only one
    errors = [line for line in log.splitlines() if "LUA ERROR" in line]
    assert len(errors) == 1 and "needs Lua API 99.0.0" in errors[0], errors
