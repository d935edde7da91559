"""OLTR evaluation metrics over numpy arrays, independent of any model.

Definitions follow SPEC.md sections 1 and 6 (the reference implementation of
Liu et al., CVPR 2019) and add threshold-free open-set metrics and calibration.

Conventions (also written into every result under "conventions"):

* Shot groups come from per-class train counts. "strict" (default): many > 100,
  medium 20..100, few < 20. "inclusive": many >= 100, medium 21..99, few <= 20.
  A group accuracy is the mean of the per-class accuracies of the group's classes
  that have test images; a group without such classes gives NaN.
* Open-set decision: predict -1 ("open") when the max softmax probability is
  strictly below the threshold (default 0.1).
* Open-set F-measure, over known + open images: TP = known images predicted
  correctly; FP = known images predicted wrongly, *including* known images rejected
  as -1; FN = open images accepted as some known class. precision = TP / (TP + FP),
  recall = TP / (TP + FN), F = 2PR / (P + R); each of the three is 0 when its
  denominator is 0 (e.g. precision with no known images, F when P = R = 0).
  The closed-set "F-measure" of the reference is sklearn macro-F1 and is reported
  separately as "macro_f1".
* Threshold-free metrics treat *open as the positive class*. A model score where
  higher means "more known" (max softmax probability, or the OLTR reachability
  s / min-distance) is turned into an open score by negation. AUROC and AUPR
  (average precision) use the open score; ties are handled exactly like sklearn's
  roc_auc_score and average_precision_score. FPR@95TPR is the usual OOD convention:
  threshold the known score so that at least 95% of the *known* images are kept
  (the first operating point, from the strictest threshold down, whose
  known-TPR >= 0.95; a sample is kept when its score >= the threshold), and
  report the fraction of *open* images that are also kept.
  Undefined values (no open or no known images) are NaN.
* Expected calibration error on known images, with 15 equal-width confidence bins
  (lo, hi] over [0, 1] (Guo et al. 2017): sum_b |B_b| / n * |acc(B_b) - conf(B_b)|.

Every function is vectorised (bincount, one sort and cumulative counts); the core
functions take the top-1 ``predicted_class`` and ``max_probability`` arrays so that
a million predictions over a thousand classes never need an N x K matrix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from keras_oltr.evaluation import open_scores as scores_lib
from keras_oltr.evaluation.open_scores import open_set_decision, select_score_threshold

SHOT_GROUPS = ("many", "medium", "few")
CONVENTIONS = ("strict", "inclusive")
DEFAULT_THRESHOLD = 0.1
DEFAULT_ECE_BINS = 15
DEFAULT_TPR_LEVEL = 0.95
DEFAULT_HISTOGRAM_BINS = 50

# Human-readable bounds, written into the results beside the convention name.
SHOT_GROUP_BOUNDS = {
    "strict": {"many": "> 100", "medium": "20..100", "few": "< 20"},
    "inclusive": {"many": ">= 100", "medium": "21..99", "few": "<= 20"},
}

_CONVENTION_TEXT = {
    "rejection": "predict -1 when max softmax probability < threshold",
    "open_f": (
        "over known + open images: TP = known correct; FP = known wrong incl. known "
        "rejected as -1; FN = open accepted as a known class; P, R, F are 0 when "
        "their denominator is 0"
    ),
    "closed_f": "macro-F1 over known test images (sklearn f1_score average='macro')",
    "group_accuracy": "mean of per-class accuracies of classes with test images",
    "threshold_free": (
        "open = positive class; open score = -max_probability or -reachability "
        "(higher model score = more known); ties as in sklearn"
    ),
    "fpr_at_95_tpr": (
        "keep samples with known score >= t, t the strictest threshold keeping >= 95% "
        "of known images; FPR = fraction of open images kept"
    ),
    "ece": "15 equal-width bins (lo, hi] on known images, max probability vs top-1 correct",
    "undefined_values": "NaN in arrays, null in the result dict",
}


# ----------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------


def _as_1d(name: str, value: Any, kind: str) -> np.ndarray:
    """Converts ``value`` to a 1-D array of integers ("int") or floats ("float")."""
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array. Received: {name}.shape={array.shape}")
    if kind == "int":
        if array.size and not (
            np.issubdtype(array.dtype, np.integer)
            or (
                np.issubdtype(array.dtype, np.floating)
                and np.all(np.isfinite(array))
                and np.all(array == np.round(array))
            )
        ):
            raise ValueError(f"`{name}` must hold integers. Received: {name}.dtype={array.dtype}")
        return array.astype(np.int64, copy=False)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"`{name}` must hold numbers. Received: {name}.dtype={array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)][:3]
        raise ValueError(f"`{name}` must be finite. Received non-finite values in {name}: {bad}")
    return array


def _check_same_length(reference: tuple[str, np.ndarray], *others: tuple[str, np.ndarray]):
    ref_name, ref = reference
    for name, array in others:
        if array.shape[0] != ref.shape[0]:
            raise ValueError(
                f"`{name}` and `{ref_name}` must have the same length. Received: "
                f"len({name})={array.shape[0]}, len({ref_name})={ref.shape[0]}"
            )


def check_convention(convention: str) -> str:
    """Returns ``convention`` if it names a shot-group convention, else raises."""
    if convention not in CONVENTIONS:
        raise ValueError(
            f"`convention` must be one of {CONVENTIONS}. Received: convention={convention!r}"
        )
    return convention


def _check_threshold(threshold: float, name: str = "threshold") -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number. Received: {name}={threshold!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={threshold!r}")
    return value


def check_train_counts(train_counts: Any) -> np.ndarray:
    """Validates per-class train counts (1-D, non-negative integers, at least one class)."""
    counts = _as_1d("train_counts", train_counts, "int")
    if counts.size == 0:
        raise ValueError("`train_counts` must hold at least one class. Received: an empty array")
    if np.any(counts < 0):
        raise ValueError(
            f"`train_counts` must be non-negative. Received: min(train_counts)={counts.min()}"
        )
    return counts


def check_labels(labels: Any, num_classes: int, name: str = "labels") -> np.ndarray:
    """Validates labels in [0, num_classes) or -1 (open)."""
    labels = _as_1d(name, labels, "int")
    if labels.size and (labels.min() < -1 or labels.max() >= num_classes):
        raise ValueError(
            f"`{name}` must be -1 (open) or in [0, {num_classes}). Received: "
            f"min({name})={labels.min()}, max({name})={labels.max()}"
        )
    return labels


def check_top1(
    predicted_class: Any,
    max_probability: Any,
    labels: Any,
    num_classes: int,
    prefix: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates top-1 predictions, max probabilities and labels; returns numpy arrays."""
    pred = _as_1d(prefix + "predicted_class", predicted_class, "int")
    prob = _as_1d(prefix + "max_probability", max_probability, "float")
    labels = check_labels(labels, num_classes, prefix + "labels")
    _check_same_length(
        (prefix + "labels", labels),
        (prefix + "predicted_class", pred),
        (prefix + "max_probability", prob),
    )
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(
            f"`{prefix}predicted_class` must be in [0, {num_classes}). Received: "
            f"min={pred.min()}, max={pred.max()}"
        )
    if prob.size and (prob.min() < 0.0 or prob.max() > 1.0 + 1e-6):
        raise ValueError(
            f"`{prefix}max_probability` must be in [0, 1]. Received: "
            f"min={prob.min()}, max={prob.max()}"
        )
    return pred, np.minimum(prob, 1.0), labels  # float32 softmax may exceed 1 by an ulp


