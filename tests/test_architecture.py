"""The house rules, read from the source: who may import whom, where the wire contract lives, how big a room is.

Each rule reads every module's imports (the AST, lazy imports inside functions included) or runs a fresh
interpreter, so a change that breaks a rule fails here, not in a review.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"ase_model": ROOT / "ase_model", "ase_daemon": ROOT / "daemon", "ase_gui": ROOT / "gui"}
CONTRACT = "ase_daemon.contract"  # the wire contract: the one module (or package) that names codes and ops
CLIENT_SIDE = ("ase_daemon.client", "ase_daemon.contract")  # what the viewer may use of the daemon package
TORCH_FREE = ("ase_model.imageio", "ase_model.imagesafety", "ase_model.overlay", "ase_model.attributes",
              "ase_model.saliency", "ase_model.personal.profiles", "ase_model.remarks")
MAX_FILE_LINES, MAX_CLASS_LINES, MAX_LUA_LINES = 600, 300, 400


def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Absolute names of everything the module imports, anywhere in it (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def _in(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


MODULES = modules()


def test_the_rules_see_every_package():
    assert {"ase_model.imageio", "ase_daemon.server", "ase_gui.window", CONTRACT} <= set(MODULES)


def test_ase_model_imports_neither_the_daemon_nor_the_viewer():
    bad = {name: sorted(i for i in imports(name, path) if _in(i, ("ase_daemon", "ase_gui")))
           for name, path in MODULES.items() if _in(name, ("ase_model",))}
    assert not {k: v for k, v in bad.items() if v}


def test_the_viewer_uses_only_the_client_the_contract_and_torch_free_model_modules():
    bad = {}
    for name, path in MODULES.items():
        if not _in(name, ("ase_gui",)):
            continue
        wrong = [i for i in imports(name, path)
                 if (_in(i, ("ase_daemon",)) and i != "ase_daemon" and not _in(i, CLIENT_SIDE))
                 or (_in(i, ("ase_model",)) and i != "ase_model" and not _in(i, TORCH_FREE))]
        if wrong:
            bad[name] = sorted(wrong)
    assert not bad


def _wire_names() -> set[str]:
    import importlib

    contract = importlib.import_module(CONTRACT)
    return set(contract.ERROR_CODES) | set(contract.OPS) | set(contract.CULL_OPS)


def test_error_codes_and_op_names_are_spelt_only_in_the_contract():
    names = _wire_names()
    bad = []
    for name, path in MODULES.items():
        if not _in(name, ("ase_daemon", "ase_gui")) or _in(name, (CONTRACT,)):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        fields = {id(k) for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys if k is not None}
        fields |= {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}
        fields |= {id(n.args[0]) for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args
                   and isinstance(n.func, ast.Attribute) and n.func.attr in ("get", "pop", "setdefault")}
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names \
                    and id(node) not in docstrings and id(node) not in fields:  # a field named like an op is fine
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not bad


@pytest.mark.parametrize("module", (*TORCH_FREE, "ase_model", CONTRACT, "ase_daemon.client"))
def test_light_modules_import_without_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"`import {module}` loads torch or transformers {r.stderr[-2000:]}"


def test_the_cold_command_lines_import_no_torch():
    for argv in (["-m", "ase_daemon.mllm_cli", "--help"],):
        code = ("import runpy, sys; sys.argv = ['x', '--help']\ntry:\n    runpy.run_module(%r, run_name='__main__')\n"
                "except SystemExit:\n    pass\nsys.exit('torch' in sys.modules)") % argv[1]
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]


def _class_spans(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield node.name, node.end_lineno - node.lineno + 1


def _python_files():
    skip = {".venv", "work", "out", "demo-out", ".git"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def test_no_room_too_big():
    files = [f"{p.relative_to(ROOT)}: {n}" for p in _python_files()
             if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES]
    classes = [f"{p.relative_to(ROOT)}: {c} {n}" for p in _python_files() for c, n in _class_spans(p)
               if n > MAX_CLASS_LINES]
    lua = [f"{p.relative_to(ROOT)}: {n}" for p in (ROOT / "plugin_darktable").rglob("*.lua")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) >= MAX_LUA_LINES]
    assert not files + classes + lua


def _ruff() -> list[str]:
    """The ruff command: the executable next to this Python or on PATH, else the module."""
    exe = Path(sys.executable).parent / "ruff"
    if exe.exists() or (exe := shutil.which("ruff")):
        return [str(exe)]
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    pytest.fail("ruff is not installed: ./install.sh --test installs it")


def test_ruff_is_clean():
    """`ruff check .` with the project's configuration, long lines (E501) included."""
    r = subprocess.run([*_ruff(), "check", "--output-format", "concise", str(ROOT)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
