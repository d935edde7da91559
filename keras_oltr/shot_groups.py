"""Shot groups (many / medium / few): a property of per-class train counts, defined once.

Data (describing a split), training (validation accuracy per group) and evaluation
(the reported group accuracies) all use this module; it imports nothing of keras_oltr.

"strict" (default): many > 100, medium 20..100, few < 20 train images. "inclusive"
(the reference since 2020): many >= 100, medium 21..99, few <= 20. A group accuracy
is the mean of the per-class accuracies of the group's classes that have test images;
a group without such classes gives NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_oltr.arrays import as_1d

SHOT_GROUPS = ("many", "medium", "few")
CONVENTIONS = ("strict", "inclusive")
MANY_SHOT = 100
FEW_SHOT = 20
# Human-readable bounds, written into the results beside the convention name.
SHOT_GROUP_BOUNDS = {
    "strict": {"many": "> 100", "medium": "20..100", "few": "< 20"},
    "inclusive": {"many": ">= 100", "medium": "21..99", "few": "<= 20"},
}


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
        many, few = counts > MANY_SHOT, counts < FEW_SHOT
    else:
        many, few = counts >= MANY_SHOT, counts <= FEW_SHOT
    groups = np.ones(counts.shape, np.int8)
    groups[many] = 0
    groups[few] = 2
    return groups


def check_convention(convention: str) -> str:
    """Returns ``convention`` if it names a shot-group convention, else raises ValueError."""
    if convention not in CONVENTIONS:
        raise ValueError(
            f"`convention` must be one of {CONVENTIONS}. Received: convention={convention!r}"
        )
    return convention


def check_train_counts(train_counts: Any) -> np.ndarray:
    """Validates per-class train counts (1-D, non-negative integers, at least one class)."""
    counts = as_1d("train_counts", train_counts, "int")
    if counts.size == 0:
        raise ValueError("`train_counts` must hold at least one class. Received: an empty array")
    if np.any(counts < 0):
        raise ValueError(
            f"`train_counts` must be non-negative. Received: min(train_counts)={counts.min()}"
        )
    return counts


def per_class_accuracy(predicted: Any, labels: Any, num_classes: int):
    """Per-class top-1 accuracy over known images (labels >= 0).

    ``predicted`` may contain -1 (rejected), which counts as wrong.

    Returns:
        ``(accuracy, test_count)``, both [num_classes]; accuracy is NaN for classes
        without test images.
    """
    predicted = np.asarray(predicted).astype(np.int64).reshape(-1)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if predicted.shape != labels.shape:
        raise ValueError(
            "`labels` and `predicted` must have the same length. Received: "
            f"len(predicted)={predicted.size}, len(labels)={labels.size}"
        )
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
