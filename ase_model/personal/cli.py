"""`ase-mllm learn`: learn a personal profile from the photographer's ratings.

    ase-mllm learn --from-xmp ~/Photos/2025 ~/Photos/2024 [--profile NAME] [--model DIR]
    ase-mllm learn --from-darktable ~/.config/darktable/library.db [--folder DIR...] [--profile NAME]

Reads the ratings (sidecars, or darktable's library opened read-only), computes the features of the rated photos
with the model (the built-in starter model by default, as `ase-mllm critique`; cached next to the daemon's store
in $XDG_DATA_HOME/ase-mllm/personal-features, so a second run only learns), prints the cross-validated
agreement of the personal and of the generic score with the ratings side by side, and saves the profile
($XDG_DATA_HOME/ase-mllm/profiles/NAME). Too few usable ratings, or all equal: a message, exit status 2, no
profile. Registered in ase_model.cli's DELEGATED: this module owns its parser and --help.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["DEFAULT_PROFILE", "build_parser", "learn_command", "main"]

DEFAULT_PROFILE = "default"
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The `ase-mllm learn` parser."""
    p = argparse.ArgumentParser(
        prog="ase-mllm learn",
        description="Learn your taste from your ratings (xmp:Rating stars and rejects) into a personal profile; "
                    "`ase-mllm critique --profile NAME` then adds a personal_score. Nothing leaves the machine "
                    "(docs/personal.md).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-xmp", nargs="+", metavar="DIR", help="folders (or photos) whose XMP sidecars hold "
                     "the ratings: darktable's photo.ext.xmp or Lightroom's / digiKam's photo.xmp")
    src.add_argument("--from-darktable", metavar="LIBRARY.db", help="darktable's library.db (opened read-only)")
    p.add_argument("--folder", nargs="+", metavar="DIR", help="with --from-darktable: only photos under these")
    p.add_argument("--no-recursive", action="store_true", help="with --from-xmp: not the sub-folders")
    p.add_argument("--profile", default=DEFAULT_PROFILE, metavar="NAME",
                   help="the profile to write (default %(default)s; replaces one of that name)")
    p.add_argument("--model", metavar="DIR", help="model folder (default: the built-in starter model)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best there is)")
    p.add_argument("--batch-size", type=int, default=16, help="photos per forward pass (default %(default)s)")
    p.add_argument("--features-cache", metavar="DIR", help="feature cache folder (default: beside the daemon's "
                   "store, $XDG_DATA_HOME/ase-mllm/personal-features)")
    p.add_argument("--dry-run", action="store_true", help="print the agreement, save nothing")
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object on stdout")
    return p


def _say(msg: str) -> None:
    print(f"ase-mllm learn: {msg}", file=sys.stderr, flush=True)


def _read_ratings(args) -> tuple[list, list[str]]:
    """(ratings whose photo exists, the sources to record)."""
    from .ratings import ratings_from_darktable, ratings_from_xmp

    if args.from_darktable:
        rated = ratings_from_darktable(args.from_darktable, folders=args.folder)
        sources = [str(Path(args.from_darktable).expanduser().resolve())]
    else:
        for d in args.from_xmp:
            if not Path(d).expanduser().exists():
                raise FileNotFoundError(f"no such folder or photo: {d}")
        rated = ratings_from_xmp(args.from_xmp, recursive=not args.no_recursive)
        sources = [str(Path(d).expanduser().resolve()) for d in args.from_xmp]
    present = [r for r in rated if r.path.is_file()]
    if len(present) < len(rated):  # a library remembers photos that were moved or deleted since
        _say(f"{len(rated) - len(present)} rated photo(s) no longer exist; left out")
    return present, sources


