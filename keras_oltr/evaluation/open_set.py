"""Open-set metrics at a threshold: the F-measure, rejection rates and their curves.

Over known + open images: TP = known images predicted correctly; FP = known images
predicted wrongly, *including* known images rejected as -1; FN = open images accepted
as some known class. precision = TP / (TP + FP), recall = TP / (TP + FN),
F = 2PR / (P + R); each is 0 when its denominator is 0. Decisions come from the one
open-set rule, `keras_oltr.open_scores.open_set_decision`. Choosing a threshold on
validation is `score_selection`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_oltr import open_scores as scores_lib
from keras_oltr.evaluation.checks import (
    as_1d,
    check_labels,
    check_same_length,
    check_threshold,
    check_top1,
)
from keras_oltr.evaluation.closed_set import per_class_accuracy
from keras_oltr.shot_groups import SHOT_GROUPS, check_train_counts, group_accuracies, shot_groups


def open_set_decisions(predicted_class: Any, max_probability: Any, threshold: float) -> np.ndarray:
    """Top-1 class, or -1 where ``max_probability < threshold`` (`open_set_decision`)."""
    threshold = check_threshold(threshold)
    predicted = as_1d("predicted_class", predicted_class, "int")
    prob = as_1d("max_probability", max_probability, "float")
    check_same_length(("predicted_class", predicted), ("max_probability", prob))
    return scores_lib.decide_numpy(predicted, prob, threshold)


def _safe_ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else 0.0


def f_measure_counts(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Precision, recall and F from counts; each is 0 when its denominator is 0."""
    precision = _safe_ratio(tp, tp + fp)
    recall = _safe_ratio(tp, tp + fn)
    f = _safe_ratio(2.0 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f_measure": f}


def f_measure_arrays(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray):
    """Vectorised `f_measure_counts`: (precision, recall, F), 0 where undefined."""

    def ratio(numerator, denominator):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)

    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    return precision, recall, ratio(2.0 * precision * recall, precision + recall)


def open_set_metrics(
    predicted_class: Any,
    max_probability: Any,
    labels: Any,
    train_counts: Any,
    *,
    threshold: float = scores_lib.PAPER_THRESHOLD,
    convention: str = "strict",
) -> dict[str, Any]:
    """Open-set metrics at a rejection threshold (the reference's definition).

    Over known + open images: TP = knowns predicted correctly; FP = knowns predicted
    wrongly, including knowns rejected as -1; FN = opens accepted as a known class;
    F = 2PR / (P + R) with P = TP / (TP + FP), R = TP / (TP + FN).

    Args:
        predicted_class: [N] top-1 class over the K known classes.
        max_probability: [N] max softmax probability.
        labels: [N] true class, -1 for open images.
        train_counts: [K] train images per class (shot groups).
        threshold: reject (predict -1) when max probability < threshold.
        convention: shot-group convention.

    Returns:
        dict with the F-measure ("precision", "recall", "f_measure", "tp", "fp", "fn"),
        known-class accuracies with rejected knowns counted wrong ("overall", "many",
        "medium", "few", "per_class_accuracy"), "open_rejection_rate" (accuracy on
        open images), "known_rejection_rate", "open_assignment" (where open images
        go, per shot group of the predicted class) and "threshold"/"convention".
    """
    counts = check_train_counts(train_counts)
    num_classes = counts.size
    pred, prob, labels = check_top1(predicted_class, max_probability, labels, num_classes)
    threshold = check_threshold(threshold)
    decided = scores_lib.decide_numpy(pred, prob, threshold)
    return {"threshold": threshold} | open_set_metrics_from_decisions(
        decided, pred, labels, counts, convention=convention
    )


