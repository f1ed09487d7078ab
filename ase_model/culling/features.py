"""Per-photo culling features: what cull() needs to group and rank a photo, computed once, kept as JSON.

    feats = features_for(critic, ["IMG_0001.jpg", "IMG_0002.jpg"])   # one critique each, plus ~30-60 ms
    json.dumps(feats[0].to_dict())                                   # the store keeps this beside the critique

A `CullFeatures` holds the capture time (EXIF DateTimeOriginal + SubSecTimeOriginal, else the file's mtime;
`time_source` says which), a compact visual descriptor for near-duplicate grouping (see `descriptor`), the
critic's score and verdicts, and defect measurements taken where they matter: edge sharpness on the critique's
salient region and on the rest, motion-blur anisotropy, clipped highlights and shadows, noise and exposure (in
stops, so that frames of one burst compare). The measurements reuse the analytic critic's estimators
(ase_model.starter.analytic) on a 512 px copy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

GRID = 8  # detail and saliency are also kept on a GRID x GRID grid, so a group can share one subject region
DESCRIPTOR_SIDE = 16  # the descriptor is a DESCRIPTOR_SIDE x DESCRIPTOR_SIDE thumbnail
MEASURE_SIZE = 512  # the long side the defect measurements are taken at (the analytic critic's WORK_SIZE)
_LOG_FLOOR = 0.01  # linear light; keeps log() of deep shadows from amplifying noise
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
_V = np.arange(256, dtype=np.float64) / 255.0
_LINEAR_LUT = np.where(_V <= 0.04045, _V / 12.92, ((_V + 0.055) / 1.055) ** 2.4).astype(np.float32)

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL, _SUBSEC_ORIGINAL, _DATETIME = 0x9003, 0x9291, 0x0132


@dataclass
class CullFeatures:
    """Everything cull() reads about one photo (JSON-able: `to_dict` / `from_dict`).

    Args:
        path: the photo's path, as given.
        capture_time: seconds since the epoch (local camera time read as UTC when from EXIF; only gaps matter).
        time_source: "exif" (DateTimeOriginal, with SubSecTimeOriginal when present), "mtime" or "none".
        descriptor: unit-norm log-luminance thumbnail (DESCRIPTOR_SIDE**2 floats, rounded to 3 decimals).
        score: the critic's score (0..10).
        verdicts: the critic's attribute verdicts (e.g. {"sharpness": "soft"}); empty without an attribute head.
        measurements: subject_detail, background_detail, frame_detail (see _detail), subject_sharpness,
            background_sharpness, frame_sharpness, motion_anisotropy, laplacian_variance (the analytic critic's),
            noise_sigma, highlight_clip, shadow_clip, exposure_ev, subject_ev.
        grid: per cell of a GRID x GRID grid (row-major): "g2" mean squared gradient, "y" and "y2" mean luma and
            mean squared luma, "saliency" the critique's mean saliency; cull() measures detail on the group's
            common salient cells with them.
    """

    path: str
    capture_time: float
    time_source: str
    descriptor: list[float]
    score: float
    verdicts: dict[str, str] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    grid: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CullFeatures:
        return cls(
            path=str(d["path"]), capture_time=float(d["capture_time"]), time_source=str(d["time_source"]),
            descriptor=[float(x) for x in d["descriptor"]], score=float(d["score"]),
            verdicts=dict(d.get("verdicts") or {}),
            measurements={k: float(v) for k, v in (d.get("measurements") or {}).items()},
            grid={k: [float(x) for x in v] for k, v in (d.get("grid") or {}).items()},
        )


def _parse_exif_time(value, subsec) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.strptime(value.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    seconds = (t - datetime(1970, 1, 1)).total_seconds()
    digits = "".join(ch for ch in str(subsec or "") if ch.isdigit())
    return seconds + (float("0." + digits) if digits else 0.0)


def capture_time(path: str | os.PathLike) -> tuple[float, str]:
    """When the photo was taken: (seconds, "exif") from DateTimeOriginal + SubSecTimeOriginal (the IFD0
    DateTime as a fallback), else (the file's mtime, "mtime"), else (0.0, "none") for a file that cannot be
    stat'ed.

    Args:
        path: the photo's file (a RAW file Pillow cannot parse falls back to its mtime).
    """
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
            t = _parse_exif_time(sub.get(_DATETIME_ORIGINAL), sub.get(_SUBSEC_ORIGINAL))
            if t is None:
                t = _parse_exif_time(exif.get(_DATETIME), None)
            if t is not None:
                return t, "exif"
    except Exception:  # any unreadable header (RAW formats Pillow does not know): the file time will do
        pass
    try:
        return os.stat(path).st_mtime, "mtime"
    except OSError:
        return 0.0, "none"


def descriptor(image: Image.Image) -> list[float]:
    """The near-duplicate descriptor: a DESCRIPTOR_SIDE^2 thumbnail of log linear luminance, mean removed and
    scaled to unit norm, so that the cosine of two descriptors is their correlation.

    A gain (an exposure change) adds a constant to log luminance, which the mean removal cancels; area
    averaging to 16 px removes noise and most blur; a small shift or crop moves every cell by a fraction of a
    cell. What is left is the layout of light and dark: the scene.

    Args:
        image: the decoded photo.
    """
    small = image.convert("RGB").resize((DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), Image.BOX, reducing_gap=2.0)
    lum = _LINEAR_LUT[np.asarray(small)] @ _LUMA
    d = np.log(lum + _LOG_FLOOR).ravel()
    d -= d.mean()
    norm = float(np.linalg.norm(d))
    d = d / norm if norm > 1e-9 else np.zeros_like(d)
    return [round(float(x), 3) for x in d]


def similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine of two descriptors (their correlation; 1 = the same scene, ~0 = unrelated)."""
    va, vb = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if va.shape != vb.shape or not va.size:
        return 0.0
    na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
    return float(va @ vb) / (na * nb) if na > 0 and nb > 0 else 0.0


def _gradient_energy(y: np.ndarray) -> np.ndarray:
    """Squared Sobel gradient of the luma (per pixel), computed once for the detail ratio and the grid."""
    import cv2

    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3) / 8
    return gx * gx + gy * gy


def reduced(image: Image.Image) -> Image.Image:
    """The photo cheaply shrunk (integer box reduction) to between one and two times MEASURE_SIZE, so the
    measurement copy and the descriptor do not each resample a full-size decode; area averaging composes, so
    the measurements barely move."""
    factor = max(image.size) // MEASURE_SIZE
    return image.reduce(factor) if factor >= 2 else image


def _detail(y: np.ndarray, subject: np.ndarray, g2: np.ndarray | None = None) -> dict[str, float]:
    """Detail over a fixed region: RMS gradient / luma standard deviation. Blur lowers the gradients far more
    than the spread of tones; a gain scales both (it cancels). Unlike a ratio over the strongest edges (the
    analytic critic's sharpness), blurring part of the region lowers it: the edges left sharp cannot take over.
    Only comparable between frames of one scene (it also grows with the scene's texture and with noise)."""
    g2 = _gradient_energy(y) if g2 is None else g2

    def ratio(where: np.ndarray) -> float:
        if where.sum() < 16:
            return 0.0
        spread = float(y[where].std())
        return math.sqrt(float(g2[where].mean())) / spread if spread > 1e-4 else 0.0

    return {"subject_detail": ratio(subject), "background_detail": ratio(~subject),
            "frame_detail": ratio(np.ones_like(subject))}


def grid_stats(y: np.ndarray, saliency: np.ndarray, g2: np.ndarray | None = None) -> dict[str, list[float]]:
    """Per-cell moments for region detail at cull time (see CullFeatures.grid).

    Args:
        y: luma in [0, 1] (the measurement copy).
        saliency: the critique's map (any resolution, the photo's aspect).
        g2: the luma's squared gradient, when already computed (`_gradient_energy`).
    """
    import cv2

    g2 = _gradient_energy(y) if g2 is None else g2

    def cells(a: np.ndarray) -> list[float]:
        small = cv2.resize(np.ascontiguousarray(a, dtype=np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA)
        return [float(f"{v:.5g}") for v in small.ravel()]

    return {"g2": cells(g2), "y": cells(y), "y2": cells(y * y), "saliency": cells(saliency)}


def region_detail(grid: dict[str, list[float]], cells: np.ndarray) -> float:
    """_detail's ratio over the given cells (a boolean GRID*GRID mask) from a photo's grid moments.

    Args:
        grid: CullFeatures.grid.
        cells: which cells make the region.
    """
    if not cells.any():
        return 0.0
    g2, y, y2 = (np.asarray(grid[k], np.float64)[cells] for k in ("g2", "y", "y2"))
    var = float(y2.mean() - y.mean() ** 2)
    return math.sqrt(float(g2.mean())) / math.sqrt(var) if var > 1e-8 else 0.0


def measure(image: Image.Image, saliency: np.ndarray) -> dict[str, float]:
    """The defect measurements of a photo, with its salient region from `saliency` (the critique's map).

    Args:
        image: the decoded photo.
        saliency: a float map in [0, 1] at the photo's aspect ratio (any resolution).
    """
    return _measure(image, saliency)[0]


def _measure(image: Image.Image, saliency: np.ndarray) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(measurements, grid) from one downscaled copy."""
    from ase_model.starter.analytic import _noise, _sharpness, _subject_mask, working_copy

    rgb = working_copy(reduced(image), MEASURE_SIZE)
    lin = _LINEAR_LUT[rgb] @ _LUMA
    y = (rgb.astype(np.float32) / 255.0) @ _LUMA
    sal = np.asarray(saliency, np.float32)
    if sal.ndim != 2 or sal.size < 4 or float(sal.max()) <= float(sal.min()):
        sal = np.ones((8, 8), np.float32)  # no usable map: the whole frame is the subject
        sal[2:6, 2:6] = 2.0
    s = _sharpness(y, sal)
    subject = _subject_mask(sal, y.shape)
    g2 = _gradient_energy(y)
    detail = _detail(y, subject, g2)
    m = {
        **detail,
        "subject_sharpness": s["subject_sharpness"],
        "background_sharpness": s["background_sharpness"],
        "frame_sharpness": s["frame_sharpness"],
        "motion_anisotropy": s["motion_anisotropy"],
        "laplacian_variance": s["laplacian_variance"],
        "noise_sigma": _noise(y)["noise_sigma"],
        "highlight_clip": float((y >= 0.97).mean()),
        "shadow_clip": float((y <= 0.03).mean()),
        # Exposure in stops (log2 of mean linear light): one burst's frames differ by their exposure offsets.
        "exposure_ev": math.log2(float(lin.mean()) + 1e-4),
        "subject_ev": math.log2(float(lin[subject].mean() if subject.any() else lin.mean()) + 1e-4),
    }
    return {k: round(float(v), 4) for k, v in m.items()}, grid_stats(y, np.asarray(saliency, np.float32), g2)


def features_from(path: str | os.PathLike, image: Image.Image, critique) -> CullFeatures:
    """CullFeatures of a decoded photo and its Critique (no model call; ~30-60 ms at 1024 px on a busy CPU).

    Args:
        path: the photo's file (for its capture time).
        image: the decoded photo.
        critique: its ase_model.critic.Critique (score, saliency, verdicts).
    """
    t, source = capture_time(path)
    small = reduced(image)
    measurements, grid = _measure(small, critique.saliency)
    return CullFeatures(
        path=str(path), capture_time=t, time_source=source, descriptor=descriptor(small),
        score=round(float(critique.score), 4), verdicts=dict(critique.verdicts or {}),
        measurements=measurements, grid=grid,
    )


def features_for(critic, paths: Sequence[str | os.PathLike], batch_size: int = 4, progress=None,
                 errors: dict | None = None) -> list[CullFeatures]:
    """Critique new photos through `critic` and compute their CullFeatures; each photo is decoded once.

    Args:
        critic: an ase_model.critic.Critic.
        paths: the photos' files.
        batch_size: photos per critique batch.
        progress: called as progress(done, total) after each batch.
        errors: when given, unreadable files go here ({path: message}) and are left out of the result;
            otherwise the first one raises.
    """
    from ase_model.imageio import ImageLoadError, load_image

    out: list[CullFeatures] = []
    paths = [Path(p) for p in paths]
    for start in range(0, len(paths), batch_size):
        chunk, images = [], []
        for p in paths[start:start + batch_size]:
            try:
                images.append(load_image(p))
                chunk.append(p)
            except ImageLoadError as e:
                if errors is None:
                    raise
                errors[str(p)] = str(e)
        if images:
            for p, im, c in zip(chunk, images, critic.critique(images, names=[str(p) for p in chunk])):
                out.append(features_from(p, im, c))
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    return out


__all__ = [
    "GRID", "CullFeatures", "capture_time", "descriptor", "features_for", "features_from", "grid_stats", "measure",
    "region_detail", "similarity",
]
