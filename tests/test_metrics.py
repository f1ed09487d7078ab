"""Metrics with known answers. Java runs three times in this file: the PTB tokenizer twice (~0.3 s each) and
METEOR once (~10 s: it loads a 60 MB paraphrase table), all on small fixture splits."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest

from ase_model.attributes import format_critique
from ase_model.metrics import (
    aggregate_saliency,
    caption_metrics,
    saliency_metrics,
    score_metrics,
    spice_jars,
    tokenize_captions,
)

CAPTIONS = {
    "p1": format_critique({"composition": "The subject sits on the left third line.",
                           "general_impression": "A calm, well balanced frame."}),
    "p2": "Lovely warm light on the face, but the busy background distracts.",
    "p3": "Sharp focus on the eyes with a shallow depth of field.",
    "p4": "The horizon is tilted; straighten it and crop the empty sky.",
    "p5": "Colours are muted and the shadows are blocked up a little.",
}


def test_caption_metrics_identical_split(caplog):
    """One full run (tokenizer + METEOR JVMs): identical candidates and references hit every maximum."""
    with caplog.at_level(logging.WARNING, logger="ase_model.metrics"):
        m = caption_metrics(CAPTIONS, {k: [v] for k, v in CAPTIONS.items()})
    expected = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"}
    if all(p.is_file() for p in spice_jars()):
        expected.add("SPICE")
    else:
        assert any(r.getMessage().startswith("SPICE skipped: Stanford CoreNLP jars not found at ")
                   for r in caplog.records)
    assert set(m) == expected
    for n in range(1, 5):
        assert m[f"BLEU-{n}"] == pytest.approx(1.0, abs=1e-6)
    assert m["METEOR"] == pytest.approx(1.0, abs=1e-6)
    assert m["ROUGE-L"] == pytest.approx(1.0, abs=1e-9)
    # CIDEr-D's maximum for captions equal to their single reference: 10 x (mean over n=1..4 of cosine 1).
    # Every caption has >= 4 words and n-grams of its own, so no n-gram order has a zero vector.
    assert m["CIDEr-D"] == pytest.approx(10.0, abs=1e-9)


def test_caption_metrics_disjoint_vocabulary():
    cands = {"a": "zebra quantum violin marmalade", "b": "orbit saxophone tundra walrus pillow",
             "c": "glacier trombone cactus lantern"}
    refs = {k: [CAPTIONS[f"p{i}"]] for i, k in enumerate(cands, 1)}
    refs["unscored"] = ["extra references are left out of the split"]
    m = caption_metrics(cands, refs, spice=False, meteor=False)
    assert set(m) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    for n in range(1, 5):
        assert m[f"BLEU-{n}"] < 1e-6
    assert m["ROUGE-L"] == 0.0 and m["CIDEr-D"] == 0.0


def test_caption_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="no references"):
        caption_metrics({"x": "a b c"}, {"y": ["a b c"]})
    with pytest.raises(ValueError, match="no non-empty reference"):
        caption_metrics({"x": "a b c"}, {"x": ["  "]})
    with pytest.raises(ValueError):
        caption_metrics({}, {})
    if not all(p.is_file() for p in spice_jars()):
        with pytest.raises(RuntimeError, match="Stanford CoreNLP jars not found"):
            caption_metrics({"x": "a b c d"}, {"x": ["a b c d"]}, spice=True, meteor=False)


def test_tokenizer_keeps_lines_aligned():
    out = tokenize_captions(["Composition: Good.\nOverall: Nice!", "", "x\u2028y\x0cz", "Hello, World!", ""])
    assert out == ["composition good overall nice", "", "x y z", "hello world", ""]


def test_cider_is_cider_d_and_its_maximum():
    """pycocoevalcap's Cider is coco-caption's CIDEr-D; its per-image maximum is 10 x the mean cosine."""
    from pycocoevalcap.cider.cider import Cider

    assert Cider()._sigma == 6.0
    gts = {"a": ["the cat sat on the mat"], "b": ["a dog runs in the park"], "c": ["red car"],
           "d": ["green trees under blue sky"], "e": ["the cat sat on the mat", "a cat lies on a rug today"]}
    res = {"a": ["the cat sat on the mat"], "b": ["a dog runs in the park"], "c": ["red car"],
           "d": ["green trees green trees green trees"], "e": ["the cat sat on the mat"]}
    _, per = Cider().compute_score(gts, res)
    per = dict(zip(gts, per))
    assert per["a"] == pytest.approx(10.0) and per["b"] == pytest.approx(10.0)
    assert per["c"] == pytest.approx(10.0 * 2 / 4)  # 2 words: only unigram and bigram vectors are non-zero
    # clipping: repeating reference n-grams earns no more than using them once, and the length penalty bites
    assert per["d"] < 5.0
    # two references, candidate equals the first: 10 x (1 + cos(candidate, second)) / 2
    assert 5.0 < per["e"] < 10.0


# ---------------------------------------------------------------------------------------------- saliency


def gaussian(h, w, cy, cx, s):
    y, x = np.mgrid[0:h, 0:w]
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s**2))


def test_saliency_identical_maps():
    gt = gaussian(30, 40, 10, 25, 5) + 0.3 * gaussian(30, 40, 22, 8, 3)
    m = saliency_metrics(gt.copy(), gt_map=gt)
    assert set(m) == {"CC", "KLD", "SIM"}
    assert m["CC"] == pytest.approx(1.0, abs=1e-9)
    assert abs(m["KLD"]) < 1e-9
    assert m["SIM"] == pytest.approx(1.0, abs=1e-9)
    # pred at another size is resized to the ground truth's
    small = saliency_metrics(gt[::2, ::2], gt_map=gt)
    assert small["CC"] > 0.99 and small["SIM"] > 0.9


def test_saliency_against_reference_formulas():
    rng = np.random.default_rng(3)
    p, g = rng.random((12, 9)), rng.random((12, 9))
    m = saliency_metrics(p, gt_map=g)
    assert m["CC"] == pytest.approx(np.corrcoef(p.ravel(), g.ravel())[0, 1])
    pn, gn = p / p.sum(), g / g.sum()
    eps = np.finfo(float).eps
    assert m["KLD"] == pytest.approx(np.sum(gn * np.log(eps + gn / (pn + eps))))
    mm = lambda a: (a - a.min()) / (a.max() - a.min())  # noqa: E731
    assert m["SIM"] == pytest.approx(np.minimum(mm(p) / mm(p).sum(), mm(g) / mm(g).sum()).sum())
    disjoint = saliency_metrics(np.eye(4), gt_map=1 - np.eye(4))
    assert disjoint["SIM"] == 0.0 and disjoint["CC"] == pytest.approx(-1.0)


def test_saliency_fixation_metrics():
    h, w = 40, 50
    fix = np.zeros((h, w), bool)
    fix[[5, 12, 20, 33, 38], [7, 40, 25, 10, 44]] = True
    uniform = saliency_metrics(np.full((h, w), 0.5), fixations=fix)
    assert set(uniform) == {"NSS", "AUC-Judd"}
    assert uniform["NSS"] == 0.0
    assert uniform["AUC-Judd"] == pytest.approx(0.5, abs=0.25)  # random tie-break over 5 fixations
    many = np.zeros((h, w), bool)
    many[::3, ::2] = True
    assert saliency_metrics(np.ones((h, w)), fixations=many)["AUC-Judd"] == pytest.approx(0.5, abs=0.05)

    peaked = sum(gaussian(h, w, y, x, 1.0) for y, x in zip(*np.nonzero(fix)))
    m = saliency_metrics(peaked, fixations=fix)
    assert m["NSS"] > 5.0 and m["AUC-Judd"] > 0.99

    # hand-worked AUC-Judd: thresholds at fixated values, fp = (above - i) / (N - nfix)
    s = np.array([[0.9, 0.1], [0.5, 0.3]])
    assert saliency_metrics(s, fixations=np.array([[1, 0], [0, 0]]))["AUC-Judd"] == pytest.approx(1.0, abs=1e-6)
    assert saliency_metrics(s, fixations=np.array([[0, 0], [1, 0]]))["AUC-Judd"] == pytest.approx(5 / 6, abs=1e-6)
    # no fixations: undefined
    empty = saliency_metrics(peaked, fixations=np.zeros((h, w), bool))
    assert math.isnan(empty["NSS"]) and math.isnan(empty["AUC-Judd"])
    # repeatable despite the jitter
    assert saliency_metrics(np.ones((h, w)), fixations=fix) == saliency_metrics(np.ones((h, w)), fixations=fix)


def test_aggregate_saliency():
    agg = aggregate_saliency([{"CC": 0.5, "NSS": 1.0}, {"CC": 0.7, "NSS": float("nan")}, {"CC": 0.9}])
    assert agg["CC"] == pytest.approx(0.7) and agg["NSS"] == pytest.approx(1.0)
    assert aggregate_saliency([]) == {}


# ---------------------------------------------------------------------------------------------- scores


def test_score_metrics():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN cases must not warn either
        assert score_metrics([1, 2, 3, 4], [2, 4, 8, 16]) == {"SRCC": pytest.approx(1.0), "PLCC": pytest.approx(
            np.corrcoef([1, 2, 3, 4], [2, 4, 8, 16])[0, 1])}
        assert score_metrics([1, 2, 3], [3, 2, 1])["SRCC"] == pytest.approx(-1.0)
        assert score_metrics([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])["PLCC"] == pytest.approx(1.0)
        for p, t in (([], []), ([5.0], [1.0]), ([1, 2, 3], [4, 4, 4]), ([2, 2], [1, 3]), ([1, float("nan")], [1, 2])):
            r = score_metrics(p, t)
            assert math.isnan(r["SRCC"]) and math.isnan(r["PLCC"])
        r = score_metrics([1, 2, float("nan"), 3], [10, 20, 5, 30])  # the NaN pair is dropped
        assert r["SRCC"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        score_metrics([1, 2], [1, 2, 3])
