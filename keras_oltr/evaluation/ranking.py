"""Threshold-free known-vs-open metrics: AUROC, AUPR and FPR at 95% TPR.

Open is the positive class; a model score where higher means "more known" is turned
into an open score by negation. Ties are handled exactly like sklearn's roc_auc_score
and average_precision_score. FPR@95TPR keeps samples whose known score >= t, t the
strictest threshold keeping >= 95% of the known images, and reports the fraction of
open images also kept. Undefined values (no open or no known images) are NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_oltr.arrays import as_1d, check_same_length

DEFAULT_TPR_LEVEL = 0.95
DEFAULT_HISTOGRAM_BINS = 50


def _binary_curve(is_positive: np.ndarray, score: np.ndarray):
    """Cumulative (fps, tps, thresholds) at each distinct score, highest first.

    Same construction as sklearn's _binary_clf_curve: one sort, counts taken at the
    last index of each run of tied scores, so tied samples move together.
    """
    order = np.argsort(score)[::-1]
    sorted_score = score[order]
    sorted_pos = is_positive[order]
    last = np.r_[np.flatnonzero(np.diff(sorted_score)), sorted_score.size - 1]
    tps = np.cumsum(sorted_pos, dtype=np.float64)[last]
    fps = (last + 1) - tps
    return fps, tps, sorted_score[last]


def _check_binary(is_positive: Any, score: Any, names: tuple[str, str]):
    positive = np.asarray(is_positive)
    if positive.ndim != 1:
        raise ValueError(
            f"`{names[0]}` must be a 1-D array. Received: {names[0]}.shape={positive.shape}"
        )
    positive = positive.astype(bool)
    score = as_1d(names[1], score, "float")
    check_same_length((names[0], positive), (names[1], score))
    return positive, score


def auroc(is_positive: Any, score: Any) -> float:
    """Area under the ROC curve (= sklearn roc_auc_score); NaN if one class is absent."""
    positive, score = _check_binary(is_positive, score, ("is_positive", "score"))
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    fps, tps, _ = _binary_curve(positive, score)
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def average_precision(is_positive: Any, score: Any) -> float:
    """Average precision, sum_k (R_k - R_{k-1}) P_k (= sklearn average_precision_score).

    NaN when there are no positives.
    """
    positive, score = _check_binary(is_positive, score, ("is_positive", "score"))
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    fps, tps, _ = _binary_curve(positive, score)
    precision = tps / (tps + fps)
    recall = np.r_[0.0, tps / n_pos]
    return float(np.sum(np.diff(recall) * precision))


def fpr_at_tpr(
    is_positive: Any, score: Any, tpr_level: float = DEFAULT_TPR_LEVEL
) -> tuple[float, float]:
    """FPR at the first ROC point (strictest threshold first) whose TPR >= ``tpr_level``.

    Positives are kept when ``score >= threshold``. Equals
    ``fpr[np.argmax(tpr >= tpr_level)]`` on sklearn's roc_curve(drop_intermediate=False).

    Returns:
        ``(fpr, threshold)``; both NaN when a class is absent.
    """
    positive, score = _check_binary(is_positive, score, ("is_positive", "score"))
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan, math.nan
    fps, tps, thresholds = _binary_curve(positive, score)
    # Same rate comparison as the usual fpr[argmax(tpr >= level)]; tpr reaches 1.
    index = int(np.argmax(tps / n_pos >= tpr_level))
    return float(fps[index] / n_neg), float(thresholds[index])


def threshold_free_metrics(
    labels: Any, known_score: Any, *, tpr_level: float = DEFAULT_TPR_LEVEL
) -> dict[str, float]:
    """AUROC, AUPR (open = positive) and FPR at ``tpr_level`` TPR of known images.

    Args:
        labels: [N] true labels, -1 for open images.
        known_score: [N] score where higher means "more known" (max softmax
            probability, or reachability). The open score is its negation.

    Returns:
        dict with "auroc", "aupr", "fpr_at_95_tpr", "threshold_at_95_tpr" (in the
        units of ``known_score``), "num_known", "num_open".
    """
    labels = as_1d("labels", labels, "int")
    score = as_1d("known_score", known_score, "float")
    check_same_length(("labels", labels), ("known_score", score))
    is_open = labels < 0
    fpr, threshold = fpr_at_tpr(~is_open, score, tpr_level)
    return {
        "auroc": auroc(is_open, -score),
        "aupr": average_precision(is_open, -score),
        "fpr_at_95_tpr": fpr,
        "threshold_at_95_tpr": threshold,
        "tpr_level": float(tpr_level),
        "num_known": int((~is_open).sum()),
        "num_open": int(is_open.sum()),
    }


def score_histogram(
    labels: np.ndarray, score: np.ndarray, *, bins: int = DEFAULT_HISTOGRAM_BINS, value_range=None
) -> dict[str, Any]:
    """Histogram counts of ``score`` for known and open images over shared edges."""
    if value_range is None:
        if score.size:
            low, high = float(score.min()), float(score.max())
        else:
            low, high = 0.0, 1.0
        if high <= low:
            high = low + 1.0
        value_range = (low, high)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    known = labels >= 0
    return {
        "edges": edges,
        "known": np.histogram(score[known], bins=edges)[0],
        "open": np.histogram(score[~known], bins=edges)[0],
    }
