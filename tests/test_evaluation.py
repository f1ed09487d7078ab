"""Evaluation: caption metrics at their known maxima for a model that reproduces its references, two models side
by side, score and saliency metrics, report files and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ase_model.evaluation import evaluate, main

CRITIQUES = [
    "Composition: The subject sits on a third line and the frame feels balanced.",
    "Colour and lighting: Colours are muted and a cool cast tints the scene.",
    "Exposure: The photo is underexposed, with deep shadows hiding detail.",
    "Focus: The image is sharp and detail is crisp throughout.",
    "Overall: A pleasing photograph with good light and a clear subject.",
    "Subject: The cat stares at the lens and fills the frame.",
    "Depth of field: A shallow focus isolates the cup from the table.",
    "Composition: A strong diagonal leads the eye to the rocket.",
]
PROMPT = "Critique."


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is ~10x faster on a busy 2-core box
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """8 photo crops with distinct critiques and scores (no split field: every record is in any split asked
    for) and spectral-residual pseudo-label maps, as the starter dataset writes them."""
    import skimage.data as data

    from ase_model.saliency import spectral_residual, to_png

    root = tmp_path_factory.mktemp("eval-data")
    (root / "images").mkdir()
    (root / "saliency").mkdir()
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    with open(root / "critiques.jsonl", "w") as f:
        for i, critique in enumerate(CRITIQUES):
            a = sources[i % 4]
            h, w = a.shape[:2]
            im = Image.fromarray(a[: h // 2, : w // 2] if i < 4 else a[h // 2:, w // 2:]).resize((40, 32))
            im.save(root / "images" / f"{i}.png")
            (root / "saliency" / f"{i}.png").write_bytes(to_png(spectral_residual(im)))
            f.write(json.dumps({"id": str(i), "image": f"images/{i}.png", "critique": critique, "score": float(i + 1),
                                "saliency": f"saliency/{i}.png"}) + "\n")
    return root / "critiques.jsonl"


@pytest.fixture(scope="module")
def models(dataset, tmp_path_factory) -> tuple[Path, Path]:
    """(untrained, trained to reproduce the critiques) tiny models with a tokenizer that knows the critiques."""
    from ase_model.modeling_ase import ASEForConditionalGeneration
    from ase_model.testing import build_processor, tiny_config, train_tokenizer
    from ase_model.training import train

    root = tmp_path_factory.mktemp("eval-models")
    tokenizer = train_tokenizer(CRITIQUES + [PROMPT, "USER: ASSISTANT:"], vocab_size=512)
    torch.manual_seed(0)
    config = tiny_config(hidden=64, vocab_size=512)
    model = ASEForConditionalGeneration(config)
    processor = build_processor(config, tokenizer=tokenizer, prompt=PROMPT)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(root / "base")
    processor.save_pretrained(root / "base")
    torch.set_num_threads(1)
    train(dict(model=str(root / "base"), data=[f"jsonl:{dataset}"], out=str(root / "trained"), stage="finetune",
               full=True, max_steps=100, batch_size=8, lr=5e-3, new_lr=5e-3, log_every=50, cache_images=True,
               progress=False, score_loss_weight=1.0))
    return root / "base", root / "trained"


def test_metrics_at_their_maxima_and_side_by_side(dataset, models, tmp_path):
    base, trained = models
    report = evaluate(base, f"jsonl:{dataset}", "test", compare=trained, out=tmp_path / "report", batch_size=4,
                      max_new_tokens=40)
    a, b = (report["models"][k]["metrics"] for k in ("base", "trained"))

    # The trained model reproduces every reference word for word: BLEU-4 is 1 and CIDEr-D its maximum, 10.
    assert b["captions"]["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert b["captions"]["CIDEr-D"] == pytest.approx(10.0, abs=1e-4)
    assert b["captions"]["ROUGE-L"] == pytest.approx(1.0, abs=1e-6)
    assert a["captions"]["BLEU-4"] < 0.5 and a["captions"]["CIDEr-D"] < 5
    assert set(b["captions"]) >= {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"}
    # scores 1..8 exist, so SRCC / PLCC are reported; pseudo-label maps exist, so CC, KLD, SIM (not NSS/AUC)
    assert set(a["score"]) == {"SRCC", "PLCC"}
    assert set(b["saliency_pseudo"]) == {"CC", "KLD", "SIM"}
    assert all(math.isfinite(v) for v in b["saliency_pseudo"].values())

    md = (tmp_path / "report" / "report.md").read_text()
    assert "| metric | base | trained | Δ (B − A) |" in md
    bleu4 = next(line for line in md.splitlines() if line.startswith("| BLEU-4 |"))
    cells = [c.strip() for c in bleu4.strip("|").split("|")]
    assert float(cells[2]) == pytest.approx(1.0, abs=1e-4)
    assert float(cells[3]) == pytest.approx(1.0 - a["captions"]["BLEU-4"], abs=2e-4)
    assert "saliency (pseudo-labels) CC" in md and "pseudo-label" in md and "SPICE" in md
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["images"] == 8 and set(saved["models"]) == {"base", "trained"}
    preds = [json.loads(line) for line in (tmp_path / "report" / "predictions-trained.jsonl").read_text().splitlines()]
    assert [p["critique"] for p in preds] == CRITIQUES


def fixation_set(root: Path, n: int = 6, size: int = 32) -> str:
    """Blob images with their blob as the map and its centre as the single fixation."""
    rng = np.random.default_rng(1)
    for sub in ("images", "maps", "fix"):
        (root / sub).mkdir(parents=True)
    ys, xs = np.mgrid[0:size, 0:size]
    for i in range(n):
        cx, cy = rng.integers(6, size - 6, 2)
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 3.0 ** 2))
        Image.fromarray((20 + 220 * blob[..., None] * np.ones(3)).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray((255 * blob).astype(np.uint8)).save(root / "maps" / f"{i}.png")
        fix = np.zeros((size, size), np.uint8)
        fix[cy, cx] = 255
        Image.fromarray(fix).save(root / "fix" / f"{i}.png")
    return f"folder:{root / 'images'},{root / 'maps'},{root / 'fix'}"


def test_cli_with_fixation_data_and_an_unreadable_image(dataset, models, tmp_path, capsys):
    import shutil

    _, trained = models
    data = tmp_path / "data"
    shutil.copytree(dataset.parent, data)
    (data / "images" / "2.png").write_bytes(b"broken")  # counted and skipped, never fatal
    spec = fixation_set(tmp_path / "fixations")
    rc = main(["--model", str(trained), "--data", f"jsonl:{data / 'critiques.jsonl'}", "--split", "test",
               "--saliency-data", spec, "--out", str(tmp_path / "out"), "--limit", "4", "--max-new-tokens", "30",
               "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| metric | trained |" in printed and "saliency (fixations) NSS" in printed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    counts = report["models"]["trained"]["counts"]
    assert report["images"] == 4 and counts["images"] == 3 and counts["unreadable_images"] == 1
    assert counts["fixation_images"] == 4
    fix = report["models"]["trained"]["metrics"]["saliency"]
    assert set(fix) == {"CC", "KLD", "SIM", "NSS", "AUC-Judd"}
    assert 0 <= fix["AUC-Judd"] <= 1 and -1 <= fix["CC"] <= 1


def test_bad_spec_is_a_clear_error(tmp_path, capsys):
    assert main(["--model", str(tmp_path), "--data", "nosuch:format"]) == 2
    assert "ase-mllm eval:" in capsys.readouterr().err