def top1_from_scores(scores: Any, *, from_logits: bool = False, name: str = "probabilities"):
    """Returns ``(predicted_class, max_probability)`` from an [N, K] score matrix.

    Args:
        scores: [N, K] softmax probabilities, or logits when ``from_logits``.
        from_logits: apply a (numerically stable) softmax first.
        name: argument name used in error messages.

    Raises:
        ValueError: for a matrix that is not 2-D, not finite, or (without
            ``from_logits``) whose rows are not probability distributions.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(
            f"`{name}` must be a 2-D [num_samples, num_classes] array. "
            f"Received: {name}.shape={scores.shape}"
        )
    scores = scores.astype(np.float64, copy=False)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"`{name}` must be finite. Received: {name} with NaN or inf entries")
    predicted = np.argmax(scores, axis=1)
    if from_logits:
        # max softmax = 1 / sum_j exp(z_j - z_max), stable for any logit scale.
        top = scores[np.arange(scores.shape[0]), predicted]
        max_probability = 1.0 / np.exp(scores - top[:, None]).sum(axis=1)
    else:
        row_sums = scores.sum(axis=1)
        if scores.size and (scores.min() < -1e-6 or np.max(np.abs(row_sums - 1.0)) > 1e-3):
            raise ValueError(
                f"`{name}` rows must be probability distributions (non-negative, summing "
                "to 1); pass from_logits=True for logits. Received: "
                f"min={scores.min():.4g}, row sums in [{row_sums.min():.4g}, "
                f"{row_sums.max():.4g}]"
            )
        max_probability = np.clip(scores[np.arange(scores.shape[0]), predicted], 0.0, 1.0)
    return predicted.astype(np.int64), max_probability


# ----------------------------------------------------------------------------
# Shot groups and accuracies
# ----------------------------------------------------------------------------


def shot_groups(train_counts: Any, convention: str = "strict") -> np.ndarray:
    """Shot group per class: 0 = many, 1 = medium, 2 = few (see module docstring).

    Args:
        train_counts: [K] number of training images per class.
        convention: "strict" (> 100 many, < 20 few) or "inclusive" (>= 100, <= 20).

    Returns:
        int8 array [K] of group indices into ``SHOT_GROUPS``.
    """
    counts = check_train_counts(train_counts)
    check_convention(convention)
    if convention == "strict":
        many, few = counts > 100, counts < 20
    else:
        many, few = counts >= 100, counts <= 20
    groups = np.ones(counts.shape, np.int8)
    groups[many] = 0
    groups[few] = 2
    return groups


def per_class_accuracy(
    predicted: Any, labels: Any, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class top-1 accuracy over known images (labels >= 0).

    ``predicted`` may contain -1 (rejected), which counts as wrong.

    Returns:
        ``(accuracy, test_count)``, both [num_classes]; accuracy is NaN for classes
        without test images.
    """
    predicted = _as_1d("predicted", predicted, "int")
    labels = _as_1d("labels", labels, "int")
    _check_same_length(("labels", labels), ("predicted", predicted))
    known = labels >= 0
    y = labels[known]
    count = np.bincount(y, minlength=num_classes).astype(np.float64)
    correct = np.bincount(y[predicted[known] == y], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, correct / np.maximum(count, 1), np.nan)
    return accuracy, count


