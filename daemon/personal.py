"""Personal scores in the daemon: `critique` and `submit` with a `profile` (issue 20, docs/personal.md).

    scores = PersonalScores()
    scores.check("alice", worker.model_id)                 # NotFound / BadArgument (learnt with another model)
    scores.from_cache("alice", model_id, photo_hash)       # a stored critique: the cached features, no model
    scores.compute(critic, "alice", images, hashes)        # after a model batch: one more pass of the image side

Profiles and feature vectors are ase_model.personal's (the user's data folder, `ase-mllm learn` writes them);
the vectors are keyed by the photo's SHA-256, which is also the store's key, so the daemon and the command line
share them. A personal score is never stored with the critique: it depends on the profile, which may be learnt
again at any time, so it is computed (cheaply, from the cached vector) whenever a result is answered.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from .errors import BadArgument, NotFound

__all__ = ["PersonalScores"]

log = logging.getLogger("ase_daemon.personal")


class PersonalScores:
    """Loads profiles (re-read when their file changes) and scores photos by them.

    Args:
        profiles_root: the profiles folder (default: ase_model.personal.profiles_dir(), in $XDG_DATA_HOME).
        features_folder: the feature cache (default: ase_model.personal.features_dir(), beside the store).
    """

    def __init__(self, profiles_root: str | Path | None = None, features_folder: str | Path | None = None):
        self.profiles_root, self.features_folder = profiles_root, features_folder
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[int, object]] = {}  # name -> (profile.json's mtime_ns, Profile)

    def profile(self, name: str, model_id: str | None):
        """The profile `name`, checked against the running model's fingerprint (when known).

        Args:
            name: the profile's name.
            model_id: the model's fingerprint; None skips the check (the model's not known yet).
        Raises:
            NotFound: no such profile.
            BadArgument: a bad name, an unreadable profile, or one learnt with another model (says to relearn).
        """
        from ase_model.personal.profiles import (
            ProfileError,
            ProfileModelMismatch,
            check_name,
            load_profile,
            profiles_dir,
        )

        # Messages name no folder: a guest (CURVE, tcp) may send `profile` and must not learn the owner's paths.
        try:
            check_name(name)
        except ProfileError as e:
            raise BadArgument(str(e)) from None
        folder = profiles_dir(self.profiles_root) / name
        try:
            mtime = (folder / "profile.json").stat().st_mtime_ns
        except OSError:
            raise NotFound(f"no profile {name!r} (learn one: ase-mllm learn --profile {name} ...)") from None
        with self._lock:
            cached = self._loaded.get(name)
        if cached is None or cached[0] != mtime:
            try:
                cached = (mtime, load_profile(name, root=self.profiles_root))
            except ProfileError as e:
                log.warning("profile %r: %s", name, e)
                raise BadArgument(f"profile {name!r} cannot be read; learn it again (ase-mllm learn)") from None
            with self._lock:
                self._loaded[name] = cached
        profile = cached[1]
        if model_id is not None:
            try:
                profile.check_model(model_id)
            except ProfileModelMismatch as e:  # says which models, and to learn it again
                raise BadArgument(str(e)) from None
        return profile

    def _cache(self, model_id: str):
        from ase_model.personal.features import FeatureCache, features_dir

        return FeatureCache(self.features_folder or features_dir(), model_id)

    def from_cache(self, name: str, model_id: str, photo_hash: str) -> float | None:
        """The personal score from the photo's cached features; None when they are not cached yet.

        Args:
            name: the profile.
            model_id: the model the features must come from.
            photo_hash: SHA-256 of the photo file's bytes.
        """
        vector = self._cache(model_id).get(photo_hash) if photo_hash else None
        if vector is None:
            return None
        profile = self.profile(name, model_id)
        return float(profile.personal_score(vector[None, :], vector[None, -1])[0])

    def compute(self, critic, name: str, images: list, hashes: list[str | None]) -> list[float]:
        """Personal scores of decoded photos (one pass of the model's image side; the vectors are cached).

        Args:
            critic: the loaded Critic (call on the model thread).
            name: the profile.
            images: the decoded PIL images.
            hashes: their files' SHA-256 (cache keys).
        """
        from ase_model.personal.features import photo_features

        profile = self.profile(name, critic.model_id)
        feats = photo_features(critic, images, cache=self._cache(critic.model_id), keys=hashes)
        return [float(s) for s in profile.personal_score(feats.vectors, feats.scores)]
