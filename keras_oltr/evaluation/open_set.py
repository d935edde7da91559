"""Open-set metrics at a threshold: the F-measure, rejection rates, curves, selection.

Over known + open images: TP = known images predicted correctly; FP = known images
predicted wrongly, *including* known images rejected as -1; FN = open images accepted
as some known class. precision = TP / (TP + FP), recall = TP / (TP + FN),
F = 2PR / (P + R); each is 0 when its denominator is 0. Decisions come from the one
open-set rule, `keras_oltr.evaluation.open_scores.open_set_decision`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from keras_oltr.evaluation import open_scores as scores_lib
from keras_oltr.evaluation.checks import (
    as_1d,
    check_labels,
    check_same_length,
    check_threshold,
    check_top1,
    check_train_counts,
)
from keras_oltr.evaluation.closed_set import per_class_accuracy
from keras_oltr.evaluation.open_scores import open_set_decision
from keras_oltr.evaluation.ranking import auroc
from keras_oltr.evaluation.shot_groups import SHOT_GROUPS, group_accuracies, shot_groups

DEFAULT_THRESHOLD = 0.1


def open_set_decisions(predicted_class: Any, max_probability: Any, threshold: float) -> np.ndarray:
    """Top-1 class, or -1 where ``max_probability < threshold`` (`open_set_decision`)."""
    threshold = check_threshold(threshold)
    predicted = as_1d("predicted_class", predicted_class, "int")
    prob = as_1d("max_probability", max_probability, "float")
    check_same_length(("predicted_class", predicted), ("max_probability", prob))
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
    thresholds = as_1d("thresholds", thresholds, "float")
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


# ----------------------------------------------------------------------------
# Threshold selection and the per-score table (validation only chooses)
# ----------------------------------------------------------------------------


def select_score_threshold(
    predicted_class: Any, score: Any, labels: Any, *, valid: Any = None
) -> dict[str, Any]:
    """The threshold on ``score`` that maximises the open-set F on a validation split.

    Candidates are the distinct finite scores (F only changes there); ties in F go to
    the lowest threshold. A sample counts as accepted when the decision rule
    (`open_scores.open_set_decision`) accepts it. Without open images F is maximal when nothing
    is rejected, so the lowest candidate wins.

    Returns:
        dict with "threshold", "open_f", "precision", "recall", "used_open",
        "num_known", "num_open".
    """
    predicted = np.asarray(predicted_class).astype(np.int64)
    labels = np.asarray(labels).astype(np.int64)
    score = scores_lib.ranking_score(score, valid)
    if labels.size == 0:
        raise ValueError("`val` must hold at least one image. Received: an empty split")
    candidates = np.unique(score[np.isfinite(score)])
    if candidates.size == 0:
        raise ValueError("No finite open score on the validation split: cannot choose a threshold.")
    known = labels >= 0
    n_known, n_open = int(known.sum()), int((~known).sum())
    tp = _count_at_least(np.sort(score[known & (predicted == labels)]), candidates).astype(
        np.float64
    )
    fn = _count_at_least(np.sort(score[~known]), candidates).astype(np.float64)
    precision, recall, f = _f_measure_arrays(tp, n_known - tp, fn)
    best = int(np.argmax(f))  # first maximum = lowest threshold
    return {
        "threshold": float(candidates[best]),
        "open_f": float(f[best]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "used_open": n_open > 0,
        "num_known": n_known,
        "num_open": n_open,
    }


def _val_auroc(values: Any, val_labels: np.ndarray, val_valid: Any = None) -> float:
    """Known-vs-open AUROC of a higher-is-known score on validation (NaN without opens)."""
    ranked = scores_lib.ranking_score(values, val_valid)
    finite = np.isfinite(ranked)
    low = ranked[finite].min() - 1.0 if finite.any() else 0.0
    return auroc(np.asarray(val_labels) < 0, -np.where(finite, ranked, low))


def choose_open_score(
    val_predicted: Any,
    val_scores: Mapping[str, Any],
    val_labels: Any,
    *,
    val_valid: Any = None,
) -> dict[str, Any]:
    """Picks the open score by validation AUROC, and its threshold by validation F.

    The score is the one that best separates known from open validation images
    (AUROC, threshold-free); its threshold is the one that maximises the open-set F
    on validation. Choosing the score by F instead would rest on a handful of images:
    every score of a model shares its top-1 predictions, so F differs between scores
    only through the few images near the threshold. Without open validation images
    AUROC is undefined and the score is chosen by F (ties: the earlier score).

    ``val_scores`` is `open_scores.compute_scores`' dict (numpy). Every score gets its
    own best threshold; "msp_rescaled@<s'>" entries compete as one score
    "msp_rescaled" whose s' is the best of the grid by the same rule. Ties go to the
    earlier score of `OLTR_SCORES` (MSP first) and, within the grid, to the smaller s'.

    Returns:
        {"chosen": {"score", "score_params", "threshold", "open_f", "val_auroc", ...},
         "per_score": {name: selection dict (with "score_params", "val_auroc")},
         "scale_grid": {s': selection dict} (empty for the plain model)}.
    """
    labels = np.asarray(val_labels)
    has_open = bool(np.any(labels < 0)) and bool(np.any(labels >= 0))

    def rank_key(selection):
        val_auroc = selection["val_auroc"] if has_open else 0.0
        return (0.0 if math.isnan(val_auroc) else val_auroc, selection["open_f"])

    per_score, grid = {}, {}
    for key, values in val_scores.items():
        selection = select_score_threshold(val_predicted, values, val_labels, valid=val_valid)
        selection = selection | {
            "val_auroc": _val_auroc(values, labels, val_valid) if has_open else math.nan
        }
        if key.startswith(scores_lib.MSP_RESCALED + "@"):
            scale = float(key.split("@", 1)[1])
            grid[scale] = selection | {"score_params": {"reachability_scale": scale}}
        else:
            per_score[key] = selection | {"score_params": {}}
    if grid:
        best_scale = max(sorted(grid), key=lambda s: (*rank_key(grid[s]), -s))
        per_score[scores_lib.MSP_RESCALED] = grid[best_scale]
    order = [n for n in scores_lib.OLTR_SCORES if n in per_score]
    best = max(order, key=lambda n: (*rank_key(per_score[n]), -order.index(n)))
    chosen = {"score": best, **per_score[best]}
    return {"chosen": chosen, "per_score": per_score, "scale_grid": grid}
