"""The saliency frame: how a saliency map travels (the binary frame after a critique's reply, `--saliency-out`).

An 8-bit grayscale PNG of the map at the model's resolution: 0 = not salient, 255 = most salient. This module is
its only encoder and decoder on the wire; ase_model.saliency keeps the maps' maths (and the same PNG form for the
model's own command line, which must not depend on the daemon). Pillow and numpy are imported inside the functions,
so importing the contract stays standard-library only.
"""

from __future__ import annotations

import io

__all__ = ["SALIENCY_MIME", "encode_saliency", "decode_saliency"]

SALIENCY_MIME = "image/png"


def encode_saliency(saliency) -> bytes:
    """A map in [0, 1] (any 2-D array-like) as the frame's bytes.

    Args:
        saliency: a 2-D float map; values are clipped to [0, 1].
    """
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(saliency, 0, 1) * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def decode_saliency(png: bytes | None):
    """The frame's bytes as a float32 map in [0, 1] (numpy array); None for no frame.

    Args:
        png: the frame, or None/empty when the reply had none.
    """
    if not png:
        return None
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
