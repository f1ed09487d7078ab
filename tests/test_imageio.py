"""Tests for ase_model.imageio: every input is built in tmp_path from real photos (skimage.data)."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ase_model import imageio, imagesafety  # noqa: E402
from ase_model.imageio import (  # noqa: E402
    IMAGE_EXTENSIONS,
    RAW_EXTENSIONS,
    ImageLoadError,
    image_info,
    is_supported,
    load_image,
)

skdata = pytest.importorskip("skimage.data")
rawpy = pytest.importorskip("rawpy")

_BENCH = Path(__file__).resolve().parents[1] / "bench" / "raw_decode.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("_ase_bench_raw_decode", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


write_dng = _bench_module().write_dng  # pidng cannot embed a preview; this writer can


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:  # 300x451, not square: orientation errors show
    return skdata.chelsea()


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:  # 400x600
    return skdata.coffee()


def arr(im: Image.Image) -> np.ndarray:
    assert im.mode == "RGB"
    return np.asarray(im).astype(np.int32)


def mad(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


def corr(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])


def reason(exc_info) -> str:
    return exc_info.value.reason


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


# ---------------------------------------------------------------------------------------------
# Downscaling and limits
# ---------------------------------------------------------------------------------------------


def test_max_side_jpeg_uses_draft_and_png(tmp_path, coffee, monkeypatch):
    from PIL import JpegImagePlugin

    big = Image.fromarray(coffee).resize((1800, 1200), Image.Resampling.BILINEAR)
    big.save(tmp_path / "big.jpg", quality=92)
    big.save(tmp_path / "big.png", compress_level=1)
    calls = []
    orig = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = orig(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    im = load_image(tmp_path / "big.jpg", max_side=600)
    assert im.size == (600, 400)
    assert calls == [((600, 400), (900, 600))]  # libjpeg decoded at 1/2 scale, not 1800x1200
    ref = np.asarray(Image.fromarray(coffee).resize((600, 400), Image.Resampling.LANCZOS))
    assert mad(arr(im), ref) < 6
    im = load_image(tmp_path / "big.png", max_side=600)
    assert im.size == (600, 400) and mad(arr(im), ref) < 6
    assert load_image(tmp_path / "big.png", max_side=5000).size == (1800, 1200)  # never upscales


def test_max_side_with_orientation(tmp_path, chelsea):
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(chelsea).save(tmp_path / "r.jpg", exif=exif.tobytes())
    im = load_image(tmp_path / "r.jpg", max_side=150)
    assert im.size == (100, 150)
    ref = np.rot90(np.asarray(Image.fromarray(chelsea).resize((150, 100), Image.Resampling.LANCZOS)), 1)
    assert mad(arr(im), ref) < 6


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))  # fmt: skip


def test_decompression_bomb_rejected_from_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(30000, 30000))  # 900 MP claimed in a 100-byte file
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert reason(ei) == "image too large: 30000x30000 pixels exceeds the 200 MP limit"
    with pytest.raises(ImageLoadError, match="image too large: 20000x10001"):
        load_image(_png_header_only(20000, 10001), name="x.png")  # just over 200 MP
    assert image_info(p)["width"] == 30000  # info still reports it, without decoding


def test_100mp_image_loads_without_bomb_warning(tmp_path):
    p = tmp_path / "mf.png"
    Image.new("1", (12000, 8400), 1).save(p)  # 100.8 MP, cheap 1-bit file
    pillow_limit = Image.MAX_IMAGE_PIXELS
    assert pillow_limit is not None and pillow_limit < 100_800_000  # Pillow alone would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = load_image(p, max_side=600)
    assert im.size == (600, 420) and arr(im).min() == 255
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # Pillow's global setting untouched


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------


def test_missing_dir_empty_and_special_files(tmp_path):
    with pytest.raises(ImageLoadError) as ei:
        load_image(tmp_path / "nope.jpg")
    assert reason(ei) == "file not found" and ei.value.path == str(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty file"):
        load_image(tmp_path / "e.jpg")
    with pytest.raises(ImageLoadError, match="<bytes>: empty file"):
        load_image(b"")
    os.mkfifo(tmp_path / "fifo.jpg")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(tmp_path / "fifo.jpg")  # must not block
    for f in (image_info,):
        with pytest.raises(ImageLoadError, match="file not found"):
            f(tmp_path / "nope.png")


def test_permission_denied(tmp_path, chelsea, monkeypatch):
    p = tmp_path / "locked.jpg"
    Image.fromarray(chelsea).save(p)
    if os.geteuid() != 0:
        p.chmod(0)
    else:  # root reads anything: simulate what open() raises for an unprivileged user

        def deny(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(imagesafety, "_os_open", deny)
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert reason(ei) == "permission denied"


def test_not_an_image_and_unsupported_format(tmp_path, chelsea):
    p = tmp_path / "notes.jpg"
    p.write_text("this is a text file renamed to .jpg\n" * 20)
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert reason(ei) == "not an image file (unrecognised format)"
    with pytest.raises(ImageLoadError, match="not an image file"):
        image_info(p)
    Image.fromarray(chelsea).save(tmp_path / "anim.gif")
    with pytest.raises(ImageLoadError, match="unsupported image format GIF"):
        load_image(tmp_path / "anim.gif")


@pytest.mark.parametrize("kind", ["jpeg", "progressive", "png"])
def test_truncated_files_raise(tmp_path, chelsea, kind):
    buf = io.BytesIO()
    if kind == "png":
        Image.fromarray(chelsea).save(buf, "PNG")
    else:
        Image.fromarray(chelsea).save(buf, "JPEG", quality=90, progressive=kind == "progressive")
    data = buf.getvalue()
    for cut in (len(data) // 2, len(data) - 100):
        with pytest.raises(ImageLoadError) as ei:
            load_image(data[:cut], name=f"cut.{kind}")
        assert "truncated or corrupt" in reason(ei)
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(data[:30], name="header-only")
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(tmp_path / "half.jpg")


def test_corrupt_data_and_bad_arguments(chelsea):
    buf = io.BytesIO()
    Image.fromarray(chelsea).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    for seed in range(5):  # damage inside IDAT; some damage still inflates: CRCs catch that
        bad = bytearray(data)
        bad[len(data) // 2 : len(data) // 2 + 64] = np.random.default_rng(seed).bytes(64)
        with pytest.raises(ImageLoadError, match="truncated or corrupt"):
            load_image(bytes(bad))
    with pytest.raises(TypeError):
        load_image(12345)
    with pytest.raises(ValueError):
        load_image(b"x", max_side=0)


# ---------------------------------------------------------------------------------------------
# RAW
# ---------------------------------------------------------------------------------------------


def _linear12(rgb8: np.ndarray) -> np.ndarray:
    v = np.arange(256) / 255.0
    lin = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return np.round(lin * 4095).astype(np.uint16)[rgb8]


def pidng_dng(path: Path, rgb: np.ndarray) -> Path:
    """An uncompressed 12-bit RGGB DNG of ``rgb`` written by pidng (camera = linear sRGB); also the hostile
    suite's valid DNG (tests/hostile/badfiles.py)."""
    pidng_core = pytest.importorskip("pidng.core")
    from pidng.defs import DNGVersion

    DNGTags, Tag, RAW2DNG = pidng_core.DNGTags, pidng_core.Tag, pidng_core.RAW2DNG
    h, w = rgb.shape[:2]
    lin = _linear12(rgb)
    mosaic = np.empty((h, w), np.uint16)
    mosaic[0::2, 0::2] = lin[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = lin[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = lin[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = lin[1::2, 1::2, 2]
    t = DNGTags()
    for tag, value in [
        (Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
        (Tag.Orientation, 1), (Tag.PhotometricInterpretation, 32803), (Tag.SamplesPerPixel, 1),
        (Tag.BitsPerSample, 12), (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, [0, 1, 1, 2]),
        (Tag.BlackLevel, 0), (Tag.WhiteLevel, 4095), (Tag.CalibrationIlluminant1, 21),
        (Tag.DNGVersion, DNGVersion.V1_4), (Tag.DNGBackwardVersion, DNGVersion.V1_2),
        (Tag.Make, "ASE"), (Tag.Model, "pidng"), (Tag.UniqueCameraModel, "ASE pidng"),
    ]:  # fmt: skip
        t.set(tag, value)
    xyz_to_srgb = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]
    t.set(Tag.ColorMatrix1, [[round(v * 10000), 10000] for v in xyz_to_srgb])
    t.set(Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]])
    conv = RAW2DNG()
    conv.options(t, path="", compress=False)
    conv.convert(mosaic, filename=str(path.with_suffix("")))
    return path


def test_raw_dng_demosaic_resembles_source(tmp_path, coffee):
    p = pidng_dng(tmp_path / "shot.dng", coffee)
    with rawpy.imread(str(p)) as raw:  # really a Bayer raw, really without a preview
        assert raw.raw_pattern is not None and raw.sizes.raw_width == 600
        with pytest.raises(rawpy.LibRawNoThumbnailError):
            raw.extract_thumb()
    im = load_image(p)
    out = arr(im)
    assert im.size == (600, 400)
    assert corr(out, coffee) > 0.97 and mad(out, coffee) < 7  # BT.709 gamma instead of sRGB: ~10
    assert np.abs(out.reshape(-1, 3).mean(0) - coffee.reshape(-1, 3).mean(0)).max() < 10  # colour
    # from bytes, with the name giving the RAW extension; and as a DNG without a name
    assert np.array_equal(arr(load_image(p.read_bytes(), name="shot.DNG")), out)
    assert np.array_equal(arr(load_image(p.read_bytes())), out)
    assert image_info(p) == {"format": "DNG", "width": 600, "height": 400, "raw": True}


def test_raw_half_size_when_max_side_allows(tmp_path, coffee, monkeypatch):
    p = pidng_dng(tmp_path / "shot.dng", coffee)
    seen = []
    real_rawpy = rawpy.RawPy

    class Spy:  # RawPy is an extension type: wrap it to see the postprocess arguments
        def __init__(self, raw):
            self.raw = raw

        def __getattr__(self, name):
            return getattr(self.raw, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.raw.__exit__(*exc)

        def postprocess(self, **kw):
            seen.append(kw)
            return self.raw.postprocess(**kw)

    monkeypatch.setattr(rawpy, "RawPy", lambda: Spy(real_rawpy()))
    im = load_image(p, max_side=300)  # half size (300x200) is enough: skip demosaicing
    assert im.size == (300, 200) and seen[-1]["half_size"] is True
    ref = np.asarray(Image.fromarray(coffee).resize((300, 200), Image.Resampling.LANCZOS))
    assert corr(arr(im), ref) > 0.95
    assert load_image(p, max_side=400).size == (400, 267) and seen[-1]["half_size"] is False


@pytest.mark.parametrize("preview_format", ["jpeg", "bitmap"])
def test_raw_embedded_preview_used_when_big_enough(tmp_path, coffee, chelsea, preview_format):
    # The preview is a *different* photo (the cat) so we can tell which path produced the result.
    p = write_dng(tmp_path / "cam.dng", coffee, preview=chelsea, preview_format=preview_format)
    with rawpy.imread(str(p)) as raw:
        thumb = raw.extract_thumb()
        want = rawpy.ThumbFormat.JPEG if preview_format == "jpeg" else rawpy.ThumbFormat.BITMAP
        assert thumb.format == want
    im = load_image(p, min_preview_side=451)  # preview long side 451 >= 451: use it
    assert im.size == (451, 300) and mad(arr(im), chelsea) < 4
    im = load_image(p, min_preview_side=452)  # too small now: demosaic the coffee raw
    assert im.size == (600, 400) and corr(arr(im), coffee) > 0.97
    assert load_image(p, min_preview_side=None).size == (600, 400)
    assert load_image(p, min_preview_side=100, max_side=200).size == (200, 133)  # preview, resized
    assert image_info(p)["width"] == 600  # info describes the raw image, not the preview


@pytest.mark.parametrize("preview_format", ["jpeg", "bitmap"])
def test_raw_orientation_applied_to_preview_and_demosaic(tmp_path, coffee, chelsea, preview_format):
    # (LibRaw hands out a JPEG preview that has no EXIF of its own with an EXIF header carrying
    # the raw's orientation; a bitmap preview gets it from sizes.flip in imageio.)
    p = write_dng(tmp_path / "portrait.nef", coffee, preview=chelsea, preview_format=preview_format, orientation=6)
    with rawpy.imread(str(p)) as raw:
        assert raw.sizes.flip == 6
    prev = load_image(p, min_preview_side=0)
    assert prev.size == (300, 451) and mad(arr(prev), np.rot90(chelsea, -1)) < 4
    full = load_image(p, min_preview_side=10**6)
    assert full.size == (400, 600) and corr(arr(full), np.rot90(coffee, -1)) > 0.97
    assert image_info(p) == {"format": "NEF", "width": 400, "height": 600, "raw": True}


def test_preview_own_exif_orientation_wins(chelsea):
    # a preview carrying its own EXIF orientation wins over the raw's flip
    exif = Image.Exif()
    exif[0x0112] = 3
    buf = io.BytesIO()
    Image.fromarray(chelsea).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    img = imageio.decoding._decode_pillow(io.BytesIO(buf.getvalue()), "t", "", None, fallback_orientation=6)
    assert img.size == (451, 300) and mad(arr(img), chelsea[::-1, ::-1]) < 4
    # ... but an explicit Orientation=1 in a preview means "not specified": the raw's flip applies
    exif[0x0112] = 1
    buf = io.BytesIO()
    Image.fromarray(chelsea).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    img = imageio.decoding._decode_pillow(io.BytesIO(buf.getvalue()), "t", "", None, fallback_orientation=6)
    assert img.size == (300, 451)


def test_corrupt_raw(tmp_path, coffee):
    p = tmp_path / "broken.nef"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert "RAW" in reason(ei) and ei.value.path == str(p)
    with pytest.raises(ImageLoadError, match="RAW"):
        image_info(p)
    with pytest.raises(ImageLoadError, match="RAW"):
        load_image(p.read_bytes(), name="broken.cr2")
    data = pidng_dng(tmp_path / "t.dng", coffee).read_bytes()
    with pytest.raises(ImageLoadError, match="corrupt RAW"):
        load_image(data[: len(data) // 2], name="cut.dng")  # header fine, pixel data cut off


def test_dng_named_tif_is_read_as_raw(tmp_path, coffee, chelsea):
    p = write_dng(tmp_path / "export.tif", coffee, preview=chelsea[:100, :150].copy())
    im = load_image(p)  # Pillow alone would return the 150x100 preview IFD
    assert im.size == (600, 400) and corr(arr(im), coffee) > 0.97
