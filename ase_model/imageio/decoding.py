"""Decoding with Pillow / tifffile and finishing.

Memory cost, mode and bit-depth conversion, ICC to sRGB, orientation, alpha, downscaling (see ase_model.imageio).
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile

from ..imagesafety import (
    ImageLoadError,
    ImageTooLarge,
    jpeg_damage,
)
from .probe import (
    _TIFF_MAGIC,
    BACKGROUND,
    MAX_PIXELS,
    _check_dims,
    _Ctx,
    _exif_orientation,
    _not_an_image,
    _pil_open,
)

log = logging.getLogger("ase_model.imageio")  # one logger for the whole loader, as before the split


# Bytes per pixel of a decoded Pillow image by mode (Pillow keeps RGB, LA and friends in 4 bytes a pixel).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}
_SLACK = 16 << 20  # codec state, tables, Python objects


def _finish_cost(w: int, h: int, max_side: int | None) -> int:
    """Peak bytes of _finish's resize / rotate / colour / alpha steps on a w x h 4-byte-a-pixel image."""
    if max_side and max(w, h) > max_side:
        ow, oh = _fit_size(w, h, max_side)
        return ow * h * 4 + ow * oh * 4 * 4  # LANCZOS' horizontal pass, then small copies
    return w * h * 4 * 3  # transpose, ICC conversion, alpha composite: a full copy each


def _pillow_cost(im: ImageFile.ImageFile, max_side: int | None, encoded: int) -> int:
    """Estimated peak memory of decoding ``im`` (after any draft) to the finished RGB image, from its header."""
    w, h = im.size
    px = w * h
    mode = im.mode
    native = px * _MODE_BYTES.get(mode, 4)
    work = 0
    if mode.startswith("I") or mode == "F":  # numpy scaling to 8 bits: float copies and masks
        work = px * 10
    elif mode not in ("RGB", "RGBA", "L", "CMYK"):  # P, LA, PA, 1 ... converted to a 4-byte mode first
        work = px * 4
    if im.format in ("JPEG", "MPO"):
        encoded *= 2  # jpeg_damage reads the encoded bytes once more
    return encoded + native + work + _finish_cost(w, h, max_side) + _SLACK


def _decode_pillow(
    fp: BinaryIO,
    label: str,
    filename: str,
    max_side: int | None,
    fallback_orientation: int | None = None,
    min_side: int | None = None,
    ctx: _Ctx | None = None,
) -> Image.Image | None:
    """Decode with Pillow and finish to RGB. With ``min_side``, return None (without decoding
    pixels) when the image's long side is below it: used for RAW previews."""
    ctx = ctx or _Ctx()
    try:
        im = _pil_open(fp, filename)
    except Image.DecompressionBombError as e:  # Pillow's own check in a plugin's open (WebP)
        raise ImageTooLarge(label, f"image too large ({e})") from None
    except (OSError, EOFError, ValueError) as e:  # header present but unreadable
        raise ImageLoadError(label, f"truncated or corrupt image header ({e})") from None
    if im is None:
        fp.seek(0)
        if fp.read(4) in _TIFF_MAGIC:  # a TIFF variant Pillow cannot read (float RGB, 16-bit LA)
            return _decode_tifffile(fp, label, max_side, ctx)
        raise _not_an_image(fp, label)
    w, h = im.size
    _check_dims(label, w, h)
    if min_side is not None and max(w, h) < min_side:
        return None
    if im.format == "TIFF" and _pillow_misreads_tiff(im):
        return _decode_tifffile(fp, label, max_side, ctx)

    orientation = _exif_orientation(im, ctx)
    if orientation in (None, 1) and fallback_orientation:
        orientation = fallback_orientation
    icc = im.info.get("icc_profile")
    if max_side and im.format in ("JPEG", "MPO") and max(w, h) > max_side:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (never below the target size): a 50 MP
        # JPEG for a 1024 px model input decodes ~10x faster and in 1/64 of the memory.
        im.draft(None, _fit_size(w, h, max_side))
    if im.format == "PNG" and not _png_crcs_ok(fp):
        # Pillow does not check IDAT checksums while decoding, and damaged deflate data can
        # still inflate to the right length: garbage pixels with no error. The CRCs catch it.
        raise ImageLoadError(label, "truncated or corrupt image data (PNG checksum mismatch)")
    if im.format in ("JPEG", "MPO"):
        fp.seek(0)
        for message in jpeg_damage(fp.read()):  # libjpeg decodes garbage silently: say so
            ctx.warn(message)
    with ctx.reserve(_pillow_cost(im, max_side, ctx.encoded), label):
        try:
            im.load()
        except Image.DecompressionBombError as e:  # Pillow's own TIFF decode check, see docstring
            raise ImageTooLarge(label, f"image too large: {w}x{h} pixels ({e})", w * h, MAX_PIXELS,
                                "pixels") from None
        except MemoryError:
            raise ImageLoadError(label, f"out of memory decoding {w}x{h} pixels") from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError) as e:
            raise ImageLoadError(label, f"truncated or corrupt image data ({e})") from None
        return _finish(im, label, max_side, orientation, icc, ctx)


