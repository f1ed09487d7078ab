"""Saliency datasets (SALICON, MIT1003, paired folders) and readers for their maps and fixations
(docs/training.md, "The loaders in detail")."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import (
    IMAGE_EXTS,
    SALIENCY_FORMATS,
    LoadReport,
    SaliencySample,
    _finish,
    _first_existing,
    _natural_key,
    _parse_spec,
    _split_names,
    hash_split,
    normalise_split,
)

__all__ = ["load_saliency", "read_fixation_map", "read_fixations"]

def _image_files(folder: Path) -> list[Path]:
    try:
        return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                      key=lambda p: _natural_key(p.stem))
    except OSError:
        return []


def _by_stem(folder: Path | None, exts: tuple[str, ...], suffix: str = "") -> dict[str, Path]:
    """stem (minus `suffix`) -> file, for files in `folder` with one of `exts`."""
    out: dict[str, Path] = {}
    if folder is None or not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in exts and p.stem.endswith(suffix):
            out.setdefault(p.stem[: len(p.stem) - len(suffix)] if suffix else p.stem, p)
    return out


def _pair_saliency(images: dict[str, Path], maps: dict[str, Path], fixes: dict[str, Path], split: str,
                   report: LoadReport, need_map: bool, keep: Callable[[str], bool]) -> list[SaliencySample]:
    out = []
    for sid in sorted(images, key=_natural_key):
        if not keep(sid):
            continue
        m, f = maps.get(sid), fixes.get(sid)
        if need_map and m is None and f is None:
            report.malformed.append((sid, "no saliency map or fixations"))
            continue
        out.append(SaliencySample(sid, images[sid].resolve(), m.resolve() if m else None, f.resolve() if f else None))
    for sid in sorted((set(maps) | set(fixes)) - set(images), key=_natural_key):
        if keep(sid):
            report.missing_images.append(f"{sid} ({(maps.get(sid) or fixes.get(sid))})")
    report.loaded = len(out)
    return out


def load_saliency(spec: str, split: str = "train") -> tuple[list[SaliencySample], LoadReport]:
    """Load a saliency dataset split; returns the samples (natural id order) and the report.

    Args:
        spec: "salicon:PATH", "mit1003:PATH" or "folder:IMAGES_DIR,MAPS_DIR[,FIX_DIR]".
        split: train, val or test (usual spellings accepted, see normalise_split).
    """
    fmt, raw = _parse_spec(spec, SALIENCY_FORMATS)
    s = normalise_split(split)
    if s is None:
        raise ValueError(f"unknown split {split!r}: use train, val or test")
    report = LoadReport(fmt, raw, s)
    map_exts = IMAGE_EXTS + (".npy",)
    if fmt == "salicon":
        root = Path(raw)
        if not root.is_dir():
            raise FileNotFoundError(f"salicon: {root} is not a folder")
        sub = next((n for n in _split_names(s) if (root / "images" / n).is_dir()), s)
        images = {p.stem: p for p in _image_files(root / "images" / sub)}
        maps_dir, fix_dir = root / "maps" / sub, root / "fixations" / sub
        maps = _by_stem(maps_dir, map_exts)
        fixes = _by_stem(fix_dir, (".mat", ".png", ".jpg", ".npy"))
        # test has no ground truth: only demand maps where the split has a maps folder
        samples = _pair_saliency(images, maps, fixes, s, report, maps_dir.is_dir() or fix_dir.is_dir(), lambda _: True)
    elif fmt == "mit1003":
        root = Path(raw)
        if not root.is_dir():
            raise FileNotFoundError(f"mit1003: {root} is not a folder")
        stim = _first_existing([root / "ALLSTIMULI", root / "stimuli"]) or root
        fm = _first_existing([root / "ALLFIXATIONMAPS", root / "fixationmaps"])
        images = {p.stem: p for p in _image_files(stim)}
        maps = _by_stem(fm, map_exts, "_fixMap")
        fixes = _by_stem(fm, map_exts, "_fixPts")
        samples = _pair_saliency(images, maps, fixes, s, report, True, lambda sid: hash_split(sid) == s)
    else:
        dirs = [Path(os.path.expanduser(d.strip())) for d in raw.split(",")]
        if len(dirs) not in (2, 3) or not all(d.is_dir() for d in dirs):
            raise FileNotFoundError(f"folder: expected IMAGES_DIR,MAPS_DIR[,FIXATIONS_DIR] folders, got {raw!r}")
        images = {p.stem: p for p in _image_files(dirs[0])}
        maps = _by_stem(dirs[1], map_exts)
        fixes = _by_stem(dirs[2], (".mat", ".npy") + IMAGE_EXTS) if len(dirs) == 3 else {}
        samples = _pair_saliency(images, maps, fixes, s, report, True, lambda _: True)
    _finish(report)
    return samples, report


def _read_gray(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float64)
            return a / (65535.0 if a.max() > 255 else 255.0)
        return np.asarray(im.convert("L"), dtype=np.float64) / 255.0


def read_fixation_map(path: str | os.PathLike) -> np.ndarray:
    """A continuous saliency / fixation-density map as float32 in [0, 1].

    Args:
        path: an image (8- or 16-bit grayscale, or colour converted to gray) or a .npy array.
    """
    p = Path(path)
    if p.suffix.lower() == ".npy":
        a = np.asarray(np.load(p), dtype=np.float64)
        a = a.mean(axis=2) if a.ndim == 3 else a
        a = np.clip(np.nan_to_num(a), 0, None)
        if a.max() > 1:
            a = a / a.max()
    else:
        a = _read_gray(p)
    return a.astype(np.float32)


def _fixations_from_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    mat = loadmat(str(path))
    if "gaze" in mat:
        res = np.asarray(mat.get("resolution", [[480, 640]])).ravel()
        h, w = int(res[0]), int(res[1])
        out = np.zeros((h, w), dtype=bool)
        for subject in np.asarray(mat["gaze"]).ravel():
            pts = np.asarray(subject["fixations"], dtype=np.float64).reshape(-1, 2)
            pts = pts[np.isfinite(pts).all(axis=1)]
            xs = np.round(pts[:, 0]).astype(int) - 1  # MATLAB coordinates are 1-based (x, y)
            ys = np.round(pts[:, 1]).astype(int) - 1
            ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
            out[ys[ok], xs[ok]] = True
        return out
    # other datasets store the binary map itself (e.g. "fixLocs"): take the first 2-D numeric array
    for k, v in mat.items():
        if (not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype.kind in "biuf"
                and v.size > 4):
            return v > 0
    raise ValueError(f"{path}: no 'gaze' struct or 2-D fixation array")


def read_fixations(path: str | os.PathLike) -> np.ndarray:
    """A binary (H, W) fixation map: from a binary image (.png/.jpg; JPEG noise removed by thresholding at half
    the maximum), a .npy array (> 0), or a .mat (SALICON's per-observer fixation lists, or a 2-D array).

    Args:
        path: the fixations file (.png, .jpg, .npy or .mat).
    """
    p = Path(path)
    suf = p.suffix.lower()
    if suf == ".mat":
        return _fixations_from_mat(p)
    if suf == ".npy":
        a = np.asarray(np.load(p))
        return (a[..., 0] if a.ndim == 3 else a) > 0
    a = _read_gray(p)
    mx = a.max()
    return a > mx / 2 if mx > 0 else np.zeros(a.shape, dtype=bool)
