"""RAW decode benchmark: embedded-preview fast path vs. full demosaic in ``load_image``.

Builds a realistic camera-like DNG in a temp dir (24 MP Bayer mosaic, 14 bits in 16-bit
samples, plus an embedded 1620 px JPEG preview, laid out like a camera DNG: IFD0 = preview,
SubIFD = raw CFA image), then times ``ase_model.imageio.load_image`` both ways.

    python bench/raw_decode.py [--repeats 3] [--mp 24]

``run(repeats=3) -> dict`` is imported by bench/model_overhead.py; importing this module has
no side effects. ``write_dng`` is also used by tests/test_imageio_raw_and_limits.py, because pidng cannot
embed a preview image.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["write_dng", "run", "main"]

# --------------------------------------------------------------------------------------------
# Minimal DNG writer (TIFF-EP structure, little-endian, uncompressed CFA data).
# --------------------------------------------------------------------------------------------

# TIFF field types -> struct code of one number (a rational is two of them).
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
_FMT = {_BYTE: "B", _SHORT: "H", _LONG: "I", _RATIONAL: "I", _SRATIONAL: "i"}

# XYZ(D65) -> linear sRGB. Used as ColorMatrix1, so the "camera" is a linear-sRGB sensor and a
# correct demosaic reproduces the source photo's colours.
_XYZ_TO_SRGB = (
    (3.2406, -1.5372, -0.4986),
    (-0.9689, 1.8758, 0.0415),
    (0.0557, -0.2040, 1.0570),
)


def _ifd(entries: dict[int, tuple[int, object]], offset: int) -> bytes:
    """Serialise one IFD placed at file offset ``offset`` (next-IFD pointer = 0).

    entries: tag -> (type, values); values is a str for ASCII, else a sequence (pairs for
    rationals). Values longer than 4 bytes go into a data area right after the IFD.
    """
    n = len(entries)
    data_start = offset + 2 + 12 * n + 4
    head = bytearray(struct.pack("<H", n))
    data = bytearray()
    for tag in sorted(entries):
        typ, values = entries[tag]
        if typ == _ASCII:
            raw = str(values).encode("ascii") + b"\0"
            count = len(raw)
        else:
            rational = typ in (_RATIONAL, _SRATIONAL)
            flat = [v for pair in values for v in pair] if rational else list(values)
            raw = struct.pack("<%d%s" % (len(flat), _FMT[typ][0]), *flat)
            count = len(values)
        if len(raw) <= 4:
            head += struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0")
        else:
            head += struct.pack("<HHII", tag, typ, count, data_start + len(data))
            data += raw + b"\0" * (-len(raw) % 4)  # keep word alignment
    head += struct.pack("<I", 0)
    return bytes(head + data)


def _srgb_to_linear(rgb8: np.ndarray) -> np.ndarray:
    lut = np.arange(256) / 255.0
    lut = np.where(lut <= 0.04045, lut / 12.92, ((lut + 0.055) / 1.055) ** 2.4)
    return lut.astype(np.float32)[rgb8]


def _rationals(values, den=10000):
    return [(int(round(v * den)), den) for v in values]


def write_dng(
    path: str | os.PathLike,
    rgb: np.ndarray,
    *,
    preview: np.ndarray | None = None,
    preview_format: str = "jpeg",
    orientation: int = 1,
    white_level: int = 16383,
    black_level: int = 0,
) -> Path:
    """Write ``rgb`` (HxWx3 uint8 sRGB, H and W even) as an uncompressed RGGB Bayer DNG.

    The mosaic is the photo linearised and sampled through an RGGB colour filter, scaled to
    ``black_level..white_level`` (14-bit by default, stored in 16-bit samples). With
    ``preview`` (HxWx3 uint8) the file is laid out like a camera DNG: IFD0 holds the preview
    (JPEG with ``preview_format="jpeg"``, uncompressed RGB with ``"bitmap"``), NewSubfileType=1,
    and points to the raw CFA image through a SubIFD. ``orientation`` is the TIFF Orientation
    tag (LibRaw turns it into ``sizes.flip``).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("rgb must be an HxWx3 uint8 array")
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError("width and height must be even for an RGGB mosaic")

    # Bayer mosaic, RGGB: R at (0,0), G at (0,1) and (1,0), B at (1,1).
    lin = _srgb_to_linear(rgb)
    mosaic = np.empty((h, w), np.float32)
    mosaic[0::2, 0::2] = lin[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = lin[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = lin[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = lin[1::2, 1::2, 2]
    del lin
    mosaic *= white_level - black_level
    mosaic += black_level + 0.5
    raw_bytes = mosaic.astype("<u2").tobytes()
    del mosaic

    prev_bytes = b""
    if preview is not None:
        preview = np.asarray(preview, dtype=np.uint8)
        if preview_format == "jpeg":
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(preview).save(buf, "JPEG", quality=90)
            prev_bytes = buf.getvalue()
        elif preview_format == "bitmap":
            prev_bytes = np.ascontiguousarray(preview).tobytes()
        else:
            raise ValueError(f"preview_format must be 'jpeg' or 'bitmap', not {preview_format!r}")

    # Layout: header | preview strip | raw strip | raw IFD | IFD0. The image data comes first
    # so every offset is known before the IFDs are serialised; the header is patched last.
    prev_off = 8
    raw_off = prev_off + len(prev_bytes) + (-len(prev_bytes) % 4)
    ifd_off = raw_off + len(raw_bytes)

    dng_tags: dict[int, tuple[int, object]] = {
        271: (_ASCII, "ASE"),  # Make
        272: (_ASCII, "Synthetic Bayer"),  # Model
        274: (_SHORT, [orientation]),
        305: (_ASCII, "ase bench/raw_decode.py"),
        50706: (_BYTE, [1, 4, 0, 0]),  # DNGVersion
        50707: (_BYTE, [1, 1, 0, 0]),  # DNGBackwardVersion
        50708: (_ASCII, "ASE Synthetic Bayer"),  # UniqueCameraModel
        50721: (_SRATIONAL, _rationals([v for row in _XYZ_TO_SRGB for v in row])),  # ColorMatrix1
        50778: (_SHORT, [21]),  # CalibrationIlluminant1 = D65
        50728: (_RATIONAL, _rationals([1.0, 1.0, 1.0])),  # AsShotNeutral
    }
    raw_tags: dict[int, tuple[int, object]] = {
        254: (_LONG, [0]),  # NewSubfileType: main image
        256: (_LONG, [w]),
        257: (_LONG, [h]),
        258: (_SHORT, [16]),
        259: (_SHORT, [1]),  # uncompressed
        262: (_SHORT, [32803]),  # PhotometricInterpretation: CFA
        273: (_LONG, [raw_off]),
        277: (_SHORT, [1]),
        278: (_LONG, [h]),
        279: (_LONG, [len(raw_bytes)]),
        284: (_SHORT, [1]),
        33421: (_SHORT, [2, 2]),  # CFARepeatPatternDim
        33422: (_BYTE, [0, 1, 1, 2]),  # CFAPattern: RGGB
        50714: (_LONG, [black_level]),  # BlackLevel
        50717: (_LONG, [white_level]),  # WhiteLevel
    }
    if preview is None:
        ifds = _ifd({**raw_tags, **dng_tags}, ifd_off)
        ifd0_off = ifd_off
    else:
        raw_ifd = _ifd(raw_tags, ifd_off)
        ifd0_off = ifd_off + len(raw_ifd)
        ph, pw = preview.shape[:2]
        jpeg = preview_format == "jpeg"
        ifd0 = _ifd(
            {
                **dng_tags,
                254: (_LONG, [1]),  # NewSubfileType: reduced-resolution preview
                256: (_LONG, [pw]),
                257: (_LONG, [ph]),
                258: (_SHORT, [8, 8, 8]),
                259: (_SHORT, [7 if jpeg else 1]),  # JPEG (new style) or uncompressed
                262: (_SHORT, [6 if jpeg else 2]),  # YCbCr (JPEG) or RGB
                273: (_LONG, [prev_off]),
                277: (_SHORT, [3]),
                278: (_LONG, [ph]),
                279: (_LONG, [len(prev_bytes)]),
                284: (_SHORT, [1]),
                330: (_LONG, [ifd_off]),  # SubIFDs -> raw image
            },
            ifd0_off,
        )
        ifds = raw_ifd + ifd0

    path = Path(path)
    with open(path, "wb") as f:
        f.write(b"II*\0" + struct.pack("<I", ifd0_off))
        f.write(prev_bytes + b"\0" * (-len(prev_bytes) % 4))
        f.write(raw_bytes)
        f.write(ifds)
    return path


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------


def _camera_like_dng(
    directory: Path, megapixels: float, preview_side: int
) -> tuple[Path, tuple[int, int]]:
    """A 3:2 Bayer DNG of about ``megapixels`` MP with a ``preview_side`` px JPEG preview."""
    from PIL import Image
    from skimage import data

    w = int(round((megapixels * 1e6 * 1.5) ** 0.5)) // 2 * 2
    h = int(round(w / 1.5)) // 2 * 2
    photo = Image.fromarray(data.coffee())  # a real photo, enlarged to sensor size
    full = np.asarray(photo.resize((w, h), Image.Resampling.BILINEAR))
    pw = preview_side
    preview = np.asarray(photo.resize((pw, int(round(pw / 1.5))), Image.Resampling.LANCZOS))
    path = write_dng(directory / "bench.dng", full, preview=preview)
    return path, (w, h)


def _median_time(fn, repeats: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def run(repeats: int = 3, megapixels: float = 24.0, preview_side: int = 1620) -> dict:
    """Time ``load_image`` on a camera-like DNG: embedded preview vs. full demosaic.

    Returns a dict with medians in seconds: ``preview_s`` (default call: the 1620 px preview
    qualifies), ``demosaic_s`` (min_preview_side above the preview: full-size AHD demosaic),
    ``half_size_s`` (demosaic for max_side=1024: LibRaw half_size, no interpolation), and
    ``speedup`` = demosaic_s / preview_s.
    """
    from ase_model.imageio import load_image

    with tempfile.TemporaryDirectory(prefix="ase-raw-bench-") as tmp:
        t0 = time.perf_counter()
        path, (w, h) = _camera_like_dng(Path(tmp), megapixels, preview_side)
        build_s = time.perf_counter() - t0
        load_image(path)  # warm-up: imports, page cache
        prev_s, prev_runs, prev_im = _median_time(lambda: load_image(path), max(repeats, 3))
        dem_s, dem_runs, dem_im = _median_time(lambda: load_image(path, min_preview_side=10**9), repeats)
        half_s, half_runs, half_im = _median_time(
            lambda: load_image(path, min_preview_side=10**9, max_side=1024), repeats
        )
        size_mb = path.stat().st_size / 1e6
    return {
        "raw_size": (w, h),
        "megapixels": round(w * h / 1e6, 1),
        "file_mb": round(size_mb, 1),
        "build_s": build_s,
        "repeats": repeats,
        "preview_s": prev_s,
        "preview_size": prev_im.size,
        "demosaic_s": dem_s,
        "demosaic_size": dem_im.size,
        "half_size_s": half_s,
        "half_size_size": half_im.size,
        "speedup": dem_s / prev_s,
        "speedup_half": half_s / prev_s,
        "runs": {"preview": prev_runs, "demosaic": dem_runs, "half_size": half_runs},
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mp", type=float, default=24.0, help="sensor megapixels (default 24)")
    ap.add_argument("--preview", type=int, default=1620, help="embedded preview long side")
    args = ap.parse_args(argv)
    r = run(args.repeats, args.mp, args.preview)
    w, h = r["raw_size"]
    print(f"RAW: {w}x{h} ({r['megapixels']} MP) Bayer DNG, {r['file_mb']} MB, "
          f"{args.preview} px JPEG preview; median of {r['repeats']} runs; {os.cpu_count()} CPUs")
    print(f"{'path':<34}{'output':>12}{'median s':>11}{'vs preview':>12}")
    rows = [
        ("embedded preview (default)", r["preview_size"], r["preview_s"], 1.0),
        ("full demosaic (AHD)", r["demosaic_size"], r["demosaic_s"], r["speedup"]),
        ("demosaic half_size, max_side=1024", r["half_size_size"], r["half_size_s"], r["speedup_half"]),
    ]
    for name, (ow, oh), s, ratio in rows:
        print(f"{name:<34}{f'{ow}x{oh}':>12}{s:>11.3f}{ratio:>11.1f}x")
    verdict = "OK" if r["speedup"] >= 10 else "BELOW TARGET"
    print(f"preview vs full demosaic: {r['speedup']:.1f}x (target >= 10x: {verdict})")
    return r


if __name__ == "__main__":
    main()
