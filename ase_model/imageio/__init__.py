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

import io
import logging
import os

from PIL import Image

from ..imagesafety import (
    MAX_FILE_BYTES,
    ImageLoadError,
    ImageNotFound,
    ImageTooLarge,
    MemoryBudget,
    jpeg_damage,
)
from .decoding import _ICC_WARNING, _decode_pillow, _memory_stream
from .probe import (
    _TIFF_MAGIC,
    BACKGROUND,
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    RAW_EXTENSIONS,
    _Ctx,
    _exif_orientation,
    _not_an_image,
    _pil_open,
    _Source,
    is_supported,
)
from .raw import _load_raw, _open_raw

log = logging.getLogger("ase_model.imageio")  # one logger for the whole loader, as before the split

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
    oversized file still reports its size. Raises ImageLoadError.

    Args:
        source: a path, or the encoded file's bytes (as for ``load_image``).
        name: for bytes, the file name (its extension marks RAW files, and it labels errors); for a path, an
            alternative name whose extension is used.
    """
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
    even be identified (``load_image`` reports that as an error).

    Args:
        source: a path, or the encoded file's bytes (as for ``load_image``).
        name: for bytes, the file name; for a path, an alternative name whose extension is used.
    """
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
