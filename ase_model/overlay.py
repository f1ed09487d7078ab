"""Saliency overlays as pure functions: a map + a photo -> an image (numpy + Pillow only, no state).

    compose(photo_rgb, saliency, opacity=0.6, mode="heat")   # uint8 RGB in -> uint8 RGB out

Shared by the viewer (gui/overlay.py wraps it for QImage), the demo report and anything else that draws a
map. It imports nothing else of the package, so the viewer can load it without torch.

The map comes from the daemon at the photo's aspect ratio but a lower resolution; it is upsampled smoothly
(bicubic on floats) to the photo's size, stretched over its own range, and coloured with inferno (a perceptual
colormap: lightness rises monotonically, so "brighter = more weight" reads the same to everyone, in grey too).

Heat mode draws the map on a log scale (`heat_scale`): HEAT_DECADES decades below the map's peak fill the colour
ramp, so 1 % of the peak is the ramp's bottom, 10 % its middle and the peak its top. A model's maps are peaky (on
the starter model's maps of real photos the median pixel has ~2 % of the peak weight and the 95th percentile
~15 %), and on a linear scale only the peak showed, as a small orange dot that read as flare or dust; on the log
scale the second and third areas of interest show too (docs/img/heat-scale.png compares the two). Contours
stay on the linear scale (their levels are fractions of the peak).

The overlay is a straight alpha blend, out = photo * (1 - a) + colour * a, with a = opacity * w(map): in heat
mode w grows with the map (low-weight areas stay clear), in contour mode w is 1 on iso-lines (anti-aliased
edges) and 0 elsewhere.
`overlay_layer` returns colour + w as one RGBA image, so the viewer can draw it over the photo with Qt at any
opacity without recomputing (the same blend, done by the painter), and export uses `compose`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["CONTOUR_LEVELS", "HEAT_CLEAR", "HEAT_DECADES", "MODES", "blend", "colormap", "compose", "heat_legend",
           "heat_scale", "overlay_layer", "upsample"]

MODES = ("heat", "contour")
CONTOUR_LEVELS = (0.2, 0.4, 0.6, 0.8)
# Heat mode: decades of weight below the peak that the colour ramp spans (log scale), and the point of the ramp
# below which the photo stays clear (0.15 of a 2-decade ramp = 10 ** ((0.15 - 1) * 2) ~ 2 % of the peak).
HEAT_DECADES = 2.0
HEAT_CLEAR = 0.15

# inferno sampled at 0, 1/8, ..., 1 (matplotlib's values); linear interpolation between them is within a few
# levels of the full table, and saves a matplotlib dependency.
_INFERNO = np.array([
    (0x00, 0x00, 0x04), (0x1F, 0x0C, 0x48), (0x55, 0x0F, 0x6D), (0x88, 0x22, 0x6A), (0xBA, 0x36, 0x55),
    (0xE3, 0x59, 0x33), (0xF9, 0x8E, 0x09), (0xF8, 0xC9, 0x32), (0xFC, 0xFF, 0xA4),
], dtype=np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """inferno: values in [0, 1] (any shape) -> uint8 RGB (shape + (3,)).

    Args:
        values: numbers in [0, 1]; outside values are clipped.
    """
    lut = _lut()
    idx = np.clip(np.rint(np.asarray(values, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
    return lut[idx]


_LUT: np.ndarray | None = None


def _lut() -> np.ndarray:
    global _LUT
    if _LUT is None:
        x = np.linspace(0, 1, 256)
        xp = np.linspace(0, 1, len(_INFERNO))
        _LUT = np.stack([np.interp(x, xp, _INFERNO[:, c]) for c in range(3)], axis=-1).round().astype(np.uint8)
    return _LUT


_ALPHA: np.ndarray | None = None


def _heat_alpha() -> np.ndarray:
    """Heat-mode weight per map level (0..255): the weakest 15 % of the map stays clear, and the weight rises
    slower than linear above it, so the photo reads through everywhere but the peaks, which carry the colour
    (a linear weight veils the whole photo in the colormap's purple mid-tones)."""
    global _ALPHA
    if _ALPHA is None:
        x = np.linspace(0, 1, 256)
        _ALPHA = np.rint(np.clip((x - HEAT_CLEAR) / (1 - HEAT_CLEAR), 0, 1) ** 1.5 * 255).astype(np.uint8)
    return _ALPHA


def heat_scale(m: np.ndarray) -> np.ndarray:
    """Heat mode's scale: a map stretched to [0, 1] (peak = 1) -> its place on the colour ramp, log scale.

    1 + log10(m) / HEAT_DECADES, clipped to [0, 1]: with 2 decades, 1 % of the peak -> 0, 10 % -> 0.5, the peak -> 1.

    Args:
        m: map values in [0, 1] (see `upsample`), any shape.
    """
    m = np.asarray(m, dtype=np.float32)
    floor = np.float32(10.0 ** -HEAT_DECADES)
    return np.clip(1.0 + np.log10(np.maximum(m, floor)) / np.float32(HEAT_DECADES), 0.0, 1.0).astype(np.float32)


_HEAT_INDEX: np.ndarray | None = None


def _heat_index() -> np.ndarray:
    """uint8 ramp index (`heat_scale`) for each 16-bit map level: 1 % of the peak is level 655, fine enough."""
    global _HEAT_INDEX
    if _HEAT_INDEX is None:
        _HEAT_INDEX = np.rint(heat_scale(np.arange(65536, dtype=np.float32) / 65535) * 255).astype(np.uint8)
    return _HEAT_INDEX


def heat_legend(steps: int = 9) -> dict:
    """What heat mode's colours mean, for a legend drawn anywhere (the report's CSS bar, a widget).

    Returns a dict: "stops" (ramp position in [0, 1], "#rrggbb") along the colormap; "clear" (the ramp position
    below which the photo shows untouched); "ticks" (ramp position, label) at each decade below the peak
    ("1 %", "10 %", "peak"); "low" and "high" (what the two ends mean, in words).

    Args:
        steps: how many colour stops to sample along the ramp (at least 2).
    """
    xs = np.linspace(0.0, 1.0, max(2, int(steps)))
    stops = [(round(float(x), 4), "#%02x%02x%02x" % tuple(int(c) for c in colormap(x))) for x in xs]
    decades = int(round(HEAT_DECADES))
    ticks = [(round(1.0 - k / HEAT_DECADES, 4), "peak" if k == 0 else f"{10.0 ** -k * 100:g} %")
             for k in range(decades, -1, -1)]
    return {"stops": stops, "clear": HEAT_CLEAR, "ticks": ticks,
            "low": f"little weight (under {10.0 ** (HEAT_CLEAR * HEAT_DECADES - HEAT_DECADES) * 100:.0f} % of the "
                   "peak: no colour)",
            "high": "where the critique's attention peaks"}


def upsample(saliency: np.ndarray, width: int, height: int) -> np.ndarray:
    """The map resized to (height, width), bicubic, stretched to [0, 1] over its own min..max (float32).

    Args:
        saliency: a 2-D map (or H x W x C, of which the first channel is used), any numeric range.
        width: the width to resize to.
        height: the height to resize to.
    """
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.ndim == 3:
        sal = sal[..., 0]
    if sal.ndim != 2 or sal.size == 0:
        raise ValueError(f"saliency must be a 2-D map, not shape {sal.shape}")
    if min(sal.shape) >= 8:
        # a [1 2 1] blur first: the map arrives as an 8-bit PNG, and once stretched its quantisation steps would
        # show as ripples in the contours and seams in the heat map
        pad = np.pad(sal, 1, mode="edge")
        sal = (pad[:-2] + 2 * pad[1:-1] + pad[2:])[:, 1:-1] / 4
        pad = np.pad(sal, 1, mode="edge")
        sal = (pad[:, :-2] + 2 * pad[:, 1:-1] + pad[:, 2:])[1:-1] / 4
    up = np.asarray(Image.fromarray(np.ascontiguousarray(sal, dtype=np.float32)).resize((int(width), int(height)),
                                                                                        Image.BICUBIC))
    # stretch to the map's own range: what matters is where the weight is *relative* to the rest of this photo
    # (a map that is nearly flat, e.g. 0.82..1.0, would otherwise tint the whole photo). A flat map says
    # nothing, so it draws nothing.
    lo, hi = float(sal.min()), float(sal.max())
    if hi - lo < 1e-3:
        return np.zeros(up.shape, dtype=np.float32)
    return np.clip((up - lo) / (hi - lo), 0.0, 1.0)


def _contours(m: np.ndarray, levels=CONTOUR_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased iso-lines of m: (coverage float32 HxW in [0, 1], level value per pixel). A pixel's distance
    to the line m = L is about |m - L| / |grad m| pixels; coverage falls from 1 to 0 across the line's edge, so
    lines are smooth at any angle and equally wide everywhere (~1/600 of the long side, at least 1.5 px)."""
    gy, gx = np.gradient(m)
    grad = np.sqrt(gx * gx + gy * gy)
    # where the map is nearly flat (a change of less than the map's range over 2x the image), an iso-line is
    # just ripple around a level and would fill whole patches: draw none there
    flat = grad < 0.5 / max(m.shape)
    grad = np.maximum(grad, 1e-9)
    half = max(1.5, max(m.shape) / 1200)
    cover = np.zeros(m.shape, dtype=np.float32)
    level = np.zeros(m.shape, dtype=np.float32)
    for lv in levels:
        c = np.clip(half + 0.5 - np.abs(m - lv) / grad, 0.0, 1.0)
        c[flat] = 0.0
        take = c > cover
        cover[take] = c[take]
        level[take] = lv
    return cover, level


def overlay_layer(saliency: np.ndarray, width: int, height: int, mode: str = "heat") -> np.ndarray:
    """RGBA uint8 (height, width, 4): colour and per-pixel weight of the overlay before opacity.

    Args:
        saliency: the 2-D map, at any size (see `upsample`).
        width: the photo's width.
        height: the photo's height.
        mode: one of MODES: "heat" (the map as colour, on `heat_scale`'s log scale) or "contour" (iso-lines at
            CONTOUR_LEVELS of the linear map).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    m = upsample(saliency, width, height)
    out = np.empty((int(height), int(width), 4), dtype=np.uint8)
    if mode == "heat":
        # the map quantised to 16 bits -> the ramp's 8-bit index through one table (a log per pixel is slow on
        # 50 MP), then two table look-ups for colour and weight
        idx = _heat_index()[(m * 65535 + 0.5).astype(np.uint16)]  # m is in [0, 1]: +0.5 rounds
        out[..., :3] = np.take(_lut(), idx, axis=0)
        out[..., 3] = _heat_alpha()[idx]
    else:
        cover, level = _contours(m)
        out[..., :3] = colormap(0.35 + 0.65 * level)  # skip inferno's near-black end: lines must show on shadows
        out[..., 3] = np.rint(cover * 255).astype(np.uint8)
    return out


def blend(photo_rgb: np.ndarray, layer: np.ndarray, opacity: float) -> np.ndarray:
    """photo (H, W, 3) uint8 with an `overlay_layer` at `opacity` in [0, 1] -> uint8 (H, W, 3).

    Args:
        photo_rgb: the photo, uint8 (H, W, 3) (a fourth channel is ignored).
        layer: an `overlay_layer` of the same height and width.
        opacity: 0 (the photo alone) to 1 (the layer at its own weights); clipped to [0, 1].
    """
    opacity = float(np.clip(opacity, 0.0, 1.0))
    if layer.shape[:2] != photo_rgb.shape[:2]:
        raise ValueError(f"layer {layer.shape[:2]} and photo {photo_rgb.shape[:2]} differ in size")
    if opacity == 0.0:
        return np.array(photo_rgb[..., :3], dtype=np.uint8, copy=True)
    a = layer[..., 3:4].astype(np.float32) * (opacity / 255.0)
    p = photo_rgb[..., :3].astype(np.float32)
    return np.rint(p + (layer[..., :3].astype(np.float32) - p) * a).astype(np.uint8)


def compose(photo_rgb: np.ndarray, saliency: np.ndarray, opacity: float = 0.6, mode: str = "heat") -> np.ndarray:
    """(H, W, 3|4) uint8 photo with the saliency map drawn over it -> uint8 RGB at the photo's size.

    Args:
        photo_rgb: the photo, uint8 (H, W, 3) or (H, W, 4).
        saliency: the 2-D map, at any size.
        opacity: of the overlay, in [0, 1].
        mode: "heat" or "contour" (see `overlay_layer`).
    """
    rgb = np.asarray(photo_rgb)[..., :3]
    if rgb.dtype != np.uint8:
        raise ValueError(f"photo must be uint8, not {rgb.dtype}")
    h, w = rgb.shape[:2]
    return blend(rgb, overlay_layer(saliency, w, h, mode), opacity)
