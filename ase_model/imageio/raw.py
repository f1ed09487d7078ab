"""Camera RAW through rawpy (LibRaw): the embedded preview when it is big enough, otherwise a demosaic."""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

from ..imagesafety import (
    ImageLoadError,
    ImageTooLarge,
)

try:  # a hard dependency, but keep plain images working if the wheel is broken
    import rawpy
except ImportError:  # pragma: no cover - exercised only on a broken install
    rawpy = None

from .decoding import (
    _FLIP_TO_ORIENTATION,
    _SLACK,
    _decode_pillow,
    _finish,
    _finish_cost,
    _fit,
    _to_uint8,
)
from .probe import MAX_PIXELS, _check_dims, _Ctx, _Source, _too_large

log = logging.getLogger("ase_model.imageio")  # one logger for the whole loader, as before the split

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
