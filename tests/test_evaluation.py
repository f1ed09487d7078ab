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
from ase_model.testing import TINY_CRITIQUES as CRITIQUES
from ase_model.testing import build_caption_model, write_caption_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """8 photo crops with distinct critiques and scores (no split field: every record is in any split asked
    for), half with spectral-residual pseudo-label maps, as the starter dataset writes them."""
    return write_caption_set(tmp_path_factory.mktemp("eval-data"), with_saliency=True) / "train.jsonl"


@pytest.fixture(scope="module")
def models(dataset, tmp_path_factory) -> tuple[Path, Path]:
    """(untrained, trained to reproduce the critiques) tiny models with a tokenizer that knows the critiques."""
    from ase_model.training import train

    root = tmp_path_factory.mktemp("eval-models")
    build_caption_model(root / "base", hidden=64)
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
    rc = main(["--model", str(trained), "--data", f"jsonl:{data / dataset.name}", "--split", "test",
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


def test_checker_metrics_read_the_decoders_own_text():
    """With an attribute head, evaluation reports how often the decoder's text (before the run-time repair)
    cannot be read back or contradicts the head; models without a head get no such section."""
    import numpy as np

    from ase_model.critic import Critique
    from ase_model.evaluation import _checker_metrics

    verdicts = {"exposure": "well exposed", "white_balance": "cool cast", "sharpness": "sharp"}
    clean = "Colour and lighting: There is a cool cast.\nExposure: The exposure is well judged."
    wrong = ("Colour and lighting: A pink cast tints the whole frame. Colour flibbers.\n"
             "Exposure: The exposure is well judged.")

    def critique(raw, v):
        return Critique(text=clean, attributes={}, score=6.5, tags=[], saliency=np.zeros((2, 2), np.float32),
                        model="m", verdicts=v, raw_text=raw)

    m = _checker_metrics({"a": critique(clean, verdicts), "b": critique(wrong, verdicts)})
    assert m["contradicting_critiques"] == 0.5 and m["repaired_critiques"] == 0.5
    assert m["unreadable_sentences"] == pytest.approx(1 / 5)
    assert _checker_metrics({"a": critique(None, None)}) == {}
