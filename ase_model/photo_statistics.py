"""Global tone, colour and detail statistics of a batch of photos, computed in torch from the model's own pixel values.

IASM's optional statistics token (config `iasm_photo_statistics`) embeds these. They are the classic aesthetic
features (Datta et al. 2006; Hasler & Süsstrunk 2003; van de Weijer et al. 2007; Immerkær 1996): judgements of
exposure, saturation, white balance, sharpness and noise are judgements about global statistics, which a small
ViT trained on a few photos learns only for the photos it saw, while the statistics carry over to any photo by
construction.

Square padding (the processor pads with the mean colour, which normalises to ~0) is excluded from every
statistic, and gradients are not taken across the padding's border.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NAMES = (
    "luma_mean", "luma_std", "luma_p01", "luma_p05", "luma_p25", "luma_p50", "luma_p75", "luma_p95", "luma_p99",
    "highlight_clip", "shadow_clip", "luma_spread",
    "rg_mean", "rg_std", "yb_mean", "yb_std", "colorfulness",
    "lab_l_mean", "lab_a_mean", "lab_b_mean", "chroma_mean", "chroma_p50", "chroma_p90", "chroma_p99",
    "hsv_saturation_mean", "hsv_saturation_p90", "neutral_b",
    "gray_edge_warm", "gray_edge_green", "gray_world_warm", "gray_world_green",
    "edge_sharpness", "laplacian_variance", "noise_sigma",
)
NUM_STATISTICS = len(NAMES)

_LUMA = (0.2126, 0.7152, 0.0722)
_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE = (0.950456, 1.0, 1.088754)  # D65, as OpenCV's RGB -> Lab
_PAD_TOLERANCE = 1.0 / 255  # a pixel within this of the mean colour in all three channels is padding


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0) + 0.055) / 1.055) ** 2.4)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], channels first (B, 3, H, W) -> CIELAB (L 0..100, a, b), as cv2.COLOR_RGB2LAB on floats."""
    lin = srgb_to_linear(rgb)
    m = torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device)[:, None, None]
    xyz = torch.einsum("ij,bjhw->bihw", m, lin) / white
    eps = (6 / 29) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def _smooth_1d(x: torch.Tensor, dim: int, taps: tuple[float, ...]) -> torch.Tensor:
    """Same-size 1-D convolution along `dim` with replicated borders (slices, not conv2d: depthwise
    convolutions are slow on CPU)."""
    r = len(taps) // 2
    n = x.shape[dim]
    padded = torch.cat([x.narrow(dim, 0, 1).expand_as(x.narrow(dim, 0, r)), x,
                        x.narrow(dim, n - 1, 1).expand_as(x.narrow(dim, 0, r))], dim=dim)
    return sum(t * padded.narrow(dim, i, n) for i, t in enumerate(taps) if t)


_GAUSS = [math.exp(-0.5 * k * k) for k in range(-2, 3)]
_GAUSS_SIGMA1 = tuple(v / sum(_GAUSS) for v in _GAUSS)  # 5 taps, sigma 1 px, as the analytic critic's blur


def _gray_edge(lin: torch.Tensor, usable: torch.Tensor) -> torch.Tensor:
    """Per-channel Minkowski p=6 norm of the gradient magnitude of smoothed linear light (B, 3), over `usable`."""
    smooth = _smooth_1d(_smooth_1d(lin, 3, _GAUSS_SIGMA1), 2, _GAUSS_SIGMA1)
    gx = _smooth_1d(_smooth_1d(smooth, 3, (-1.0, 0.0, 1.0)), 2, (1.0, 2.0, 1.0))  # Sobel
    gy = _smooth_1d(_smooth_1d(smooth, 2, (-1.0, 0.0, 1.0)), 3, (1.0, 2.0, 1.0))
    mag2 = (gx * gx + gy * gy) * usable[:, None]
    mag2 = mag2 / mag2.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-24)  # keeps the 6th power in range
    count = usable.sum(dim=(1, 2)).clamp_min(1.0)[:, None]
    return ((mag2 * mag2 * mag2).sum(dim=(2, 3)) / count) ** (1 / 6) + 1e-9


