"""Hostile-file defences shared by the image loader and the daemon: safe opening, size caps, a memory budget.

``ase_model.imageio`` decodes; this module decides whether a file may be read at all and what decoding it may
cost. Split out of imageio so that both stay readable; imageio re-exports the public names.

* ``open_regular`` opens with ``O_RDONLY | O_NONBLOCK`` (a FIFO with no writer cannot block the open) and checks
  the *opened* descriptor with ``fstat``: only a regular file goes on, so a FIFO, a device (``/dev/zero``), a
  socket or a directory is refused at once, by name, and swapping the path between a check and the open changes
  nothing. With ``within`` the file actually opened (links resolved, as the kernel sees it) must lie inside
  that folder: a link planted in a watched folder cannot make us read ``/etc/shadow``.
* ``read_regular`` reads at most ``max_bytes`` (a file that grows past the cap while being read is refused too).
* ``MemoryBudget`` is a semaphore of bytes: every decode reserves its estimated peak (encoded bytes + decoded
  pixels + the conversions' working arrays) before the first pixel is decoded and waits while the daemon-wide
  budget is spent; a decode that could never fit is refused with the figures (``ImageTooLarge``).
* ``jpeg_damage`` walks a JPEG's markers and entropy-coded data: Pillow (and libjpeg below it) decode a JPEG with
  garbage inside without a word, so the structure tells us instead.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from contextlib import contextmanager

__all__ = [
    "ImageLoadError",
    "ImageNotFound",
    "ImageTooLarge",
    "MAX_FILE_BYTES",
    "MemoryBudget",
    "file_kind",
    "open_regular",
    "read_regular",
    "jpeg_damage",
]

#: Default cap on a photo file's size (bytes). RAW files reach ~200 MB, 16-bit TIFF scans more; a 1 GiB file
#: is no photo we should hold in memory. The daemon sets its own (limits.max_file_mb).
MAX_FILE_BYTES = 1 << 30


class ImageLoadError(ValueError):
    """An image could not be loaded. ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # keep it picklable (the daemon sends errors between processes)
        return (type(self), (self.path, self.reason))


class ImageNotFound(ImageLoadError):
    """The path names nothing (or a parent is not a folder)."""


class ImageTooLarge(ImageLoadError):
    """Over a size, pixel or memory limit. ``needed`` and ``limit`` are the figures (bytes or pixels, see
    ``unit``) when known."""

    def __init__(self, path: str, reason: str, needed: int | None = None, limit: int | None = None,
                 unit: str = "bytes"):
        super().__init__(path, reason)
        self.needed, self.limit, self.unit = needed, limit, unit

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.needed, self.limit, self.unit))


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


# --------------------------------------------------------------------------------------------
# Opening files
# --------------------------------------------------------------------------------------------

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages: "a FIFO (named pipe)", "a character device", ..."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _kind_reason(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory, not an image file"
    if stat.S_ISSOCK(mode):
        return "not a regular file: a socket"
    return f"not a regular file: {file_kind(mode)}; refused without reading it"


_os_open = os.open  # one name to patch: tests running as root simulate a refused open


