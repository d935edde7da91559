"""Shot groups (many / medium / few) from per-class train counts: the one definition.

"strict" (default): many > 100, medium 20..100, few < 20 train images. "inclusive"
(the reference since 2020): many >= 100, medium 21..99, few <= 20. A group accuracy
is the mean of the per-class accuracies of the group's classes that have test images;
a group without such classes gives NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

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
    from keras_oltr.evaluation.checks import check_convention, check_train_counts

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


def group_accuracies(accuracy: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Mean per-class accuracy per shot group, ignoring NaN (classes without test images).

    A group with no classes (or none with test images) gives NaN, not an error.
    """
    result = {}
    for index, name in enumerate(SHOT_GROUPS):
        values = accuracy[(groups == index) & np.isfinite(accuracy)]
        result[name] = float(values.mean()) if values.size else math.nan
    return result
