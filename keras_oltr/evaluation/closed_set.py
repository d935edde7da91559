"""Closed-set metrics on the known test images: top-1, shot-group accuracies, macro-F1.

The reference's closed-set "F-measure" is sklearn's macro-F1 (`macro_f1`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_oltr import shot_groups as shot_groups_lib
from keras_oltr.arrays import as_1d, check_same_length
from keras_oltr.evaluation.checks import check_labels
from keras_oltr.shot_groups import check_train_counts, group_accuracies, shot_groups


def per_class_accuracy(
    predicted: Any, labels: Any, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """`keras_oltr.shot_groups.per_class_accuracy` after the evaluation's input checks."""
    predicted = as_1d("predicted", predicted, "int")
    labels = as_1d("labels", labels, "int")
    check_same_length(("labels", labels), ("predicted", predicted))
    return shot_groups_lib.per_class_accuracy(predicted, labels, num_classes)


def macro_f1(predicted: Any, labels: Any) -> float:
    """Macro-averaged F1 over the union of true and predicted labels (= sklearn's).

    F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) = 2 TP_c / (n_pred_c + n_true_c), averaged
    over every label that occurs in ``labels`` or ``predicted``. NaN for no samples.
    """
    predicted = as_1d("predicted", predicted, "int")
    labels = as_1d("labels", labels, "int")
    check_same_length(("labels", labels), ("predicted", predicted))
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
    predicted = as_1d("predicted_class", predicted_class, "int")
    check_same_length(("labels", labels), ("predicted_class", predicted))
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
