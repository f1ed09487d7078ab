"""Personal profiles on disk: one folder per profile in the user's data folder, written atomically.

    save_profile("alice", result, model=critic.model_id)          # $XDG_DATA_HOME/ase-mllm/profiles/alice/
    for info in list_profiles(): print(info.name, info.size, info.created, info.personal_srcc)
    profile = load_profile("alice", model=critic.model_id)        # ProfileModelMismatch on another model
    profile.personal_score(features.vectors, features.scores)     # 0..10 per photo

A profile folder holds `profile.json` (name, model fingerprint, feature layout version, date, the validation
figures, the rating histogram, the penalty) and `weights.npz` (the standardisation and the weights). It is
written into a hidden temporary folder beside its final place and renamed into place, so a reader sees the old
profile or the new one, never half of one. Deleting a profile is deleting its folder. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .features import FEATURES_VERSION
from .learning import LearnResult, LinearTaste

__all__ = ["Profile", "ProfileInfo", "ProfileError", "ProfileModelMismatch", "check_name", "profiles_dir",
           "save_profile", "load_profile", "list_profiles", "personal_score"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ProfileError(ValueError):
    """A profile that does not exist, has a bad name or cannot be read."""


class ProfileModelMismatch(ProfileError):
    """The profile was learnt with another model (or feature layout): it must be learnt again."""


def profiles_dir(root: str | os.PathLike | None = None) -> Path:
    """Where profiles live: `root`, else $XDG_DATA_HOME/ase-mllm/profiles (default ~/.local/share/...)."""
    if root is not None:
        return Path(root)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ase-mllm" / "profiles"


def check_name(name: str) -> str:
    """`name` if it is a valid profile name, else ProfileError (letters, digits, '.', '_', '-'; no paths).

    Args:
        name: the name to check.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ProfileError(f"bad profile name {name!r}: use letters, digits, '.', '_' or '-' (up to 64), "
                           "starting with a letter or digit")
    return name


