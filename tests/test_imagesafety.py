"""ase_model.imagesafety and its use in imageio: regular files only, size caps, the memory budget, damage warnings."""

from __future__ import annotations

import io
import os
import pickle
import threading
import zlib

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngImageFile

from ase_model import imageio
from ase_model.imageio import damage_warnings, load_image
from ase_model.imagesafety import (
    ImageLoadError,
    ImageNotFound,
    ImageTooLarge,
    MemoryBudget,
    jpeg_damage,
    open_regular,
    read_regular,
)


def jpeg(size=(120, 90), seed=0, **kw) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    a = np.stack([x * 2, y * 2, x + y], -1) % 256 + rng.integers(0, 30, (size[1], size[0], 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def test_special_files_are_refused_at_once_and_named(tmp_path):
    os.mkfifo(tmp_path / "f.jpg")
    (tmp_path / "z.jpg").symlink_to("/dev/zero")
    (tmp_path / "d.jpg").mkdir()
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere")
    cases = {"f.jpg": "a FIFO", "z.jpg": "a character device", "d.jpg": "is a directory"}
    for name, words in cases.items():
        for call in (lambda p: read_regular(p), lambda p: load_image(p), lambda p: imageio.image_info(p)):
            with pytest.raises(ImageLoadError) as e:
                call(tmp_path / name)  # a FIFO without a writer would block a plain open forever
            assert words in e.value.reason and e.value.path == str(tmp_path / name)
    with pytest.raises(ImageNotFound, match="dangling symbolic link"):
        read_regular(tmp_path / "dangling.jpg")
    with pytest.raises(ImageNotFound):
        load_image(tmp_path / "missing.jpg")


def test_links_out_of_a_folder(tmp_path):
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(jpeg())
    (inside / "own.jpg").write_bytes(jpeg(seed=1))
    (inside / "out.jpg").symlink_to(outside / "secret.jpg")
    (inside / "in.jpg").symlink_to(inside / "own.jpg")
    with pytest.raises(ImageLoadError, match="symbolic link out of"):
        read_regular(inside / "out.jpg", within=inside)
    assert read_regular(inside / "in.jpg", within=inside) == (inside / "own.jpg").read_bytes()
    assert read_regular(inside / "out.jpg") == (outside / "secret.jpg").read_bytes()  # no folder given: followed
    fd, st = open_regular(inside / "own.jpg", within=inside)
    os.close(fd)
    assert st.st_size > 0


def test_file_size_cap(tmp_path):
    p = tmp_path / "big.jpg"
    p.write_bytes(jpeg() + b"\0" * 5000)
    with pytest.raises(ImageTooLarge) as e:
        read_regular(p, max_bytes=4000)
    assert (e.value.needed, e.value.limit) == (p.stat().st_size, 4000) and "cap" in e.value.reason
    with pytest.raises(ImageTooLarge):
        load_image(p, max_bytes=4000)
    assert read_regular(p, max_bytes=p.stat().st_size) == p.read_bytes()
    err = pickle.loads(pickle.dumps(e.value))
    assert isinstance(err, ImageTooLarge) and err.limit == 4000


def test_budget_refuses_what_never_fits_and_waits_for_room():
    b = MemoryBudget(1000)
    with pytest.raises(ImageTooLarge) as e:
        with b.reserve(1001, "x.png"):
            pass
    assert "MiB" in str(e.value) and "decode budget" in str(e.value) and e.value.needed == 1001
    entered, release, second_in = threading.Event(), threading.Event(), threading.Event()

    def first():
        with b.reserve(700, "a"):
            entered.set()
            release.wait(30)

    def second():
        entered.wait(30)
        with b.reserve(700, "b"):
            second_in.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    entered.wait(30)
    with b._cv:  # the second waits (no room) until the first is done: wait on the budget itself, not a clock
        while b.waits == 0:
            b._cv.wait(30)
    assert not second_in.is_set() and b.in_use == 700
    release.set()
    for t in threads:
        t.join(30)
    assert second_in.is_set() and b.in_use == 0 and b.peak == 700
    assert b.snapshot()["waits"] == 1


def _zero_png(w: int, h: int) -> bytes:
    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    z = zlib.compressobj(9)
    rows = b"".join(z.compress(b"\0" * (1 + 3 * w)) for _ in range(h)) + z.flush()
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_decode_cost_is_checked_before_any_pixel_is_decoded(monkeypatch):
    data = _zero_png(4000, 3000)  # 12 MP of zeros: 36 KB on disk, 48 MB decoded
    loads = []
    real = PngImageFile.load
    monkeypatch.setattr(PngImageFile, "load", lambda self: loads.append(1) or real(self))
    with pytest.raises(ImageTooLarge) as e:
        load_image(data, name="bomb.png", max_side=512, budget=MemoryBudget(32 << 20))
    assert loads == [] and e.value.needed > 48_000_000 and e.value.limit == 32 << 20
    budget = MemoryBudget(256 << 20)
    assert load_image(data, max_side=512, budget=budget).size == (512, 384)
    assert loads and budget.in_use == 0 and 48_000_000 < budget.peak <= 256 << 20


def test_pixel_limit_is_too_large_with_the_figures():
    with pytest.raises(ImageTooLarge) as e:
        load_image(_zero_png(20_000, 10_001)[:200], name="x.png")
    assert e.value.unit == "pixels" and e.value.needed == 20_000 * 10_001 and e.value.limit == imageio.MAX_PIXELS


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16, np.int32, np.int8])
def test_blockwise_scaling_matches_the_whole_array_formula(dtype, monkeypatch):
    rng = np.random.default_rng(3)
    a = (rng.random((300, 200, 3)) * (1.0 if np.dtype(dtype).kind == "f" else 60000)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        a[5, 5, 0], a[6, 6, 1] = np.nan, np.inf
        want = np.rint(np.where(np.isfinite(a), a, 0).astype(np.float32) * 255).astype(np.uint8)
    elif dtype == np.int8:
        want = (a.astype(np.int16) + 128).astype(np.uint8)
    else:
        want = (a >> 8).astype(np.uint8)
    monkeypatch.setattr(imageio.decoding, "_CHUNK_BYTES", 4096)  # many blocks
    assert np.array_equal(imageio.decoding._to_uint8(a), want)
    hdr = a.astype(np.float32) * 40 - 3  # outside 0..1: stretched over the finite range
    got = imageio.decoding._to_uint8(hdr)
    finite = np.where(np.isfinite(hdr), hdr, 0)
    lo, hi = finite.min(), finite.max()
    assert np.abs(got.astype(int) - np.rint((finite - lo) * 255 / (hi - lo))).max() <= 1


def test_jpeg_damage_found_and_reported_as_warnings():
    clean = jpeg((200, 150))
    assert jpeg_damage(clean) == [] and jpeg_damage(jpeg((200, 150), progressive=True)) == []
    assert jpeg_damage(jpeg((64, 64)) + b"trailing bytes a camera left") == []
    mid = len(clean) // 2
    garbage = clean[:mid] + np.random.default_rng(1).bytes(2048) + clean[mid:]
    found = jpeg_damage(garbage)
    assert found and all(m.startswith("corrupt JPEG data") for m in found)
    warnings = []
    im = load_image(garbage, warnings=warnings)  # libjpeg decodes past it without a word; we say so
    assert im.size == (200, 150) and warnings == found
    assert damage_warnings(garbage) == found and damage_warnings(clean) == []
    assert damage_warnings(b"not an image") == []


def test_unusable_icc_profile_is_a_warning_not_an_error():
    data = jpeg(icc_profile=b"\x00garbage" * 60)
    warnings = []
    assert load_image(data, warnings=warnings).size == (120, 90)
    assert warnings == ["unusable embedded colour profile (ICC) ignored; colours read as sRGB"]
    assert damage_warnings(data) == warnings