def _features(critic, rated: list, cache, batch_size: int):
    """Features of the rated photos, leaving out (and naming) photos that cannot be read: one bad file must not
    stop learning from a whole library. Returns (kept ratings, PhotoFeatures)."""
    import numpy as np

    from .features import PhotoFeatures, photo_features

    kept, parts = [], []
    for start in range(0, len(rated), batch_size):
        chunk = rated[start:start + batch_size]
        try:
            parts.append(photo_features(critic, [r.path for r in chunk], cache=cache, batch_size=batch_size))
            kept += chunk
        except Exception:  # find the culprit(s) one by one
            for r in chunk:
                try:
                    parts.append(photo_features(critic, [r.path], cache=cache))
                    kept.append(r)
                except Exception as e:
                    _say(f"{r.path}: cannot be read ({type(e).__name__}: {e}); left out")
        if len(rated) > batch_size:
            print(f"  features: {min(start + batch_size, len(rated))}/{len(rated)}", file=sys.stderr, flush=True)
    if not parts:
        return kept, PhotoFeatures(np.zeros((0, 0), np.float32), np.zeros(0, np.float32), critic.model_id)
    image_dims = parts[0].image_dims
    return kept, PhotoFeatures(np.concatenate([f.vectors for f in parts]), np.concatenate([f.scores for f in parts]),
                               critic.model_id, image_dims)


def _table(result) -> str:
    """The two agreements side by side (what the photographer decides on)."""
    gain = result.personal_srcc - result.generic_srcc
    hist = ", ".join(f"{'reject' if k == -1 else f'{k} star' + ('s' if k > 1 else '')}: {n}"
                     for k, n in sorted(result.histogram.items()))
    return (f"agreement with your {result.n_ratings} ratings ({hist})\n"
            "Spearman's correlation, cross-validated on photos held out of the learning:\n"
            f"  {'personal score':16s} {result.personal_srcc:+.3f}\n"
            f"  {'generic score':16s} {result.generic_srcc:+.3f}\n"
            f"  {'difference':16s} {gain:+.3f}\n"
            f"({result.summary()})\n")


def learn_command(args) -> int:
    """Runs `ase-mllm learn` on parsed arguments (see the module's docstring)."""
    import numpy as np

    from .learning import MIN_RATINGS, check_ratings, learn
    from .profiles import check_name, save_profile

    check_name(args.profile)  # a bad name fails before minutes of features
    rated, sources = _read_ratings(args)
    check_ratings(np.array([r.rating for r in rated]), MIN_RATINGS)  # refuse before loading any model
    from ..critic import Critic
    from .features import FeatureCache, features_dir

    t0 = time.perf_counter()
    critic = Critic.from_pretrained(args.model, device=args.device)
    cache = FeatureCache(Path(args.features_cache) if args.features_cache else features_dir(), critic.model_id)
    _say(f"{len(rated)} rated photos; features with {critic.model_id} (cached in {cache.folder})")
    rated, feats = _features(critic, rated, cache, args.batch_size)
    t_feat = time.perf_counter() - t0
    ratings = np.array([r.rating for r in rated])
    t1 = time.perf_counter()
    # NotEnoughRatings again when the photos that could not be read leave too few
    result = learn(feats.vectors, feats.scores, ratings, image_dims=feats.image_dims)
    t_learn = time.perf_counter() - t1
    folder = None
    if not args.dry_run:
        folder = save_profile(args.profile, result, model=critic.model_id, sources=sources)
    if args.json:
        print(json.dumps({"profile": args.profile, "path": str(folder) if folder else None, "model": critic.model_id,
                          "n_ratings": result.n_ratings, "personal_srcc": round(result.personal_srcc, 4),
                          "generic_srcc": round(result.generic_srcc, 4),
                          "histogram": {str(k): v for k, v in result.histogram.items()},
                          "features_s": round(t_feat, 2), "learn_s": round(t_learn, 2)}))
    else:
        print(_table(result), end="")
        print(f"features {t_feat:.1f} s, learning {t_learn:.1f} s")
        if folder:
            print(f"saved profile {args.profile!r} in {folder}; use it with "
                  f"`ase-mllm critique --profile {args.profile} PHOTO...`")
        else:
            print("dry run: nothing saved")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Runs `ase-mllm learn`.

    Args:
        argv: the arguments after `learn` (default: sys.argv[1:]).
    """
    from .learning import NotEnoughRatings
    from .profiles import ProfileError

    args = build_parser().parse_args(argv)
    if args.folder and not args.from_darktable:
        _say("--folder goes with --from-darktable")
        return EXIT_REFUSED
    try:
        return learn_command(args)
    except NotEnoughRatings as e:
        _say(str(e))
        return EXIT_REFUSED
    except ProfileError as e:
        _say(str(e))
        return EXIT_REFUSED
    except (FileNotFoundError, ValueError) as e:
        _say(str(e))
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
