"""A tiny, real ASE-MLLM that says one chosen critique for every photo (for the darktable plugin's tests and
screenshot).

The session's tiny random model (`build_tiny`) writes gibberish, which usually carries no vocabulary phrase and so
no tag; the plugin's tests must see tags. Rather than patch decoding, this builds the same tiny model and
*trains* it, with the project's own processor and teacher-forcing batches, on the sample photos (and some noise),
all with the same target critique, until greedy decoding reproduces the target exactly for every one of them (then
a few more steps, for a margin on photos it has not seen). The score head's last layer is then set to a constant
so that the score (and so the star rating) is known. Everything downstream — daemon,
critic, tag matching, attribute parsing, saliency — runs unchanged on this model.

    python tests/darktable/scripted_model.py OUT_DIR [--text "…"] [--score 7.2]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

DEFAULT_TEXT = "Exposure: The photo is underexposed.\nFocus: The image is sharp."


def training_images(seed: int = 0) -> list:
    """The sample photos the tests and the screenshot use (scikit-image, scikit-learn), mirrored and cropped,
    plus noise and gradients: what the model must answer the same way for."""
    import numpy as np
    from PIL import Image, ImageOps
    from skimage import data
    from sklearn.datasets import load_sample_images

    names = ("astronaut", "coffee", "chelsea", "rocket")
    photos = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in names]
    photos += [Image.fromarray(arr).convert("RGB") for arr in load_sample_images().images]
    rng = np.random.default_rng(seed)
    out = []
    for im in photos:
        w, h = im.size
        out += [im, ImageOps.mirror(im.crop((w // 8, h // 8, w - w // 8, h - h // 8)))]
    for w, h in [(56, 40), (40, 56)]:
        out.append(Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)))
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    out.append(Image.fromarray(np.stack([np.tile(ramp, (48, 1))] * 3, axis=-1)))
    return out


def build_scripted_model(out_dir, text: str = DEFAULT_TEXT, score: float = 7.2, max_steps: int = 1500,
                         seed: int = 0) -> Path:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains ~50x slower on two threads of a busy machine
    try:
        return _build(out_dir, text, score, max_steps, seed)
    finally:
        torch.set_num_threads(threads)


def _build(out_dir, text: str, score: float, max_steps: int, seed: int) -> Path:
    import torch

    from ase_model.critic import Critic
    from ase_model.modeling_ase import ASEForConditionalGeneration
    from ase_model.processing_ase import ASEProcessor
    from ase_model.testing import build_tiny

    out = Path(out_dir)
    build_tiny(out, open_gates=0.5, seed=seed)
    model = ASEForConditionalGeneration.from_pretrained(out)
    processor = ASEProcessor.from_pretrained(out)
    images = training_images(seed)
    batch = processor.training_batch(images, [text] * len(images))
    target_ids = processor.tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]

    def decodes_target() -> bool:
        model.eval()
        with torch.no_grad():
            inputs = processor(images=images)
            gen = model.generate(**inputs, max_new_tokens=len(target_ids) + 4, do_sample=False,
                                 pad_token_id=processor.tokenizer.pad_token_id,
                                 eos_token_id=processor.tokenizer.eos_token_id)
        texts = processor.batch_decode(gen[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        model.train()
        return all(t.strip() == text.strip() for t in texts)

    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=8e-3)
    extra = None  # steps still to go after every image decodes the target (a margin for unseen photos)
    for step in range(1, max_steps + 1):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if extra is not None:
            extra -= 1
            if extra == 0:
                break
        elif step % 15 == 0 and loss.item() < 0.05 and decodes_target():
            extra = 30
    else:
        raise RuntimeError(f"the tiny model did not learn to say {text!r} in {max_steps} steps")
    model.eval()
    with torch.no_grad():  # a constant score: 10 * sigmoid(bias)
        last = model.model.score_head.mlp[-1]
        last.weight.zero_()
        last.bias.fill_(math.log(score / (10.0 - score)))
    model.save_pretrained(out)

    critic = Critic.from_pretrained(out, device="cpu")
    for got in critic.critique(images[::2], max_new_tokens=len(target_ids) + 4):
        if got.text != text.strip() or abs(got.score - score) > 0.01:
            raise RuntimeError(f"the saved model says {got.text!r} (score {got.score:.2f})")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--text", default=DEFAULT_TEXT, help="the critique (\\n for a new line)")
    p.add_argument("--score", type=float, default=7.2)
    a = p.parse_args(argv)
    build_scripted_model(a.out, a.text.replace("\\n", "\n"), a.score)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
