"""The eight defect edits a photographer's mistakes look like, with the strength drawn from a realistic range.

    edited, params = apply_edit(photo, "underexpose", random.Random(0))

Used by the starter dataset (ranking pairs: a photo and its defect edit, the edit must score lower) and by
bench/starter_quality.py (held-out photos and their edits). Every strength is relative to the image's size, so
an edit means the same thing on a 512 px photo and a 4000 px one.

| kind         | what it does                                                        | strength drawn from      |
|--------------|---------------------------------------------------------------------|--------------------------|
| underexpose  | linear-light gain                                                   | -1.5 .. -2.5 stops       |
| overexpose   | linear-light gain                                                   | +1.5 .. +2.5 stops       |
| blur         | Gaussian blur, sigma as a share of the long side                    | 0.6 .. 1.2 %             |
| desaturate   | colour kept                                                         | 0 .. 30 %                |
| cool_cast    | linear-light gains (blue up, red down), log R/B shift                | 0.5 .. 0.9               |
| tilt         | rotation, then the largest upright crop of the same aspect          | 5 .. 12 degrees          |
| noise        | Gaussian noise, sigma in 0..1 units at a 512 px long side (scaled)  | 0.05 .. 0.10             |
| cut_crop     | a tight crop whose edge passes through the salient region           | 55 .. 75 % of each side  |
"""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

EDIT_KINDS = ("underexpose", "overexpose", "blur", "desaturate", "cool_cast", "tilt", "noise", "cut_crop")


def _r(x: float) -> float:
    return round(float(x), 4)


def salient_centroid(image: Image.Image) -> tuple[float, float]:
    """Centroid (x, y) of the top tenth of the spectral-residual saliency map, as fractions of the frame: where
    the analytic critic puts the picture's weight."""
    from ase_model.saliency import centroid, spectral_residual

    sal = spectral_residual(image, size=128)
    return centroid(np.where(sal >= np.percentile(sal, 90), sal, 0.0))


def cut_crop(image: Image.Image, keep: float, side: str, centre: tuple[float, float] | None = None) -> Image.Image:
    """Crop `keep` of each side so that the frame's `side` edge ("left", "right", "top", "bottom") runs through
    the salient centroid (`centre`, computed when not given): the main interest is cut by the frame."""
    w, h = image.size
    cx, cy = centre or salient_centroid(image)
    cw, ch = keep * w, keep * h
    # The other axis: centred on the centroid, inside the photo.
    x0 = min(max(cx * w - cw / 2, 0.0), w - cw)
    y0 = min(max(cy * h - ch / 2, 0.0), h - ch)
    if side == "left":
        x0 = min(max(cx * w, 0.0), w - cw)
    elif side == "right":
        x0 = min(max(cx * w - cw, 0.0), w - cw)
    elif side == "top":
        y0 = min(max(cy * h, 0.0), h - ch)
    else:
        y0 = min(max(cy * h - ch, 0.0), h - ch)
    return image.crop((round(x0), round(y0), round(x0 + cw), round(y0 + ch)))


def cut_room(cx: float, cy: float) -> dict[str, float]:
    """For each side, the share of the frame a crop keeps when that side's edge runs through (cx, cy)."""
    return {"left": 1 - cx, "right": cx, "top": 1 - cy, "bottom": cy}


def apply_edit(image: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, dict]:
    """`kind` from EDIT_KINDS applied to an RGB photo at a strength drawn from `rng`; (edited, parameters)."""
    from .dataset import channel_gains, exposure, gaussian_noise, rotate_crop

    img = image.convert("RGB")
    w, h = img.size
    if kind in ("underexpose", "overexpose"):
        stops = rng.uniform(1.5, 2.5) * (-1 if kind == "underexpose" else 1)
        return exposure(img, stops), {"stops": _r(stops)}
    if kind == "blur":
        share = rng.uniform(0.006, 0.012)
        return img.filter(ImageFilter.GaussianBlur(share * max(w, h))), {"sigma_share": _r(share)}
    if kind == "desaturate":
        kept = rng.uniform(0.0, 0.3)
        return ImageEnhance.Color(img).enhance(kept), {"colour_kept": _r(kept)}
    if kind == "cool_cast":
        s = rng.uniform(0.5, 0.9)
        return channel_gains(img, (math.exp(-s / 2), 1.0, math.exp(s / 2))), {"log_rb": _r(-s)}
    if kind == "tilt":
        deg = rng.choice((-1, 1)) * rng.uniform(5.0, 12.0)
        return rotate_crop(img, deg), {"degrees": _r(deg)}
    if kind == "noise":
        sigma = rng.uniform(0.05, 0.10)
        scaled = sigma * max(1.0, max(w, h) / 512)  # area averaging down to 512 px divides sigma by the ratio
        return gaussian_noise(img, scaled, rng.getrandbits(63)), {"sigma_at_512": _r(sigma)}
    if kind == "cut_crop":
        centre = salient_centroid(img)
        room = cut_room(*centre)
        # The side nearest the centroid that still keeps 55 % of the frame (else the roomiest one).
        ok = [s for s, r in room.items() if r >= 0.55]
        side = min(ok, key=room.get) if ok else max(room, key=room.get)
        keep = min(rng.uniform(0.55, 0.75), max(room[side], 0.55))
        return cut_crop(img, keep, side, centre), {"keep": _r(keep), "side": side}
    raise ValueError(f"unknown edit {kind!r}; one of {', '.join(EDIT_KINDS)}")


__all__ = ["EDIT_KINDS", "apply_edit", "cut_crop", "cut_room", "salient_centroid"]
