"""The one image loader every component uses (model, daemon, watcher, viewer).

``load_image`` turns a file path or encoded bytes into a fully decoded 8-bit RGB
``PIL.Image.Image``: EXIF orientation applied, any colour mode / bit depth converted, embedded
ICC profiles converted to sRGB, alpha flattened onto mid-grey, optionally downscaled. Camera RAW
files go through rawpy (LibRaw): the embedded camera preview when it is big enough (fast),
otherwise a demosaic. Every failure is an ``ImageLoadError`` with a human reason, never a bare
PIL / rawpy / OS exception.

Safety decisions (hostile or broken files are expected: this runs on whole photo libraries):

* Pixel limit: ``MAX_PIXELS`` is checked against the dimensions in the file header before any
  pixel is decoded. Files are identified with Pillow's registered plugin factories directly
  (``_pil_open``) rather than ``Image.open``, because ``Image.open`` applies the process-global
  ``Image.MAX_IMAGE_PIXELS`` (warns over 89 MP, refuses over 179 MP): a 100 MP medium-format
  JPEG must load without a warning, and we do not change Pillow's global settings (that would
  leak into every other user of Pillow in the process). Caveat: Pillow's TIFF decoder repeats
  its global check while decoding, so a TIFF over ``Image.MAX_IMAGE_PIXELS`` emits Pillow's
  DecompressionBombWarning and one over twice that is refused (as an ``ImageLoadError``).
* Truncation: ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at False (Pillow's default) and every
  image is force-loaded here, so a JPEG/PNG cut short raises instead of coming back half grey.
  If some other code in the process sets it to True, Pillow pads truncated files silently and we
  cannot tell; don't.
* Only the formats in ``_PIL_FORMATS`` are decoded (no EPS/Ghostscript, no exotic plugins).
* Files: a path is opened only as a regular file (``imagesafety.open_regular``: non-blocking, fstat on the
  opened descriptor, optional folder confinement, a size cap); RAW files go to LibRaw from that open file.
* Memory: every decode estimates its peak from the header and reserves it from an optional
  ``MemoryBudget`` before the first pixel is decoded (``ImageTooLarge`` when it can never fit); 16-bit
  and float scaling works block by block. Nothing here may decode pixels before that check (Pillow's PNG
  ``getexif()`` would: it is only asked where the EXIF sits before the image data).
* Damage a decoder papers over (garbage in a JPEG's data, unreadable EXIF, an unusable ICC profile) goes to
  the caller's ``warnings`` list instead of being lost.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile

from .imagesafety import (
    MAX_FILE_BYTES,
    ImageLoadError,
    ImageNotFound,
    ImageTooLarge,
    MemoryBudget,
    jpeg_damage,
    open_regular,
)

try:  # a hard dependency, but keep plain images working if the wheel is broken
    import rawpy
except ImportError:  # pragma: no cover - exercised only on a broken install
    rawpy = None

__all__ = [
    "ImageLoadError",
    "ImageNotFound",
    "ImageTooLarge",
    "MemoryBudget",
    "MAX_FILE_BYTES",
    "RAW_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "BACKGROUND",
    "is_supported",
    "load_image",
    "damage_warnings",
    "image_info",
]

log = logging.getLogger(__name__)

#: Largest image (width x height, from the header) that will be decoded. 200 MP leaves room for
#: 100-150 MP medium-format files; an 8-bit RGB decode of 200 MP is 600 MB.
MAX_PIXELS = 200_000_000

#: Alpha is composited onto neutral mid-grey: an aesthetic judgement should not be biased by a
#: black or white fill (a logo on white looks "high-key", on black "low-key"; grey is neither).
BACKGROUND = (128, 128, 128)


# --------------------------------------------------------------------------------------------
# Supported extensions
# --------------------------------------------------------------------------------------------

_RAW_EXTS = {
    ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
    ".rwl", ".pef", ".dng", ".srw", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr", ".mrw",
    ".mef", ".mos",
}  # fmt: skip
if rawpy is not None and rawpy.flags.get("X3FTOOLS"):  # Sigma Foveon needs LibRaw's X3F tools
    _RAW_EXTS.add(".x3f")
#: Camera RAW extensions (lower case, with the dot) that rawpy/LibRaw reads.
RAW_EXTENSIONS: frozenset[str] = frozenset(_RAW_EXTS if rawpy is not None else ())


def _image_extensions() -> frozenset[str]:
    exts = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}
    try:  # optional HEIC support: only if pillow-heif happens to be installed
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except Exception:
        pass
    registered = Image.registered_extensions()  # imports all Pillow plugins once
    exts.update(e for e in (".heic", ".heif", ".avif") if e in registered)
    return frozenset(exts)


#: Ordinary image extensions; .heic/.heif/.avif only when this Pillow can open them.
IMAGE_EXTENSIONS: frozenset[str] = _image_extensions()

# Pillow formats we are willing to decode (MPO = camera JPEG with a multi-picture index).
_PIL_FORMATS = ("JPEG", "MPO", "PNG", "TIFF", "WEBP", "BMP", "HEIF", "AVIF")
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def _ext(name: str | os.PathLike | None) -> str:
    return os.path.splitext(os.fspath(name))[1].lower() if name else ""


def is_supported(path: str | os.PathLike) -> bool:
    """True if ``path`` has an image or RAW extension we load (case-insensitive)."""
    ext = _ext(path)
    return ext in IMAGE_EXTENSIONS or ext in RAW_EXTENSIONS


# --------------------------------------------------------------------------------------------
# Source handling: path or bytes -> open binary stream, with human errors
# --------------------------------------------------------------------------------------------


class _Source:
    """An opened input. ``fp`` is a binary stream positioned anywhere; ``head`` its first bytes."""

    def __init__(self, source, name: str | None, max_bytes: int = MAX_FILE_BYTES, within=None):
        self.path: str | None = None
        self.fp: BinaryIO
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.label = name or "<bytes>"
            self.ext = _ext(name)
            data = bytes(source)
            if not data:
                raise ImageLoadError(self.label, "empty file (0 bytes)")
            self.size = len(data)
            self.fp = io.BytesIO(data)
        elif isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            self.path = self.label = path
            self.ext = _ext(name or path)  # name can carry the real extension of a temp file
            # regular files only, checked on the opened descriptor (a FIFO or /dev/zero never gets read)
            fd, st = open_regular(path, within=within, label=self.label)
            self.size = st.st_size
            self.fp = os.fdopen(fd, "rb")
            if st.st_size > max_bytes:
                self.fp.close()
                raise ImageTooLarge(self.label, f"file too large: {st.st_size / 2**20:,.1f} MiB exceeds the "
                                    f"{max_bytes / 2**20:,.1f} MiB cap on photo files", st.st_size, max_bytes)
        else:
            raise TypeError(f"source must be a path or bytes, not {type(source).__name__}")
        self.head = self.fp.read(64)
        self.fp.seek(0)

    def close(self) -> None:
        self.fp.close()

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- RAW detection ------------------------------------------------------------------------

    def is_raw(self) -> bool:
        """RAW by extension; by content only where the extension does not settle it."""
        if rawpy is None:
            return False
        if self.ext in RAW_EXTENSIONS:
            return True
        head = self.head
        if head[:4] in _TIFF_MAGIC:
            tags = _tiff_ifd0_tags(self.fp, head)
            self.fp.seek(0)
            if 50706 in tags or tags.get(262) == 32803:  # DNGVersion, or a CFA (Bayer) image
                return True  # e.g. a DNG named .tif: Pillow would show only its thumbnail
            # NEF/ARW/PEF without a name: IFD0 is a reduced-resolution thumbnail with SubIFDs.
            return self.ext not in IMAGE_EXTENSIONS and bool(tags.get(254, 0) & 1) and 330 in tags
        return self.ext not in IMAGE_EXTENSIONS and _raw_magic(head)


def _raw_magic(head: bytes) -> bool:
    """Non-plain-TIFF RAW signatures (CR2, ORF, RW2, RAF, CR3, X3F, MRW)."""
    return (
        head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\0")  # Olympus ORF, Panasonic RW2
        or (head[:4] == b"II*\0" and head[8:10] == b"CR")  # Canon CR2
        or head.startswith(b"FUJIFILMCCD-RAW")
        or head[4:12] == b"ftypcrx "  # Canon CR3 (ISO BMFF)
        or head.startswith((b"FOVb", b"\0MRM"))  # Sigma X3F, Minolta MRW
    )


def _tiff_ifd0_tags(fp: BinaryIO, head: bytes) -> dict[int, int | None]:
    """Tag -> first SHORT/LONG value (None for other types) of a TIFF's IFD0; {} if unreadable."""
    try:
        e = "<" if head[:2] == b"II" else ">"
        if head[2:4] in (b"+\0", b"\0+"):  # BigTIFF: not worth parsing for RAW sniffing
            return {}
        (off,) = struct.unpack(e + "I", head[4:8])
        fp.seek(off)
        (n,) = struct.unpack(e + "H", fp.read(2))
        if n > 1000:  # garbage; real IFDs have tens of entries
            return {}
        raw = fp.read(12 * n)
        tags: dict[int, int | None] = {}
        for i in range(len(raw) // 12):
            tag, typ, count = struct.unpack_from(e + "HHI", raw, 12 * i)
            if typ == 3:
                tags[tag] = struct.unpack_from(e + "H", raw, 12 * i + 8)[0]
            elif typ in (4, 13):
                tags[tag] = struct.unpack_from(e + "I", raw, 12 * i + 8)[0]
            else:
                tags[tag] = None
        return tags
    except (struct.error, OSError, ValueError):
        return {}


# --------------------------------------------------------------------------------------------
# Pillow path
# --------------------------------------------------------------------------------------------


def _too_large(label: str, w: int, h: int) -> ImageLoadError:
    return ImageTooLarge(
        label, f"image too large: {w}x{h} pixels exceeds the {MAX_PIXELS / 1e6:g} MP limit",
        w * h, MAX_PIXELS, "pixels",
    )


def _check_dims(label: str, w: int, h: int) -> None:
    if w <= 0 or h <= 0:
        raise ImageLoadError(label, f"corrupt image header (size {w}x{h})")
    if w * h > MAX_PIXELS:
        raise _too_large(label, w, h)


def _pil_open(fp: BinaryIO, filename: str) -> ImageFile.ImageFile | None:
    """Identify ``fp`` among ``_PIL_FORMATS`` and parse its header only (no pixel decode).

    Mirrors ``Image.open`` minus its global decompression-bomb check (see module docstring);
    the caller checks ``MAX_PIXELS`` itself. Returns None if no allowed format accepts it.
    """
    registry = getattr(Image, "OPEN", None)
    if registry is None:  # pragma: no cover - Pillow internals changed: use the public path
        fp.seek(0)
        try:
            return Image.open(fp, formats=_PIL_FORMATS)
        except Image.UnidentifiedImageError:
            return None
    Image.preinit()
    fp.seek(0)
    prefix = fp.read(16)
    for fmt in _PIL_FORMATS:
        if fmt not in registry:
            Image.init()
        factory, accept = registry.get(fmt, (None, None))
        if factory is None:
            continue
        ok = accept(prefix) if accept else True
        if not ok or isinstance(ok, str):  # a str is Pillow's "recognised but unsupported"
            continue
        fp.seek(0)
        try:
            return factory(fp, filename)
        except (SyntaxError, IndexError, TypeError, struct.error):  # what Image.open skips on
            continue
    return None


# Signatures of the formats we decode: a file that starts like one but that no plugin accepts is
# damaged, not "not an image".
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\0", "TIFF"),
    (b"MM\0*", "TIFF"),
)


