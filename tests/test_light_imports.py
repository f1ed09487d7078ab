"""The light side of ase_model imports without torch or transformers (issue 16), and the packages don't loop."""

import subprocess
import sys

import pytest

LIGHT = ["ase_model", "ase_model.data", "ase_model.imageio", "ase_model.imagesafety", "ase_model.overlay",
         "ase_model.attributes", "ase_model.saliency", "ase_model.cli", "ase_daemon.mllm_cli",
         "ase_model.personal.profiles", "ase_model.personal.cli"]


@pytest.mark.parametrize("module", LIGHT)
def test_imports_without_torch(module):
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_help_lists_demo_without_torch():
    code = ("import sys, contextlib, io\nfrom ase_daemon.mllm_cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n    try:\n        main(['--help'])\n    except SystemExit:\n"
            "        pass\nassert 'demo' in out.getvalue() and 'train' in out.getvalue(), out.getvalue()\n"
            "assert 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_lazy_attribute_registers_auto_classes():
    code = ("import ase_model\nfrom transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor\n"
            "assert ase_model.ASEConfig is AutoConfig.for_model('ase_mllm').__class__\n"
            "from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING as M\n"
            "assert M[ase_model.ASEConfig] is ase_model.ASEForConditionalGeneration\n"
            "from transformers.models.auto.processing_auto import PROCESSOR_MAPPING as P\n"
            "assert P[ase_model.ASEConfig] is ase_model.ASEProcessor")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_ase_model_never_imports_the_other_packages():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "ase_model"
    uses = re.compile(r"^\s*(from|import)\s+ase_(daemon|gui)\b|[\"']ase_(daemon|gui)[.\"']", re.M)
    offenders = [str(p) for p in root.rglob("*.py") if uses.search(p.read_text())]
    assert not offenders


def test_profiles_import_without_scipy():
    """The viewer and `ase-client profiles` list profiles: scipy (learning's statistics) loads only to learn."""
    code = ("import sys\nfrom ase_model.personal import list_profiles\n"
            "assert 'scipy' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)[:5]\n"
            "from ase_model.personal.learning import srcc\nassert srcc([1, 2, 3], [1, 2, 4]) == 1.0")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