def _png_crcs_ok(fp: BinaryIO) -> bool:
    """Verify every chunk CRC of a PNG up to IEND (streaming; ~1 GB/s). A file that ends
    early passes here: the decoder reports truncation itself."""
    pos = fp.tell()
    try:
        fp.seek(8)
        while True:
            head = fp.read(8)
            if len(head) < 8:
                return True
            length, ctype = struct.unpack(">I4s", head)
            crc = zlib.crc32(ctype)
            while length:
                block = fp.read(min(length, 1 << 20))
                if not block:
                    return True
                crc = zlib.crc32(block, crc)
                length -= len(block)
            stored = fp.read(4)
            if len(stored) < 4:
                return True
            if struct.unpack(">I", stored)[0] != crc:
                return False
            if ctype == b"IEND":
                return True
    finally:
        fp.seek(pos)


def _pillow_misreads_tiff(im: ImageFile.ImageFile) -> bool:
    """Pillow's raw (uncompressed) decoder reads planar (PlanarConfiguration=2) TIFFs with
    more than 8 bits per sample as 8-bit planes: silent garbage (checked with Pillow 13)."""
    try:
        tags = im.tag_v2
        bits = tags.get(258) or (8,)
        bits = bits if isinstance(bits, tuple) else (bits,)
        return tags.get(284) == 2 and max(bits) > 8 and any(t[0] == "raw" for t in im.tile)
    except Exception:
        return False


def _memory_stream(fp: BinaryIO) -> BinaryIO:
    """tifffile takes a file object's ``name`` for a path: an fd-opened file (name = the fd) must be bytes."""
    fp.seek(0)
    return fp if isinstance(fp, io.BytesIO) else io.BytesIO(fp.read())