def _detail(luma: torch.Tensor, usable: torch.Tensor) -> torch.Tensor:
    """(B, 3): edge sharpness (RMS Laplacian / RMS gradient over the strongest-gradient tenth: it falls like
    1 / edge width in px), log1p(1000 x Laplacian variance), and Immerkær's noise sigma (0..255 units) over the
    flatter half; each over `usable` (B, H, W), as the analytic critic measures them."""
    second = (1.0, -2.0, 1.0)
    lap = _smooth_1d(luma, 2, second) + _smooth_1d(luma, 1, second)
    gx = _smooth_1d(_smooth_1d(luma, 2, (-1.0, 0.0, 1.0)), 1, (1.0, 2.0, 1.0))  # Sobel, 8 x the gradient
    gy = _smooth_1d(_smooth_1d(luma, 1, (-1.0, 0.0, 1.0)), 2, (1.0, 2.0, 1.0))
    g2 = gx * gx + gy * gy
    immerkaer = _smooth_1d(_smooth_1d(luma, 2, second), 1, second).abs() * 255
    out = []
    for i in range(luma.shape[0]):
        m = usable[i]
        if int(m.sum()) < 16:  # a sliver of a photo (an 8 x 2000 strip at model size): nothing to measure on
            out.append(luma.new_zeros(3))
            continue
        g2_i, lap_i = g2[i][m], lap[i][m]
        strong = g2_i >= torch.quantile(g2_i[::4], 0.9)
        denom = g2_i[strong].mean() / 64
        sharpness = torch.sqrt((lap_i[strong] ** 2).mean() / denom.clamp_min(1e-10)) * (denom > 1e-10)
        grad = g2_i.sqrt()
        flat = grad <= torch.quantile(grad[::4], 0.5)
        noise = math.sqrt(math.pi / 2) / 6 * immerkaer[i][m][flat].mean()
        out.append(torch.stack([sharpness, torch.log1p(lap_i.var() * 1000), noise]))
    return torch.stack(out)


def _photo_box(rgb: torch.Tensor, pad_colour: torch.Tensor, margin: int) -> torch.Tensor:
    """(B, H, W) mask of the photo inside its square padding, shrunk by `margin` px on every side. The padding
    is whole rows or columns of the pad colour; an image that is all pad colour is all photo."""
    differs = ((rgb - pad_colour).abs() > _PAD_TOLERANCE).any(dim=1)
    rows, cols = differs.any(dim=2), differs.any(dim=1)  # (B, H), (B, W)
    blank = ~rows.any(dim=1)
    rows, cols = rows | blank[:, None], cols | blank[:, None]
    if margin:
        shrink = lambda m: -F.max_pool1d(-m[:, None].float(), 2 * margin + 1, stride=1, padding=margin)[:, 0] > 0.5  # noqa: E731
        rows, cols = shrink(rows), shrink(cols)
    return rows[:, :, None] & cols[:, None, :]