@dataclass
class Profile:
    """A loaded profile.

    Args:
        name: the profile's name (its folder's).
        model: fingerprint of the model whose features it was learnt on.
        taste: the fitted model.
        meta: everything in profile.json.
    """

    name: str
    model: str
    taste: LinearTaste
    meta: dict

    def check_model(self, model: str) -> None:
        """Raise ProfileModelMismatch unless the profile was learnt on `model` with this feature layout."""
        if model != self.model or self.meta.get("features_version") != FEATURES_VERSION:
            raise ProfileModelMismatch(
                f"profile {self.name!r} was learnt with model {self.model} (features v"
                f"{self.meta.get('features_version')}), but the critic runs {model} (features v{FEATURES_VERSION}): "
                f"its taste does not carry over; learn it again from your ratings with this model")

    def personal_score(self, vectors: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Personal scores 0..10 of photos from their features.

        Args:
            vectors: (n, d) features from `photo_features` with the profile's model.
            scores: (n,) the generic scores.
        """
        vectors = np.atleast_2d(np.asarray(vectors, np.float64))
        if vectors.shape[1] != len(self.taste.mean):
            raise ProfileModelMismatch(f"profile {self.name!r} expects {len(self.taste.mean)} features, got "
                                       f"{vectors.shape[1]}: learn it again with this model")
        return self.taste.score(vectors, np.atleast_1d(scores))


@dataclass
class ProfileInfo:
    """What `list_profiles` says about one profile.

    Args:
        name: the name.
        path: its folder.
        size: bytes on disk.
        created: ISO 8601 date it was learnt.
        model: the model fingerprint.
        n_ratings: ratings learnt from.
        personal_srcc: cross-validated SRCC of the personal score with the ratings.
        generic_srcc: that of the generic score.
    """

    name: str
    path: Path
    size: int
    created: str
    model: str
    n_ratings: int
    personal_srcc: float
    generic_srcc: float

    def to_dict(self) -> dict:
        return {**self.__dict__, "path": str(self.path)}


def save_profile(name: str, result: LearnResult, model: str, root: str | os.PathLike | None = None,
                 sources: list[str] | None = None) -> Path:
    """Write a learnt taste as profile `name` (replacing one of that name); returns its folder.

    Args:
        name: the profile's name.
        result: what `learn` returned.
        model: fingerprint of the model the features came from.
        root: the profiles folder (default `profiles_dir()`).
        sources: where the ratings came from (folders, a library.db), recorded for the user.
    """
    check_name(name)
    base = profiles_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    t = result.model
    meta = {
        "name": name,
        "model": model,
        "features_version": FEATURES_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n_ratings": result.n_ratings,
        "personal_srcc": round(result.personal_srcc, 4),
        "generic_srcc": round(result.generic_srcc, 4),
        "lambda": None if np.isinf(t.lam) else t.lam,
        "histogram": {str(k): v for k, v in result.histogram.items()},
        "sources": list(sources or []),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=base))
    try:
        np.savez(tmp / "weights.npz", mean=t.mean, std=t.std, w=t.w,
                 scalars=np.array([t.score_mean, t.score_std, t.a, t.b, t.lam]))
        (tmp / "profile.json").write_text(json.dumps(meta, indent=2) + "\n")
        final = base / name
        old = None
        if final.exists():  # rename() will not replace a non-empty folder: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=base))
            os.rename(final, old / name)
        os.rename(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_profile(name: str, model: str | None = None, root: str | os.PathLike | None = None) -> Profile:
    """Load profile `name`; with `model`, check it was learnt on that model.

    Args:
        name: the profile's name.
        model: the running model's fingerprint (None: no check).
        root: the profiles folder (default `profiles_dir()`).
    Raises:
        ProfileError: no such profile, or it cannot be read.
        ProfileModelMismatch: learnt with another model.
    """
    folder = profiles_dir(root) / check_name(name)
    try:
        meta = json.loads((folder / "profile.json").read_text())
        with np.load(folder / "weights.npz", allow_pickle=False) as z:
            score_mean, score_std, a, b, lam = (float(v) for v in z["scalars"])
            taste = LinearTaste(z["mean"], z["std"], score_mean, score_std, a, z["w"], b, lam)
    except FileNotFoundError as e:
        raise ProfileError(f"no profile {name!r} in {folder.parent}") from e
    except (OSError, ValueError, KeyError) as e:
        raise ProfileError(f"profile {name!r} cannot be read ({e}); learn it again") from e
    profile = Profile(name=name, model=meta["model"], taste=taste, meta=meta)
    if model is not None:
        profile.check_model(model)
    return profile


def list_profiles(root: str | os.PathLike | None = None) -> list[ProfileInfo]:
    """Every readable profile, by name, with its size, date and validation figures.

    Args:
        root: the profiles folder (default `profiles_dir()`).
    """
    base = profiles_dir(root)
    out = []
    if not base.is_dir():
        return out
    for folder in sorted(base.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            meta = json.loads((folder / "profile.json").read_text())
        except (OSError, ValueError):
            continue
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        out.append(ProfileInfo(name=folder.name, path=folder, size=size, created=meta.get("created", ""),
                               model=meta.get("model", ""), n_ratings=int(meta.get("n_ratings", 0)),
                               personal_srcc=float(meta.get("personal_srcc", 0.0)),
                               generic_srcc=float(meta.get("generic_srcc", 0.0))))
    return out


def personal_score(profile: Profile, features, model: str | None = None) -> np.ndarray:
    """Personal scores 0..10 for photos' features (`PhotoFeatures`), after checking the model.

    Args:
        profile: a loaded profile.
        features: `photo_features(...)` of the photos.
        model: the fingerprint to check (default: the one the features were computed with).
    """
    profile.check_model(model or features.model)
    return profile.personal_score(features.vectors, features.scores)
