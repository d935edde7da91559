"""Calibration of the known-image predictions: expected and maximum calibration error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_oltr.arrays import as_1d, check_same_length

DEFAULT_ECE_BINS = 15


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
    prob = as_1d("max_probability", max_probability, "float")
    correct = np.asarray(correct).astype(bool)
    if correct.ndim != 1:
        raise ValueError(f"`correct` must be a 1-D array. Received: correct.shape={correct.shape}")
    check_same_length(("max_probability", prob), ("correct", correct))
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
