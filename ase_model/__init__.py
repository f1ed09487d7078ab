"""ASE-MLLM: Aesthetic Saliency Enhanced Multimodal LLM (arXiv 2509.04378) in Hugging Face conventions.

The package imports lazily, as transformers' own `__init__` does: `import ase_model` loads neither torch nor
transformers, and the light modules (`imageio`, `imagesafety`, `overlay`, `attributes`, `saliency`) need only
numpy/Pillow (+ rawpy/OpenCV for RAW). The model classes load on first use: `ase_model.ASEConfig` or
`from ase_model import ASEForConditionalGeneration` imports them and registers the model with transformers' Auto
classes (AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor), so `from_pretrained` works on saved
ASE-MLLM folders. Code that loads a folder through the Auto classes without touching an ASE class first calls
`ase_model.register_auto_classes()`.
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it; loaded on first attribute access
_LAZY = {
    "ASEConfig": "configuration_ase",
    "ASEModel": "modeling_ase",
    "ASEForConditionalGeneration": "modeling_ase",
    "ASEProcessor": "processing_ase",
    "Critic": "critic",
    "Critique": "critic",
}
# names whose use means "a model is about to be loaded": register every Auto class first
_AUTO = {"ASEConfig", "ASEModel", "ASEForConditionalGeneration", "ASEProcessor"}


def register_auto_classes() -> None:
    """Registers ASE-MLLM with transformers' Auto classes (idempotent; imports torch and transformers).

    Each of configuration_ase, modeling_ase and processing_ase registers its own classes when imported; this
    imports all three.
    """
    for module in ("configuration_ase", "modeling_ase", "processing_ase"):
        importlib.import_module(f"{__name__}.{module}")


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _AUTO:
        register_auto_classes()
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["ASEConfig", "ASEModel", "ASEForConditionalGeneration", "ASEProcessor", "Critic", "Critique",
           "register_auto_classes"]
