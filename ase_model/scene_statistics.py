"""Where a photo's weight lies, how its lines run and where it is sharp, computed in torch from the model's pixels.

The attribute head's second group of inputs (config `attribute_scene_statistics`), next to the global tone and
colour statistics of `photo_statistics`. Each is a classic training-free measure, so it carries over to any photo:

- spectral-residual saliency (Hou & Zhang 2007, as OpenCV's StaticSaliencySpectralResidual: 64 x 64 grey image,
  log amplitude minus its 3 x 3 mean, back with the phase, squared, smoothed) over the photo inside its padding:
  the centroid of its top tenth, the distances to the centre and the nearest thirds point, how concentrated it is,
  and how much of it lies on each border band of the frame (a main interest cut by the edge);
- a histogram of line directions: the angle of every coherent edge (structure tensor) to the nearest axis, in one
  degree bins up to 15, weighted by edge strength and coherence (a tilted horizon puts its weight in a bin away
  from 0; a scene without straight lines has little coherent weight at all);
- edge sharpness inside the salient region and outside it, and the anisotropy of the gradient energy (motion blur
  smears edges in one direction).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .photo_statistics import _LUMA, _photo_box, _smooth_1d, _to_rgb

TILT_BINS = 16  # |angle to the nearest axis| in [0, 1), [1, 2) ... [14, 15), [15, 45] degrees
SALIENCY_SIDE = 64  # OpenCV's spectral residual works on a 64 x 64 image
BORDER_BAND = 0.06  # share of the frame's width (height) that counts as the border band

NAMES = (
    ("sr_x", "sr_y", "sr_centre_distance", "sr_thirds_distance", "sr_concentration", "sr_spread",
     "border_left", "border_right", "border_top", "border_bottom", "border_max")
    + tuple(f"tilt_hist_{i:02d}" for i in range(TILT_BINS))
    + ("coherent_share", "subject_sharpness", "background_sharpness", "anisotropy")
)
NUM_SCENE_STATISTICS = len(NAMES)

_GAUSS = [math.exp(-0.5 * (k / 1.5) ** 2) for k in range(-4, 5)]
_GAUSS_15 = tuple(v / sum(_GAUSS) for v in _GAUSS)  # sigma 1.5 px
_G3 = [math.exp(-0.5 * (k / 3.0) ** 2) for k in range(-9, 10)]
_GAUSS_3 = tuple(v / sum(_G3) for v in _G3)  # sigma 3 px
_BOX3 = (1 / 3, 1 / 3, 1 / 3)


def _blur(x: torch.Tensor, taps: tuple[float, ...]) -> torch.Tensor:
    return _smooth_1d(_smooth_1d(x, -1, taps), -2, taps)


def spectral_residual(gray: torch.Tensor) -> torch.Tensor:
    """Spectral-residual saliency of grey images (B, H, W) -> (B, 64, 64) maps in [0, 1]."""
    small = F.interpolate(gray[:, None], size=(SALIENCY_SIDE, SALIENCY_SIDE), mode="bilinear", antialias=True,
                          align_corners=False)[:, 0]
    spectrum = torch.fft.fft2(small.double())
    log_amp = torch.log(spectrum.abs().clamp_min(1e-12))
    residual = log_amp - _blur(log_amp, _BOX3)
    sal = torch.fft.ifft2(torch.exp(residual + 1j * torch.angle(spectrum))).abs() ** 2
    sal = _blur(_blur(sal.float(), _GAUSS_15), _GAUSS_15)  # ~ OpenCV's 5x5 sigma-8 blur plus ours
    lo = sal.amin(dim=(1, 2), keepdim=True)
    hi = sal.amax(dim=(1, 2), keepdim=True)
    return (sal - lo) / (hi - lo).clamp_min(1e-12)


def _saliency_features(sal: torch.Tensor) -> torch.Tensor:
    """(11,) from one 64 x 64 map over the photo: centroid of the top tenth, its distances to the centre and the
    nearest thirds point, concentration (top tenth's share of all saliency), spread (RMS distance of the top tenth
    from its centroid), and the top tenth's share on each border band and the largest of them."""
    n = sal.shape[-1]
    coords = (torch.arange(n, dtype=sal.dtype, device=sal.device) + 0.5) / n
    top_mask = sal >= torch.quantile(sal.flatten(), 0.9)
    top = torch.where(top_mask, sal, torch.zeros_like(sal))
    mass = top.sum().clamp_min(1e-12)
    x = (top.sum(0) * coords).sum() / mass
    y = (top.sum(1) * coords).sum() / mass
    thirds = min(torch.hypot(x - px, y - py) for px in (1 / 3, 2 / 3) for py in (1 / 3, 2 / 3))
    concentration = mass / sal.sum().clamp_min(1e-12)
    spread = torch.sqrt((top * ((coords[None, :] - x) ** 2 + (coords[:, None] - y) ** 2)).sum() / mass)
    band = max(1, round(BORDER_BAND * n))
    borders = torch.stack([top[:, :band].sum(), top[:, -band:].sum(), top[:band].sum(), top[-band:].sum()]) / mass
    return torch.cat([torch.stack([x, y, torch.hypot(x - 0.5, y - 0.5), thirds, concentration, spread]), borders,
                      borders.max()[None]])


