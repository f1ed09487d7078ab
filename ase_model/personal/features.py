"""The features a personal profile learns from: a compact vector per photo that the critic computes anyway.

    critic = Critic.from_pretrained()
    cache = FeatureCache(store_dir / "personal-features", critic.model_id)
    feats = photo_features(critic, paths, cache=cache)      # PhotoFeatures: vectors (n, d), scores (n,)

One pass of the image side of the model (IAS-ViT, IASM, projector, attribute and score heads; no text decoding)
gives, per photo, in this order (`feature_names`):

* the projected image features, mean-pooled over the patch tokens (the LLM's view of the photo's content);
* the attribute head's inputs, standardised as the head reads them: photo statistics, IASM saliency geometry,
  scene statistics (when the model has them);
* the attribute head's probabilities, one softmax per attribute;
* the generic score (0..10).

The cache is keyed by the photo's content hash (SHA-256 of the file's bytes) and the model fingerprint, so a
renamed photo is not recomputed and another model never reads a stale vector.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["FEATURES_VERSION", "PhotoFeatures", "FeatureCache", "content_hash", "feature_names", "features_dir",
           "photo_features"]

FEATURES_VERSION = 1  # bump when the vector's layout changes: cached vectors and profiles then no longer match


def features_dir() -> Path:
    """The default FeatureCache folder: $XDG_DATA_HOME/ase-mllm/personal-features (~/.local/share/...), beside
    the daemon's store, so `ase-mllm learn`, `ase-mllm critique --profile` and the daemon share the vectors."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ase-mllm" / "personal-features"


def content_hash(source: str | os.PathLike | bytes) -> str:
    """SHA-256 (hex) of a file's bytes, or of bytes.

    Args:
        source: a path or the bytes themselves.
    """
    h = hashlib.sha256()
    if isinstance(source, bytes):
        h.update(source)
    else:
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@dataclass
class PhotoFeatures:
    """Features of a list of photos, row i for photo i.

    Args:
        vectors: (n, d) float32 feature vectors (the generic score is the last column).
        scores: (n,) the generic score of each photo (0..10).
        model: the fingerprint of the model that computed them.
        image_dims: how many leading columns are the pooled image features (for `learn(image_dims=...)`).
    """

    vectors: np.ndarray
    scores: np.ndarray
    model: str
    image_dims: int = 0


def feature_names(critic) -> list[str]:
    """The name of each column of the vectors `photo_features` makes with this critic's model.

    Args:
        critic: an `ase_model.critic.Critic`.
    """
    from ..photo_statistics import GEOMETRY_NAMES, NAMES
    from ..scene_statistics import NAMES as SCENE_NAMES

    config = critic.model.config
    names = [f"image_{i}" for i in range(config.text_config.hidden_size)]
    head = critic.model.model.attribute_head
    if head is not None:
        names += [f"stat_{n}" for n in NAMES] + [f"geometry_{n}" for n in GEOMETRY_NAMES]
        if head.scene:
            names += [f"scene_{n}" for n in SCENE_NAMES]
        names += [f"p_{attr}={label}" for attr, labels in head.labels.items() for label in labels]
    return names + ["score"]


class FeatureCache:
    """Feature vectors on disk, one .npy per (model, photo content): `folder/<model>/<hash[:2]>/<hash>.npy`.

    Args:
        folder: where the cache lives (e.g. the store's folder, or a bench's work folder).
        model: the model fingerprint the vectors were computed with.
    """

    def __init__(self, folder: str | os.PathLike, model: str):
        safe = "".join(c if c.isalnum() or c in "._-@" else "_" for c in model)
        self.folder = Path(folder) / f"{safe}-v{FEATURES_VERSION}"
        self.model = model

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached vector for a content hash, or None."""
        try:
            return np.load(self._path(key), allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store a vector (atomically: a reader never sees half a file)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.asarray(vector, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _compute(critic, images: list[Image.Image]) -> np.ndarray:
    """(n, d) vectors for PIL images through the model's image side, in one batch."""
    import torch  # here, not at the top: profiles (and `ase-client profiles`) import this module without torch

    with torch.inference_mode():
        return _compute_tensors(critic, images, torch)


def _compute_tensors(critic, images: list[Image.Image], torch) -> np.ndarray:
    model = critic.model.model
    pixels = critic.processor.process_images(images)
    pixel_values = pixels["pixel_values"].to(critic.device, critic.dtype)
    prior = pixels.get("saliency_prior")
    out = critic.model.get_image_features(pixel_values, None if prior is None else prior.to(critic.device))
    head = model.attribute_head
    n_attr = len(head.labels) if head is not None else 0
    patches = out.image_features[:, : out.image_features.shape[1] - n_attr].float()
    parts = [patches.mean(1)]
    if head is not None:
        parts.append(head.standardize(head.features(pixel_values, out.saliency)))
        logits = out.attribute_logits.float()
        parts += [torch.softmax(part, dim=-1) for part in logits.split(head.sizes, dim=-1)]
    parts.append(out.score.float()[:, None])
    return torch.cat([p.float().cpu() for p in parts], dim=1).numpy().astype(np.float32)


def photo_features(critic, photos: Sequence[str | os.PathLike | Image.Image], cache: FeatureCache | None = None,
                   batch_size: int = 16, keys: Sequence[str | None] | None = None) -> PhotoFeatures:
    """Feature vectors of photos, from the cache where it has them, else computed in batches (and cached).

    Args:
        critic: an `ase_model.critic.Critic` (its model is used; nothing is decoded).
        photos: paths (cached by their content hash) or PIL images (cached only when `keys` names them).
        cache: a FeatureCache for `critic.model_id`; None computes everything.
        batch_size: photos per forward pass.
        keys: cache keys for the photos (default: the content hash of each path, none for PIL images).
    Raises:
        ValueError: the cache belongs to another model.
        OSError / PIL errors: a photo cannot be read.
    """
    if cache is not None and cache.model != critic.model_id:
        raise ValueError(f"feature cache of model {cache.model}, critic runs {critic.model_id}")
    if keys is None:
        keys = [None if isinstance(p, Image.Image) else content_hash(p) for p in photos]
    rows: list[np.ndarray | None] = [cache.get(k) if cache is not None and k else None for k in keys]
    todo = [i for i, r in enumerate(rows) if r is None]
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        vectors = _compute(critic, [critic.load(photos[i]).convert("RGB") for i in idx])
        for i, v in zip(idx, vectors):
            rows[i] = v
            if cache is not None and keys[i]:
                cache.put(keys[i], v)
    vectors = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    scores = vectors[:, -1].copy() if len(rows) else np.zeros(0, np.float32)
    return PhotoFeatures(vectors=vectors, scores=scores, model=critic.model_id,
                         image_dims=int(critic.model.config.text_config.hidden_size))
