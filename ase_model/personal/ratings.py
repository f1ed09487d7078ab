"""The photographer's ratings, read from where they really live: XMP sidecars and darktable's library.

    from ase_model.personal.ratings import ratings_from_xmp, ratings_from_darktable
    rated = ratings_from_xmp(["~/Photos/2025"])               # photo.jpg.xmp (darktable) or photo.xmp (Lightroom)
    rated = ratings_from_darktable("~/.config/darktable/library.db")   # opened read-only

A rating is an int: 1..5 stars, -1 for a reject; 0 (no stars) means "not rated" and is left out unless asked for.
Nothing is written anywhere: sidecars are read as bytes, darktable's library through a read-only SQLite URI.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyexiv2

__all__ = ["Rating", "REJECT", "DT_IMAGE_REJECTED", "PHOTO_EXTENSIONS", "sidecar_candidates", "rating_from_xmp",
           "read_sidecar_rating", "ratings_from_xmp", "ratings_from_darktable", "darktable_rating"]

REJECT = -1
DT_IMAGE_REJECTED = 8  # darktable >= 3.0: the reject is its own bit of images.flags
_DT_STARS_MASK = 0x7  # the star count; 6 was darktable's reject before 3.0 (DT_VIEW_REJECT)
_DT_OLD_REJECT = 6
_MAX_SIDECAR_BYTES = 16 << 20  # a sidecar is kilobytes; anything this big is not one
# libexiv2's XMP toolkit is process-wide and not thread-safe (see daemon/xmp.py, which has its own lock).
_EXIV2_LOCK = threading.Lock()

PHOTO_EXTENSIONS = frozenset(
    ".jpg .jpeg .png .tif .tiff .webp .heic .heif .avif .jxl .dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf "
    ".orf .rw2 .pef .srw .x3f .3fr .iiq .erf .mef .mos .mrw .kdc .dcr .rwl".split()
)


@dataclass(frozen=True)
class Rating:
    """One rated photo.

    Args:
        path: the photo (absolute).
        rating: 1..5 stars, -1 a reject, 0 not rated.
        source: where the rating was read: the sidecar's path, or "darktable:<library.db>".
    """

    path: Path
    rating: int
    source: str


def sidecar_candidates(photo: Path) -> list[Path]:
    """The sidecars that may hold `photo`'s rating, in the order they win: darktable's `photo.ext.xmp`, then the
    `photo.xmp` Lightroom and digiKam write."""
    return [photo.with_name(photo.name + ".xmp"), photo.with_suffix(".xmp")]


def rating_from_xmp(data: bytes) -> int | None:
    """`xmp:Rating` of an XMP packet (rounded to an int, clamped to -1..5); None when there is none.

    Args:
        data: the sidecar's bytes.
    Raises:
        ValueError: the bytes are not XMP exiv2 can read.
    """
    if not data.strip():
        return None
    with _EXIV2_LOCK:
        try:
            img = pyexiv2.ImageData(data)
        except Exception as e:  # exiv2's errors arrive as RuntimeError
            raise ValueError(f"not XMP: {str(e).strip()}") from e
        try:
            xmp = img.read_xmp()
        finally:
            img.close()
    value = xmp.get("Xmp.xmp.Rating")
    if value is None or isinstance(value, (list, dict)):
        return None
    try:
        stars = round(float(str(value).strip()))
    except ValueError:
        return None
    return max(REJECT, min(5, stars))


def read_sidecar_rating(path: str | os.PathLike) -> int | None:
    """`xmp:Rating` of a sidecar file; None when it has none or cannot be read (a broken sidecar is skipped, not
    fatal: one bad file must not stop learning from a whole library).

    Args:
        path: the sidecar.
    """
    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size > _MAX_SIDECAR_BYTES:
            return None
        return rating_from_xmp(p.read_bytes())
    except (OSError, ValueError):
        return None


def _photos(folders: Iterable[str | os.PathLike], recursive: bool) -> Iterable[Path]:
    for folder in folders:
        root = Path(folder).expanduser()
        if root.is_file():
            yield root.resolve()
            continue
        walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
        for dirpath, dirnames, filenames in walker:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if p.suffix.lower() in PHOTO_EXTENSIONS and p.is_file():
                    yield p.resolve()


def ratings_from_xmp(folders: Iterable[str | os.PathLike], recursive: bool = True,
                     include_unrated: bool = False) -> list[Rating]:
    """Ratings of the photos in `folders` from their sidecars (the first sidecar that has an `xmp:Rating` wins).

    Args:
        folders: folders (or single photos) to read.
        recursive: also read sub-folders (hidden ones are skipped).
        include_unrated: keep photos whose rating is 0 (no stars).
    """
    out = []
    for photo in _photos(folders, recursive):
        for side in sidecar_candidates(photo):
            stars = read_sidecar_rating(side)
            if stars is not None:
                if stars != 0 or include_unrated:
                    out.append(Rating(photo, stars, str(side)))
                break
    return out


def darktable_rating(flags: int) -> int | None:
    """The rating darktable keeps in `images.flags`: -1 when rejected, else the stars (None for a value no
    darktable writes).

    Args:
        flags: the `images.flags` column.
    """
    stars = flags & _DT_STARS_MASK
    if flags & DT_IMAGE_REJECTED or stars == _DT_OLD_REJECT:
        return REJECT
    return stars if stars <= 5 else None


def ratings_from_darktable(library: str | os.PathLike, include_unrated: bool = False,
                           folders: Iterable[str | os.PathLike] | None = None) -> list[Rating]:
    """Ratings from darktable's `library.db`, opened read-only (darktable may be running).

    A duplicate (images.version > 0) shares its file with the original: the file's rating is the lowest version's.

    Args:
        library: the library.db (by default ~/.config/darktable/library.db).
        include_unrated: keep images with no stars (darktable gives 1 star on import by default, 0 on request).
        folders: only images under these folders (a collection's film rolls).
    Raises:
        FileNotFoundError: no such library.
        ValueError: the file is not a darktable library.
    """
    db = Path(library).expanduser().resolve()
    if not db.is_file():
        raise FileNotFoundError(f"no darktable library at {db}")
    uri = f"file:{db.as_posix()}?mode=ro"
    roots = [Path(f).expanduser().resolve() for f in folders] if folders is not None else None
    try:
        con = sqlite3.connect(uri, uri=True, timeout=10)
    except sqlite3.Error as e:
        raise ValueError(f"cannot open {db} read-only: {e}") from e
    try:
        rows = con.execute(
            "SELECT f.folder, i.filename, i.flags FROM images AS i JOIN film_rolls AS f ON i.film_id = f.id "
            "ORDER BY f.folder, i.filename, i.version, i.id"
        ).fetchall()
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{db} is not a darktable library ({e})") from e
    finally:
        con.close()
    out, seen = [], set()
    for folder, filename, flags in rows:
        path = Path(folder) / filename
        if path in seen:
            continue
        seen.add(path)
        if roots is not None and not any(path.is_relative_to(r) for r in roots):
            continue
        stars = darktable_rating(int(flags or 0))
        if stars is None or (stars == 0 and not include_unrated):
            continue
        out.append(Rating(path, stars, f"darktable:{db}"))
    return out