def _not_an_image(fp: BinaryIO, label: str) -> ImageLoadError:
    """Name the format if Pillow knows it but we don't decode it (GIF, EPS, ...)."""
    fp.seek(0)
    head = fp.read(16)
    for sig, name in _SIGNATURES:
        if head.startswith(sig):
            return ImageLoadError(label, f"truncated or corrupt {name} file (unreadable header)")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageLoadError(label, "truncated or corrupt WEBP file (unreadable header)")
    fmt = None
    try:
        fp.seek(0)
        with Image.open(fp) as im:  # header only; never loaded
            fmt = im.format
    except Image.DecompressionBombError:
        return ImageLoadError(label, "unsupported image format, and its header declares a decompression bomb")
    except Exception:
        pass
    if fmt:
        return ImageLoadError(label, f"unsupported image format {fmt}")
    return ImageLoadError(label, "not an image file (unrecognised format)")


def _exif_orientation(im: Image.Image, ctx: _Ctx | None = None) -> int | None:
    if im.format == "PNG" and "exif" not in im.info:
        # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk after the pixels: that
        # would run before the memory check (a 196 MP bomb fully decoded). Only an eXIf before IDAT counts.
        return None
    try:
        o = im.getexif().get(0x0112)
    except Exception as e:  # corrupt EXIF must not make a decodable photo fail
        if ctx is not None:
            ctx.warn(f"unreadable EXIF metadata ignored ({type(e).__name__})")
        return None
    return o if isinstance(o, int) and 1 <= o <= 8 else None


