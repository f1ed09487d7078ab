"""Classic, training-free saliency (OpenCV contrib) and helpers for saliency maps.

Used as IASM's optional prior channel, as pseudo-labels for IASM pretraining, and by the analytic critic.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def spectral_residual(image: Image.Image | np.ndarray, size: int = 256) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang 2007) of an RGB image: float32 map in [0, 1] at the image's size.

    Computed at `size` px on the long side (it is a low-frequency map) and resized back.

    Args:
        image: a PIL image (converted to RGB) or an RGB uint8 array (H, W, 3).
        size: the long side, in pixels, at which the map is computed.
    """
    import cv2

    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    detector = cv2.saliency.StaticSaliencySpectralResidual_create()
    ok, sal = detector.computeSaliency(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    if not ok:
        sal = np.ones(small.shape[:2], np.float32)
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), sigmaX=max(1.0, 0.02 * max(sal.shape)))
    sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
    return normalize_map(sal)


def normalize_map(sal: np.ndarray) -> np.ndarray:
    """Scale a saliency map to [0, 1] (a constant map becomes all zeros).

    Args:
        sal: a map of any numeric range.
    """
    sal = np.asarray(sal, dtype=np.float32)
    lo, hi = float(sal.min()), float(sal.max())
    return (sal - lo) / (hi - lo) if hi > lo else np.zeros_like(sal)


def to_probability(sal: np.ndarray) -> np.ndarray:
    """A non-negative map rescaled to sum to 1 (uniform if it is all zeros).

    Args:
        sal: a map; negative values count as 0.
    """
    sal = np.clip(np.asarray(sal, dtype=np.float64), 0, None)
    total = sal.sum()
    return (sal / total if total > 0 else np.full_like(sal, 1.0 / sal.size)).astype(np.float32)


def centroid(sal: np.ndarray) -> tuple[float, float]:
    """Centre of mass of a map as (x, y) fractions of width and height.

    Args:
        sal: a 2-D map (see `to_probability`).
    """
    p = to_probability(sal)
    h, w = p.shape
    ys, xs = np.mgrid[0:h, 0:w]
    return float((p * (xs + 0.5)).sum() / w), float((p * (ys + 0.5)).sum() / h)


def to_png(sal: np.ndarray) -> bytes:
    """A [0, 1] map as an 8-bit grayscale PNG (the daemon's and the CLI's wire/disk form).

    Args:
        sal: a 2-D map in [0, 1]; outside values are clipped.
    """
    import io

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(sal, 0, 1) * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def from_png(data: bytes) -> np.ndarray:
    """Inverse of `to_png`: float32 map in [0, 1].

    Args:
        data: the PNG's bytes (any mode; converted to grayscale).
    """
    import io

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def summary(sal: np.ndarray) -> dict:
    """A few numbers that describe a map: centroid and peak (x, y fractions) and spread (0 = a point, ~0.4 = flat).

    Args:
        sal: a 2-D map (see `to_probability`).
    """
    p = to_probability(sal)
    h, w = p.shape
    cx, cy = centroid(sal)
    py, px = np.unravel_index(int(np.argmax(p)), p.shape)
    ys, xs = np.mgrid[0:h, 0:w]
    spread = float(np.sqrt((p * (((xs + 0.5) / w - cx) ** 2 + ((ys + 0.5) / h - cy) ** 2)).sum()))
    return {"centroid": [round(cx, 4), round(cy, 4)], "peak": [round((px + 0.5) / w, 4), round((py + 0.5) / h, 4)],
            "spread": round(spread, 4)}
