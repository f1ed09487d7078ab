"""The personal critic: learn a photographer's own taste from their ratings and score photos by it.

    from ase_model.critic import Critic
    from ase_model.personal import (FeatureCache, learn, load_profile, photo_features, ratings_from_xmp,
                                    save_profile)

    critic = Critic.from_pretrained()
    rated = ratings_from_xmp(["~/Photos"])                       # or ratings_from_darktable(library.db)
    feats = photo_features(critic, [r.path for r in rated], cache=FeatureCache(work, critic.model_id))
    result = learn(feats.vectors, feats.scores, [r.rating for r in rated], image_dims=feats.image_dims)
    print(result.summary())                                      # personal vs generic, cross-validated
    save_profile("me", result, model=critic.model_id)
    load_profile("me", model=critic.model_id).personal_score(feats.vectors, feats.scores)

See docs/personal.md.
"""

from __future__ import annotations

import importlib

# Names load with their module on first use (as the package ase_model itself does): `profiles` is read by the
# viewer and `ase-client profiles`, which must not pay for scipy (learning.py) or torch (features.py).
_LAZY = {
    "FEATURES_VERSION": "features",
    "FeatureCache": "features",
    "PhotoFeatures": "features",
    "content_hash": "features",
    "feature_names": "features",
    "features_dir": "features",
    "photo_features": "features",
    "MIN_RATINGS": "learning",
    "LearnResult": "learning",
    "LinearTaste": "learning",
    "NotEnoughRatings": "learning",
    "learn": "learning",
    "srcc": "learning",
    "Profile": "profiles",
    "ProfileError": "profiles",
    "ProfileInfo": "profiles",
    "ProfileModelMismatch": "profiles",
    "list_profiles": "profiles",
    "load_profile": "profiles",
    "personal_score": "profiles",
    "profiles_dir": "profiles",
    "save_profile": "profiles",
    "Rating": "ratings",
    "ratings_from_darktable": "ratings",
    "ratings_from_xmp": "ratings",
    "read_sidecar_rating": "ratings",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
