"""Learning a photographer's taste from their ratings: a ridge model that starts from the generic score.

    result = learn(feats.vectors, feats.scores, ratings, image_dims=feats.image_dims)  # raises NotEnoughRatings
    print(result.summary())   # cross-validated SRCC with the ratings: personal 0.71, generic 0.32 (n=100)

The model, on standardised features x and the standardised generic score s:

    personal(x) = a * s + w . x + b,     fit to the ratings' ranks (standardised),  penalty  lam * |w|^2

`a` is not penalised: with a large `lam` the profile is the generic score itself (rescaled), so a photographer
with few or noisy ratings gets the generic critic, and one with a distinct taste moves away from it as far as
cross-validation says the ratings support. `lam` (including "infinite": generic only) is chosen by K-fold
cross-validation on the Spearman correlation with the ratings, together with whether to use the pooled image
features at all (`image_dims`: a taste that lives in a few statistics drowns in hundreds of content
dimensions); the reported agreement comes from an outer cross-validation around that choice (nested), so it is
what a new photo can expect. Closed form, one eigendecomposition per fold: 1,000 ratings with ~360 features
take ~2 s on one CPU core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# scipy.stats and threadpoolctl load where they are used: profiles.py (read by the viewer and `ase-client
# profiles`) imports this module for its types, and scipy.stats alone takes seconds to import.


def rankdata(a):
    from scipy.stats import rankdata as _rankdata

    return _rankdata(a)


def spearmanr(a, b):
    from scipy.stats import spearmanr as _spearmanr

    return _spearmanr(a, b)


def threadpool_limits(n: int):
    from threadpoolctl import threadpool_limits as _limits

    return _limits(n)

__all__ = ["MIN_RATINGS", "LAMBDAS", "NotEnoughRatings", "LinearTaste", "LearnResult", "fit_path", "fit_taste", "learn",
           "srcc"]

MIN_RATINGS = 20
LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, float("inf"))


class NotEnoughRatings(ValueError):
    """Too few usable ratings, or ratings that cannot teach anything (all equal): no profile is made."""


def srcc(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (0 when either side is constant)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


@dataclass
class LinearTaste:
    """A fitted personal model (see the module's docstring).

    Args:
        mean: (d,) feature means used to standardise.
        std: (d,) feature standard deviations (1 where a feature is constant).
        score_mean: the generic score's mean on the training photos.
        score_std: the generic score's standard deviation there.
        a: weight of the standardised generic score.
        w: (d,) weights of the standardised features.
        b: intercept.
        lam: the ridge penalty (inf: generic score only).
    """

    mean: np.ndarray
    std: np.ndarray
    score_mean: float
    score_std: float
    a: float
    w: np.ndarray
    b: float
    lam: float

    def predict(self, vectors: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Personal values (standardised rating units: 0 is the photographer's average rated photo).

        Args:
            vectors: (n, d) features.
            scores: (n,) generic scores.
        """
        x = (np.asarray(vectors, np.float64) - self.mean) / self.std
        s = (np.asarray(scores, np.float64) - self.score_mean) / self.score_std
        return self.a * s + x @ self.w + self.b

    def score(self, vectors: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Personal scores 0..10 (5: as good as the photographer's average rated photo; a logistic of `predict`)."""
        return 10.0 / (1.0 + np.exp(-1.7 * self.predict(vectors, scores)))


def _targets(ratings: np.ndarray) -> np.ndarray:
    """Ratings as standardised mid-ranks: only their order counts (a 1-5 scale and a reject are ordinal)."""
    r = rankdata(ratings)
    return (r - r.mean()) / r.std()


def fit_path(vectors: np.ndarray, scores: np.ndarray, ratings: np.ndarray, lams) -> list[LinearTaste]:
    """Fit the model for several penalties at once (one eigendecomposition serves them all).

    The generic score's weight is free, so it is profiled out (Frisch-Waugh-Lovell): the features and targets are
    made orthogonal to the score, ridge runs on what is left, and `a` follows from the residual.

    Args:
        vectors: (n, d) features.
        scores: (n,) generic scores.
        ratings: (n,) the photographer's ratings (-1..5).
        lams: ridge penalties on the feature weights (inf: the generic score alone).
    """
    x = np.asarray(vectors, np.float64)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    x = (x - mean) / std
    s_mean, s_std = float(np.mean(scores)), float(np.std(scores)) or 1.0
    s = (np.asarray(scores, np.float64) - s_mean) / s_std
    y = _targets(ratings)
    ss = max(float(s @ s), 1e-12)
    xm = x - np.outer(s, s @ x) / ss
    ym = y - s * (s @ y) / ss
    n, d = xm.shape
    # One eigendecomposition of the smaller Gram matrix (features' or ratings') gives every penalty's solution.
    if n >= d:
        ev, vec = np.linalg.eigh(xm.T @ xm)
        proj = vec.T @ (xm.T @ ym)
    else:
        ev, vec = np.linalg.eigh(xm @ xm.T)
        proj = vec.T @ ym
    ev = np.clip(ev, 0.0, None)
    out = []
    for lam in lams:
        if np.isinf(lam):
            w = np.zeros(d)
        elif n >= d:
            w = vec @ (proj / (ev + float(lam)))
        else:
            w = xm.T @ (vec @ (proj / (ev + float(lam))))
        a = float(s @ (y - x @ w) / ss)
        out.append(LinearTaste(mean, std, s_mean, s_std, a, w, 0.0, float(lam)))
    return out


def fit_taste(vectors: np.ndarray, scores: np.ndarray, ratings: np.ndarray, lam: float) -> LinearTaste:
    """Fit the model for one penalty (see `fit_path`).

    Args:
        vectors: (n, d) features.
        scores: (n,) generic scores.
        ratings: (n,) the photographer's ratings (-1..5).
        lam: ridge penalty on the feature weights (inf: the generic score alone).
    """
    return fit_path(vectors, scores, ratings, [lam])[0]


def _folds(n: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    return np.array_split(rng.permutation(n), k)


def _subset_path(vectors, scores, ratings, keep: np.ndarray) -> list[LinearTaste]:
    """fit_path on the columns `keep`; the others get weight 0 (so the taste still reads every column)."""
    out = []
    for t in fit_path(vectors[:, keep], scores, ratings, LAMBDAS):
        mean, std, w = np.zeros(vectors.shape[1]), np.ones(vectors.shape[1]), np.zeros(vectors.shape[1])
        mean[keep], std[keep], w[keep] = t.mean, t.std, t.w
        out.append(LinearTaste(mean, std, t.score_mean, t.score_std, t.a, w, t.b, t.lam))
    return out


def _candidates(d: int, image_dims: int) -> list[np.ndarray]:
    """Column sets cross-validation chooses from: all features, and (when there is one) all but the pooled image
    block: its hundreds of content dimensions can drown a taste that lives in a few statistics."""
    sets = [np.arange(d)]
    if 0 < image_dims < d:
        sets.append(np.arange(image_dims, d))
    return sets


def _choose(vectors, scores, ratings, k: int, rng, image_dims: int) -> tuple[tuple[int, float], dict]:
    """The (column set, penalty) with the best mean SRCC over K folds, and each one's mean SRCC."""
    folds = _folds(len(ratings), k, rng)
    sets = _candidates(vectors.shape[1], image_dims)
    values: dict[tuple[int, float], list[float]] = {(c, lam): [] for c in range(len(sets)) for lam in LAMBDAS}
    for test in folds:
        train = np.setdiff1d(np.arange(len(ratings)), test)
        if np.ptp(ratings[train]) == 0:
            continue
        for c, keep in enumerate(sets):
            for model in _subset_path(vectors[train], scores[train], ratings[train], keep):
                values[(c, model.lam)].append(srcc(model.predict(vectors[test], scores[test]), ratings[test]))
    figures = {key: float(np.mean(v)) if v else 0.0 for key, v in values.items()}
    # ties: all features first, then the stronger pull to the generic score
    best = max(figures, key=lambda key: (round(figures[key], 4), -key[0], key[1]))
    return best, figures


def _fit(vectors, scores, ratings, choice: tuple[int, float], image_dims: int) -> LinearTaste:
    keep = _candidates(vectors.shape[1], image_dims)[choice[0]]
    return next(t for t in _subset_path(vectors, scores, ratings, keep) if t.lam == choice[1])


@dataclass
class LearnResult:
    """A learnt taste and how well it agrees with held-out ratings.

    Args:
        model: the taste fitted on all ratings with the chosen penalty.
        n_ratings: how many ratings it learnt from.
        personal_srcc: nested cross-validated SRCC of the personal score with the ratings.
        generic_srcc: SRCC of the generic score with the same ratings, pooled over the same folds.
        lambdas: mean inner-CV SRCC of each (column set, penalty) on all the ratings (set 0: all features,
            1: without the pooled image features).
        histogram: how many ratings of each value (-1..5).
        image_features: whether the chosen model uses the pooled image features.
    """

    model: LinearTaste
    n_ratings: int
    personal_srcc: float
    generic_srcc: float
    lambdas: dict[tuple[int, float], float] = field(default_factory=dict)
    histogram: dict[int, int] = field(default_factory=dict)
    image_features: bool = True

    def summary(self) -> str:
        """One line: the two agreements side by side."""
        return (f"cross-validated agreement with your {self.n_ratings} ratings (Spearman): "
                f"personal {self.personal_srcc:.3f}, generic {self.generic_srcc:.3f} "
                f"(ridge penalty {self.model.lam:g}"
                f"{'' if self.image_features else ', without the pooled image features'})")


def check_ratings(ratings: np.ndarray, minimum: int = MIN_RATINGS) -> None:
    """Raise NotEnoughRatings unless there are enough ratings and not all are the same."""
    n = len(ratings)
    if n < minimum:
        raise NotEnoughRatings(f"only {n} usable ratings; rate at least {minimum} photos (stars or rejects) "
                               "and learn again. No profile was made.")
    if np.ptp(ratings) == 0:
        raise NotEnoughRatings(f"all {n} ratings are {int(ratings[0])}: there is no preference to learn; give "
                               "your best and worst photos different stars and learn again. No profile was made.")


def learn(vectors: np.ndarray, scores: np.ndarray, ratings, folds: int = 5, seed: int = 0,
          minimum: int = MIN_RATINGS, image_dims: int = 0) -> LearnResult:
    """Learn a taste from rated photos' features.

    Args:
        vectors: (n, d) features (`photo_features(...).vectors`).
        scores: (n,) generic scores.
        ratings: (n,) the ratings (-1 reject, 1..5 stars; unrated photos left out beforehand).
        folds: K of the (outer and inner) cross-validation.
        seed: for the fold split.
        minimum: fewest ratings accepted.
        image_dims: how many leading columns are the pooled image features (`PhotoFeatures.image_dims`):
            cross-validation may then also try the model without them.
    Raises:
        NotEnoughRatings: fewer than `minimum` ratings, or all equal.
        ValueError: shapes disagree or features are not finite.
    """
    vectors = np.asarray(vectors, np.float64)
    scores = np.asarray(scores, np.float64)
    ratings = np.asarray(ratings, np.float64)
    if not (len(vectors) == len(scores) == len(ratings)):
        raise ValueError(f"{len(vectors)} feature rows, {len(scores)} scores, {len(ratings)} ratings")
    if not (np.isfinite(vectors).all() and np.isfinite(scores).all()):
        raise ValueError("features are not all finite")
    check_ratings(ratings, minimum)
    # Matrices of a few hundred columns: one BLAS thread is faster than several fighting over busy cores.
    with threadpool_limits(1):
        return _learn(vectors, scores, ratings, folds, seed, image_dims)


def _learn(vectors, scores, ratings, folds: int, seed: int, image_dims: int) -> LearnResult:
    rng = np.random.default_rng(seed)
    k = max(2, min(folds, len(ratings) // 4))
    predicted, generic = np.zeros(len(ratings)), np.zeros(len(ratings))
    for test in _folds(len(ratings), k, rng):
        train = np.setdiff1d(np.arange(len(ratings)), test)
        if np.ptp(ratings[train]) == 0:
            choice = (0, float("inf"))
        else:
            choice, _ = _choose(vectors[train], scores[train], ratings[train], k, rng, image_dims)
        model = _fit(vectors[train], scores[train], ratings[train], choice, image_dims)
        # Folds are scored on one scale: each fold's values are standardised before the pooled SRCC.
        p = model.predict(vectors[test], scores[test])
        predicted[test] = (rankdata(p) - 0.5) / len(p)
        generic[test] = (rankdata(scores[test]) - 0.5) / len(test)  # the generic score, on the same footing
    choice, figures = _choose(vectors, scores, ratings, k, rng, image_dims)
    values, counts = np.unique(ratings.astype(int), return_counts=True)
    return LearnResult(
        model=_fit(vectors, scores, ratings, choice, image_dims),
        image_features=choice[0] == 0,
        n_ratings=len(ratings),
        personal_srcc=srcc(predicted, ratings),
        generic_srcc=srcc(generic, ratings),
        lambdas=figures,
        histogram={int(v): int(c) for v, c in zip(values, counts)},
    )
