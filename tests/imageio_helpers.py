"""What the imageio tests share: pixel comparisons, the reason of an ImageLoadError, and a DNG written by pidng
(also the hostile suite's valid DNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

__all__ = ["arr", "corr", "mad", "pidng_dng", "reason"]


def arr(im: Image.Image) -> np.ndarray:
    assert im.mode == "RGB"
    return np.asarray(im).astype(np.int32)


def mad(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


def corr(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])


def reason(exc_info) -> str:
    return exc_info.value.reason


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
