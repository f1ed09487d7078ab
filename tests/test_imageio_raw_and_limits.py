"""Tests for ase_model.imageio at the edges: downscaling and size limits, failures (missing, unreadable,
truncated, corrupt files) and RAW (DNG demosaic, embedded previews, orientation). Every input is built in
tmp_path from real photos (skimage.data)."""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from imageio_helpers import arr, corr, mad, pidng_dng, reason  # noqa: E402

from ase_model import imageio, imagesafety  # noqa: E402
from ase_model.imageio import ImageLoadError, image_info, load_image  # noqa: E402

pytest.importorskip("skimage.data")  # the photos (fixtures chelsea, coffee in conftest.py)
rawpy = pytest.importorskip("rawpy")

_BENCH = Path(__file__).resolve().parents[1] / "bench" / "raw_decode.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("_ase_bench_raw_decode", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


write_dng = _bench_module().write_dng  # pidng cannot embed a preview; this writer can


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
