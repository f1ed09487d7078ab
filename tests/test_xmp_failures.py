"""XMP sidecars (daemon/xmp.py) when things go wrong: corrupt or unwritable sidecars, full disks, failed
renames, concurrent writers, odd modes and symlinks, stale temporary files, threads: each checks that
nothing is lost or left half-written."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from ase_daemon import xmp
from ase_daemon.xmp import (
    SidecarError,
    read_sidecar,
    remove_stale_temp_files,
    sidecar_path,
    write_sidecar,
)
from xmp_helpers import (
    DARKTABLE_SIDECAR,
    IS_ROOT,
    RESULT,
    dt_photo,
    modify_sidecar,
    read_raw,
    temp_files,
)

# ----------------------------------------------------------------------------- failures, atomicity


@pytest.mark.parametrize("corrupt", [
    pytest.param(lambda s: s[: len(s) // 2], id="truncated"),
    pytest.param(lambda s: s.replace(b"</dc:subject>", b"</dc:subjec>"), id="bad-xml"),
    pytest.param(lambda s: b"\x00\x01binary junk" * 20, id="binary"),
    pytest.param(lambda s: b"<?xml version='1.0'?><html><body>not xmp</body></html>", id="not-xmp"),
])
def test_corrupt_sidecar_is_never_replaced(tmp_path, corrupt):
    img, side = dt_photo(tmp_path)
    side.write_bytes(corrupt(side.read_bytes()))
    old = side.read_bytes()
    with pytest.raises(SidecarError) as info:
        write_sidecar(img, RESULT)
    assert info.value.path == side and "XMP" in info.value.reason
    assert side.read_bytes() == old
    assert temp_files(tmp_path) == []


def test_empty_sidecar_is_replaced(tmp_path):
    img = tmp_path / "a.jpg"
    sidecar_path(img).write_bytes(b"")
    assert read_sidecar(write_sidecar(img, RESULT))["score"] == 6.4


@pytest.mark.skipif(IS_ROOT, reason="running as root: permission bits do not stop root's writes "
                    "(the read-only mount and simulated-failure tests cover this)")
def test_read_only_folder_chmod(tmp_path):
    img, side = dt_photo(tmp_path)
    old = side.read_bytes()
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(SidecarError) as info:
            write_sidecar(img, RESULT)
        assert info.value.errno in (errno.EACCES, errno.EPERM)
    finally:
        tmp_path.chmod(0o755)
    assert side.read_bytes() == old and temp_files(tmp_path) == []


@contextmanager
def tmpfs(mountpoint: Path, size: str):
    """A tiny tmpfs at `mountpoint`, or skip: needs root (CAP_SYS_ADMIN), as in the dev container."""
    mountpoint.mkdir()
    if not IS_ROOT or shutil.which("mount") is None:
        pytest.skip("cannot mount a tmpfs here (needs root); simulated-failure tests cover this")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)],
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


def test_read_only_folder_mount(tmp_path):
    # A read-only filesystem stops root too: the honest read-only folder when tests run as root.
    with tmpfs(tmp_path / "ro", "1m") as folder:
        img, side = dt_photo(folder)
        old = side.read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=30)
        with pytest.raises(SidecarError) as info:
            write_sidecar(img, RESULT)
        assert info.value.errno == errno.EROFS
        assert side.read_bytes() == old and temp_files(folder) == []


def test_disk_full_on_a_tiny_tmpfs(tmp_path):
    with tmpfs(tmp_path / "full", "64k") as folder:
        img, side = dt_photo(folder)
        old = side.read_bytes()
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)  # fill the filesystem up
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        with pytest.raises(SidecarError) as info:
            write_sidecar(img, RESULT)
        assert info.value.errno == errno.ENOSPC
        assert side.read_bytes() == old and temp_files(folder) == []


def test_simulated_disk_full_and_failed_rename(tmp_path, monkeypatch):
    # Works everywhere (and as root): a full disk surfaces at write/fsync, a broken rename at replace.
    img, side = dt_photo(tmp_path)
    old = side.read_bytes()

    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(SidecarError) as info:
        write_sidecar(img, RESULT)
    assert info.value.errno == errno.ENOSPC and "No space" in str(info.value)
    assert side.read_bytes() == old and temp_files(tmp_path) == []
    monkeypatch.undo()

    def eio(*a, **k):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", eio)
    with pytest.raises(SidecarError):
        write_sidecar(img, RESULT)
    assert side.read_bytes() == old and temp_files(tmp_path) == []


def test_missing_folder_is_a_sidecar_error(tmp_path):
    with pytest.raises(SidecarError):
        write_sidecar(tmp_path / "no-such-dir" / "a.jpg", RESULT)
    with pytest.raises(SidecarError) as info:
        read_sidecar(tmp_path / "nothing.jpg.xmp")
    assert info.value.errno == errno.ENOENT


def test_bad_result_raises_before_touching_the_file(tmp_path):
    img, side = dt_photo(tmp_path)
    old = side.read_bytes()
    for bad in (dict(RESULT, score=float("nan")), dict(RESULT, attributes={"1st": "x"}),
                dict(RESULT, attributes={"score": "x"})):
        with pytest.raises(ValueError):
            write_sidecar(img, bad)
    assert side.read_bytes() == old and temp_files(tmp_path) == []


def test_refuses_when_exiv2_would_change_foreign_values(tmp_path, monkeypatch):
    # The post-write check: anything beyond what we asked for means nothing is written.
    img, side = dt_photo(tmp_path)
    old = side.read_bytes()
    real = xmp._expected_after
    monkeypatch.setattr(xmp, "_expected_after", lambda cur, ch: dict(real(cur, ch), **{"Xmp.foo.Note": "other"}))
    with pytest.raises(SidecarError) as info:
        write_sidecar(img, RESULT)
    assert "Xmp.foo.Note" in info.value.reason
    assert side.read_bytes() == old and temp_files(tmp_path) == []


def test_a_concurrent_writer_is_not_overwritten(tmp_path, monkeypatch):
    # darktable rewrites the sidecar (in place) between our read and our rename: we start over from it.
    img, side = dt_photo(tmp_path)
    real = xmp._build
    calls = []

    def build_then_darktable_writes(old, result, options, target):
        data = real(old, result, options, target)
        if not calls:
            modify_sidecar(side, {"Xmp.xmp.Label": "Red"})
        calls.append(1)
        return data

    monkeypatch.setattr(xmp, "_build", build_then_darktable_writes)
    write_sidecar(img, RESULT)
    raw = read_raw(side)
    assert len(calls) == 2 and raw["Xmp.xmp.Label"] == "Red" and "Xmp.asecritic.Critique" in raw


def test_mode_and_no_temp_files_after_success(tmp_path):
    img, side = dt_photo(tmp_path)
    side.chmod(0o640)
    write_sidecar(img, RESULT)
    assert (side.stat().st_mode & 0o777) == 0o640
    assert temp_files(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == [img.name, side.name]


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file to another user")
def test_root_keeps_the_owner_of_a_users_sidecar(tmp_path):
    img, side = dt_photo(tmp_path)
    os.chown(side, 65534, 65534)
    write_sidecar(img, RESULT)
    assert (side.stat().st_uid, side.stat().st_gid) == (65534, 65534)


def test_new_sidecar_gets_a_normal_mode_and_a_symlinked_one_is_refused_and_left_alone(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # what open() gives under this process's umask
    side = write_sidecar(tmp_path / "a.jpg", RESULT)
    assert (side.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real = elsewhere / "other.xmp"
    real.write_text(DARKTABLE_SIDECAR.replace("RATING", "2"), encoding="utf-8")
    before = real.read_bytes()
    link = sidecar_path(tmp_path / "b.jpg")
    link.symlink_to(real)
    with pytest.raises(SidecarError, match="symbolic link .*not followed") as e:
        write_sidecar(tmp_path / "b.jpg", RESULT)
    assert e.value.errno == errno.ELOOP
    assert link.is_symlink() and os.readlink(link) == str(real) and real.read_bytes() == before
    assert temp_files(tmp_path) == [] and os.listdir(elsewhere) == ["other.xmp"]
    dangling = sidecar_path(tmp_path / "c.jpg")  # a link to a file that does not exist yet: never created
    dangling.symlink_to(elsewhere / "new.xmp")
    with pytest.raises(SidecarError, match="symbolic link"):
        write_sidecar(tmp_path / "c.jpg", RESULT)
    assert not (elsewhere / "new.xmp").exists()


def test_stale_temp_files_of_ours_are_removed_and_nothing_else(tmp_path):
    ours = tmp_path / ".IMG.jpg.xmp.asecritic-k3j9x_2a.tmp"
    theirs = [tmp_path / ".IMG.jpg.xmp.k3j9x_2a.tmp", tmp_path / "IMG.jpg.xmp.asecritic-k3j9x_2a.tmp",
              tmp_path / ".IMG.jpg.asecritic-k3j9x_2a.tmp"]
    for p in [ours, *theirs]:
        p.write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    deep = sub / ".b.png.xmp.asecritic-AAAAAAAA.tmp"
    deep.write_bytes(b"x")
    assert remove_stale_temp_files(tmp_path) == [ours]
    assert all(p.exists() for p in theirs) and deep.exists()
    assert remove_stale_temp_files(tmp_path, recursive=True) == [deep]


def test_threads(tmp_path):
    errors = []

    def work(n):
        try:
            for k in range(3):
                img = tmp_path / f"img{n}.jpg"
                write_sidecar(img, dict(RESULT, score=n + k / 10, tags=[f"aesthetics|t{n}|{k}"]))
                assert read_sidecar(img)["score"] == pytest.approx(n + k / 10)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for n in range(6):
        assert read_raw(tmp_path / f"img{n}.jpg.xmp")["Xmp.lr.hierarchicalSubject"] == [f"aesthetics|t{n}|2"]