class _Ctx:
    """Per-call decode settings: the memory budget (None = unbounded), where warnings go, the encoded size."""

    __slots__ = ("budget", "warnings", "encoded")

    def __init__(self, budget: MemoryBudget | None = None, warnings: list | None = None, encoded: int = 0):
        self.budget, self.encoded = budget, encoded
        self.warnings = warnings if warnings is not None else []

    def reserve(self, nbytes: int, label: str):
        if self.budget is None:
            return contextlib.nullcontext(nbytes)
        return self.budget.reserve(nbytes, label)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


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
# --------------------------------------------------------------------------------------------


def _open_raw(src: _Source):
    """LibRaw on the already opened file (never the path again: it could be swapped for a FIFO). Only the
    header is parsed here; the sensor data is unpacked by _raw_demosaic, inside its memory reservation."""
    raw = rawpy.RawPy()
    try:
        src.fp.seek(0)
        raw.open_buffer(src.fp)
        return raw
    except rawpy.LibRawFileUnsupportedError:
        raw.close()
        reason = "corrupt or unsupported RAW file (LibRaw cannot identify it)"
        raise ImageLoadError(src.label, reason) from None
    except (rawpy.LibRawError, OSError) as e:
        raw.close()
        raise ImageLoadError(src.label, f"corrupt RAW file (LibRaw: {_msg(e)})") from None


