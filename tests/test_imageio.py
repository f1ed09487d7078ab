"""Tests for ase_model.imageio, ordinary images: the API surface, formats, EXIF orientation, colour modes,
16-bit and float data, ICC profiles (size limits, failures and RAW: tests/test_imageio_raw_and_limits.py).
Every input is built in tmp_path from real photos (skimage.data)."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from imageio_helpers import arr, mad  # noqa: E402

from ase_model import imageio  # noqa: E402
from ase_model.imageio import (  # noqa: E402
    IMAGE_EXTENSIONS,
    RAW_EXTENSIONS,
    ImageLoadError,
    image_info,
    is_supported,
    load_image,
)

pytest.importorskip("skimage.data")  # the photos (fixtures chelsea, coffee in conftest.py)


# ---------------------------------------------------------------------------------------------
# API surface
# ---------------------------------------------------------------------------------------------


def test_extension_sets_and_is_supported(tmp_path):
    for e in (".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".dng", ".nrw", ".srw"):
        assert e in RAW_EXTENSIONS
    for e in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"):
        assert e in IMAGE_EXTENSIONS
    assert not RAW_EXTENSIONS & IMAGE_EXTENSIONS
    heic = ".heic" in Image.registered_extensions()
    assert (".heic" in IMAGE_EXTENSIONS) == heic
    assert is_supported("a/B.JPG") and is_supported(Path("x.NeF")) and is_supported("y.Tiff")
    assert not is_supported("notes.txt") and not is_supported("noext") and not is_supported(".jpg")


def test_error_type_message_and_pickle():
    e = ImageLoadError("/x/y.jpg", "not an image file")
    assert isinstance(e, ValueError) and str(e) == "/x/y.jpg: not an image file"
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.path, e2.reason, str(e2)) == (e.path, e.reason, str(e))


def test_load_truncated_images_stays_false():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ---------------------------------------------------------------------------------------------
# Ordinary formats, orientation, colour modes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,ext,tol", [("JPEG", ".jpg", 4.0), ("PNG", ".png", 0), ("WEBP", ".webp", 4.0),
                                         ("BMP", ".bmp", 0), ("TIFF", ".tif", 0)])  # fmt: skip
def test_roundtrip_formats_path_and_bytes(tmp_path, chelsea, fmt, ext, tol):
    p = tmp_path / f"cat{ext}"
    Image.fromarray(chelsea).save(p, fmt)
    im = load_image(p)
    assert im.mode == "RGB" and im.size == (451, 300)
    assert mad(arr(im), chelsea) <= tol
    assert np.array_equal(arr(load_image(p.read_bytes())), arr(im))  # bytes give the same image
    assert np.array_equal(arr(load_image(str(p))), arr(im))


def test_jpeg_exif_orientation_6(tmp_path, chelsea):
    exif = Image.Exif()
    exif[0x0112] = 6  # camera held rotated: display rotated 90 degrees clockwise
    p = tmp_path / "rot.jpg"
    Image.fromarray(chelsea).save(p, quality=95, exif=exif.tobytes())
    im = load_image(p)
    assert im.size == (300, 451)  # width and height swapped
    expected = np.rot90(chelsea, k=-1)  # clockwise
    assert mad(arr(im), expected) < 3.0
    assert mad(arr(im), np.rot90(chelsea, k=1)) > 20  # the other way round is clearly wrong
    assert image_info(p) == {"format": "JPEG", "width": 300, "height": 451, "raw": False}


# EXIF orientation -> numpy transform that displays it (EXIF 2.32 definitions).
_ORIENT_NP = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_exif_orientations_lossless(tmp_path, orientation):
    src = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "o.png"
    Image.fromarray(src).save(p, exif=exif.tobytes())
    assert np.array_equal(np.asarray(load_image(p)), _ORIENT_NP[orientation](src))


def test_grayscale_and_1bit(tmp_path, chelsea):
    grey = np.asarray(Image.fromarray(chelsea).convert("L"))
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = arr(load_image(tmp_path / "g.png"))
    assert np.array_equal(out[..., 0], grey) and np.array_equal(out[..., 1], grey) and np.array_equal(out[..., 2], grey)

    bits = grey > 128
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    out = arr(load_image(tmp_path / "b.png"))
    assert set(np.unique(out)) == {0, 255} and np.array_equal(out[..., 1] == 255, bits)


def test_palette_without_and_with_transparency(tmp_path, chelsea):
    pal = Image.fromarray(chelsea).quantize(64)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(arr(load_image(tmp_path / "p.png")), np.asarray(pal.convert("RGB")))

    # One palette index transparent (tRNS with a single index), e.g. a GIF-style keyed PNG.
    idx = np.asarray(pal)
    key = int(idx[0, 0])
    pal.save(tmp_path / "pt.png", transparency=key)
    out = arr(load_image(tmp_path / "pt.png"))
    assert (out[idx == key] == 128).all()
    assert np.array_equal(out[idx != key], np.asarray(pal.convert("RGB"))[idx != key])


def test_palette_with_partial_alpha(tmp_path):
    # RGBA palette with an alpha per entry (PNG tRNS with several values)
    p = Image.new("P", (4, 1))
    p.putpalette([255, 0, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0], rawmode="RGB")
    p.putdata([0, 1, 2, 3])
    p.info["transparency"] = bytes([255, 0, 128, 255])
    p.save(tmp_path / "pa.png")
    out = arr(load_image(tmp_path / "pa.png"))[0]
    assert out[0].tolist() == [255, 0, 0]  # opaque red
    assert out[1].tolist() == [128, 128, 128]  # fully transparent -> mid-grey
    assert all(abs(v - 192) <= 1 for v in out[2])  # half white over grey
    assert out[3].tolist() == [0, 0, 0]


def test_alpha_composited_on_mid_grey(tmp_path, chelsea):
    h, w = chelsea.shape[:2]
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, w // 2 :] = 255
    alpha[:10] = 128
    rgba = np.dstack([chelsea, alpha])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = arr(load_image(tmp_path / "a.png"))
    assert (out[10:, : w // 2] == 128).all()  # transparent -> (128,128,128), not black/white
    assert np.array_equal(out[10:, w // 2 :], chelsea[10:, w // 2 :])  # opaque untouched
    expected = np.rint(chelsea[:10, : w // 2] * (128 / 255) + 128 * (127 / 255))
    assert np.abs(out[:10, : w // 2] - expected).max() <= 1  # proper blending

    la = np.dstack([chelsea[..., 0], alpha])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = arr(load_image(tmp_path / "la.png"))
    assert (out[10:, : w // 2] == 128).all() and np.array_equal(out[10:, w // 2 :, 2], chelsea[10:, w // 2 :, 0])


def test_pa_and_rgb_colour_key_transparency(tmp_path):
    # PA: no common file format stores it, so check the conversion step directly
    pa = Image.new("PA", (2, 1))
    pa.putpalette([10, 20, 30, 200, 100, 0])
    pa.putdata([(0, 0), (1, 255)])
    out = np.asarray(imageio.decoding._finish(pa, "<test>", None, None, None))
    assert out[0, 0].tolist() == [128, 128, 128] and out[0, 1].tolist() == [200, 100, 0]

    rgb = Image.new("RGB", (2, 1), (0, 255, 0))
    rgb.putpixel((1, 0), (9, 9, 9))
    rgb.save(tmp_path / "key.png", transparency=(0, 255, 0))  # tRNS colour key
    out = arr(load_image(tmp_path / "key.png"))[0]
    assert out[0].tolist() == [128, 128, 128] and out[1].tolist() == [9, 9, 9]


def test_cmyk_jpeg_adobe_inverted_and_tiff(tmp_path, chelsea):
    cmyk = Image.fromarray(chelsea).convert("CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=95)
    data = (tmp_path / "c.jpg").read_bytes()
    assert b"Adobe" in data[:4096]  # Pillow writes Photoshop-style inverted CMYK (APP14 Adobe)
    out = arr(load_image(tmp_path / "c.jpg"))
    assert mad(out, chelsea) < 3.0  # an un-inverted read would be a photographic negative
    cmyk.save(tmp_path / "c.tif")
    assert mad(arr(load_image(tmp_path / "c.tif")), chelsea) < 1.0


def _check_16bit_gradient(out: np.ndarray, g: np.ndarray):
    row = out[0, :, 0]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert row.min() == 0 and row.max() == 255  # full range, not clipped
    assert (np.diff(row) >= 0).all()  # monotonic
    assert len(np.unique(row)) == 256  # every 8-bit level used: scaled, not clipped at 255
    assert np.abs(row - g[0] / 257.0).max() <= 1


def test_16bit_grayscale_png_and_tiff(tmp_path):
    g = np.tile(np.linspace(0, 65535, 1024).round().astype(np.uint16), (8, 1))
    Image.fromarray(g).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode.startswith("I;16")
    _check_16bit_gradient(arr(load_image(tmp_path / "g.png")), g)
    Image.fromarray(g).save(tmp_path / "g.tif")
    _check_16bit_gradient(arr(load_image(tmp_path / "g.tif")), g)
    # big-endian 16-bit TIFF (Pillow mode I;16B)
    im = Image.frombytes("I;16B", (1024, 8), g.astype(">u2").tobytes())
    im.save(tmp_path / "gb.tif")
    assert Image.open(tmp_path / "gb.tif").mode == "I;16B"
    _check_16bit_gradient(arr(load_image(tmp_path / "gb.tif")), g)


def test_16bit_rgb_png_and_tiff(tmp_path, chelsea):
    rgb16 = chelsea.astype(np.uint16) * 257 + np.uint16(100)  # low byte non-zero
    rgb16[0, :3] = [[0, 0, 0], [65535, 65535, 65535], [65535, 0, 32896]]
    cv2 = pytest.importorskip("cv2")
    for name in ("rgb16.png", "rgb16.tif"):  # OpenCV writes 48-bit files (Pillow cannot)
        assert cv2.imwrite(str(tmp_path / name), rgb16[..., ::-1])
        out = arr(load_image(tmp_path / name))
        assert np.abs(out - rgb16 / 257.0).max() <= 1, name  # channel order kept, scaled
        assert out[0, :3].tolist() == [[0, 0, 0], [255, 255, 255], [255, 0, 128]]


def test_16bit_planar_rgb_tiff_pillow_misreads(tmp_path, chelsea):
    tifffile = pytest.importorskip("tifffile")
    rgb16 = chelsea.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate")
    assert mad(np.asarray(Image.open(tmp_path / "p.tif")), chelsea) > 20  # Pillow alone: garbage
    assert np.array_equal(arr(load_image(tmp_path / "p.tif")), chelsea)


def test_float_images(tmp_path, chelsea):
    tifffile = pytest.importorskip("tifffile")
    f = np.tile(np.linspace(0, 1, 512, dtype=np.float32), (4, 1))
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    row = arr(load_image(tmp_path / "f.tif"))[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and (np.diff(row) >= 0).all() and len(np.unique(row)) == 256
    Image.fromarray(f * 1000 - 200, "F").save(tmp_path / "f2.tif")  # arbitrary units: stretched
    row = arr(load_image(tmp_path / "f2.tif"))[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and (np.diff(row) >= 0).all()
    # float RGB TIFF (HDR-style export): Pillow cannot identify it at all
    tifffile.imwrite(tmp_path / "frgb.tif", chelsea.astype(np.float32) / 255, photometric="rgb")
    assert np.abs(arr(load_image(tmp_path / "frgb.tif")) - chelsea).max() <= 1
    assert image_info(tmp_path / "frgb.tif") == {"format": "TIFF", "width": 451, "height": 300, "raw": False}


def test_icc_profile_converted_to_srgb(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    red.save(tmp_path / "srgb.png", icc_profile=srgb)
    assert arr(load_image(tmp_path / "srgb.png"))[0, 0].tolist() == [255, 0, 0]  # sRGB: as is
    # A profile whose red and blue primaries are swapped: stored "red" means sRGB blue.
    prof = bytearray(srgb)
    (n,) = struct.unpack_from(">I", prof, 128)
    entries = {bytes(prof[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(n)}
    r, b = entries[b"rXYZ"], entries[b"bXYZ"]
    prof[r + 4 : r + 12], prof[b + 4 : b + 12] = prof[b + 4 : b + 12], prof[r + 4 : r + 12]
    prof = bytes(prof).replace("sRGB".encode("utf-16-be"), "swap".encode("utf-16-be"))
    prof = prof[:84] + bytes(16) + prof[100:]  # clear the profile ID (MD5)
    red.save(tmp_path / "swapped.png", icc_profile=prof)
    r, g, b = arr(load_image(tmp_path / "swapped.png"))[0, 0]
    assert b > 200 and r < 40 and g < 40
