"""The culling view's override keys written to the photo's sidecar, as Lightroom's flags are: P picks, X rejects, U
unflags. darktable and Lightroom read a reject from XMP as `xmp:Rating` -1; the decision itself goes into our
namespace's `asecritic:CullDecision` (the key `ase-mllm cull --apply` writes, docs/culling.md), so the sidecar says
what the photographer decided, not only what the cull suggested.

    flag("/shoot/IMG_0003.jpg", "reject")            # xmp:Rating -1, the stars it had kept to come back
    flag("/shoot/IMG_0003.jpg", "unflag")            # the stars it had before the reject (none: 0)
    flag("/shoot/IMG_0001.jpg", "pick", pick_rating=4)   # a pick rated lower is raised to 4 stars
    read_flag("/shoot/IMG_0003.jpg")                 # {"decision": "keep", "rating": 3}

The ratings, as `ase-mllm cull --apply` treats them:

* **reject** (X): `xmp:Rating` -1. The rating it had goes to `asecritic:CullPriorRating` (a cull's own -1 passes its
  prior on), so U can give it back.
* **unflag** (U): a reject gets its prior rating back (0 when there was none); stars are left as they are.
  The decision becomes `keep`.
* **pick** (P): a reject gets its prior rating back; with `pick_rating` (1..5, the viewer's setting, as the cull's
  `--pick-rating`), a pick rated lower is raised to it; otherwise its stars stay.

`asecritic:CullWroteRating` is removed by every override: the rating is the photographer's now, and a later
`ase-mllm cull --apply` leaves a rating the user set where it is.
"""

from __future__ import annotations

import os

from .rating import RatingError, edit_sidecar

__all__ = ["FLAGS", "RatingError", "flag", "read_flag"]

FLAGS = ("pick", "reject", "unflag")
NAMESPACE_URI = "https://github.com/ase-mllm/ns/critic/1.0/"  # daemon/xmp.py's NAMESPACE_URI (the viewer may not
NAMESPACE_PREFIX = "asecritic"  # import the daemon's modules beyond its client: tests check the two agree)
_NS = f"Xmp.{NAMESPACE_PREFIX}."
K_RATING = "Xmp.xmp.Rating"
K_DECISION, K_WROTE, K_PRIOR = _NS + "CullDecision", _NS + "CullWroteRating", _NS + "CullPriorRating"
REJECT = "-1"
_registered = False


def _register() -> None:
    """exiv2 refuses keys of an unknown prefix: register ours once, before any read or write."""
    global _registered
    if not _registered:
        import pyexiv2

        pyexiv2.registerNs(NAMESPACE_URI, NAMESPACE_PREFIX)
        _registered = True


def _text(value) -> str:
    return (value if isinstance(value, str) else "").strip()


def _stars(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0


def _changes(current: dict, what: str, pick_rating: int | None) -> dict:
    """The XMP changes for one override (None deletes a key)."""
    now = _text(current.get(K_RATING))
    wrote = _text(current.get(K_WROTE))
    prior = _text(current.get(K_PRIOR))
    changes: dict = {K_WROTE: None, K_PRIOR: None}
    if what == "reject":
        if now != REJECT:
            prior = now
        elif wrote != REJECT and K_PRIOR not in current:
            prior = ""  # a reject set elsewhere (darktable): nothing to give back
        changes.update({K_RATING: REJECT, K_PRIOR: prior if prior and prior != REJECT else None,
                        K_DECISION: "reject"})
        return changes
    rating = ((prior if prior != REJECT else "") or "0") if now == REJECT else now
    if what == "pick" and pick_rating is not None and _stars(rating) < pick_rating:
        rating = str(int(pick_rating))
    if rating != now:
        changes[K_RATING] = rating
    changes[K_DECISION] = "pick" if what == "pick" else "keep"
    return changes


def flag(photo: str | os.PathLike, what: str, pick_rating: int | None = None) -> dict:
    """Write a pick, reject or unflag into the photo's sidecar (`photo.ext.xmp`, created when missing).

    Args:
        photo: the photo's path.
        what: "pick", "reject" or "unflag".
        pick_rating: with "pick": raise a lower rating to this many stars (1..5); None leaves the stars.

    Returns:
        {"sidecar", "decision" ("pick" | "reject" | "keep"), "rating" (the xmp:Rating now, an int, or None)}.

    Raises:
        ValueError: an unknown flag, or pick_rating out of 1..5.
        RatingError: the sidecar is not a regular file, or cannot be parsed or written (it is left as it was).
    """
    if what not in FLAGS:
        raise ValueError(f"flag must be one of {FLAGS}, not {what!r}")
    if pick_rating is not None and not 1 <= int(pick_rating) <= 5:
        raise ValueError(f"pick_rating must be 1…5, not {pick_rating}")
    _register()
    seen: dict = {}

    def edit(current: dict) -> dict:
        changes = _changes(current, what, pick_rating)
        seen.update(current)
        seen.update(changes)
        return changes

    sidecar = edit_sidecar(photo, edit)
    rating = _text(seen.get(K_RATING))
    return {"sidecar": sidecar, "decision": seen[K_DECISION], "rating": _stars(rating) if rating else None}


def read_flag(photo: str | os.PathLike) -> dict:
    """The decision and rating in a photo's sidecar.

    Args:
        photo: the photo's path.

    Returns:
        {"decision": "pick" | "keep" | "reject" | None (no cull and no override), "rating": int or None}.
    """
    import pyexiv2

    from .rating import _read_regular, sidecar_path

    _register()
    data = _read_regular(sidecar_path(photo))
    if not data:
        return {"decision": None, "rating": None}
    with pyexiv2.ImageData(data) as img:
        current = img.read_xmp()
    rating = _text(current.get(K_RATING))
    return {"decision": _text(current.get(K_DECISION)) or None, "rating": _stars(rating) if rating else None}