def _msg(e: BaseException) -> str:
    m = e.args[0] if e.args else str(e)
    return m.decode(errors="replace") if isinstance(m, bytes) else str(m)


def _raw_preview(raw, label: str, min_preview_side: int | None, max_side: int | None, ctx: _Ctx):
    """The camera's embedded preview if its long side >= min_preview_side, else None."""
    if min_preview_side is None:
        return None
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, NotImplementedError, OSError):
        return None  # no preview, or a format LibRaw can't hand out: demosaic instead
    # Previews are stored unrotated; use the raw's orientation unless the preview's own EXIF
    # orientation says otherwise (orientation 1 / none = "not specified" for previews). LibRaw
    # itself prepends an EXIF header with the raw's orientation to a JPEG preview that has none.
    orientation = _FLIP_TO_ORIENTATION.get(raw.sizes.flip, 1)
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            preview = _Ctx(ctx.budget, [], len(thumb.data))
            img = _decode_pillow(
                io.BytesIO(thumb.data), f"{label} (embedded preview)", "", max_side,
                fallback_orientation=orientation, min_side=max(1, min_preview_side), ctx=preview,
            )  # fmt: skip
            if img is not None and preview.warnings:  # a damaged preview: the raw data is better
                log.debug("damaged RAW preview, demosaicing instead: %s", preview.warnings)
                ctx.warn("the embedded preview is damaged; the RAW data was demosaiced instead")
                return None
            return img
        arr = np.asarray(thumb.data)
        if arr.ndim < 2 or max(arr.shape[:2]) < min_preview_side:
            return None
        _check_dims(label, arr.shape[1], arr.shape[0])
        arr = _to_uint8(arr)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return _finish(Image.fromarray(arr), label, max_side, orientation, None, ctx)
    except ImageTooLarge:
        raise
    except ImageLoadError as e:  # a damaged preview is no reason to give up on the raw data
        log.debug("unusable RAW preview, demosaicing instead: %s", e)
        ctx.warn("the embedded preview is unreadable; the RAW data was demosaiced instead")
        return None