def _line_features(luma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For one photo's luma (H, W): the tilt histogram (TILT_BINS,), the coherent edges' share of the gradient
    energy, and the anisotropy of the gradient energy (|l1 - l2| / (l1 + l2) of the summed structure tensor)."""
    smooth = _blur(luma[None], _GAUSS_15)[0]
    gx = _smooth_1d(_smooth_1d(smooth, 1, (-1.0, 0.0, 1.0)), 0, (1.0, 2.0, 1.0))[2:-2, 2:-2]
    gy = _smooth_1d(_smooth_1d(smooth, 0, (-1.0, 0.0, 1.0)), 1, (1.0, 2.0, 1.0))[2:-2, 2:-2]
    # Structure tensor over ~3 px: its orientation is a line's, and its coherence is ~1 only along straight edges
    # (texture, corners and flat ground score low), which is what a horizon or a wall gives.
    jxx, jyy, jxy = (_blur(t[None], _GAUSS_3)[0] for t in (gx * gx, gy * gy, gx * gy))
    coherence = ((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy).clamp_min(1e-12) ** 2
    energy = gx * gx + gy * gy
    weight = energy * (coherence > 0.9) * (energy >= torch.quantile(energy[::2, ::2].flatten(), 0.8))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * jxy, jxx - jyy)).abs() % 90
    dev = torch.minimum(angle, 90 - angle)  # to the nearest axis, 0..45
    bins = dev.clamp(max=TILT_BINS - 1).floor().long().flatten()
    hist = torch.zeros(TILT_BINS, dtype=luma.dtype, device=luma.device).index_add_(0, bins, weight.flatten())
    coherent_share = weight.sum() / energy.sum().clamp_min(1e-12)
    hist = hist / weight.sum().clamp_min(1e-12)
    sxx, syy, sxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    anisotropy = torch.sqrt((sxx - syy) ** 2 + 4 * sxy**2) / (sxx + syy).clamp_min(1e-12)
    return hist, coherent_share, anisotropy


def _edge_sharpness(luma: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """RMS Laplacian / RMS gradient over the strongest-gradient tenth inside `region` (as photo_statistics'
    edge sharpness); 0 where the region has too few pixels."""
    second = (1.0, -2.0, 1.0)
    lap = (_smooth_1d(luma, 1, second) + _smooth_1d(luma, 0, second))[1:-1, 1:-1]
    gx = _smooth_1d(_smooth_1d(luma, 1, (-1.0, 0.0, 1.0)), 0, (1.0, 2.0, 1.0))[1:-1, 1:-1]
    gy = _smooth_1d(_smooth_1d(luma, 0, (-1.0, 0.0, 1.0)), 1, (1.0, 2.0, 1.0))[1:-1, 1:-1]
    m = region[1:-1, 1:-1]
    if int(m.sum()) < 64:
        return luma.new_zeros(())
    g2, lap = (gx * gx + gy * gy)[m], lap[m]
    strong = g2 >= torch.quantile(g2, 0.9)
    denom = g2[strong].mean() / 64
    return torch.sqrt((lap[strong] ** 2).mean() / denom.clamp_min(1e-10)) * (denom > 1e-10)


def scene_statistics(pixel_values: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, NUM_SCENE_STATISTICS) float32, each roughly in unit range; see NAMES for the order."""
    rgb, pad_colour = _to_rgb(pixel_values, mean, std)
    # 3 px inside the photo: the resized photo's edge row blends into the padding, a false straight edge.
    photo = _photo_box(rgb, pad_colour, margin=3)
    luma = torch.einsum("c,bchw->bhw", torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device), rgb)
    rows = []
    for i in range(rgb.shape[0]):
        ys, xs = photo[i].any(1).nonzero()[:, 0], photo[i].any(0).nonzero()[:, 0]
        if len(ys) < 16 or len(xs) < 16:  # a sliver of a photo (an 8 x 2000 strip): nothing to measure
            rows.append(luma.new_zeros(NUM_SCENE_STATISTICS))
            continue
        y = luma[i, int(ys[0]):int(ys[-1]) + 1, int(xs[0]):int(xs[-1]) + 1]
        sal = spectral_residual(y[None])[0]
        hist, coherent, anisotropy = _line_features(y)
        full = F.interpolate(sal[None, None], size=y.shape, mode="bilinear", align_corners=False)[0, 0]
        salient = full >= torch.quantile(full[::2, ::2].flatten(), 0.8)
        subject, background = _edge_sharpness(y, salient), _edge_sharpness(y, ~salient)
        rows.append(torch.cat([_saliency_features(sal), hist,
                               torch.stack([coherent, subject, background, anisotropy])]))
    return torch.stack(rows).float()


__all__ = ["NAMES", "NUM_SCENE_STATISTICS", "TILT_BINS", "scene_statistics", "spectral_residual"]
