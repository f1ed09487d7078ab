"""Star ratings written to the photo's XMP sidecar, darktable's way: `photo.ext.xmp` beside the photo, `xmp:Rating`
0…5. Only that property is touched: darktable's history, the user's keywords and anything else in an existing
sidecar are kept (pyexiv2 edits the packet). The write is atomic (a temp file in the same folder, then a rename),
and only a regular file is ever read or replaced: a symlink or a device named like a sidecar is refused, not
followed.

    path = write_rating("/shoot/IMG_0042.CR3", 4)    # -> "/shoot/IMG_0042.CR3.xmp"
    read_rating("/shoot/IMG_0042.CR3")               # -> 4 (None without a sidecar or a rating)
"""

from __future__ import annotations

import os
import stat
import tempfile

__all__ = ["RatingError", "edit_sidecar", "read_rating", "sidecar_path", "write_rating"]

_EMPTY = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
          b'<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
          b' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
          b'  <rdf:Description rdf:about=""/>\n'
          b' </rdf:RDF>\n'
          b'</x:xmpmeta>\n'
          b'<?xpacket end="w"?>\n')


class RatingError(OSError):
    """The rating could not be written (the reason is in the message)."""


def sidecar_path(photo: str | os.PathLike) -> str:
    """darktable's sidecar for a photo: the full file name plus ".xmp" (IMG_1.CR3 -> IMG_1.CR3.xmp).

    Args:
        photo: the photo's path.
    """
    return os.fspath(photo) + ".xmp"


def _read_regular(path: str) -> bytes | None:
    """The file's bytes, None if it does not exist; refuses anything but a regular file (no symlink followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: a symlink
        raise RatingError(f"{path}: not a regular file ({e.strerror})") from e
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise RatingError(f"{path}: not a regular file")
        return f.read()


def read_rating(photo: str | os.PathLike) -> int | None:
    """The rating in a photo's sidecar.

    Args:
        photo: the photo's path.

    Returns:
        0…5 (-1: rejected, darktable), or None without a sidecar or a rating.
    """
    import pyexiv2

    data = _read_regular(sidecar_path(photo))
    if not data:
        return None
    with pyexiv2.ImageData(data) as img:
        value = img.read_xmp().get("Xmp.xmp.Rating")
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def write_rating(photo: str | os.PathLike, stars: int) -> str:
    """Set a photo's star rating in its sidecar (created if missing; only xmp:Rating changes in an existing one).

    Args:
        photo: the photo's path (it must exist; it is not opened).
        stars: 0…5.

    Returns:
        The sidecar's path.

    Raises:
        ValueError: stars out of 0…5.
        RatingError: the sidecar is not a regular file, or cannot be parsed or written.
    """
    if not 0 <= int(stars) <= 5:
        raise ValueError(f"stars must be 0…5, not {stars}")
    return edit_sidecar(photo, lambda current: {"Xmp.xmp.Rating": str(int(stars))})


def edit_sidecar(photo: str | os.PathLike, edit) -> str:
    """Change some XMP properties of a photo's sidecar (created if missing; nothing else in it changes).

    Args:
        photo: the photo's path (it must exist; it is not opened).
        edit: called with the sidecar's current XMP ({key: value}, pyexiv2's keys such as "Xmp.xmp.Rating");
            returns the changes ({key: value}; None deletes a key). Keys of a namespace other than the standard
            ones must be registered with pyexiv2 first.

    Returns:
        The sidecar's path.

    Raises:
        RatingError: the sidecar is not a regular file, or cannot be parsed or written.
    """
    import pyexiv2

    photo = os.fspath(photo)
    if not os.path.isfile(photo):
        raise RatingError(f"{photo}: no such photo")
    path = sidecar_path(photo)
    data = _read_regular(path) or _EMPTY
    try:
        with pyexiv2.ImageData(data) as img:
            current = img.read_xmp()
            changes = {k: v for k, v in edit(current).items() if v is not None or k in current}
            img.modify_xmp(changes)
            out = img.get_bytes()
    except Exception as e:  # exiv2 raises RuntimeError on a broken packet
        raise RatingError(f"{path}: cannot edit the XMP ({e})") from e
    _replace(path, out)
    return path


def _replace(path: str, out: bytes) -> None:
    """Write `out` to a temp file beside `path`, then rename it over `path` (atomic)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ase-rating-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(out)
            f.flush()
            os.fsync(f.fileno())
        try:  # keep the old sidecar's permissions; a new one gets the usual 0644 (mkstemp makes 0600)
            os.chmod(tmp, stat.S_IMODE(os.lstat(path).st_mode))
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # rename replaces a symlink itself, never its target (and _read_regular refused it)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise RatingError(f"{path}: {e.strerror or e}") from e