def open_set_metrics_from_decisions(
    decided: Any,
    predicted_class: Any,
    labels: Any,
    train_counts: Any,
    *,
    convention: str = "strict",
) -> dict[str, Any]:
    """`open_set_metrics` for decisions already taken (any open score and threshold).

    Args:
        decided: [N] the decision rule's output: a class, or -1 for rejected.
        predicted_class: [N] the top-1 class before rejection (where open images
            would go without it).
        labels, train_counts, convention: as for `open_set_metrics`.
    """
    counts = check_train_counts(train_counts)
    num_classes = counts.size
    labels = check_labels(labels, num_classes)
    decided = as_1d("decided", decided, "int")
    pred = as_1d("predicted_class", predicted_class, "int")
    check_same_length(("labels", labels), ("decided", decided), ("predicted_class", pred))
    groups = shot_groups(counts, convention)
    known = labels >= 0
    n_known, n_open = int(known.sum()), int((~known).sum())
    tp = int(np.sum(decided[known] == labels[known]))
    fp = n_known - tp
    open_decided = decided[~known]
    open_accepted = open_decided >= 0
    fn = int(open_accepted.sum())
    accuracy, _ = per_class_accuracy(decided, labels, num_classes)

    accepted_groups = np.bincount(groups[open_decided[open_accepted]], minlength=3)
    argmax_groups = np.bincount(groups[pred[~known]], minlength=3)
    assignment = {
        "accepted": {name: int(accepted_groups[i]) for i, name in enumerate(SHOT_GROUPS)},
        "rejected": int(n_open - fn),
        "argmax": {name: int(argmax_groups[i]) for i, name in enumerate(SHOT_GROUPS)},
        "num_open": n_open,
    }
    return {
        "convention": convention,
        "overall": tp / n_known if n_known else math.nan,
        **group_accuracies(accuracy, groups),
        "open_rejection_rate": float(np.mean(~open_accepted)) if n_open else math.nan,
        "known_rejection_rate": float(np.mean(decided[known] < 0)) if n_known else math.nan,
        **f_measure_counts(tp, fp, fn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "per_class_accuracy": accuracy,
        "open_assignment": assignment,
    }


def count_at_least(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of entries of ``sorted_values`` that are >= each threshold."""
    return sorted_values.size - np.searchsorted(sorted_values, thresholds, side="left")


def threshold_curves(
    predicted_class: Any,
    max_probability: Any,
    labels: Any,
    train_counts: Any,
    *,
    thresholds: Any = None,
    convention: str = "strict",
) -> dict[str, np.ndarray]:
    """Open-set F and accuracies as functions of the max-probability threshold (paper Fig. 8b).

    `score_threshold_curves` of the max probability, with checked inputs.

    Args:
        thresholds: 1-D thresholds in [0, 1]; default 101 points 0, 0.01, ..., 1.

    Returns:
        dict of [T] arrays: "thresholds", "precision", "recall", "f_measure",
        "overall", "many", "medium", "few", "open_rejection_rate".
    """
    counts = check_train_counts(train_counts)
    pred, prob, labels = check_top1(predicted_class, max_probability, labels, counts.size)
    if thresholds is None:
        thresholds = np.linspace(0.0, 1.0, 101)
    thresholds = as_1d("thresholds", thresholds, "float")
    if thresholds.size and (thresholds.min() < 0 or thresholds.max() > 1):
        raise ValueError(
            f"`thresholds` must be in [0, 1]. Received: min={thresholds.min()}, "
            f"max={thresholds.max()}"
        )
    return score_threshold_curves(
        pred, prob, labels, counts, thresholds=thresholds, convention=convention
    )


def score_thresholds(score: Any, threshold: float | None = None, num: int = 101) -> np.ndarray:
    """``num`` thresholds spanning the finite values of ``score`` (and ``threshold``, if given)."""
    values = np.asarray(score, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if threshold is not None and math.isfinite(threshold):
        values = np.r_[values, threshold]
    if values.size == 0:
        return np.linspace(0.0, 1.0, num)
    low, high = float(values.min()), float(values.max())
    return np.linspace(low, high if high > low else low + 1.0, num)


def score_threshold_curves(
    predicted_class: Any,
    score: Any,
    labels: Any,
    train_counts: Any,
    *,
    thresholds: Any,
    convention: str = "strict",
    valid: Any = None,
) -> dict[str, np.ndarray]:
    """Open-set F and accuracies of any open score as functions of its threshold.

    The decision rule of `keras_oltr.open_scores.open_set_decision`: an image is
    accepted when its score is finite (and its row ``valid``) and ``score >=
    threshold``, both in float32. One sort of the correct known and of the open
    scores, then cumulative counts looked up by binary search; the per-class group
    means use per-sample weights 1 / (test images of the class * classes in the group).

    Args:
        predicted_class: [N] top-1 class.
        score: [N] open score, higher = more known, in any units (NaN/inf: rejected).
        labels: [N] true class, -1 for open images.
        train_counts: [K] train images per class (shot groups).
        thresholds: [T] thresholds in the units of ``score`` (`score_thresholds`).
        convention: shot-group convention.
        valid: optional [N] booleans, False for rows that are always rejected.

    Returns:
        dict of [T] arrays, as `threshold_curves`.
    """
    counts = check_train_counts(train_counts)
    num_classes = counts.size
    labels = check_labels(labels, num_classes)
    pred = as_1d("predicted_class", predicted_class, "int")
    check_same_length(("labels", labels), ("predicted_class", pred), ("score", np.ravel(score)))
    thresholds = as_1d("thresholds", thresholds, "float")
    dtype = scores_lib.DECISION_DTYPE
    with np.errstate(over="ignore"):  # a finite float64 beyond float32 is rejected, as in the rule
        score = scores_lib.ranking_score(score, valid).astype(dtype).astype(np.float64)
        cut = thresholds.astype(dtype).astype(np.float64)
    accepted = np.isfinite(score)  # only finite scores can be accepted
    groups = shot_groups(counts, convention)
    known = labels >= 0
    n_known, n_open = int(known.sum()), int((~known).sum())
    correct = known & (pred == labels) & accepted

    order = np.argsort(score[correct])
    correct_score = score[correct][order]
    correct_class = labels[correct][order]
    open_score = np.sort(score[~known & accepted])

    tp = count_at_least(correct_score, cut).astype(np.float64)
    fp = n_known - tp
    fn = count_at_least(open_score, cut).astype(np.float64)
    precision, recall, f = f_measure_arrays(tp, fp, fn)

    test_count = np.bincount(labels[known], minlength=num_classes)
    # Index of the first sample with score >= t; samples from there on are accepted.
    start = np.searchsorted(correct_score, cut, side="left")
    result = {
        "thresholds": thresholds,
        "precision": precision,
        "recall": recall,
        "f_measure": f,
        "overall": tp / n_known if n_known else np.full(thresholds.shape, np.nan),
        "open_rejection_rate": (1.0 - fn / n_open if n_open else np.full(thresholds.shape, np.nan)),
    }
    sample_group = groups[correct_class]
    for index, name in enumerate(SHOT_GROUPS):
        classes_in_group = int(np.sum((groups == index) & (test_count > 0)))
        if classes_in_group == 0:
            result[name] = np.full(thresholds.shape, np.nan)
            continue
        weight = np.where(
            sample_group == index,
            1.0 / (np.maximum(test_count[correct_class], 1) * classes_in_group),
            0.0,
        )
        suffix = np.r_[np.cumsum(weight[::-1])[::-1], 0.0]  # suffix[i] = sum(weight[i:])
        result[name] = suffix[start]
    return result