def _opened_path(fd: int, path: str) -> str:
    try:  # what the kernel opened, links resolved: no race with a link swapped after the open
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def open_regular(path: str | os.PathLike, *, within: str | os.PathLike | None = None,
                 label: str | None = None) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only as a regular file; returns ``(fd, fstat)``. The caller closes ``fd``.

    Args:
        path: the file. Symbolic links are followed, but what they lead to must be a regular file (and inside
            ``within`` when given).
        within: a folder the opened file must lie in (links resolved); None = anywhere this process may read.
        label: how errors name the file (default: the path).

    Raises ImageNotFound, or ImageLoadError naming the problem (FIFO, device, directory, permission, a link out
    of ``within``, empty file). Never blocks: the open is non-blocking and nothing is read.
    """
    path = os.fsdecode(os.fspath(path))
    label = label or path
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = _os_open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageNotFound(label, "file not found (a dangling symbolic link)") from None
        raise ImageNotFound(label, "file not found") from None
    except NotADirectoryError:
        raise ImageNotFound(label, "file not found (a parent path is not a directory)") from None
    except IsADirectoryError:
        raise ImageLoadError(label, "is a directory, not an image file") from None
    except PermissionError:
        raise ImageLoadError(label, "permission denied") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageLoadError(label, "too many levels of symbolic links") from None
        if e.errno in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):  # a socket, or a device without a driver
            raise ImageLoadError(label, "not a regular file (a socket or a device)") from None
        raise ImageLoadError(label, f"cannot open file ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageLoadError(label, _kind_reason(st.st_mode))
        if within is not None:
            root = os.path.realpath(os.fspath(within))
            real = _opened_path(fd, path)
            if os.path.commonpath([root, real]) != root:
                raise ImageLoadError(label, f"a symbolic link out of {os.fspath(within)} (to {real}); not read")
        if st.st_size == 0:
            raise ImageLoadError(label, "empty file (0 bytes)")
        return fd, st
    except BaseException:
        os.close(fd)
        raise


def _too_big_file(label: str, size: int, cap: int) -> ImageTooLarge:
    return ImageTooLarge(label, f"file too large: {_mib(size)} exceeds the {_mib(cap)} cap on photo files",
                         size, cap)


def read_regular(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES,
                 within: str | os.PathLike | None = None, label: str | None = None) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` of them.

    Args:
        path: the file (see ``open_regular`` for links and ``within``).
        max_bytes: refuse a file over this size (``ImageTooLarge`` with the figures), checked before reading and
            again while reading (a file still growing).
        within: a folder the file must lie in, links resolved (None: anywhere).
        label: how errors name the file.
    """
    label = label or os.fsdecode(os.fspath(path))
    fd, st = open_regular(path, within=within, label=label)
    try:
        if st.st_size > max_bytes:
            raise _too_big_file(label, st.st_size, max_bytes)
        chunks, total = [], 0
        while True:
            try:
                block = os.read(fd, min(1 << 22, max_bytes + 1 - total))
            except BlockingIOError:  # cannot happen on a regular file; never spin on it
                raise ImageLoadError(label, "the file would block") from None
            except OSError as e:
                raise ImageLoadError(label, f"cannot read ({e.strerror or e})") from None
            if not block:
                break
            chunks.append(block)
            total += len(block)
            if total > max_bytes:
                raise _too_big_file(label, total, max_bytes)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if not data:
        raise ImageLoadError(label, "empty file (0 bytes)")
    return data


# --------------------------------------------------------------------------------------------
# Memory budget
# --------------------------------------------------------------------------------------------


class MemoryBudget:
    """A semaphore of bytes shared by every decode of a process (the daemon's decode pool).

    ``reserve(n)`` waits until ``n`` bytes are free and holds them until the block ends; a reservation larger
    than the whole budget can never be met and raises ``ImageTooLarge`` at once. Each decode holds at most one
    reservation (taken all at once), so waiting cannot deadlock.

    Args:
        total_bytes: the budget; > 0.
    """

    def __init__(self, total_bytes: int):
        if total_bytes <= 0:
            raise ValueError(f"a memory budget must be > 0 bytes, not {total_bytes!r}")
        self.total = int(total_bytes)
        self.in_use = 0
        self.peak = 0
        self.waits = 0
        self._cv = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int, label: str = "<image>"):
        """Hold ``nbytes`` of the budget for the duration of the block (waits for room)."""
        nbytes = max(0, int(nbytes))
        if nbytes > self.total:
            raise ImageTooLarge(label, f"too large to decode: needs about {_mib(nbytes)} of memory, over the "
                                f"daemon's {_mib(self.total)} decode budget", nbytes, self.total)
        with self._cv:
            if self.in_use + nbytes > self.total:
                self.waits += 1
            while self.in_use + nbytes > self.total:
                self._cv.wait()
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
        try:
            yield nbytes
        finally:
            with self._cv:
                self.in_use -= nbytes
                self._cv.notify_all()

    def snapshot(self) -> dict:
        """Figures for a status report (MiB)."""
        with self._cv:
            return {"budget_mb": round(self.total / 2**20, 1), "in_use_mb": round(self.in_use / 2**20, 1),
                    "peak_mb": round(self.peak / 2**20, 1), "waits": self.waits}


