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

from .features import (
                       FEATURES_VERSION,
                       FeatureCache,
                       PhotoFeatures,
                       content_hash,
                       feature_names,
                       features_dir,
                       photo_features,
)
from .learning import MIN_RATINGS, LearnResult, LinearTaste, NotEnoughRatings, learn, srcc
from .profiles import (
                       Profile,
                       ProfileError,
                       ProfileInfo,
                       ProfileModelMismatch,
                       list_profiles,
                       load_profile,
                       personal_score,
                       profiles_dir,
                       save_profile,
)
from .ratings import Rating, ratings_from_darktable, ratings_from_xmp, read_sidecar_rating

__all__ = ["FEATURES_VERSION", "FeatureCache", "PhotoFeatures", "content_hash", "feature_names", "features_dir",
           "photo_features",
           "MIN_RATINGS", "LearnResult", "LinearTaste", "NotEnoughRatings", "learn", "srcc",
           "Profile", "ProfileError", "ProfileInfo", "ProfileModelMismatch", "list_profiles", "load_profile",
           "personal_score", "profiles_dir", "save_profile",
           "Rating", "ratings_from_darktable", "ratings_from_xmp", "read_sidecar_rating"]
