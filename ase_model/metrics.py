"""Evaluation metrics: aesthetic-caption metrics (coco-caption), saliency metrics (MIT benchmark), score metrics.

Caption metrics
---------------
`caption_metrics(candidates, references)` follows coco-caption's `COCOEvalCap` (pycocoevalcap 1.2):

* every caption of the split (candidates and references together) goes through Stanford's PTBTokenizer
  (``-preserveLines -lowerCase``, coco-caption's punctuation tokens removed) in **one** Java call;
* each scorer is then called **once on the whole split**: BLEU-1..4 (corpus BLEU, 'closest' reference
  length), METEOR 1.5 (one JVM, corpus score from the jar's EVAL line), ROUGE-L (mean of per-image F),
  CIDEr-D (IDF from the split's references), and SPICE when its Stanford CoreNLP 3.6.0 jars are present.

About CIDEr-D: pycocoevalcap's ``Cider`` *is* coco-caption's CIDEr-D (Vedantam et al. 2015, sec. 4 / the
``CiderD`` scorer of ``pyciderevalcap``): n-gram counts are clipped against the reference
(``min(vec_hyp, vec_ref) * vec_ref``), a Gaussian length penalty with sigma = 6 multiplies each n-gram
similarity, there is no stemming, IDF comes from the references of the evaluated split, and the result is
multiplied by 10. So it is reported honestly as "CIDEr-D" with no change. Its maximum for a candidate that
equals its (single) reference is 10: the cosine of a non-zero TF-IDF vector with itself is 1 for each
n = 1..4, averaged and times 10. Per image the score is 10 x the mean over references of the mean over
n of the (penalised, clipped) cosines, so an n-gram order whose vector is zero (a caption shorter than n
words, or n-grams found in every image's references, whose IDF is log(N/N) = 0) lowers that maximum.

Saliency metrics
----------------
Standard definitions of the MIT/Tuebingen saliency benchmark (Bylinskii et al., "What do different
evaluation metrics tell us about saliency models?", TPAMI 2019; reference MATLAB code in
github.com/cvzoya/saliency, code_forMetrics):

* CC: Pearson correlation of the two maps.
* KLD: sum(G * log(eps + G / (P + eps))) with both maps normalised to sum 1, eps = MATLAB's eps (2.2e-16).
* SIM: histogram intersection sum(min(P, G)) of the maps min-max normalised, then normalised to sum 1.
* NSS: mean of the standardised prediction ((P - mean) / std, MATLAB's std with N-1) at fixated pixels.
* AUC-Judd: ROC area with thresholds at the prediction's values on fixated pixels; the map gets a tiny
  jitter (uniform [0, 1e-7)) to break ties, as in the reference code, from a fixed seed so it is repeatable.

The prediction is resized to the ground truth's size (bilinear when enlarging, area averaging when
shrinking -- MATLAB's imresize is bicubic with antialiasing; these never overshoot below 0, which KLD
needs). Deviations from the MATLAB code, for maps it leaves undefined: a constant prediction scores CC 0 and
NSS 0 (it carries no information; MATLAB gives NaN from std = 0), and SIM treats a constant non-zero map as
uniform (MATLAB gives NaN from 0/0 in the min-max step). A fixation map with no fixations gives NaN for NSS
and AUC-Judd (as MATLAB does).

Score metrics
-------------
SRCC (Spearman) and PLCC (Pearson) from scipy; NaN (never an exception) with fewer than 2 valid pairs or a
constant input.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "caption_metrics",
    "tokenize_captions",
    "spice_jars",
    "saliency_metrics",
    "aggregate_saliency",
    "score_metrics",
]

_MATLAB_EPS = float(np.finfo(np.float64).eps)  # 2.220446049250313e-16, MATLAB's eps used by KLdiv.m


# ----------------------------------------------------------------------------------------------------------
# caption metrics


def _pycoco_dir() -> Path:
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    return Path(ptb.__file__).resolve().parent.parent


def spice_jars() -> tuple[Path, Path]:
    """Where SPICE expects Stanford CoreNLP 3.6.0 (it downloads them there on first use, which we never do)."""
    lib = _pycoco_dir() / "spice" / "lib"
    return lib / "stanford-corenlp-3.6.0.jar", lib / "stanford-corenlp-3.6.0-models.jar"


def _one_line(text: str) -> str:
    # str.split() also splits on \r, \x0b, \x0c, \x1c-\x1e, \x85, \u2028, \u2029, which Java's tokenizer treats
    # as line ends: leaving any in would shift every later caption onto the wrong image.
    return " ".join(str(text).split())


def tokenize_captions(captions: Sequence[str]) -> list[str]:
    """coco-caption's PTB tokenisation of many captions in one Java call (lower-cased, punctuation removed).

    Same jar, flags and punctuation list as pycocoevalcap's PTBTokenizer; written here rather than called
    because that wrapper writes its temporary file into site-packages (read-only in some installs, shared
    by every user of the venv) and does not check that the output lines still line up with the input.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, STANFORD_CORENLP_3_4_1_JAR

    if not captions:
        return []
    jar = _pycoco_dir() / "tokenizer" / STANFORD_CORENLP_3_4_1_JAR
    lines = [_one_line(c) for c in captions]
    # A final sentinel line: the tokenizer drops trailing empty lines, the sentinel keeps the count exact.
    text = "\n".join(lines + ["eos"]) + "\n"
    fd, path = tempfile.mkstemp(suffix=".txt", prefix="ptb_")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        proc = subprocess.run(
            ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", path],
            capture_output=True,
            check=False,
        )
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"PTBTokenizer failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
    out = proc.stdout.decode("utf-8", errors="replace").split("\n")
    if out and out[-1] == "":
        out.pop()
    if len(out) != len(lines) + 1 or out[-1].strip() != "eos":
        raise RuntimeError(f"PTBTokenizer returned {len(out)} lines for {len(lines) + 1}: captions would misalign")
    punct = set(PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w and w not in punct) for line in out[:-1]]