def _decode_tifffile(fp: BinaryIO, label: str, max_side: int | None, ctx: _Ctx | None = None) -> Image.Image:
    """Fallback for TIFF variants Pillow cannot read correctly (float or 16-bit planar RGB,
    16-bit grey+alpha, ...). tifffile comes with scikit-image, a project dependency."""
    ctx = ctx or _Ctx()
    try:
        import tifffile
    except ImportError:
        raise ImageLoadError(
            label, "unsupported TIFF variant (Pillow cannot read it; install tifffile)"
        ) from None
    fp = _memory_stream(fp)
    try:
        with tifffile.TiffFile(fp) as tf:
            page = tf.pages.first
            w, h = page.imagewidth, page.imagelength
            _check_dims(label, w, h)
            photometric = int(page.photometric)
            if photometric not in (1, 2):  # MINISBLACK, RGB; CMYK/YCbCr/palette go via Pillow
                raise ImageLoadError(label, f"unsupported TIFF colour space (photometric {photometric})")
            spp = max(1, int(page.samplesperpixel))
            native = w * h * spp * max(1, page.dtype.itemsize if page.dtype is not None else 4)
            # the array, its contiguous copy, the float scaling's temporaries (chunked), 8-bit result, finish
            cost = ctx.encoded + 2 * native + w * h * spp + _finish_cost(w, h, max_side) + _SLACK + _CHUNK_BYTES
            with ctx.reserve(cost, label):
                arr = page.asarray()
                separate = int(page.planarconfig) == 2
                orientation = page.tags.valueof(274)
                icc = page.tags.valueof(34675)
                if separate and arr.ndim == 3:
                    arr = np.moveaxis(arr, 0, -1)
                arr = _to_uint8(np.ascontiguousarray(arr))
                if arr.ndim == 3 and arr.shape[2] == 1:
                    arr = arr[:, :, 0]
                if arr.ndim == 3 and arr.shape[2] > 4:  # extra samples beyond alpha: keep colour + alpha
                    arr = arr[:, :, :4]
                im = Image.fromarray(arr)  # mode from shape: L, LA, RGB or RGBA
                del arr
                return _finish(im, label, max_side, orientation, bytes(icc) if icc else None, ctx)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(label, "out of memory decoding TIFF") from None
    except Exception as e:
        raise ImageLoadError(label, f"truncated or corrupt TIFF data ({e})") from None


# --------------------------------------------------------------------------------------------
# Conversion to 8-bit RGB
# --------------------------------------------------------------------------------------------

# EXIF orientation -> transposition, the table ImageOps.exif_transpose uses. We apply it
# ourselves after downscaling (rotating the small image is cheaper) and for RAW previews and
# tifffile images, which carry the orientation outside Pillow's EXIF.
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# LibRaw's sizes.flip (dcraw bits: 1 = mirror x, 2 = mirror y, 4 = transpose) -> EXIF orientation.
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


