"""A photo's rotation from its straight lines: line segments and an edge-orientation histogram.

    from ase_model.starter.tilt import tilt
    m = tilt(rgb)  # tilt_deg, tilt_support, tilt_share, tilt_level_support, tilt_agreement, tilt_hist_*

The analytic critic (analytic.py) measures with these and judges the tilt from them; a rotation reads
counter-clockwise positive, in degrees. See analytic.py's module docstring for how the verdict uses them.
"""

from __future__ import annotations

import numpy as np

TILT_RANGE_DEG = 15.0   # lines this far off an axis vote; a steeper "tilt" is a diagonal, not a crooked frame


def line_segments(gray: np.ndarray) -> np.ndarray:
    """(N, 4) straight segments x1, y1, x2, y2 (OpenCV's line segment detector; Hough as a fallback).

    Args:
        gray: grey levels, uint8 (H, W).
    """
    import cv2

    try:
        lines = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD).detect(gray)[0]
    except (AttributeError, cv2.error):  # builds without LSD
        edges = cv2.Canny(cv2.GaussianBlur(gray, (0, 0), 1.5), 30, 90)
        n = int(0.1 * min(gray.shape))
        lines = cv2.HoughLinesP(edges, 1, np.pi / 360, threshold=n // 2, minLineLength=n, maxLineGap=3)
    return np.zeros((0, 4), np.float32) if lines is None else np.asarray(lines, np.float32).reshape(-1, 4)


_TILT_GRID = np.arange(-TILT_RANGE_DEG, TILT_RANGE_DEG + 1e-6, 0.25)


def tilt(rgb: np.ndarray) -> dict[str, float]:
    """The frame's rotation from its dominant near-horizontal and near-vertical lines.

    Every segment at least 6 % of the short side long votes, with its length (in frame widths for horizontals,
    heights for verticals) times its length in quarters of the short side, for its deviation from the nearest
    axis; the 2-degree window with the most votes is the tilt. Perspective bends receding horizontals but
    leaves verticals upright in a level shot, so verticals count double. Confidence: the winning window's votes
    (support) and their share of all near-axis votes, how much it beats the level hypothesis (the window around
    0), and edge_orientation's independent reading (tilt_hist_*).

    Args:
        rgb: the photo, RGB uint8 (H, W, 3), at the analytic critic's working size.
    """
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    seg = line_segments(gray)
    dx, dy = seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]
    length = np.hypot(dx, dy)
    ang = (np.degrees(np.arctan2(-dy, dx)) + 90.0) % 180.0 - 90.0  # counter-clockwise positive, -90..90
    horizontal = np.abs(ang) <= TILT_RANGE_DEG + 1
    dev = np.where(horizontal, ang, np.where(ang > 0, ang - 90.0, ang + 90.0))
    keep = (np.abs(dev) <= TILT_RANGE_DEG + 1) & (length >= 0.06 * min(h, w))
    # Long lines are the reliable ones (short segments at small sizes are mostly texture): a vote grows with
    # the square of the length.
    wt = (np.where(horizontal, length / w, 2.0 * length / h) * length / (0.25 * min(h, w)))[keep]
    dev, horizontal = dev[keep], horizontal[keep]
    none = {"tilt_deg": 0.0, "tilt_support": 0.0, "tilt_share": 0.0, "tilt_level_support": 0.0,
            "tilt_agreement": 0.0, **edge_orientation(gray)}
    if not wt.size:
        return none
    votes = np.array([wt[np.abs(dev - c) <= 1.0].sum() for c in _TILT_GRID])
    i = int(np.argmax(votes))
    near = np.abs(dev - _TILT_GRID[i]) <= 1.0
    deg = float(np.average(dev[near], weights=wt[near]))
    level = float(wt[np.abs(dev) <= 1.0].sum())
    # Both families agreeing on the angle is the strongest evidence (a rotated frame turns them together).
    agree = min(float(wt[near & horizontal].sum()), float(wt[near & ~horizontal].sum()) / 2.0)
    return {"tilt_deg": deg, "tilt_support": float(votes[i]), "tilt_share": float(votes[i] / wt.sum()),
            "tilt_level_support": level, "tilt_agreement": agree, **edge_orientation(gray)}


def edge_orientation(gray: np.ndarray, size: int = 256) -> dict[str, float]:
    """The dominant axis of the edges, from a histogram of edge orientations folded onto 0..90 degrees.

    Canny edge pixels of a <= `size` px copy vote with their gradient magnitude for their orientation modulo 90
    (a horizontal and a vertical line vote for the same bin, as a rotation turns both). The peak within
    TILT_RANGE_DEG of level gives the angle (counter-clockwise positive), its height over the histogram's mean
    how line-like the picture is (1 = every orientation alike), and the level bin over the peak whether the
    level reading competes. An estimate independent of the line segments: where both agree, fewer and
    shorter lines suffice.

    Args:
        gray: the photo's grey levels, uint8 (H, W).
        size: the long side it is measured at (smaller copies only; the Gaussian also hides JPEG blocks).
    """
    import cv2

    h, w = gray.shape
    scale = size / max(h, w)
    if scale < 1:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    smooth = cv2.GaussianBlur(gray, (0, 0), 1.0)  # also hides the JPEG block grid, which is axis-aligned
    g = smooth.astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1)
    edges = cv2.Canny(smooth, 40, 100) > 0
    edges[:3], edges[-3:], edges[:, :3], edges[:, -3:] = False, False, False, False
    none = {"tilt_hist_deg": 0.0, "tilt_hist_peak": 0.0, "tilt_hist_level": 1.0}
    if edges.sum() < 50:
        return none
    theta = np.degrees(np.arctan2(-gy[edges], gx[edges])) % 90.0
    hist = np.bincount(np.floor(theta).astype(int) % 90, weights=np.hypot(gx[edges], gy[edges]), minlength=90)
    hist = np.roll(hist, 1) + hist + np.roll(hist, -1)  # 3-degree smoothing, circular
    span = int(TILT_RANGE_DEG)
    window = np.r_[90 - span + 1:90, 0:span]
    i = int(window[np.argmax(hist[window])])
    y0, y1, y2 = hist[(i - 1) % 90], hist[i], hist[(i + 1) % 90]
    den = y0 - 2 * y1 + y2
    offset = 0.5 * (y0 - y2) / den if den < 0 else 0.0  # parabolic peak refinement
    deg = (i if i < 45 else i - 90) + 0.5 + offset  # bin i covers i..i+1 degrees
    if y1 <= 0:
        return none
    return {"tilt_hist_deg": float(deg), "tilt_hist_peak": float(y1 / hist.mean()),
            "tilt_hist_level": float(hist[0] / y1)}


__all__ = ["TILT_RANGE_DEG", "edge_orientation", "line_segments", "tilt"]
