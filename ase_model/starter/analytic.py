"""The analytic critic: measured, training-free properties of a photo and verdicts on them (the starter's teacher).

Every verdict is a threshold on a measurement, so a critique written from the verdicts is true of the image it
was measured on. The thresholds were calibrated on the real photos that ship offline (skimage.data astronaut,
coffee, chelsea, rocket, camera, coins, moon, motorcycle; sklearn china, flower) and on controlled degradations of
them (exposure in stops, Gaussian blur, desaturation, channel gains, Gaussian noise, rotation + crop), measured
both at 512 px and at the 224 px JPEG the dataset stores; see tests/test_starter_analytic.py for the flips.

Measurements (on a copy downscaled to at most WORK_SIZE px on the long side):
- exposure: Rec.709 luma of the sRGB values: mean, percentiles, fraction of clipped highlights (luma >= 0.97)
  and shadows (<= 0.03), and the clipped fraction inside the salient region (a blown subject).
- contrast: luma spread p95 - p5 (and RMS contrast, reported only).
- colour: Hasler-Süsstrunk colourfulness, 99th percentile of CIELAB chroma, mean HSV saturation.
- white balance: gray-edge illuminant estimate (van de Weijer et al. 2007, Minkowski p=6, sigma=1, on linear
  light, clipped pixels excluded) as log(R/B) ("warm") and log(G/sqrt(RB)) ("green"). Gray-edge is equivariant
  to channel gains, so a cast shifts it by the gain's log ratio; its value on scenes whose content is warm
  (an orange cat, an orange flower filling the frame) is warm too, which no no-reference estimator avoids.
- sharpness: RMS Laplacian / RMS gradient over the 10% strongest-gradient pixels. For an edge blurred by a
  Gaussian of sigma px this falls like 1/sigma whatever the edge's contrast, so it measures edge width in
  pixels and hardly depends on the scene (unlike the raw variance of the Laplacian, also reported).
- noise: Immerkær's fast estimate (1996) over the flatter half of the image (texture excluded), 0..255 units.
- tilt: probabilistic Hough segments on Canny edges, near-horizontal and near-vertical ones; the angle with the
  most (length-weighted) agreeing segments, trusted only when they are long in total and are the majority.
- composition: centroid of the top 10% of the spectral-residual saliency map against the centre and the four
  rule-of-thirds power points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

WORK_SIZE = 512

# ---- thresholds (calibration notes in the module docstring and the tests) ----
UNDER_P99 = 0.66        # underexposed: the brightest 1% of tones stay below this luma ...
UNDER_MEAN = 0.40       # ... and the mean luma is below this (a night scene with bright lights is not underexposed)
OVER_MEAN = 0.62        # overexposed: mean luma above this,
OVER_CLIP = 0.08        # or this fraction of blown highlights with mean luma above OVER_CLIP_MEAN,
OVER_CLIP_MEAN = 0.50
OVER_SUBJECT_CLIP = 0.25  # or this fraction of the salient region blown (a burnt-out subject on a dark ground)
HIGHLIGHT_CLIP = 0.025  # "clipped highlights" mention
SHARP_RATIO = 1.15      # sharp at or above; originals 1.4-2.6, Gaussian blur sigma 1 px at 512 px gives 0.57-0.92
NOISY_SIGMA = 5.5       # originals <= 3.0 (224 px JPEG), added noise sigma 12/255 reads 7.8-9.7
MONO_CHROMA = 6.0       # chroma p99 below: a black and white image
MUTED_CHROMA = 35.0     # chroma p99 below: muted (colour originals 41-81; 35% saturation 14-29)
VIVID_CF = 60.0         # Hasler-Süsstrunk "quite colourful" and above
OVERSAT_CF = 100.0      # past "highly colourful" (originals <= 86)
WARM_CAST = 0.33        # gray-edge log(R/B); neutral originals -0.05..0.31
WARM_NEUTRAL_B = 0.0    # and the near-neutral pixels' mean b* at least this (see judge)
COOL_CAST = -0.28
GREEN_CAST = 0.15       # gray-edge log(G/sqrt(RB)); originals -0.09..0.09
MAGENTA_CAST = -0.15
FLAT_SPREAD = 0.30      # luma p95 - p5
HARSH_SPREAD = 0.94     # and at least HARSH_CLIP of clipped highlights + shadows
HARSH_CLIP = 0.10
TILT_MIN_SUPPORT = 1.2  # total length of the agreeing segments, in image widths/heights
TILT_MIN_SHARE = 0.5    # fraction of all near-axis segment length that agrees
TILT_DEG = 1.5          # tilted at or beyond
TILT_MAX_DEG = 7.5      # a "tilt" steeper than this is a diagonal or perspective, not a crooked frame: no verdict
CENTRE_RADIUS = 0.12    # saliency centroid within this (fractions of the frame) of the centre: centred
THIRDS_RADIUS = 0.12    # ... of a power point: rule of thirds
EDGE_OFFSET = 0.30      # ... this far from the centre on either axis: off balance

# Every label judge() can give, per verdict (the phrasing templates and the tag map cover all of them).
VERDICT_LABELS: dict[str, tuple[str, ...]] = {
    "exposure": ("underexposed", "well exposed", "overexposed"),
    "highlights": ("clipped", "intact"),
    "sharpness": ("sharp", "soft"),
    "saturation": ("monochrome", "muted", "natural", "vivid", "oversaturated"),
    "white_balance": ("neutral", "warm cast", "cool cast", "green cast", "magenta cast"),
    "contrast": ("flat", "balanced", "harsh"),
    "noise": ("clean", "noisy"),
    "tilt": ("level", "tilted", "n/a"),
    "composition": ("rule of thirds", "centered", "off balance"),
}

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


@dataclass
class Analysis:
    measurements: dict[str, float]
    verdicts: dict[str, str]
    score: float
    notes: dict[str, float] = field(default_factory=dict)  # score terms, for inspection


def working_copy(image: Image.Image, size: int = WORK_SIZE) -> np.ndarray:
    """RGB uint8 array, downscaled (never upscaled) to `size` px on the long side."""
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


_V = np.arange(256, dtype=np.float64) / 255.0
_LINEAR_LUT = np.where(_V <= 0.04045, _V / 12.92, ((_V + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _exposure(rgbf: np.ndarray, y: np.ndarray, y_salient: np.ndarray) -> dict[str, float]:
    p01, p05, p50, p95, p99 = np.percentile(y[::2, ::2], [1, 5, 50, 95, 99])  # a quarter of the pixels is plenty
    blown = y >= 0.97
    return {
        "mean_luminance": float(y.mean()),
        "median_luminance": float(p50),
        "p01_luminance": float(p01),
        "p99_luminance": float(p99),
        "highlight_clip": float(blown.mean()),
        "shadow_clip": float((y <= 0.03).mean()),
        "subject_highlight_clip": float((y_salient >= 0.97).mean()) if y_salient.size else 0.0,
        "contrast_spread": float(p95 - p05),
        "contrast_rms": float(y.std()),
    }


def _colour(rgb: np.ndarray, rgbf: np.ndarray) -> dict[str, float]:
    import cv2

    r, g, b = (rgbf[::2, ::2, i] * 255.0 for i in range(3))  # global statistics: a quarter of the pixels
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    lab = cv2.cvtColor(np.ascontiguousarray(rgbf[::2, ::2]), cv2.COLOR_RGB2LAB)  # every 4th pixel is plenty
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    hsv_s = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    # Mean b* of the least chromatic 30% of mid-tone pixels: where the image's near-neutrals lean.
    mid = (lab[..., 0] > 15) & (lab[..., 0] < 95)
    if mid.sum() >= 16:
        low = mid & (chroma <= np.percentile(chroma[mid], 30))
        neutral_b = float(lab[..., 2][low].mean())
    else:
        neutral_b = 0.0
    return {
        "colorfulness": float(colourfulness),
        "chroma_p99": float(np.percentile(chroma, 99)),
        "mean_saturation": float(hsv_s.mean() / 255.0),
        "neutral_b": neutral_b,
    }


def _white_balance(rgb: np.ndarray) -> dict[str, float]:
    import cv2

    h, w = rgb.shape[:2]
    if max(h, w) > 256:  # an illuminant estimate needs no fine detail; half size halves the cost
        rgb = cv2.resize(rgb, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    lin = _LINEAR_LUT[rgb]
    peak = lin.max(axis=2)
    ok = (peak < 0.95) & (peak > 0.01)  # clipped pixels carry no illuminant information
    if ok.mean() < 0.05:
        return {"wb_warm": 0.0, "wb_green": 0.0}
    smooth = cv2.GaussianBlur(lin, (0, 0), 1.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    mag = np.sqrt(gx * gx + gy * gy)[ok]
    # Minkowski p=6 norm per channel; scale by the max first so the 6th power stays in range.
    mag /= max(float(mag.max()), 1e-12)
    mag3 = mag * mag * mag
    e = np.power((mag3 * mag3).mean(axis=0, dtype=np.float64), 1 / 6) + 1e-9
    le = np.log(e)
    return {"wb_warm": float(le[0] - le[2]), "wb_green": float(le[1] - 0.5 * (le[0] + le[2]))}


def _sharpness(y: np.ndarray) -> dict[str, float]:
    import cv2

    lap = cv2.Laplacian(y, cv2.CV_32F, ksize=1)
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3) / 8
    g2 = gx * gx + gy * gy
    strong = g2 >= np.percentile(g2[::2, ::2], 90)
    denom = float(g2[strong].mean())
    ratio = math.sqrt(float((lap[strong] ** 2).mean()) / denom) if denom > 1e-10 else 0.0
    return {"sharpness": ratio, "laplacian_variance": float(lap.var() * 1000.0)}


def _noise(y: np.ndarray) -> dict[str, float]:
    import cv2

    g = y * 255.0
    resp = np.abs(cv2.filter2D(g, -1, _IMMERKAER, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1)
    grad = np.hypot(gx, gy)[1:-1, 1:-1]
    flat = grad <= np.median(grad[::2, ::2])  # texture and edges would read as noise
    sigma = math.sqrt(math.pi / 2) / 6 * float(resp[flat].mean()) if flat.any() else 0.0
    return {"noise_sigma": sigma}


def _tilt(rgb: np.ndarray) -> dict[str, float]:
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    # Fixed smoothing: finer smoothing at small sizes brings out texture segments rather than real lines.
    edges = cv2.Canny(cv2.GaussianBlur(gray, (0, 0), 1.5), 30, 90)
    min_len = 0.2 * min(h, w)
    lines = cv2.HoughLinesP(edges, 1, np.pi / 360, threshold=int(min_len * 0.5), minLineLength=int(min_len),
                            maxLineGap=max(2, int(0.03 * min(h, w))))
    angles, weights = [], []
    if lines is not None:
        for x1, y1, x2, y2 in np.asarray(lines).reshape(-1, 4):
            a = math.degrees(math.atan2(-(float(y2) - y1), float(x2) - x1))  # counter-clockwise positive
            a = (a + 90.0) % 180.0 - 90.0
            length = math.hypot(float(x2) - x1, float(y2) - y1)
            if abs(a) <= 12:  # near-horizontal: a horizon counts a little more than a vertical
                angles.append(a)
                weights.append(1.5 * length / w)
            elif abs(abs(a) - 90) <= 12:
                angles.append(a - 90 if a > 0 else a + 90)
                weights.append(length / h)
    if not angles:
        return {"tilt_deg": 0.0, "tilt_support": 0.0, "tilt_share": 0.0}
    a, wt = np.array(angles), np.array(weights)
    best = (0.0, -1.0)
    for c in np.sort(a):  # the 2-degree window holding the most segment length
        m = np.abs(a - c) <= 1.0
        s = float(wt[m].sum())
        if s > best[1] + 1e-9:
            best = (float(np.average(a[m], weights=wt[m])), s)
    return {"tilt_deg": best[0], "tilt_support": best[1], "tilt_share": best[1] / float(wt.sum())}


def _composition(sal: np.ndarray) -> dict[str, float]:
    from ase_model.saliency import centroid

    top = np.where(sal >= np.percentile(sal, 90), sal, 0.0)
    x, y = centroid(top)
    thirds = min(math.hypot(x - px, y - py) for px in (1 / 3, 2 / 3) for py in (1 / 3, 2 / 3))
    return {"saliency_x": x, "saliency_y": y, "centre_distance": math.hypot(x - 0.5, y - 0.5),
            "thirds_distance": thirds}


def measure(image: Image.Image) -> dict[str, float]:
    """All measurements of a photo (floats; see the module docstring)."""
    from ase_model.saliency import spectral_residual

    rgb = working_copy(image)
    rgbf = rgb.astype(np.float32) / 255.0
    y = rgbf @ _LUMA
    # Saliency is a low-frequency map: compute and use it at <= 128 px.
    small = working_copy(Image.fromarray(rgb), 128)
    sal = spectral_residual(small, size=128)
    salient = sal >= np.percentile(sal, 90)
    y_small = (small.astype(np.float32) / 255.0) @ _LUMA
    m: dict[str, float] = {"width": float(rgb.shape[1]), "height": float(rgb.shape[0])}
    m.update(_exposure(rgbf, y, y_small[salient]))
    m.update(_colour(rgb, rgbf))
    m.update(_white_balance(rgb))
    m.update(_sharpness(y))
    m.update(_noise(y))
    m.update(_tilt(rgb))
    m.update(_composition(sal))
    return m


def judge(m: dict[str, float]) -> dict[str, str]:
    """Verdicts from measurements (pure thresholds: the same numbers always give the same words)."""
    v: dict[str, str] = {}
    mean = m["mean_luminance"]
    if m["p99_luminance"] < UNDER_P99 and mean < UNDER_MEAN:
        v["exposure"] = "underexposed"
    elif (mean > OVER_MEAN or (m["highlight_clip"] > OVER_CLIP and mean > OVER_CLIP_MEAN)
          or m["subject_highlight_clip"] > OVER_SUBJECT_CLIP):
        v["exposure"] = "overexposed"
    else:
        v["exposure"] = "well exposed"
    v["highlights"] = "clipped" if m["highlight_clip"] >= HIGHLIGHT_CLIP else "intact"
    v["sharpness"] = "sharp" if m["sharpness"] >= SHARP_RATIO else "soft"
    if m["chroma_p99"] < MONO_CHROMA:
        v["saturation"] = "monochrome"
    elif m["colorfulness"] >= OVERSAT_CF:
        v["saturation"] = "oversaturated"
    elif m["chroma_p99"] < MUTED_CHROMA:
        v["saturation"] = "muted"
    elif m["colorfulness"] >= VIVID_CF:
        v["saturation"] = "vivid"
    else:
        v["saturation"] = "natural"
    # The stronger of the two axes, each relative to its own threshold, names the cast. Warm scene content
    # (fur, petals, lamp-lit night skies) also reads warm on gray-edge, so "warm" also needs the image's
    # near-neutral pixels not to lean blue.
    warm, green = m["wb_warm"], m["wb_green"]
    axes = []
    if warm > 0 and m["neutral_b"] >= WARM_NEUTRAL_B:
        axes.append((warm / WARM_CAST, "warm cast"))
    elif warm < 0:
        axes.append((warm / COOL_CAST, "cool cast"))
    axes.append((green / GREEN_CAST, "green cast") if green > 0 else (green / MAGENTA_CAST, "magenta cast"))
    strength, cast = max(axes, key=lambda t: t[0])
    v["white_balance"] = cast if strength >= 1.0 and v["saturation"] != "monochrome" else "neutral"
    clip = m["highlight_clip"] + m["shadow_clip"]
    if m["contrast_spread"] < FLAT_SPREAD:
        v["contrast"] = "flat"
    elif m["contrast_spread"] >= HARSH_SPREAD and clip >= HARSH_CLIP:
        v["contrast"] = "harsh"
    else:
        v["contrast"] = "balanced"
    v["noise"] = "noisy" if m["noise_sigma"] >= NOISY_SIGMA else "clean"
    if (m["tilt_support"] >= TILT_MIN_SUPPORT and m["tilt_share"] >= TILT_MIN_SHARE
            and abs(m["tilt_deg"]) <= TILT_MAX_DEG):
        v["tilt"] = "tilted" if abs(m["tilt_deg"]) >= TILT_DEG else "level"
    else:
        v["tilt"] = "n/a"
    x, y = m["saliency_x"], m["saliency_y"]
    if m["centre_distance"] <= CENTRE_RADIUS:
        v["composition"] = "centered"
    elif m["thirds_distance"] <= THIRDS_RADIUS:
        v["composition"] = "rule of thirds"
    elif max(abs(x - 0.5), abs(y - 0.5)) >= EDGE_OFFSET:
        v["composition"] = "off balance"
    else:  # between the centre and a third: the nearer one describes it
        nearer_centre = m["centre_distance"] - CENTRE_RADIUS <= m["thirds_distance"] - THIRDS_RADIUS
        v["composition"] = "centered" if nearer_centre else "rule of thirds"
    return v


def score_terms(m: dict[str, float], v: dict[str, str]) -> dict[str, float]:
    """The score's terms. Score = clamp(7.0 + sum(terms), 1, 9.5), rounded to 0.1.

    7.0 is a clean, competent photo. Penalties: bad exposure -1.8 (-0.4 for clipped highlights alone); soft
    -1.5 and up to -0.6 more as the edges widen; noisy -1.0 and up to -0.5 more; oversaturated -0.8, muted -0.5,
    vivid +0.3; any cast -0.7; flat -0.6, harsh -0.4; tilted -0.8 (up to -0.4 more for large angles); off
    balance -0.5, rule of thirds +0.5.
    """
    t: dict[str, float] = {}
    if v["exposure"] != "well exposed":
        t["exposure"] = -1.8
    elif v["highlights"] == "clipped":
        t["exposure"] = -0.4
    if v["sharpness"] == "soft":
        t["sharpness"] = -1.5 - 0.6 * min(1.0, max(0.0, (SHARP_RATIO - m["sharpness"]) / 0.6))
    if v["noise"] == "noisy":
        t["noise"] = -1.0 - 0.5 * min(1.0, max(0.0, (m["noise_sigma"] - NOISY_SIGMA) / 10.0))
    t["saturation"] = {"oversaturated": -0.8, "muted": -0.5, "vivid": 0.3}.get(v["saturation"], 0.0)
    if v["white_balance"] != "neutral":
        t["white_balance"] = -0.7
    t["contrast"] = {"flat": -0.6, "harsh": -0.4}.get(v["contrast"], 0.0)
    if v["tilt"] == "tilted":
        t["tilt"] = -0.8 - 0.4 * min(1.0, max(0.0, (abs(m["tilt_deg"]) - 3.0) / 5.0))
    t["composition"] = {"off balance": -0.5, "rule of thirds": 0.5}.get(v["composition"], 0.0)
    return {k: x for k, x in t.items() if x}


def score_of(m: dict[str, float], v: dict[str, str]) -> float:
    return round(min(9.5, max(1.0, 7.0 + sum(score_terms(m, v).values()))), 1)


def analyze(image: Image.Image) -> Analysis:
    """Measure a photo, judge it, score it."""
    m = measure(image)
    v = judge(m)
    return Analysis(measurements=m, verdicts=v, score=score_of(m, v), notes=score_terms(m, v))