def _fit_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _fit(im: Image.Image, max_side: int | None) -> Image.Image:
    if not max_side or max(im.size) <= max_side:
        return im
    # reducing_gap: box-reduce by an integer factor first, then LANCZOS the last <= 3x;
    # visually the same as a pure LANCZOS and several times faster on 50 MP inputs.
    return im.resize(_fit_size(*im.size, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)


_CHUNK_BYTES = 32 << 20  # scaling works on blocks of rows: its temporaries stay this small at any image size


def _blocks(a: np.ndarray):
    """Row slices of ``a`` of about _CHUNK_BYTES of float64 each."""
    rows = a.shape[0] if a.ndim else 1
    per_row = 8 * max(1, a.size // max(1, rows))
    step = max(1, _CHUNK_BYTES // per_row)
    for i in range(0, rows, step):
        yield slice(i, i + step)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale any numeric array to uint8 without clipping highlights.

    16-bit: v >> 8 (maps 0..65535 onto 0..255, exact inverse of the 8->16 bit v*257 expansion).
    Other integers: treated as 16-bit if they fit in 0..65535, else min-max stretched.
    Float: 0..1 taken as the nominal range (scaled by 255); anything else (HDR, arbitrary
    units) is min-max stretched; NaN/inf -> 0. Works block by block: no full-size temporaries.
    """
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.dtype.kind not in "uif":
        raise ValueError(f"unsupported sample type {a.dtype}")
    if a.dtype.kind in "ui" and a.dtype.itemsize == 1:  # int8
        return (a.view(np.uint8) ^ np.uint8(0x80)).astype(np.uint8)
    out = np.empty(a.shape, np.uint8)
    if a.dtype.kind in "ui":
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if 0 <= lo and hi <= 65535:
            for s in _blocks(a):
                out[s] = a[s] >> 8
            return out
        return _stretch(a, lo, hi, out)
    lo, hi = np.inf, -np.inf
    for s in _blocks(a):
        blk = _finite(a[s])
        if blk.size:
            lo, hi = min(lo, float(blk.min())), max(hi, float(blk.max()))
    lo, hi = (0.0, 0.0) if lo > hi else (lo, hi)
    if 0.0 <= lo and hi <= 1.0:
        for s in _blocks(a):
            out[s] = np.rint(_finite(a[s]) * np.float32(255.0))
        return out
    return _stretch(a, lo, hi, out)


def _finite(blk: np.ndarray) -> np.ndarray:
    blk = blk.astype(np.float32, copy=False)
    finite = np.isfinite(blk)
    return blk if finite.all() else np.where(finite, blk, np.float32(0))


def _stretch(a: np.ndarray, lo: float, hi: float, out: np.ndarray) -> np.ndarray:
    if hi <= lo:
        out[...] = 0
        return out
    scale = 255.0 / (hi - lo)
    for s in _blocks(a):
        blk = a[s].astype(np.float64) if a.dtype.kind in "ui" else _finite(a[s])
        out[s] = np.clip(np.rint((blk - lo) * scale), 0, 255)
    return out


def _normalise_mode(im: Image.Image, label: str) -> Image.Image:
    """Any Pillow mode -> one of L, RGB, RGBA, CMYK (8 bits per sample)."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im.convert("RGBA") if "transparency" in im.info else im  # tRNS colour key
    if mode in ("RGBA", "CMYK"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and "A" in im.palette.mode)
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode in ("LA", "La", "PA", "RGBa"):
        return im.convert("RGBA")
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Pillow's own convert("L") clips I;16 at 255 (everything above 1/256 of the range goes
        # white); scale instead. 16-bit RGB needs no case: Pillow reads it as 8-bit RGB.
        return Image.fromarray(_to_uint8(np.asarray(im)))
    if mode == "LAB":
        from PIL import ImageCms

        return ImageCms.profileToProfile(
            im, ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    try:  # RGBX, YCbCr, HSV, ...
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageLoadError(label, f"unsupported colour mode {mode} ({e})") from None


def _icc_to_srgb(im: Image.Image, icc: bytes | None, ctx: _Ctx | None = None) -> Image.Image:
    """Convert through an embedded ICC profile to sRGB (Adobe RGB / Display P3 photos would
    look washed out if read as sRGB; CMYK needs its profile for correct colours). sRGB-tagged
    images are passed through. Any profile problem falls back to the naive conversion."""
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if im.mode != "CMYK" and "srgb" in (ImageCms.getProfileDescription(src) or "").lower():
            return im
        out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
        out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode=out_mode)
        if out_mode == "RGBA":  # not every LittleCMS build carries alpha through
            out.putalpha(im.getchannel("A"))
        return out
    except Exception as e:
        log.debug("ignoring unusable ICC profile: %s", e)
        if ctx is not None:
            ctx.warn(_ICC_WARNING)
        return im


_ICC_WARNING = "unusable embedded colour profile (ICC) ignored; colours read as sRGB"


def _finish(
    im: Image.Image,
    label: str,
    max_side: int | None,
    orientation: int | None,
    icc: bytes | None,
    ctx: _Ctx | None = None,
) -> Image.Image:
    im = _normalise_mode(im, label)
    im = _fit(im, max_side)  # before rotating / colour converting: less work on fewer pixels
    if orientation in _ORIENT:
        im = im.transpose(_ORIENT[orientation])
    im = _icc_to_srgb(im, icc, ctx)
    if im.mode == "RGBA":
        bg = Image.new("RGBA", im.size, BACKGROUND + (255,))
        im = Image.alpha_composite(bg, im)
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, CMYK (naive, when no profile), RGBA after compositing
    return im


# --------------------------------------------------------------------------------------------
# RAW path
