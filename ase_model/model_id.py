"""A model folder's identity without loading it (torch-free): the built-in default and the weights' fingerprint.

The store keys critiques by this fingerprint, so a tool that only reads the store (a re-cull of known photos)
knows the key without importing torch. `ase_model.critic` re-exports both.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["default_model_dir", "fingerprint"]


def default_model_dir() -> Path:
    """The starter model shipped in the package (ASE_MODEL overrides)."""
    env = os.environ.get("ASE_MODEL")
    return Path(env) if env else Path(__file__).resolve().parent / "starter_model"


def fingerprint(model_dir: Path) -> str:
    """Identifies a model's weights: name + hash of its config and of each weight file's size, head and tail.

    Cheap on multi-GB checkpoints yet changes whenever the weights change (fine-tuning rewrites every file).
    """
    h = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if path.name == "config.json" or path.suffix == ".safetensors":
            size = path.stat().st_size
            h.update(f"{path.name}:{size}".encode())
            with open(path, "rb") as f:
                h.update(f.read(1 << 20))
                if size > 2 << 20:
                    f.seek(-(1 << 20), os.SEEK_END)
                    h.update(f.read())
    return f"{model_dir.name}@{h.hexdigest()[:16]}"