def _to_rgb(pixel_values: torch.Tensor, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised pixel values back to sRGB in [0, 1], and the pad colour (the processor pads with
    round(mean * 255) / 255)."""
    x = pixel_values.detach().float()
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x * std_t + mean_t).clamp(0, 1), torch.round(mean_t * 255) / 255


GEOMETRY_NAMES = ("saliency_x", "saliency_y", "centre_distance", "thirds_distance")


def saliency_geometry(saliency: torch.Tensor, pixel_values: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, 4) where a saliency map (B, h, w) over the padded square puts the visual weight, as the analytic
    critic reads it: the centroid of the top tenth of the map inside the photo, as (x, y) fractions of the photo,
    and its distances to the centre and to the nearest thirds power point."""
    rgb, pad_colour = _to_rgb(pixel_values, mean, std)
    h, w = saliency.shape[-2:]
    photo = F.adaptive_avg_pool2d(_photo_box(rgb, pad_colour, margin=0)[:, None].float(), (h, w))[:, 0] > 0.5
    sal = saliency.detach().float()
    ys = torch.arange(h, dtype=sal.dtype, device=sal.device) + 0.5
    xs = torch.arange(w, dtype=sal.dtype, device=sal.device) + 0.5
    out = []
    for i in range(sal.shape[0]):
        m = photo[i] if photo[i].any() else torch.ones_like(photo[i])
        rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
        top = torch.where(m & (sal[i] >= torch.quantile(sal[i][m], 0.9)), sal[i], 0.0)
        top = top / top.sum().clamp_min(1e-12)
        x = ((top.sum(0) * xs).sum() - cols[0]) / (cols[-1] + 1 - cols[0])
        y = ((top.sum(1) * ys).sum() - rows[0]) / (rows[-1] + 1 - rows[0])
        thirds = min(torch.hypot(x - px, y - py) for px in (1 / 3, 2 / 3) for py in (1 / 3, 2 / 3))
        out.append(torch.stack([x, y, torch.hypot(x - 0.5, y - 0.5), thirds]))
    return torch.stack(out)


def photo_statistics(pixel_values: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, NUM_STATISTICS) float32 statistics, each scaled to roughly unit range; see NAMES for the order."""
    rgb, pad_colour = _to_rgb(pixel_values, mean, std)
    lin = srgb_to_linear(rgb)
    # Gradient statistics at full size and 3 px away from the padding's border (gradients across it are not
    # the photo's).
    interior = _photo_box(rgb, pad_colour, margin=3)
    peak = lin.amax(1)
    edge = _gray_edge(lin, (interior & (peak < 0.95) & (peak > 0.01)).to(rgb.dtype))
    luma = torch.einsum("c,bchw->bhw", torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device), rgb)
    detail = _detail(luma, interior)
    # Every other statistic on every 4th pixel (as the analytic critic does): a quarter of the sorting.
    rgb, lin, luma = rgb[:, :, ::2, ::2], lin[:, :, ::2, ::2], luma[:, ::2, ::2]
    photo = _photo_box(rgb, pad_colour, margin=0)

    lab = rgb_to_lab(rgb)
    chroma = torch.hypot(lab[:, 1], lab[:, 2])
    cmax, cmin = rgb.amax(1), rgb.amin(1)
    hsv_s = torch.where(cmax > 0, (cmax - cmin) / cmax.clamp_min(1e-6), torch.zeros_like(cmax))
    r, g, b = (rgb[:, i] * 255 for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b

    rows = []
    q = torch.tensor([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99], dtype=rgb.dtype, device=rgb.device)
    qc = torch.tensor([0.5, 0.9, 0.99], dtype=rgb.dtype, device=rgb.device)
    for i in range(rgb.shape[0]):
        m = photo[i]
        y, c, s, lab_i = luma[i][m], chroma[i][m], hsv_s[i][m], lab[i][:, m]
        rg_i, yb_i = rg[i][m], yb[i][m]
        yq = torch.quantile(y, q)
        mid = (lab_i[0] > 15) & (lab_i[0] < 95)
        if mid.sum() >= 16:
            low = mid & (c <= torch.quantile(c[mid], 0.3))
            neutral_b = lab_i[2][low].mean()
        else:
            neutral_b = y.new_zeros(())
        colourfulness = torch.hypot(rg_i.std(), yb_i.std()) + 0.3 * torch.hypot(rg_i.mean(), yb_i.mean())
        world = lin[i][:, m].mean(1).clamp_min(1e-6).log()
        ge = edge[i].log()
        rows.append(torch.cat([
            torch.stack([y.mean(), y.std()]), yq,
            torch.stack([(y >= 0.97).float().mean(), (y <= 0.03).float().mean(), yq[5] - yq[1]]),
            torch.stack([rg_i.mean(), rg_i.std(), yb_i.mean(), yb_i.std(), colourfulness]) / 100,
            lab_i.mean(1) / 100, torch.stack([c.mean()]) / 100, torch.quantile(c, qc) / 100,
            torch.stack([s.mean(), torch.quantile(s, 0.9), neutral_b / 100]),
            torch.stack([ge[0] - ge[2], ge[1] - 0.5 * (ge[0] + ge[2]), world[0] - world[2],
                         world[1] - 0.5 * (world[0] + world[2])]),
            detail[i] / torch.tensor([1.0, 5.0, 10.0], dtype=rgb.dtype, device=rgb.device),
        ]))
    return torch.stack(rows)


__all__ = ["GEOMETRY_NAMES", "NAMES", "NUM_STATISTICS", "photo_statistics", "rgb_to_lab", "saliency_geometry"]