def group_accuracies(accuracy: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Mean per-class accuracy per shot group, ignoring NaN (classes without test images).

    A group with no classes (or none with test images) gives NaN, not an error.
    """
    result = {}
    for index, name in enumerate(SHOT_GROUPS):
        values = accuracy[(groups == index) & np.isfinite(accuracy)]
        result[name] = float(values.mean()) if values.size else math.nan
    return result


def macro_f1(predicted: Any, labels: Any) -> float:
    """Macro-averaged F1 over the union of true and predicted labels (= sklearn's).

    F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) = 2 TP_c / (n_pred_c + n_true_c), averaged
    over every label that occurs in ``labels`` or ``predicted``. NaN for no samples.
    """
    predicted = _as_1d("predicted", predicted, "int")
    labels = _as_1d("labels", labels, "int")
    _check_same_length(("labels", labels), ("predicted", predicted))
    if labels.size == 0:
        return math.nan
    offset = min(labels.min(), predicted.min())
    y, p = labels - offset, predicted - offset
    size = int(max(y.max(), p.max())) + 1
    true_count = np.bincount(y, minlength=size)
    pred_count = np.bincount(p, minlength=size)
    tp = np.bincount(y[p == y], minlength=size)
    present = (true_count + pred_count) > 0
    f1 = 2.0 * tp[present] / (true_count[present] + pred_count[present])
    return float(f1.mean())


def closed_set_metrics(
    predicted_class: Any,
    labels: Any,
    train_counts: Any,
    convention: str = "strict",
) -> dict[str, Any]:
    """Closed-set metrics on the known images (labels >= 0); open images are ignored.

    Returns:
        dict with "overall" top-1, "many"/"medium"/"few" (mean per-class accuracy),
        "macro_f1", "per_class_accuracy" and "test_count" ([K] arrays), "convention".
    """
    counts = check_train_counts(train_counts)
    num_classes = counts.size
    labels = check_labels(labels, num_classes)
    predicted = _as_1d("predicted_class", predicted_class, "int")
    _check_same_length(("labels", labels), ("predicted_class", predicted))
    groups = shot_groups(counts, convention)
    known = labels >= 0
    accuracy, test_count = per_class_accuracy(predicted, labels, num_classes)
    n_known = int(known.sum())
    result = {
        "convention": convention,
        "overall": float(np.mean(predicted[known] == labels[known])) if n_known else math.nan,
        **group_accuracies(accuracy, groups),
        "macro_f1": macro_f1(predicted[known], labels[known]),
        "per_class_accuracy": accuracy,
        "test_count": test_count,
    }
    return result


# ----------------------------------------------------------------------------
# Open set at a threshold
# ----------------------------------------------------------------------------


def open_set_decisions(predicted_class: Any, max_probability: Any, threshold: float) -> np.ndarray:
    """Top-1 class, or -1 where ``max_probability < threshold`` (`open_set_decision`)."""
    threshold = _check_threshold(threshold)
    predicted = _as_1d("predicted_class", predicted_class, "int")
    prob = _as_1d("max_probability", max_probability, "float")
    _check_same_length(("predicted_class", predicted), ("max_probability", prob))
    return open_set_decision(predicted, prob, threshold)


def _safe_ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else 0.0


def f_measure_counts(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Precision, recall and F from counts; each is 0 when its denominator is 0."""
    precision = _safe_ratio(tp, tp + fp)
    recall = _safe_ratio(tp, tp + fn)
    f = _safe_ratio(2.0 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f_measure": f}


def _f_measure_arrays(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray):
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
    threshold: float = DEFAULT_THRESHOLD,
    convention: str = "strict",
) -> dict[str, Any]:
    """Open-set metrics at a rejection threshold (SPEC section 6).

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
    threshold = _check_threshold(threshold)
    decided = open_set_decision(pred, prob, threshold)
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
    decided = _as_1d("decided", decided, "int")
    pred = _as_1d("predicted_class", predicted_class, "int")
    _check_same_length(("labels", labels), ("decided", decided), ("predicted_class", pred))
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


# ----------------------------------------------------------------------------
# Threshold-free known-vs-open metrics
# ----------------------------------------------------------------------------


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
    score = _as_1d(names[1], score, "float")
    _check_same_length((names[0], positive), (names[1], score))
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
    labels = _as_1d("labels", labels, "int")
    score = _as_1d("known_score", known_score, "float")
    _check_same_length(("labels", labels), ("known_score", score))
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


# ----------------------------------------------------------------------------
# Curves over thresholds, threshold selection, calibration
# ----------------------------------------------------------------------------


def _count_at_least(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
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
    """Open-set F and accuracies as functions of the rejection threshold (paper Fig. 8b).

    One sort of the correct known and of the open max probabilities, then cumulative
    counts looked up by binary search; the per-class group means use per-sample
    weights 1 / (test images of the class * classes in the group).

    Args:
        thresholds: 1-D thresholds in [0, 1]; default 101 points 0, 0.01, ..., 1.

    Returns:
        dict of [T] arrays: "thresholds", "precision", "recall", "f_measure",
        "overall", "many", "medium", "few", "open_rejection_rate".
    """
    counts = check_train_counts(train_counts)
    num_classes = counts.size
    pred, prob, labels = check_top1(predicted_class, max_probability, labels, num_classes)
    if thresholds is None:
        thresholds = np.linspace(0.0, 1.0, 101)
    thresholds = _as_1d("thresholds", thresholds, "float")
    if thresholds.size and (thresholds.min() < 0 or thresholds.max() > 1):
        raise ValueError(
            f"`thresholds` must be in [0, 1]. Received: min={thresholds.min()}, "
            f"max={thresholds.max()}"
        )
    groups = shot_groups(counts, convention)
    known = labels >= 0
    n_known, n_open = int(known.sum()), int((~known).sum())
    correct = known & (pred == labels)

    order = np.argsort(prob[correct])
    correct_prob = prob[correct][order]
    correct_class = labels[correct][order]
    open_prob = np.sort(prob[~known])

    tp = _count_at_least(correct_prob, thresholds).astype(np.float64)
    fp = n_known - tp
    fn = _count_at_least(open_prob, thresholds).astype(np.float64)
    precision, recall, f = _f_measure_arrays(tp, fp, fn)

    test_count = np.bincount(labels[known], minlength=num_classes)
    # Index of the first sample with prob >= t; samples from there on are accepted.
    start = np.searchsorted(correct_prob, thresholds, side="left")
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


def select_threshold(
    predicted_class: Any,
    max_probability: Any,
    labels: Any,
    num_classes: int,
) -> dict[str, Any]:
    """Threshold maximising the open-set F on a validation split.

    Candidates are the distinct max probabilities of the split (F only changes
    there); ties in F go to the lowest threshold. Without open images (no -1 labels)
    FN is always 0, so F is maximal when nothing is rejected and the lowest
    candidate is returned; a warning is logged.

    Returns:
        dict with "threshold", "open_f" (on this split), "precision", "recall",
        "used_open", "num_known", "num_open".
    """
    pred, prob, labels = check_top1(
        predicted_class, max_probability, labels, num_classes, prefix="val."
    )
    if labels.size == 0:
        raise ValueError("`val` must hold at least one image. Received: an empty split")
    if not np.any(labels < 0):
        logging.warning(
            "Threshold selection without open validation images: F is maximal when "
            "nothing is rejected, so the lowest candidate threshold is returned."
        )
    return select_score_threshold(pred, prob, labels)


def expected_calibration_error(
    max_probability: Any, correct: Any, num_bins: int = DEFAULT_ECE_BINS
) -> dict[str, Any]:
    """Expected (and maximum) calibration error with equal-width bins (lo, hi].

    Args:
        max_probability: [N] confidence of the top-1 prediction.
        correct: [N] whether the top-1 prediction is right.
        num_bins: number of equal-width bins over [0, 1].

    Returns:
        dict with "ece", "mce" (NaN for no samples), "num_bins", "bin_edges" [B+1],
        "bin_count", "bin_accuracy", "bin_confidence" [B] (NaN for empty bins).
    """
    if int(num_bins) < 1:
        raise ValueError(f"`num_bins` must be >= 1. Received: num_bins={num_bins}")
    num_bins = int(num_bins)
    prob = _as_1d("max_probability", max_probability, "float")
    correct = np.asarray(correct).astype(bool)
    if correct.ndim != 1:
        raise ValueError(f"`correct` must be a 1-D array. Received: correct.shape={correct.shape}")
    _check_same_length(("max_probability", prob), ("correct", correct))
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # searchsorted(side="left") - 1 puts a value equal to an edge into the bin it closes.
    index = np.clip(np.searchsorted(edges, prob, side="left") - 1, 0, num_bins - 1)
    count = np.bincount(index, minlength=num_bins).astype(np.float64)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=num_bins)
    confidence_sum = np.bincount(index, weights=prob, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
        confidence = np.where(count > 0, confidence_sum / np.maximum(count, 1), np.nan)
    gap = np.abs(hits - confidence_sum)  # = count * |acc - conf|
    n = prob.size
    return {
        "ece": float(gap.sum() / n) if n else math.nan,
        "mce": float(np.max(gap[count > 0] / count[count > 0])) if n else math.nan,
        "num_bins": num_bins,
        "bin_edges": edges,
        "bin_count": count.astype(np.int64),
        "bin_accuracy": accuracy,
        "bin_confidence": confidence,
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


# ----------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------


def to_json_compatible(value: Any) -> Any:
    """Converts numpy scalars/arrays to Python types and NaN/inf to None, recursively."""
    if isinstance(value, Mapping):
        return {str(k): to_json_compatible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iub":
            return value.tolist()
        return [to_json_compatible(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _val_top1(val: Mapping[str, Any], num_classes: int):
    if not isinstance(val, Mapping) or "labels" not in val:
        raise ValueError(
            "`val` must be a dict with 'labels' and either 'predicted_class' + "
            "'max_probability', 'probabilities' or 'logits'. Received: "
            f"{type(val).__name__} with keys {sorted(val) if isinstance(val, Mapping) else None}"
        )
    if "predicted_class" in val and "max_probability" in val:
        pred, prob = val["predicted_class"], val["max_probability"]
    elif "probabilities" in val:
        pred, prob = top1_from_scores(val["probabilities"], name="val.probabilities")
    elif "logits" in val:
        pred, prob = top1_from_scores(val["logits"], from_logits=True, name="val.logits")
    else:
        raise ValueError(
            "`val` needs 'predicted_class' + 'max_probability', 'probabilities' or "
            f"'logits'. Received keys: {sorted(val)}"
        )
    return check_top1(pred, prob, val["labels"], num_classes, prefix="val.")


OPEN_VAL_NOTE = {
    True: "chosen on known val + open val images",
    False: (
        "no open validation data was used: with known images only, F is maximal when "
        "nothing is rejected, so the lowest threshold was kept"
    ),
}


def _check_scores(scores: Mapping[str, Any] | None, size: int, name: str) -> dict[str, np.ndarray]:
    """Open-score arrays as float64 [N]; NaN/inf are allowed (rejected, ranked last)."""
    result = {}
    for key, value in (scores or {}).items():
        array = np.asarray(value, dtype=np.float64).reshape(-1)
        if array.size != size:
            raise ValueError(
                f"`{name}[{key!r}]` must have one value per image. Received: "
                f"{array.size} values for {size} images"
            )
        result[str(key)] = array
    return result


def _rankable(score: np.ndarray) -> np.ndarray:
    """NaN/inf moved below every finite score: same ranks as the decision rule's order."""
    ranked = scores_lib.ranking_score(score)
    finite = np.isfinite(ranked)
    low = ranked[finite].min() - 1.0 if finite.any() else 0.0
    return np.where(finite, ranked, low)


def open_score_table(
    test_scores: Mapping[str, np.ndarray],
    predicted_class: np.ndarray,
    labels: np.ndarray,
    train_counts: np.ndarray,
    *,
    choice: Mapping[str, Any] | None = None,
    convention: str = "strict",
) -> dict[str, Any]:
    """Threshold-free metrics of every open score on test, and F at its validation threshold.

    Args:
        test_scores: {name: [N]} (`compute_scores` keys; "msp_rescaled@<s'>" per s').
        predicted_class, labels, train_counts: the test top-1 classes, labels, counts.
        choice: `choose_open_score` on validation, or None (no val split).

    Returns:
        {"scores": {name: {"description", "score_params", "auroc", "aupr",
        "fpr_at_95_tpr", ..., "val_threshold", "val_open_f", "test_at_val_threshold"}},
        "scale_grid": {s': {"auroc", "aupr", "fpr_at_95_tpr", "val_open_f",
        "val_threshold"}}, "chosen": name or None}. msp_rescaled appears in "scores"
        only with a validation split (its s' is chosen there).
    """
    per_score = (choice or {}).get("per_score", {})
    grid_choice = (choice or {}).get("scale_grid", {})
    rows, grid = {}, {}
    for key, values in test_scores.items():
        if key.startswith(scores_lib.MSP_RESCALED + "@"):
            scale = float(key.split("@", 1)[1])
            entry = threshold_free_metrics(labels, _rankable(values))
            picked = grid_choice.get(scale)
            grid[f"{scale:g}"] = {k: entry[k] for k in ("auroc", "aupr", "fpr_at_95_tpr")} | {
                "val_open_f": picked["open_f"] if picked else None,
                "val_threshold": picked["threshold"] if picked else None,
            }
    names = [n for n in scores_lib.OLTR_SCORES if n in test_scores or n in per_score]
    for name in names:
        picked = per_score.get(name)
        if name == scores_lib.MSP_RESCALED and picked is None:
            continue
        params = picked["score_params"] if picked else {}
        values = scores_lib.score_array(test_scores, name, params)
        row = {
            "description": scores_lib.SCORE_DESCRIPTIONS[name],
            "score_params": params,
            **threshold_free_metrics(labels, _rankable(values)),
            "val_threshold": None,
            "val_open_f": None,
            "test_at_val_threshold": None,
        }
        if picked:
            decided = open_set_decision(predicted_class, values, picked["threshold"])
            at = open_set_metrics_from_decisions(
                decided, predicted_class, labels, train_counts, convention=convention
            )
            row["val_threshold"] = picked["threshold"]
            row["val_open_f"] = picked["open_f"]
            row["test_at_val_threshold"] = {
                k: at[k]
                for k in ("f_measure", "precision", "recall", "overall", "open_rejection_rate")
            }
        rows[name] = row
    chosen = (choice or {}).get("chosen", {}).get("score")
    return {"scores": rows, "scale_grid": grid, "chosen": chosen}


def evaluate_top1_predictions(
    predicted_class: Any,
    max_probability: Any,
    labels: Any,
    train_counts: Any,
    *,
    reachability: Any = None,
    threshold: float = DEFAULT_THRESHOLD,
    convention: str = "strict",
    val: Mapping[str, Any] | None = None,
    curve_thresholds: Any = None,
    open_scores: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every OLTR metric from top-1 predictions; returns a JSON-serialisable dict.

    Args:
        predicted_class: [N] argmax class over the K known classes.
        max_probability: [N] max softmax probability.
        labels: [N] true class in [0, K), -1 for open images.
        train_counts: [K] train images per class (defines K and the shot groups).
        reachability: optional [N] OLTR reachability (s / min distance; higher =
            closer to a centroid = more known). None omits its metrics (null).
        threshold: open-set rejection threshold on the max probability.
        convention: shot-group convention, "strict" or "inclusive".
        val: optional validation predictions for threshold selection, a dict with
            "labels" (-1 for open) and "predicted_class" + "max_probability",
            "probabilities" or "logits", and optionally "open_scores" (as below).
            Only validation chooses the open score and its threshold.
        curve_thresholds: thresholds of the F / accuracy curves (default 0..1 by 0.01).
        open_scores: optional {name: [N] array} of further open scores
            (`keras_oltr.evaluation.open_scores.compute_scores`; higher = more
            known); "msp" is always added from ``max_probability``.

    Returns:
        Nested dict with "conventions", "counts", "closed", "open", "open_assignment",
        "threshold_free" ({"msp", "reachability"}), "open_scores" (the per-score
        table, `open_score_table`), "calibration", "threshold_selection" (with the
        chosen "score", "score_params" and "threshold"), "curves", "histograms",
        "per_class". Undefined numbers (NaN) are None.
    """
    check_convention(convention)
    threshold = _check_threshold(threshold)
    counts = check_train_counts(train_counts)
    num_classes = counts.size
    pred, prob, labels = check_top1(predicted_class, max_probability, labels, num_classes)
    if labels.size == 0:
        raise ValueError("`labels` must hold at least one image. Received: len(labels)=0")
    if reachability is not None:
        reachability = _as_1d("reachability", reachability, "float")
        _check_same_length(("labels", labels), ("reachability", reachability))
    groups = shot_groups(counts, convention)
    known = labels >= 0

    closed = closed_set_metrics(pred, labels, counts, convention)
    open_ = open_set_metrics(pred, prob, labels, counts, threshold=threshold, convention=convention)
    calibration = expected_calibration_error(prob[known], pred[known] == labels[known])
    curves = threshold_curves(
        pred, prob, labels, counts, thresholds=curve_thresholds, convention=convention
    )

    test_scores = {**_check_scores(open_scores, labels.size, "open_scores"), "msp": prob}
    selection, choice = None, None
    if val is not None:
        val_pred, val_prob, val_labels = _val_top1(val, num_classes)
        if not np.any(val_labels < 0):
            logging.warning(
                "Threshold selection without open validation images: F is maximal when "
                "nothing is rejected, so every score keeps its lowest candidate threshold."
            )
        val_scores = {
            **_check_scores(val.get("open_scores"), val_labels.size, "val.open_scores"),
            "msp": val_prob,
        }
        shared = {k: v for k, v in val_scores.items() if k in test_scores}
        choice = scores_lib.choose_open_score(val_pred, shared, val_labels)
        chosen = choice["chosen"]
        decided = open_set_decision(
            pred,
            scores_lib.score_array(test_scores, chosen["score"], chosen["score_params"]),
            chosen["threshold"],
        )
        at_chosen = open_set_metrics_from_decisions(
            decided, pred, labels, counts, convention=convention
        )
        test_keys = ("f_measure", "precision", "recall", "overall", *SHOT_GROUPS)
        selection = {
            "score": chosen["score"],
            "score_params": chosen["score_params"],
            "score_description": scores_lib.SCORE_DESCRIPTIONS[chosen["score"]],
            "threshold": chosen["threshold"],
            "val_open_f": chosen["open_f"],
            "val_precision": chosen["precision"],
            "val_recall": chosen["recall"],
            "used_open_val": chosen["used_open"],
            "open_val_note": OPEN_VAL_NOTE[chosen["used_open"]],
            "num_val_known": chosen["num_known"],
            "num_val_open": chosen["num_open"],
            "test": {k: at_chosen[k] for k in (*test_keys, "open_rejection_rate")},
        }
    score_table = open_score_table(
        test_scores, pred, labels, counts, choice=choice, convention=convention
    )

    reach_metrics = reach_hist = None
    if reachability is not None:
        reach_metrics = threshold_free_metrics(labels, reachability)
        reach_hist = score_histogram(labels, reachability)

    group_names = np.asarray(SHOT_GROUPS)[groups]
    result = {
        "conventions": {
            "shot_groups": convention,
            "shot_group_bounds": SHOT_GROUP_BOUNDS[convention],
            "open_threshold": threshold,
            **_CONVENTION_TEXT,
        },
        "counts": {
            "num_classes": num_classes,
            "num_known_test": int(known.sum()),
            "num_open_test": int((~known).sum()),
            "classes_per_group": {
                name: int(np.sum(groups == i)) for i, name in enumerate(SHOT_GROUPS)
            },
            "test_images_per_group": {
                name: int(np.sum(groups[labels[known]] == i)) for i, name in enumerate(SHOT_GROUPS)
            },
        },
        "closed": {
            k: v for k, v in closed.items() if k not in ("per_class_accuracy", "test_count")
        },
        "open": {
            k: v for k, v in open_.items() if k not in ("per_class_accuracy", "open_assignment")
        },
        "open_assignment": open_["open_assignment"],
        "threshold_free": {
            "msp": threshold_free_metrics(labels, prob),
            "reachability": reach_metrics,
        },
        "open_scores": score_table,
        "calibration": calibration,
        "threshold_selection": selection,
        "curves": curves,
        "histograms": {
            "msp": score_histogram(labels, prob, value_range=(0.0, 1.0)),
            "reachability": reach_hist,
        },
        "per_class": {
            "train_count": counts,
            "test_count": closed["test_count"].astype(np.int64),
            "group": group_names.tolist(),
            "closed_accuracy": closed["per_class_accuracy"],
            "open_accuracy": open_["per_class_accuracy"],
        },
    }
    return to_json_compatible(result)


def evaluate_predictions(
    scores: Any,
    labels: Any,
    train_counts: Any,
    *,
    from_logits: bool = False,
    reachability: Any = None,
    threshold: float = DEFAULT_THRESHOLD,
    convention: str = "strict",
    val: Mapping[str, Any] | None = None,
    curve_thresholds: Any = None,
    open_scores: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every OLTR metric from an [N, K] probability (or logit) matrix.

    Convenience wrapper over `evaluate_top1_predictions`; see it for the arguments
    and the returned dict. ``from_logits=True`` applies a softmax first; without it,
    rows must be probability distributions.
    """
    name = "logits" if from_logits else "probabilities"
    predicted_class, max_probability = top1_from_scores(scores, from_logits=from_logits, name=name)
    counts = check_train_counts(train_counts)
    if np.asarray(scores).shape[1] != counts.size:
        raise ValueError(
            f"`{name}` must have one column per class of `train_counts`. Received: "
            f"{name}.shape={np.asarray(scores).shape}, len(train_counts)={counts.size}"
        )
    return evaluate_top1_predictions(
        predicted_class,
        max_probability,
        labels,
        counts,
        reachability=reachability,
        threshold=threshold,
        convention=convention,
        val=val,
        curve_thresholds=curve_thresholds,
        open_scores=open_scores,
    )
