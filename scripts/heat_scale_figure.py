"""docs/img/heat-scale.png: the heat overlay before (linear scale) and now (log scale, ase_model.overlay.heat_scale),
side by side on real photos with the starter model's saliency maps, at the demo report's size and opacity.

    .venv/bin/python scripts/heat_scale_figure.py [OUT.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("coffee", "chelsea", "china")
WIDTH, OPACITY = 480, 0.7  # a report card's overlay: half of its 1100 px column, drawn at 70 %


def linear_layer(sal: np.ndarray, w: int, h: int) -> np.ndarray:
    """The heat layer as it was before the log scale: the ramp indexed by the linear map."""
    from ase_model import overlay

    idx = np.rint(overlay.upsample(sal, w, h) * 255).astype(np.uint8)
    layer = np.empty((h, w, 4), np.uint8)
    layer[..., :3] = overlay._lut()[idx]
    layer[..., 3] = overlay._heat_alpha()[idx]
    return layer


def main(out: Path) -> None:
    from ase_model import overlay
    from ase_model.critic import Critic
    from ase_model.starter.dataset import source_photos

    sources = source_photos()
    images = [sources[n].convert("RGB") for n in PHOTOS]
    images = [im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS) for im in images]
    critiques = Critic.from_pretrained(device="cpu").critique(images, max_new_tokens=4)  # the map needs no text
    font = ImageFont.load_default(size=18)
    rows = []
    for im, c in zip(images, critiques):
        rgb = np.asarray(im)
        h, w = rgb.shape[:2]
        before = overlay.blend(rgb, linear_layer(c.saliency, w, h), OPACITY)
        after = overlay.compose(rgb, c.saliency, OPACITY, "heat")
        rows.append(np.concatenate([before, np.full((h, 12, 3), 21, np.uint8), after], 1))
    grid = Image.new("RGB", (2 * WIDTH + 12, 36 + sum(r.shape[0] + 12 for r in rows)), (21, 23, 26))
    draw = ImageDraw.Draw(grid)
    draw.text((8, 8), "before: linear scale", fill=(230, 230, 230), font=font)
    draw.text((WIDTH + 20, 8), "now: log scale (1 % of the peak .. peak)", fill=(230, 230, 230), font=font)
    y = 36
    for r in rows:
        grid.paste(Image.fromarray(r), (0, y))
        y += r.shape[0] + 12
    grid.save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img" / "heat-scale.png")