# --------------------------------------------------------------------------------------------
# JPEG structure check
# --------------------------------------------------------------------------------------------

# Markers that may follow a scan's entropy-coded data (progressive JPEGs put tables and scans between scans).
_AFTER_SCAN = {0xC4, 0xCC, 0xDB, 0xDD, 0xDA, 0xD9, 0xDC, 0xFE, *range(0xE0, 0xF0)}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_MAX_REPORTS = 3


def jpeg_damage(data: bytes | memoryview) -> list[str]:
    """Damage a decoder would paper over, found from the JPEG's structure: garbage inside a scan (an 0xFF that
    starts no valid marker), restart markers out of sequence, segments that run past the file or are not
    followed by a marker. Returns human sentences ([] for a clean file; bytes after the end-of-image marker
    are normal for cameras and not reported).
    """
    b = bytes(data)
    n = len(b)
    out: list[str] = []

    def report(msg: str) -> None:
        if len(out) < _MAX_REPORTS:
            out.append(msg)

    if not b.startswith(b"\xff\xd8"):
        return out
    i = 2
    while i < n:
        if b[i] != 0xFF:
            report(f"corrupt JPEG data: {_skip_to_marker(b, i) - i} unexpected bytes at offset {i}")
            i = _skip_to_marker(b, i)
            continue
        while i + 1 < n and b[i + 1] == 0xFF:  # fill bytes
            i += 1
        if i + 1 >= n:
            break
        m = b[i + 1]
        i += 2
        if m == 0xD9:
            return out
        if m in _STANDALONE:
            continue
        if i + 2 > n:
            report(f"corrupt JPEG data: marker 0x{m:02X} cut short")
            return out
        length = int.from_bytes(b[i:i + 2], "big")
        if length < 2 or i + length > n:
            report(f"corrupt JPEG data: segment 0x{m:02X} at offset {i - 2} runs past the end of the file")
            return out
        i += length
        if m == 0xDA:
            i = _scan_entropy(b, i, report)
    return out


def _skip_to_marker(b: bytes, i: int) -> int:
    j = b.find(b"\xff", i)
    return len(b) if j < 0 else j


def _scan_entropy(b: bytes, i: int, report) -> int:
    """Walk one scan's entropy-coded data from ``i``; return the offset of the marker that ends it."""
    n = len(b)
    expect_rst = 0
    while True:
        j = b.find(b"\xff", i)
        if j < 0 or j + 1 >= n:
            return n
        m = b[j + 1]
        if m == 0x00 or m == 0xFF:  # stuffed byte, or fill before a marker
            i = j + 1 if m == 0xFF else j + 2
            continue
        if 0xD0 <= m <= 0xD7:
            if m - 0xD0 != expect_rst:
                report(f"corrupt JPEG data: restart marker RST{m - 0xD0} where RST{expect_rst} belongs "
                       f"(offset {j})")
            expect_rst = (m - 0xD0 + 1) % 8
            i = j + 2
            continue
        if m not in _AFTER_SCAN:
            report(f"corrupt JPEG data: invalid marker 0x{m:02X} inside the image data (offset {j})")
            i = j + 2
            continue
        if m not in (0xD9, 0xDA) and not _segment_followed_by_marker(b, j):
            report(f"corrupt JPEG data: stray marker 0x{m:02X} inside the image data (offset {j})")
            i = j + 2
            continue
        return j


def _segment_followed_by_marker(b: bytes, j: int) -> bool:
    if j + 4 > len(b):
        return False
    end = j + 2 + int.from_bytes(b[j + 2:j + 4], "big")
    return end + 1 < len(b) and b[end] == 0xFF
