"""Class-prior-aware cross-entropy: Balanced Softmax / logit adjustment."""

import numpy as np
from keras import ops


def log_class_prior(class_counts):
    """log(n_k / N) for train counts n_k; classes with no images get log(1 / (N + K))."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0):
        raise ValueError(
            "`class_counts` must be a non-empty 1-D array of non-negative counts. "
            f"Received: class_counts with shape {counts.shape}"
        )
    total = counts.sum()
    if total <= 0:
        raise ValueError("`class_counts` must contain at least one image. Received: all zero")
    prior = np.where(counts > 0, counts / total, 1.0 / (total + counts.size))
    return np.log(prior).astype(np.float32)


def cross_entropy(labels, logits, log_prior=None, tau=1.0):
    """Per-sample softmax cross-entropy, optionally on prior-adjusted logits.

    With `log_prior` given, the logits are shifted by tau * log(prior) during
    training: tau = 1 is Balanced Softmax (Ren et al. 2020), general tau the
    logit-adjusted loss (Menon et al. 2021). Inference uses the plain logits, so the
    adjustment removes the head-class bias the training prior put into them.

    Returns a [B] float32 tensor.
    """
    logits = ops.cast(logits, "float32")
    if log_prior is not None:
        logits = logits + tau * ops.cast(log_prior, "float32")[None, :]
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    log_probs = ops.log_softmax(logits, axis=-1)
    one_hot = ops.one_hot(labels, ops.shape(logits)[-1], dtype="float32")
    return -ops.sum(one_hot * log_probs, axis=-1)