def _raw_cost(raw, max_side: int | None, encoded: int) -> tuple[int, bool]:
    """Estimated peak bytes of unpacking + demosaicing, and whether half-size decoding is used."""
    s = raw.sizes
    half = bool(max_side) and max(s.width, s.height) // 2 >= max_side
    out_px = s.width * s.height // (4 if half else 1)
    # sensor data (up to 4 uint16 samples a pixel for linear DNGs), LibRaw's 4 x uint16 image, the 8-bit result
    cost = encoded + s.raw_width * s.raw_height * 8 + out_px * (8 + 3)
    w, h = (s.width // 2, s.height // 2) if half else (s.width, s.height)
    return cost + _finish_cost(w, h, max_side) + _SLACK, half


def _raw_demosaic(raw, label: str, max_side: int | None, ctx: _Ctx) -> Image.Image:
    # half_size skips demosaicing (each 2x2 Bayer quad -> one pixel): ~4x faster and exact
    # enough whenever the half-size image is still at least as big as what was asked for.
    cost, half = _raw_cost(raw, max_side, ctx.encoded)
    with ctx.reserve(cost, label):
        try:
            raw.unpack()
            rgb = raw.postprocess(
                use_camera_wb=True,  # the white balance the photographer saw; falls back to daylight
                output_bps=8,
                half_size=half,
                gamma=(2.4, 12.92),  # sRGB transfer curve (LibRaw defaults to BT.709)
                # LibRaw defaults otherwise: AHD demosaic, sRGB primaries, auto-brightness
                # (1% of pixels may clip), LibRaw applies sizes.flip itself.
            )
        except MemoryError:
            raise ImageLoadError(label, "out of memory demosaicing RAW") from None
        except (rawpy.LibRawError, OSError, ValueError) as e:
            raise ImageLoadError(label, f"corrupt RAW data (LibRaw: {_msg(e)})") from None
        return _fit(Image.fromarray(rgb), max_side)


def _load_raw(src: _Source, min_preview_side: int | None, max_side: int | None, ctx: _Ctx) -> Image.Image:
    with _open_raw(src) as raw:
        s = raw.sizes
        if s.width <= 0 or s.height <= 0:
            raise ImageLoadError(src.label, "corrupt RAW file (no image dimensions)")
        if max(s.raw_width * s.raw_height, s.width * s.height) > MAX_PIXELS:
            raise _too_large(src.label, s.width, s.height)
        img = _raw_preview(raw, src.label, min_preview_side, max_side, ctx)
        return img if img is not None else _raw_demosaic(raw, src.label, max_side, ctx)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_image(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    min_preview_side: int = 1024,
    max_side: int | None = None,
    budget: MemoryBudget | None = None,
    warnings: list | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    within: str | os.PathLike | None = None,
) -> Image.Image:
    """Load a photo as a fully decoded 8-bit RGB image.

    Args:
        source: a path, or the encoded file's bytes. A path is opened only as a regular file (a FIFO, device,
            socket or directory is refused at once, without reading).
        name: for bytes, the file name (its extension marks RAW files, and it labels errors); for a path, an
            alternative name whose extension is used (e.g. the original name of an uploaded temp file).
        min_preview_side: RAW only; the camera's embedded preview is used when its long side is at least this
            (None: always demosaic).
        max_side: downscale so the long side is <= max_side.
        budget: a MemoryBudget the decode reserves its estimated peak memory from (waiting for room); None =
            no budget.
        warnings: a list that receives damage the decoder papered over ("corrupt JPEG data: ...") and
            metadata ignored as unreadable; the image is still returned.
        max_bytes: a path's file must not be larger (ImageTooLarge).
        within: a path's file (links resolved) must lie in this folder.

    Raises ImageLoadError (a ValueError) with a human reason for anything that is not a readable image within
    MAX_PIXELS; ImageNotFound (missing file) and ImageTooLarge (over a size, pixel or memory limit, with the
    figures) are ImageLoadErrors too.
    """
    if max_side is not None and (not isinstance(max_side, int) or max_side < 1):
        raise ValueError(f"max_side must be a positive int or None, not {max_side!r}")
    if min_preview_side is not None and (not isinstance(min_preview_side, int) or min_preview_side < 0):
        raise ValueError(f"min_preview_side must be an int >= 0 or None, not {min_preview_side!r}")
    with _Source(source, name, max_bytes, within) as src:
        ctx = _Ctx(budget, warnings, src.size)
        try:
            if src.is_raw():
                return _load_raw(src, min_preview_side, max_side, ctx)
            return _decode_pillow(src.fp, src.label, src.path or "", max_side, ctx=ctx)
        except ImageLoadError:
            raise
        except MemoryError:
            raise ImageLoadError(src.label, "out of memory while decoding") from None
        except Exception as e:  # last line: callers must only ever see ImageLoadError
            log.debug("unexpected decode failure", exc_info=True)
            raise ImageLoadError(src.label, f"cannot decode image ({type(e).__name__}: {e})") from e


def image_info(source: str | os.PathLike | bytes, *, name: str | None = None) -> dict:
    """Header-only facts: {"format", "width", "height", "raw"}. Width and height are those of
    the image ``load_image`` returns at full size (EXIF orientation / RAW flip applied; for a
    RAW, the demosaiced sensor image, not the preview). Does not apply MAX_PIXELS, so an
    oversized file still reports its size. Raises ImageLoadError."""
    with _Source(source, name) as src:
        try:
            if src.is_raw():
                with _open_raw(src) as raw:
                    s = raw.sizes
                    w, h = s.width, s.height
                    if s.flip & 4:  # transposed
                        w, h = h, w
                fmt = src.ext[1:].upper() if src.ext in RAW_EXTENSIONS else "RAW"
                return {"format": fmt, "width": int(w), "height": int(h), "raw": True}
            try:
                im = _pil_open(src.fp, src.path or "")
            except Image.DecompressionBombError as e:
                raise ImageTooLarge(src.label, f"image too large ({e})") from None
            except (OSError, EOFError, ValueError) as e:
                raise ImageLoadError(src.label, f"truncated or corrupt image header ({e})") from None
            if im is None:
                src.fp.seek(0)
                if src.fp.read(4) in _TIFF_MAGIC:
                    return _tifffile_info(src)
                raise _not_an_image(src.fp, src.label)
            w, h = im.size
            if (_exif_orientation(im) or 1) >= 5:  # 5..8 swap width and height
                w, h = h, w
            return {"format": im.format, "width": w, "height": h, "raw": False}
        except ImageLoadError:
            raise
        except Exception as e:
            raise ImageLoadError(src.label, f"cannot read image header ({type(e).__name__}: {e})") from e


def _tifffile_info(src: _Source) -> dict:
    try:
        import tifffile

        with tifffile.TiffFile(_memory_stream(src.fp)) as tf:
            page = tf.pages.first
            w, h = page.imagewidth, page.imagelength
            if (page.tags.valueof(274) or 1) >= 5:
                w, h = h, w
    except Exception as e:
        raise ImageLoadError(src.label, f"unsupported or corrupt TIFF ({e})") from None
    return {"format": "TIFF", "width": int(w), "height": int(h), "raw": False}


def damage_warnings(source: str | os.PathLike | bytes, *, name: str | None = None) -> list[str]:
    """The header- and structure-level warnings ``load_image`` would give (damaged JPEG data, unreadable EXIF, an
    unusable ICC profile), without decoding a pixel: for a result answered from a cache. [] when the file cannot
    even be identified (``load_image`` reports that as an error)."""
    ctx = _Ctx()
    try:
        with _Source(source, name) as src:
            if src.is_raw():
                return []
            im = _pil_open(src.fp, src.path or "")
            if im is None:
                return []
            _exif_orientation(im, ctx)
            icc = im.info.get("icc_profile")
            if icc:
                try:
                    from PIL import ImageCms

                    ImageCms.ImageCmsProfile(io.BytesIO(icc))
                except Exception:
                    ctx.warn(_ICC_WARNING)
            if im.format in ("JPEG", "MPO"):
                src.fp.seek(0)
                for message in jpeg_damage(src.fp.read()):
                    ctx.warn(message)
    except Exception:  # not an image we can identify: nothing to add
        return []
    return ctx.warnings
