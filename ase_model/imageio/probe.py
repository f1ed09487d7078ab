"""Identifying a photo before decoding it (ase_model.imageio's first step).

Supported extensions, the opened source, format sniffing, dimensions from the header.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from typing import BinaryIO

from PIL import Image, ImageFile

from ..imagesafety import (
    MAX_FILE_BYTES,
    ImageLoadError,
    ImageTooLarge,
    MemoryBudget,
    open_regular,
)

try:  # a hard dependency, but keep plain images working if the wheel is broken
    import rawpy
except ImportError:  # pragma: no cover - exercised only on a broken install
    rawpy = None


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
    """True if ``path`` has an image or RAW extension we load (case-insensitive).

    Args:
        path: a file name or path; only its extension is looked at.
    """
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