def _meteor(gts: dict, res: dict) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    # "|||" separates fields in METEOR's stdin protocol; the wrapper strips it from hypotheses only.
    gts = {k: [r.replace("|||", " ") for r in v] for k, v in gts.items()}
    scorer = Meteor()  # one JVM for the whole split
    try:
        score, _ = scorer.compute_score(gts, res)
    finally:
        # Close it now rather than at garbage collection (Meteor.__del__ repeats this harmlessly).
        p = scorer.meteor_p
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return float(score)


def caption_metrics(
    candidates: Mapping[str, str],
    references: Mapping[str, Sequence[str] | str],
    spice: bool | None = None,
    *,
    meteor: bool = True,
) -> dict[str, float]:
    """coco-caption metrics of `candidates` (id -> caption) against `references` (id -> list of captions).

    Every candidate id needs at least one non-empty reference (ValueError otherwise); reference ids with no
    candidate are left out of the split (logged), so a whole dataset's references can be passed. Keys:
    BLEU-1..BLEU-4, METEOR, ROUGE-L, CIDEr-D, and SPICE when `spice` is True, or None and its CoreNLP jars are
    present (spice=True without the jars raises; SPICE is never downloaded). meteor=False leaves METEOR out:
    its JVM loads a 60 MB paraphrase table (~10 s on 2 cores), too slow for frequent validation passes.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    jars = spice_jars()
    have_jars = all(p.is_file() for p in jars)
    if spice is True and not have_jars:  # checked first: fail before minutes of scoring
        raise RuntimeError(f"SPICE requested but Stanford CoreNLP jars not found at {jars[0].parent} "
                           f"({jars[0].name}, {jars[1].name})")
    if not candidates:
        raise ValueError("caption_metrics: no candidates")
    ids = list(candidates)
    missing = [i for i in ids if i not in references]
    if missing:
        raise ValueError(f"caption_metrics: {len(missing)} candidate id(s) have no references, e.g. {missing[:3]}")
    refs: dict[str, list[str]] = {}
    for i in ids:
        r = references[i]
        r = [r] if isinstance(r, str) else list(r)
        r = [x for x in (str(x) for x in r) if x.strip()]
        if not r:
            raise ValueError(f"caption_metrics: id {i!r} has no non-empty reference")
        refs[i] = r
    extra = len(set(references) - set(ids))
    if extra:
        log.info("caption_metrics: scoring %d ids; %d reference ids without a candidate left out", len(ids), extra)

    # One tokenizer call for the split: candidates then references, in a fixed order.
    flat = [str(candidates[i]) for i in ids] + [x for i in ids for x in refs[i]]
    tok = tokenize_captions(flat)
    res = {i: [tok[k]] for k, i in enumerate(ids)}
    gts, k = {}, len(ids)
    for i in ids:
        gts[i] = tok[k : k + len(refs[i])]
        k += len(refs[i])

    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, b in enumerate(bleu, 1):
        out[f"BLEU-{n}"] = float(b)
    if meteor:
        out["METEOR"] = _meteor(gts, res)
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    # pycocoevalcap's Cider is CIDEr-D (sigma=6 length penalty, clipping, x10): see the module docstring.
    out["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])

    if spice is None and not have_jars:
        log.warning("SPICE skipped: Stanford CoreNLP jars not found at %s (%s, %s)", jars[0].parent, jars[0].name,
                    jars[1].name)
    elif spice is not False:
        from pycocoevalcap.spice.spice import Spice

        out["SPICE"] = float(Spice().compute_score(gts, res)[0])
    return out


# ----------------------------------------------------------------------------------------------------------
# saliency metrics


def _resize(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim == 3:  # an RGB(A) rendering of a map: use its mean
        pred = pred[..., :3].mean(axis=2)
    if pred.shape == tuple(shape):
        return pred
    import cv2

    h, w = shape
    shrink = pred.shape[0] * pred.shape[1] > h * w
    return cv2.resize(pred, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _cc(p: np.ndarray, g: np.ndarray) -> float:
    sp, sg = p.std(), g.std()
    if sp == 0 or sg == 0:
        return 0.0 if sg > 0 else math.nan
    return float(((p - p.mean()) * (g - g.mean())).mean() / (sp * sg))


def _kld(p: np.ndarray, g: np.ndarray) -> float:
    if p.any():
        p = p / p.sum()
    if g.any():
        g = g / g.sum()
    return float(np.sum(g * np.log(_MATLAB_EPS + g / (p + _MATLAB_EPS))))


def _sim_norm(m: np.ndarray) -> np.ndarray:
    if not m.any():
        return m  # a zero map stays a zero map (as in similarity.m)
    lo, hi = m.min(), m.max()
    m = (m - lo) / (hi - lo) if hi > lo else np.ones_like(m)  # constant: uniform (MATLAB: NaN)
    return m / m.sum()


def _nss(p: np.ndarray, fix: np.ndarray) -> float:
    if not fix.any():
        return math.nan
    sd = p.std(ddof=1) if p.size > 1 else 0.0
    if sd == 0:
        return 0.0
    return float(((p - p.mean()) / sd)[fix].mean())


def _auc_judd(p: np.ndarray, fix: np.ndarray, seed: int = 0) -> float:
    if not fix.any():
        return math.nan
    s = p + np.random.default_rng(seed).random(p.shape) / 1e7  # break ties, as AUC_Judd.m does
    s = (s - s.min()) / (s.max() - s.min())
    s_flat = s.ravel()
    f_flat = fix.ravel()
    thresholds = np.sort(s_flat[f_flat])[::-1]
    n_fix, n_pix = thresholds.size, s_flat.size
    if n_pix == n_fix:
        return math.nan
    # count of map values >= each threshold, vectorised over thresholds via a sorted copy
    sorted_all = np.sort(s_flat)
    above = n_pix - np.searchsorted(sorted_all, thresholds, side="left")
    i = np.arange(1, n_fix + 1)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - i) / (n_pix - n_fix), [1.0]])
    return float(np.trapezoid(tp, fp) if hasattr(np, "trapezoid") else np.trapz(tp, fp))


def saliency_metrics(
    pred: np.ndarray, gt_map: np.ndarray | None = None, fixations: np.ndarray | None = None
) -> dict[str, float]:
    """CC, KLD, SIM against a continuous ground-truth map; NSS, AUC-Judd against a binary fixation map.

    Only the metrics whose ground truth is given are returned. `pred` is resized to each ground truth's size.
    """
    out: dict[str, float] = {}
    if gt_map is not None:
        g = np.asarray(gt_map, dtype=np.float64)
        if g.ndim == 3:
            g = g[..., :3].mean(axis=2)
        p = _resize(pred, g.shape)
        out["CC"] = _cc(p, g)
        out["KLD"] = _kld(p, g)
        out["SIM"] = float(np.minimum(_sim_norm(p), _sim_norm(g)).sum())
    if fixations is not None:
        f = np.asarray(fixations)
        if f.ndim == 3:
            f = f[..., 0]
        f = f > 0
        p = _resize(pred, f.shape)
        out["NSS"] = _nss(p, f)
        out["AUC-Judd"] = _auc_judd(p, f)
    return out


def aggregate_saliency(per_image: list[dict]) -> dict:
    """Mean of each metric over the images that have it (NaNs, e.g. images without fixations, left out)."""
    keys: list[str] = []
    for d in per_image:
        keys += [k for k in d if k not in keys]
    out = {}
    for k in keys:
        vals = [float(d[k]) for d in per_image if k in d and d[k] is not None and np.isfinite(d[k])]
        out[k] = float(np.mean(vals)) if vals else math.nan
    return out


# ----------------------------------------------------------------------------------------------------------
# score metrics


def score_metrics(pred: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """SRCC and PLCC of predicted vs. true scores; pairs with a non-finite value are dropped first."""
    from scipy.stats import pearsonr, spearmanr

    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"score_metrics: {p.size} predictions for {t.size} true scores")
    ok = np.isfinite(p) & np.isfinite(t)
    p, t = p[ok], t[ok]
    if p.size < 2 or np.all(p == p[0]) or np.all(t == t[0]):
        return {"SRCC": math.nan, "PLCC": math.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srcc = float(spearmanr(p, t)[0])
        plcc = float(pearsonr(p, t)[0])
    return {"SRCC": srcc, "PLCC": plcc}
