"""Input checks shared by the metric modules: 1-D arrays, labels, top-1 predictions.

Train counts and the shot-group convention are checked by `keras_oltr.shot_groups`
(`check_train_counts`, `check_convention`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_oltr.arrays import as_1d, check_same_length


def check_threshold(threshold: float, name: str = "threshold") -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number. Received: {name}={threshold!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={threshold!r}")
    return value


def check_labels(labels: Any, num_classes: int, name: str = "labels") -> np.ndarray:
    """Validates labels in [0, num_classes) or -1 (open)."""
    labels = as_1d(name, labels, "int")
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
    pred = as_1d(prefix + "predicted_class", predicted_class, "int")
    prob = as_1d(prefix + "max_probability", max_probability, "float")
    labels = check_labels(labels, num_classes, prefix + "labels")
    check_same_length(
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


# Rows per chunk of `top1_from_scores`: its float64 temporaries stay near 8 MB each.
_CHUNK_ELEMENTS = 1 << 20


def top1_from_scores(scores: Any, *, from_logits: bool = False, name: str = "probabilities"):
    """Returns ``(predicted_class, max_probability)`` from an [N, K] score matrix.

    The rows are read in chunks of about a million entries, each turned into float64
    on its own, so the memory beyond ``scores`` is O(N) plus one chunk's temporaries,
    never an N x K copy; every row gets the same float64 arithmetic as a whole-array
    computation would give it.

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
    num = scores.shape[0]
    predicted = np.empty(num, np.int64)
    max_probability = np.empty(num, np.float64)
    row_sums = np.empty(num, np.float64)
    minimum = np.inf
    step = max(1, _CHUNK_ELEMENTS // scores.shape[1])
    for start in range(0, num, step):
        chunk = scores[start : start + step].astype(np.float64, copy=False)
        if not np.all(np.isfinite(chunk)):
            raise ValueError(f"`{name}` must be finite. Received: {name} with NaN or inf entries")
        rows = slice(start, start + chunk.shape[0])
        predicted[rows] = np.argmax(chunk, axis=1)
        top = chunk[np.arange(chunk.shape[0]), predicted[rows]]
        if from_logits:
            # max softmax = 1 / sum_j exp(z_j - z_max), stable for any logit scale.
            max_probability[rows] = 1.0 / np.exp(chunk - top[:, None]).sum(axis=1)
        else:
            row_sums[rows] = chunk.sum(axis=1)
            minimum = min(minimum, float(chunk.min()))
            max_probability[rows] = np.clip(top, 0.0, 1.0)
    if not from_logits and num and (minimum < -1e-6 or np.max(np.abs(row_sums - 1.0)) > 1e-3):
        raise ValueError(
            f"`{name}` rows must be probability distributions (non-negative, summing "
            "to 1); pass from_logits=True for logits. Received: "
            f"min={minimum:.4g}, row sums in [{row_sums.min():.4g}, {row_sums.max():.4g}]"
        )
    return predicted, max_probability
