"""The file layer of XMP sidecars: read an existing one safely, replace it atomically, clean up after a crash.

Split from daemon/xmp.py (which owns the XMP content). The rules (docs/daemon.md, "Files and sidecars"):

* a sidecar is only ever read as a regular file, at most MAX_SIDECAR_BYTES: a symbolic link, FIFO, device or folder
  in its place is refused and left alone (lstat first, never opened; O_NOFOLLOW | O_NONBLOCK and fstat catch a swap);
* the replacement is written to a temp file created with O_EXCL | O_NOFOLLOW in the photo's own folder, fsynced and
  renamed over the old one, unless someone rewrote the old one meanwhile;
* temp files of our exact naming that a killed writer left are removed by remove_stale_temp_files.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path

__all__ = ["MAX_SIDECAR_BYTES", "SidecarError", "read_existing", "commit", "remove_stale_temp_files"]


class SidecarError(OSError):
    """A sidecar could not be read or written; the old sidecar (if any) is untouched."""

    def __init__(self, path, reason: str, err: int | None = None):
        if err is None:
            super().__init__(reason)
        else:
            super().__init__(err, reason, str(path))
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"XMP sidecar {self.path}: {self.reason}"


#: An existing sidecar larger than this is not read (nor replaced): real ones are a few KiB, darktable's with a
#: long history a few hundred.
MAX_SIDECAR_BYTES = 16 << 20
# Our temp files: `.IMG_0001.JPG.xmp.asecritic-k3j9x_2a.tmp` (mkstemp's 8 random characters). Only names of
# this form are removed as stale (remove_stale_temp_files): never a file of someone else's.
_TMP_MARK = ".asecritic-"
_TMP_RE = re.compile(r"^\..+\.xmp" + re.escape(_TMP_MARK) + r"[A-Za-z0-9_]{8}\.tmp$")
_KIND = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KIND if test(mode)), "not a regular file")


def read_existing(target: Path, follow: bool = False) -> bytes | None:
    """The bytes of an existing sidecar, None when there is none. Only a regular file is read, at most
    MAX_SIDECAR_BYTES: a symbolic link (unless `follow`), FIFO or device is refused without being opened
    (lstat first; then O_NOFOLLOW | O_NONBLOCK and fstat on what was opened, so a swap in between is caught)."""
    try:
        st = os.stat(target) if follow else os.lstat(target)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SidecarError(target, f"cannot read the existing sidecar: {e.strerror or e}", e.errno) from e
    if stat.S_ISLNK(st.st_mode):
        try:
            dest = os.readlink(target)
        except OSError:
            dest = "?"
        raise SidecarError(target, f"the existing sidecar is a symbolic link (to {dest}); it is not followed and "
                           "was left alone", errno.ELOOP)
    _check_regular(target, st)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(target, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SidecarError(target, "the existing sidecar became a symbolic link; left alone", e.errno) from e
        raise SidecarError(target, f"cannot read the existing sidecar: {e.strerror or e}", e.errno) from e
    try:
        _check_regular(target, os.fstat(fd))
        chunks, total = [], 0
        while True:
            block = os.read(fd, min(1 << 20, MAX_SIDECAR_BYTES + 1 - total))
            if not block:
                return b"".join(chunks)
            chunks.append(block)
            total += len(block)
            if total > MAX_SIDECAR_BYTES:
                _check_regular(target, os.fstat(fd), grew=True)
    except OSError as e:
        if isinstance(e, SidecarError):
            raise
        raise SidecarError(target, f"cannot read the existing sidecar: {e.strerror or e}", e.errno) from e
    finally:
        os.close(fd)


def _check_regular(target: Path, st: os.stat_result, grew: bool = False) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise SidecarError(target, f"the existing sidecar is {_kind(st.st_mode)}, not a regular file; it was not "
                           "opened and was left alone", errno.EINVAL)
    if grew or st.st_size > MAX_SIDECAR_BYTES:
        size = max(st.st_size, MAX_SIDECAR_BYTES + 1)
        raise SidecarError(target, f"the existing sidecar is {size / 2**20:.1f} MiB, over the "
                           f"{MAX_SIDECAR_BYTES >> 20} MiB a sidecar may be; not read, left alone", errno.EFBIG)


def _umask() -> int:
    # os.umask() can only be read by setting it, which races with other threads; Linux shows it here.
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _new_file_mode(target: Path) -> tuple[int, tuple[int, int] | None]:
    """Mode (and owner) for the replacement: the old sidecar's, else what a plain open() would give
    (mkstemp's 0600 would hide a new sidecar from darktable run by another user)."""
    try:
        st = os.lstat(target)
        return st.st_mode & 0o7777, (st.st_uid, st.st_gid)
    except OSError:
        return 0o666 & ~_umask(), None


def commit(target: Path, old: bytes | None, data: bytes) -> bool:
    """Atomically replace `target` with `data` unless it changed since we read `old` (then False)."""
    mode, owner = _new_file_mode(target)
    try:
        # O_CREAT | O_EXCL | O_NOFOLLOW in the photo's own folder: a planted file or link is never written through
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{_TMP_MARK}", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise SidecarError(target, f"cannot create a temporary file in {target.parent}: {e.strerror or e}",
                           e.errno) from e
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                if owner is not None and hasattr(os, "fchown"):
                    try:  # root rewriting a user's sidecar must not hand it to root
                        os.fchown(f.fileno(), *owner)
                    except OSError:
                        pass
                os.fsync(f.fileno())
            # darktable writes its sidecars in place, non-atomically: if it (or anyone) wrote since we
            # read, start over from their version instead of losing it.
            if read_existing(target) != old:
                os.unlink(tmp)
                return False
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except SidecarError:
        raise
    except OSError as e:
        raise SidecarError(target, f"cannot write the sidecar: {e.strerror or e}", e.errno) from e
    _fsync_dir(target.parent)
    return True


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every filesystem allows it, and the data is already safe.
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)



def remove_stale_temp_files(folder, recursive: bool = False) -> list[Path]:
    """Remove temp files a killed writer of ours left in `folder` (`.IMG.jpg.xmp.asecritic-XXXXXXXX.tmp`, regular
    files owned by this user; nothing else). Call it at start, before any sidecar is written. Returns them."""
    removed: list[Path] = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    walker = os.walk(folder) if recursive else [(os.fspath(folder), [], _names(folder))]
    for dirpath, dirnames, names in walker:
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in names:
            if not _TMP_RE.match(name):
                continue
            path = Path(dirpath) / name
            try:
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and (uid is None or st.st_uid == uid):
                    os.unlink(path)
                    removed.append(path)
            except OSError:
                continue
    return removed


def _names(folder) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []
