"""The analytic critic: measured, training-free properties of a photo and verdicts on them (the starter's teacher).

Every verdict is a threshold on a measurement, so a critique written from the verdicts is true of the image it
was measured on. The thresholds were calibrated on the real photos that ship offline (skimage.data astronaut,
coffee, chelsea, rocket, camera, coins, moon, motorcycle; sklearn china, flower) and on the defect edits of
edits.py at random strengths (exposure +-1.5..2.5 stops, blur, desaturation, a blue cast, tilt 5..12 degrees,
noise, a crop through the subject), measured at 512 px and at the 224 px JPEG the dataset stores; see
bench/teacher_edits.py (the table per edit) and tests/test_starter_analytic.py.

Measurements (on a copy downscaled to at most WORK_SIZE px on the long side):
- exposure: Rec.709 luma of the sRGB values: mean, percentiles, fraction of clipped highlights (luma >= 0.97, or
  two of the three channels at >= 0.97: a blown sky under a blue cast stays blown) and shadows (<= 0.03), and the
  clipped fraction inside the salient region (a blown subject).
- contrast: luma spread p95 - p5 (and RMS contrast, reported only).
- colour: Hasler-Süsstrunk colourfulness, 99th percentile of CIELAB chroma, mean HSV saturation, and the chroma
  measured around the near-neutral point instead of grey (balanced_chroma_p99: the colour left once a cast is
  discounted; the score's colour credit uses it, so a cast never earns colour).
- white balance: gray-edge illuminant estimate (van de Weijer et al. 2007, Minkowski p=6, sigma=1, on linear
  light, clipped pixels excluded) as log(R/B) ("warm") and log(G/sqrt(RB)) ("green"), and as one vector in
  that plane (cast_strength in units of the thresholds, cast_angle: 0 warm, 90 green, 180 cool, -90 magenta);
  beside it the CIELAB a*, b* of the least chromatic 30% of mid-tones (neutral_a, neutral_b: where the
  near-neutral surfaces lean, which a warm subject such as skin or fur does not move; clearly blue near-neutrals
  name a cool cast on their own where gray-edge is not warm). Gray-edge is equivariant
  to channel gains, so a cast shifts it by the gain's log ratio; its value on scenes whose content is warm
  (an orange cat, an orange flower filling the frame) is warm too, which no no-reference estimator avoids.
- sharpness: RMS Laplacian / RMS gradient over the 10% strongest-gradient pixels. For an edge blurred by a
  Gaussian of sigma px this falls like 1/sigma whatever the edge's contrast, so it measures edge width in
  pixels and hardly depends on the scene. Measured over the frame, on the subject (the most salient quarter)
  and on the rest; the verdict's `sharpness` is the sharper of frame and subject, so a shallow depth of field
  is not "soft". motion_anisotropy: how one-directional the strongest edges' gradients are (motion blur).
- noise: Immerkær's fast estimate (1996) over the flatter half of the image (texture excluded), 0..255 units.
- tilt: OpenCV's line segment detector; segments near an axis vote with their length for their deviation from
  it (verticals double: perspective bends receding horizontals, not verticals of a level shot); the winning
  2-degree window gives the angle, its votes and share the confidence, and it must beat the level window.
  Beside it, an edge-orientation histogram (Canny edges' gradient directions folded onto 0..90 degrees, weighted
  by magnitude) reads the dominant axis from short edges too; where both readings agree on the angle, weaker
  line support suffices. Neither reads the rotate-and-crop edit's artefacts: it leaves no fill, no border.
- framing: saliency density in a band along each side of the frame against the frame's: a salient region
  running into an edge ("cut off").
- composition: centroid of the top 10% of the spectral-residual saliency map against the centre and the four
  rule-of-thirds power points, stated only when that top tenth is compact (saliency_spread).

The score (score_terms) adds, to a base, a continuous term per attribute that grows with its measurement and a
step where a defect verdict fires, so that every defect edit lowers the score, also on a photo that already had
the defect mildly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .tilt import tilt

WORK_SIZE = 512

# ---- thresholds (calibration notes in the module docstring and the tests) ----
UNDER_P99 = 0.66        # underexposed: the brightest 1% of tones stay below this luma ...
UNDER_MEAN = 0.40       # ... and the mean luma is below this (a night scene with bright lights is not underexposed)
OVER_MEAN = 0.62        # overexposed: mean luma above this with OVER_MEAN_CLIP blown (a bright, high-key scene
OVER_MEAN_CLIP = 0.02   # without blown highlights is not overexposed), or mean luma above OVER_MEAN_ALONE,
OVER_MEAN_ALONE = 0.80
OVER_CLIP = 0.08        # or this fraction of blown highlights with mean luma above OVER_CLIP_MEAN,
OVER_CLIP_MEAN = 0.50
OVER_SUBJECT_CLIP = 0.25  # or this fraction of the salient region blown (a burnt-out subject on a dark ground)
WASHED_P01 = 0.12       # or washed out: the darkest 1% of tones lifted to this,
WASHED_P99 = 0.98       # the brightest at white
WASHED_CLIP = 0.01      # and some highlights blown (a night scene pushed 1.5 stops and more)
HIGHLIGHT_CLIP = 0.025  # "clipped highlights" mention
SHARP_RATIO = 1.0       # sharp at or above; skimage originals 1.4-2.6, macro and shallow depth-of-field photos
                        # from the wallpaper packages down to 1.02; Gaussian blur sigma 1 px at 512 px 0.57-0.92
NOISY_SIGMA = 7.0       # skimage originals <= 3.0, fine texture (fur, moss, circuit boards) up to 9; added noise
                        # sigma 12/255 reads 7.8-9.7, edits.py's noise 8.6 and more
MONO_CHROMA = 6.0       # chroma p99 below: a black and white image
MUTED_CHROMA = 35.0     # chroma p99 below: muted (colour originals 41-81; 35% saturation 14-29)
VIVID_CF = 60.0         # Hasler-Süsstrunk "quite colourful" and above
OVERSAT_CF = 100.0      # past "highly colourful" (originals <= 86)
WARM_CAST = 0.33        # gray-edge log(R/B); neutral originals -0.05..0.31
WARM_NEUTRAL_B = 0.0    # and the near-neutral pixels' mean b* at least this (see judge)
COOL_CAST = -0.28
COOL_CAST_CONFIRMED = -0.18  # cool from here when the near-neutral pixels lean blue (neutral_b at most ...)
COOL_NEUTRAL_B = -1.5        # ... this); originals -0.16 (china) .. ; blurring china reads -0.26 with b* -0.3
GREEN_NEUTRAL_A = -1.0  # and the near-neutral pixels' a* at most this
COOL_BY_NEUTRALS_B = -8.0    # cool also when the near-neutrals' b* reaches this (strength 1) ...
COOL_BY_NEUTRALS_WARM = 0.1  # ... and gray-edge reads at most this warm
GREEN_OVER_COOL = 1.5        # green must beat the cool reading by this to name the cast
NEUTRAL_CHROMA_MAX = 40.0  # the near-neutral pixels' mean (a*, b*) farther than this from grey: no cast verdict
GREEN_CAST = 0.15       # gray-edge log(G/sqrt(RB)); originals -0.09..0.09
MAGENTA_CAST = -0.20     # (warm-skin portraits read down to -0.15)
MAGENTA_OVER_COOL = 1.5  # in the cool-magenta quarter, magenta must beat the cool axis by this (see _cast_verdict)
FLAT_SPREAD = 0.30      # luma p95 - p5
HARSH_SPREAD = 0.94     # and at least HARSH_CLIP of clipped highlights + shadows
HARSH_CLIP = 0.10
TILT_MIN_SUPPORT = 1.0  # votes in the winning window (see _tilt; about one long line across the frame)
TILT_MIN_SHARE = 0.2    # the winning window's share of all near-axis votes
TILT_OVER_LEVEL = 1.5   # a tilt's votes over the level window's
TILT_DEG = 3.0          # tilted at or beyond (a smaller reading is within perspective and line noise)
TILT_AGREE_DEG = 4.0    # or: segments and edge-orientation histogram within this of each other (same sign) ...
TILT_HIST_PEAK = 1.6    # ... the histogram's peak this far over its mean (1 = no preferred orientation) ...
TILT_HIST_LEVEL = 0.9   # ... the level bin below this share of the peak ...
TILT_AGREE_SUPPORT = 0.1  # ... and a little line support (on the training sources: +8 points named, +1 alarm)
EDGE_BAND = 0.06        # the border band for framing, a share of the short side
CUT_EDGE_PEAK = 0.98     # ... and holds the frame's most salient point (on the wallpaper photos: 12 % of the
                         # originals fire, half of edits.py's cut crops; the saliency is no subject detector)
CUT_EDGE_SALIENCY = 2.4  # a band this much more salient than the frame: the salient region runs into the edge
COMPOSITION_SPREAD = 0.30  # the top tenth of the saliency spread wider than this: no composition verdict
COMPOSITION_CONCENTRATION = 0.2  # and its top tenth must hold this share of all saliency (0.1 = flat)
CENTRE_RADIUS = 0.10    # saliency centroid within this (fractions of the frame) of the centre: centred
THIRDS_RADIUS = 0.08    # ... of a power point: rule of thirds
EDGE_OFFSET = 0.30      # ... this far from the centre on either axis: off balance
BASE_SCORE = 7.0
# Score weights (tuned on the training sources' edits only, bench/teacher_edits.py; see score_terms).
TILT_STEP = 1.2           # a "tilted" verdict (small: a false alarm on an original must not outweigh the rest)
TILT_EVIDENCE_COST = 0.5  # tilt evidence short of a verdict (the edge-orientation histogram, see score_terms)
FRAMING_COST = 1.5        # a band up to twice as salient as the frame ...
FRAMING_STEP = 1.8        # ... and a "cut off" verdict
SATURATION_CREDIT = 2.0   # colour credit at SATURATION_FULL cast-discounted chroma p99 and above
SATURATION_FULL = 45.0
COOL_NEUTRAL_COST = 0.5   # the near-neutrals' b* from +4 down to -12 (turning blue) costs up to this

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
    "framing": ("cut off", "n/a"),  # the main interest is cut by the frame's edge
    "composition": ("rule of thirds", "centered", "off balance", "n/a"),
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


def _blown(rgbf: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Blown highlights: luma at white, or two of the three channels at their top (a white sky under a blue cast
    keeps green and blue clipped while its luma drops below white)."""
    return (y >= 0.97) | (np.sort(rgbf, axis=-1)[..., 1] >= 0.97)


def _exposure(rgbf: np.ndarray, y: np.ndarray, blown_salient: np.ndarray) -> dict[str, float]:
    p01, p05, p50, p95, p99 = np.percentile(y[::2, ::2], [1, 5, 50, 95, 99])  # a quarter of the pixels is plenty
    blown = _blown(rgbf, y)
    return {
        "mean_luminance": float(y.mean()),
        "median_luminance": float(p50),
        "p01_luminance": float(p01),
        "p99_luminance": float(p99),
        "highlight_clip": float(blown.mean()),
        "shadow_clip": float((y <= 0.03).mean()),
        "subject_highlight_clip": float(blown_salient.mean()) if blown_salient.size else 0.0,
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
    # Mean a*, b* of the least chromatic 30% of mid-tone pixels: where the image's near-neutrals lean (a cast
    # tints them; a warm subject such as skin or fur is chromatic and stays out of them).
    mid = (lab[..., 0] > 15) & (lab[..., 0] < 95)
    if mid.sum() >= 16:
        low = mid & (chroma <= np.percentile(chroma[mid], 30))
        neutral_a, neutral_b = float(lab[..., 1][low].mean()), float(lab[..., 2][low].mean())
    else:
        neutral_a = neutral_b = 0.0
    # Chroma around the near-neutral point instead of around grey: a cast moves every colour, neutrals too, so
    # this is the colour the scene has once the cast is discounted (a blue cast adds chroma, not colour).
    balanced = np.hypot(lab[..., 1] - neutral_a, lab[..., 2] - neutral_b)
    return {
        "colorfulness": float(colourfulness),
        "chroma_p99": float(np.percentile(chroma, 99)),
        "balanced_chroma_p99": float(np.percentile(balanced, 99)),
        "mean_saturation": float(hsv_s.mean() / 255.0),
        "neutral_a": neutral_a,
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


def _subject_mask(sal: np.ndarray, shape: tuple[int, int], share: float = 0.25) -> np.ndarray:
    """The `share` most salient pixels of a low-resolution saliency map, as a boolean mask at `shape` (h, w)."""
    import cv2

    small = (sal >= np.percentile(sal, 100 * (1 - share))).astype(np.uint8)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _edge_width_ratio(lap: np.ndarray, g2: np.ndarray, where: np.ndarray) -> float:
    """RMS Laplacian / RMS gradient over the 10% strongest-gradient pixels of `where` (0 when there are none)."""
    vals = g2[where]
    if vals.size < 64:
        return 0.0
    strong = where & (g2 >= np.percentile(vals[::2], 90))
    denom = float(g2[strong].mean())
    return math.sqrt(float((lap[strong] ** 2).mean()) / denom) if denom > 1e-10 else 0.0


def _sharpness(y: np.ndarray, sal: np.ndarray) -> dict[str, float]:
    import cv2

    lap = cv2.Laplacian(y, cv2.CV_32F, ksize=1)
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3) / 8
    g2 = gx * gx + gy * gy
    everywhere = np.ones(y.shape, bool)
    subject = _subject_mask(sal, y.shape)
    whole = _edge_width_ratio(lap, g2, everywhere)
    on_subject = _edge_width_ratio(lap, g2, subject)
    background = _edge_width_ratio(lap, g2, ~subject)
    # Motion blur smears edges along one direction only: the gradient structure tensor of the strongest edges
    # turns anisotropic (0 = gradients in every direction, 1 = all one way).
    strong = g2 >= np.percentile(g2[::2, ::2], 90)
    jxx, jyy, jxy = (float((p * q)[strong].sum()) for p, q in ((gx, gx), (gy, gy), (gx, gy)))
    anis = math.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / (jxx + jyy) if jxx + jyy > 1e-12 else 0.0
    return {
        # The verdict's edge sharpness: the sharper of the whole frame's and the subject's strongest edges, so
        # a sharp subject on a smooth, out-of-focus background (shallow depth of field) stays sharp.
        "sharpness": max(whole, on_subject),
        "frame_sharpness": whole,
        "subject_sharpness": on_subject,
        "background_sharpness": background,
        "motion_anisotropy": anis,
        "laplacian_variance": float(lap.var() * 1000.0),
    }


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


def _framing(sal: np.ndarray) -> dict[str, float]:
    """Is the salient region cut by the frame's edge? Saliency density in a band along each side.

    edge_saliency: the highest of the four bands' mean saliency over the frame's mean (about 1 when the edge
    is as busy as the frame, well above when the salient region runs into it); cut_side 0..3 = top, bottom,
    left, right.
    """
    h, w = sal.shape
    band = max(2, round(EDGE_BAND * min(h, w)))
    mean = float(sal.mean()) + 1e-6
    sides = [sal[:band], sal[-band:], sal[:, :band], sal[:, -band:]]
    dens = [float(s.mean()) / mean for s in sides]
    side = int(np.argmax(dens))
    top = sal >= np.percentile(sal, 90)
    top_band = [t.mean() for t in (top[:band], top[-band:], top[:, :band], top[:, -band:])]
    peak = float(sides[side].max()) / max(float(sal.max()), 1e-6)  # 1: the frame's most salient point is there
    return {"edge_saliency": dens[side], "edge_top_share": float(max(top_band)), "edge_peak": peak,
            "cut_side": float(side)}


def _composition(sal: np.ndarray) -> dict[str, float]:
    from ase_model.saliency import centroid

    top = np.where(sal >= np.percentile(sal, 90), sal, 0.0)
    x, y = centroid(top)
    thirds = min(math.hypot(x - px, y - py) for px in (1 / 3, 2 / 3) for py in (1 / 3, 2 / 3))
    h, w = sal.shape
    ys, xs = np.nonzero(top)
    # Spread of the top tenth around its centroid (fractions of the frame): ~0.41 for a uniform scatter,
    # small for one compact region.
    spread = math.sqrt(float((((xs + 0.5) / w - x) ** 2 + ((ys + 0.5) / h - y) ** 2).mean())) if xs.size else 0.41
    # Share of all saliency the top tenth holds: 0.1 for a flat map, towards 1 for a single peak.
    concentration = float(top.sum() / max(float(sal.sum()), 1e-9))
    return {"saliency_x": x, "saliency_y": y, "centre_distance": math.hypot(x - 0.5, y - 0.5),
            "thirds_distance": thirds, "saliency_spread": spread, "saliency_concentration": concentration}


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
    small_f = small.astype(np.float32) / 255.0
    m: dict[str, float] = {"width": float(rgb.shape[1]), "height": float(rgb.shape[0])}
    m.update(_exposure(rgbf, y, _blown(small_f, small_f @ _LUMA)[salient]))
    m.update(_colour(rgb, rgbf))
    m.update(_white_balance(rgb))
    # The cast as one vector in the gray-edge opponent plane (warm-cool, green-magenta), each axis in units of
    # its own threshold: its length and its direction (0 = warm, 90 = green, 180 = cool, -90 = magenta).
    cw = m["wb_warm"] / (WARM_CAST if m["wb_warm"] > 0 else -COOL_CAST)
    cg = m["wb_green"] / (GREEN_CAST if m["wb_green"] > 0 else -MAGENTA_CAST)
    m["cast_strength"] = math.hypot(cw, cg)
    m["cast_angle"] = math.degrees(math.atan2(cg, cw))
    m.update(_sharpness(y, sal))
    m.update(_noise(y))
    m.update(tilt(rgb))
    m.update(_framing(sal))
    m.update(_composition(sal))
    return m


def _tilt_agrees(m: dict[str, float]) -> bool:
    """The line segments and the edge-orientation histogram agree on one tilt, and the histogram is peaked."""
    deg, hist = m["tilt_deg"], m.get("tilt_hist_deg", 0.0)
    return (min(abs(deg), abs(hist)) >= TILT_DEG and deg * hist > 0 and abs(deg - hist) <= TILT_AGREE_DEG
            and m.get("tilt_hist_peak", 0.0) >= TILT_HIST_PEAK and m.get("tilt_hist_level", 1.0) <= TILT_HIST_LEVEL
            and m["tilt_support"] >= TILT_AGREE_SUPPORT and m["tilt_support"] >= TILT_OVER_LEVEL
            * m["tilt_level_support"])


def _tilt_verdict(m: dict[str, float]) -> str:
    deg, support, level = abs(m["tilt_deg"]), m["tilt_support"], m["tilt_level_support"]
    if _tilt_agrees(m):
        return "tilted"  # two independent readings of the same angle: fewer, shorter lines suffice
    if support < TILT_MIN_SUPPORT or m["tilt_share"] < TILT_MIN_SHARE:
        return "n/a"  # no clear lines: say nothing
    if deg < TILT_DEG:
        return "level"
    # A tilt must clearly beat the level reading (perspective bends some horizontals; the verticals stay).
    return "tilted" if support >= TILT_OVER_LEVEL * level else "n/a"


def _composition_verdict(m: dict[str, float]) -> str:
    if m["saliency_spread"] > COMPOSITION_SPREAD or m["saliency_concentration"] < COMPOSITION_CONCENTRATION:
        return "n/a"  # diffuse saliency: no clear centre of interest to describe
    x, y = m["saliency_x"], m["saliency_y"]
    if m["centre_distance"] <= CENTRE_RADIUS:
        return "centered"
    if m["thirds_distance"] <= THIRDS_RADIUS:
        return "rule of thirds"
    if max(abs(x - 0.5), abs(y - 0.5)) >= EDGE_OFFSET:
        return "off balance"
    return "n/a"  # between the centre and a third: nothing clear to say


def judge(m: dict[str, float]) -> dict[str, str]:
    """Verdicts from measurements (pure thresholds: the same numbers always give the same words)."""
    v: dict[str, str] = {}
    mean = m["mean_luminance"]
    if m["p99_luminance"] < UNDER_P99 and mean < UNDER_MEAN:
        v["exposure"] = "underexposed"
    elif ((mean > OVER_MEAN and m["highlight_clip"] >= OVER_MEAN_CLIP) or mean > OVER_MEAN_ALONE
          or (m["highlight_clip"] > OVER_CLIP and mean > OVER_CLIP_MEAN)
          or m["subject_highlight_clip"] > OVER_SUBJECT_CLIP
          or (m["p01_luminance"] >= WASHED_P01 and m["p99_luminance"] >= WASHED_P99
              and m["highlight_clip"] >= WASHED_CLIP)):
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
    v["white_balance"] = _cast_verdict(m) if v["saturation"] != "monochrome" else "neutral"
    clip = m["highlight_clip"] + m["shadow_clip"]
    if m["contrast_spread"] < FLAT_SPREAD:
        v["contrast"] = "flat"
    elif m["contrast_spread"] >= HARSH_SPREAD and clip >= HARSH_CLIP:
        v["contrast"] = "harsh"
    else:
        v["contrast"] = "balanced"
    v["noise"] = "noisy" if m["noise_sigma"] >= NOISY_SIGMA else "clean"
    v["tilt"] = _tilt_verdict(m)
    # Cut off: a band much more salient than the frame that also holds the frame's most salient point.
    v["framing"] = ("cut off" if m["edge_saliency"] >= CUT_EDGE_SALIENCY and m["edge_peak"] >= CUT_EDGE_PEAK
                    else "n/a")
    v["composition"] = _composition_verdict(m)
    return v


def _cast_verdict(m: dict[str, float]) -> str:
    """The stronger of the two gray-edge axes, each relative to its own threshold, names the cast.

    Warm scene content (fur, petals, skin, lamp-lit night skies) also reads warm on gray-edge, so "warm" also
    needs the near-neutral pixels not to lean blue. A blue cast (red down, blue up) tints near-neutrals towards
    +a* as a magenta one does, so in the cool-magenta quarter "magenta" needs the green axis to clearly
    dominate: a blue cast on warm skin is cool, never magenta.
    """
    warm, green = m["wb_warm"], m["wb_green"]
    if math.hypot(m["neutral_a"], m["neutral_b"]) > NEUTRAL_CHROMA_MAX:
        return "neutral"  # no near-neutral surfaces (a frame filled with petals or leaves): nothing to judge by
    # Near-neutral surfaces that lean blue confirm a weaker cool reading (gray-edge alone moves with content).
    cool_at = COOL_CAST_CONFIRMED if m["neutral_b"] <= COOL_NEUTRAL_B else COOL_CAST
    cool = warm / cool_at if warm < 0 else 0.0
    if warm <= COOL_BY_NEUTRALS_WARM:  # gray-edge not warm and the near-neutrals clearly blue: cool on their own
        cool = max(cool, m["neutral_b"] / COOL_BY_NEUTRALS_B)
    axes = []
    if warm > 0 and m["neutral_b"] >= WARM_NEUTRAL_B:
        axes.append((warm / WARM_CAST, "warm cast"))
    elif cool > 0:
        axes.append((cool, "cool cast"))
    # Green content (foliage) reads green on gray-edge too: green needs near-neutrals that lean green, not blue.
    if green > 0 and m["neutral_a"] <= GREEN_NEUTRAL_A and green / GREEN_CAST >= GREEN_OVER_COOL * cool:
        axes.append((green / GREEN_CAST, "green cast"))
    elif m["neutral_a"] > 0 and green / MAGENTA_CAST >= MAGENTA_OVER_COOL * cool:
        axes.append((green / MAGENTA_CAST, "magenta cast"))
    if not axes:
        return "neutral"
    strength, cast = max(axes, key=lambda t: t[0])
    return cast if strength >= 1.0 else "neutral"


def _ramp(x: float, lo: float, hi: float) -> float:
    """0 at or below lo, 1 at or above hi, linear between (lo > hi ramps the other way)."""
    return min(1.0, max(0.0, (x - lo) / (hi - lo)))


def score_terms(m: dict[str, float], v: dict[str, str]) -> dict[str, float]:
    """The score's terms. Score = BASE_SCORE + sum(terms) on 1..10 (see score_of), rounded to 0.1.

    Every defect costs a step when its verdict fires and, beside it, a continuous amount that grows with the
    measurement, so that a worse photo always scores lower, even one that already had the defect mildly.
    Credits for clear good properties (contrast, colour, crisp edges, a clear composition) spread clean photos
    over about 6.5..9.5.
    """
    t: dict[str, float] = {}
    mean, p99 = m["mean_luminance"], m["p99_luminance"]
    dark = _ramp(p99, 0.92, 0.45) * _ramp(mean, 0.50, 0.10)
    bright = max(_ramp(mean, 0.50, 0.85), _ramp(m["highlight_clip"], 0.005, 0.30),
                 _ramp(m["subject_highlight_clip"], 0.02, 0.40),
                 _ramp(m["p01_luminance"], 0.08, 0.30) * _ramp(p99, 0.90, 1.0))  # washed out: no blacks left
    t["exposure"] = -1.5 * math.sqrt(dark) - 1.8 * bright - (2.0 if v["exposure"] != "well exposed" else 0.0)
    t["sharpness"] = (1.2 * _ramp(m["sharpness"], 1.2, 2.6) - 1.0 * _ramp(m["sharpness"], 1.2, 0.4)
                      - (1.5 if v["sharpness"] == "soft" else 0.0))
    t["noise"] = -2.0 * _ramp(m["noise_sigma"], 1.0, 20.0) - (2.0 if v["noise"] == "noisy" else 0.0)
    # Colour is one continuous credit, with no step at "muted": a muted photo desaturated further, down to black
    # and white, always loses (a black and white original simply earns no colour credit).
    # The cast-discounted chroma: a cast adds chroma but no colour, and must not earn colour credit.
    chroma = m.get("balanced_chroma_p99", m["chroma_p99"])
    t["saturation"] = (SATURATION_CREDIT * _ramp(chroma, MONO_CHROMA, SATURATION_FULL)
                       - 1.0 * _ramp(m["colorfulness"], OVERSAT_CF - 10, OVERSAT_CF + 40))
    # Warm renderings are widely accepted (and warm content reads warm), so warmth costs less than coolness or a
    # green/magenta tint. A black and white photo reads neutral here (R = G = B), so it pays nothing.
    warm, green = m["wb_warm"], m["wb_green"]
    judgeable = math.hypot(m["neutral_a"], m["neutral_b"]) <= NEUTRAL_CHROMA_MAX
    cast = judgeable * (-1.0 * _ramp(warm, 0.0, -0.60)
            - 0.5 * _ramp(warm, 0.45, 1.30) * (m["neutral_b"] >= WARM_NEUTRAL_B)
            - 0.8 * _ramp(abs(green), 0.08, 0.40)
            - COOL_NEUTRAL_COST * _ramp(m["neutral_b"], 4.0, -12.0))  # near-neutral surfaces turning blue
    t["white_balance"] = cast - {"neutral": 0.0, "warm cast": 0.3}.get(v["white_balance"], 1.0)
    t["contrast"] = 0.5 * _ramp(m["contrast_spread"], 0.35, 0.75) - 1.0 * _ramp(m["contrast_spread"], 0.35, 0.10)
    if v["contrast"] == "harsh":
        t["contrast"] -= 0.6
    # Tilt evidence short of a verdict still costs a little: a peaked edge-orientation histogram whose peak
    # sits off level, with little at level.
    evidence = (_ramp(abs(m.get("tilt_hist_deg", 0.0)), 2.0, 6.0) * _ramp(m.get("tilt_hist_peak", 0.0), 1.2, 2.5)
                * _ramp(m.get("tilt_hist_level", 1.0), 0.9, 0.4))
    t["tilt"] = -TILT_EVIDENCE_COST * evidence
    if v["tilt"] == "tilted":
        t["tilt"] += -TILT_STEP - 0.8 * _ramp(abs(m["tilt_deg"]), TILT_DEG, 12.0)
    t["framing"] = (-FRAMING_COST * _ramp(m["edge_saliency"], 1.5, 3.0)
                    - (FRAMING_STEP if v["framing"] == "cut off" else 0.0))
    t["composition"] = {"off balance": -0.4, "rule of thirds": 0.5, "centered": 0.3}.get(v["composition"], 0.0)
    return {k: round(x, 3) for k, x in t.items() if abs(x) >= 1e-3}


def score_of(m: dict[str, float], v: dict[str, str]) -> float:
    """The score on 1..10 (see score_terms): BASE_SCORE plus the terms, clamped at 10; below 3 it is compressed
    smoothly towards 1 instead of clamped, so a worse photo still scores lower down there."""
    raw = BASE_SCORE + sum(score_terms(m, v).values())
    return round(min(10.0, raw if raw >= 3.0 else 1.0 + 2.0 * math.exp((raw - 3.0) / 2.0)), 1)


def analyze(image: Image.Image) -> Analysis:
    """Measure a photo, judge it, score it."""
    m = measure(image)
    v = judge(m)
    return Analysis(measurements=m, verdicts=v, score=score_of(m, v), notes=score_terms(m, v))


__all__ = ["VERDICT_LABELS", "WORK_SIZE", "Analysis", "analyze", "judge", "measure", "score_of", "score_terms",
           "working_copy"]
