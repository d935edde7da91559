"""Open-set ("is this a known class?") scores of a model's outputs, and the decision rule.

Every score is oriented so that **higher means more known**:

* ``msp``: max softmax probability (the paper's rule, s as trained).
* ``max_logit``: the largest logit.
* ``energy``: logsumexp of the logits (the negative free energy, T = 1).
* ``reachability`` (OLTR): s / gamma, gamma the distance of the direct feature to
  its nearest centroid in the raw feature space.
* ``reachability_l2`` (OLTR): max_k cos(v_direct, c_k), the cosine similarity of the
  direct feature to its nearest centroid; equal to 1 - d^2 / 2 with d the
  nearest-centroid distance between the L2-normalised feature and L2-normalised
  centroids, so it ranks exactly as that distance does.
* ``nearest_neighbour`` (OLTR): cosine similarity of the direct feature to its nearest
  training feature, from a bank of L2-normalised train features stored in the model
  (at most `bank_per_class` per class, 100 by default; the "knn_similarity" output of a
  NearestNeighbourScore layer; deep k-NN, Sun et al. 2022).
* ``max_cosine`` (OLTR): the largest cosine logit, scale * cos(v_meta, w_k), the
  classifier's logit without the squash; it does not depend on s.
* ``msp_rescaled`` (OLTR): the paper's rule with the reachability scale s of the
  meta-embedding replaced by another value s' (chosen on validation). With
  v_meta = (s / gamma) (v_direct + e * v_memory) and the squash
  |v| / (1 + |v|) * v / |v| before the cosine classifier, the logits at s' are exact
  from the outputs at s: logits' = logits * (s' / s) * (1 + m) / (1 + m'), m = |v_meta|
  and m' = m s' / s (both with the squash's epsilon). The class ranking is the same
  for every s'; only the max probability, and so the rejection, changes.

The scores and the decision rule are written once, with keras.ops, and serve the
model graph, evaluation (any backend) and every export format alike. The rule
(`open_set_decision`): predict the top-1 class when the row's outputs are all
finite, the score is finite and ``score >= threshold``, both compared in float32
(the dtype every runtime has); else `UNKNOWN_CLASS` (-1). NaN or infinite pixels
therefore give "unknown" in every runtime. `PAPER_THRESHOLD` is the paper's rule:
max softmax probability at 0.1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from keras import ops

UNKNOWN_CLASS = -1  # the label and the prediction of an open ("unknown") image
PAPER_THRESHOLD = 0.1  # the paper's rule: reject when max probability < 0.1
# The one dtype of the decision's comparison (graph, evaluation, TFLite, ONNX).
DECISION_DTYPE = "float32"
MSP = "msp"
MSP_RESCALED = "msp_rescaled"
# Scores in the order they are tried; a tie in validation F goes to the earlier one.
PLAIN_SCORES = (MSP, "max_logit", "energy")
OLTR_SCORES = (
    MSP,
    MSP_RESCALED,
    "reachability",
    "reachability_l2",
    "nearest_neighbour",
    "max_cosine",
    "max_logit",
    "energy",
)
SCORE_DESCRIPTIONS = {
    MSP: "max softmax probability (paper's rule)",
    MSP_RESCALED: "max softmax probability with the reachability scale s tuned on validation",
    "reachability": "s / nearest-centroid distance (raw feature space)",
    "reachability_l2": "max cosine similarity of direct feature and centroids (L2-normalised)",
    "nearest_neighbour": "cosine similarity to the nearest training feature (k-NN bank)",
    "max_cosine": "max cosine logit (classifier logit without the squash)",
    "max_logit": "max logit",
    "energy": "logsumexp of the logits",
}
# s' values tried for msp_rescaled; the model's own s (10) is among them.
DEFAULT_SCALE_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
_SQUASH_EPSILON = 1e-12  # as in keras_oltr.layers.cosine_classifier.squash
_NORM_EPSILON = 1e-12


def check_score_name(name: str) -> str:
    """Returns ``name`` if it names an open score, else raises ValueError."""
    if name not in SCORE_DESCRIPTIONS:
        raise ValueError(
            f"`open_score` must be one of {sorted(SCORE_DESCRIPTIONS)}. "
            f"Received: open_score={name!r}"
        )
    return name


def score_context(model: Any) -> dict[str, Any]:
    """What the OLTR scores need besides the outputs: centroids and the trained s.

    Returns {} for a model without a "meta_embedding" layer (the plain model).
    """
    try:
        layer = model.get_layer("meta_embedding")
    except (ValueError, AttributeError):
        return {}
    return {
        "centroids": layer.memory.centroids,
        "reachability_scale": float(layer.reachability_scale),
    }


def available_scores(outputs: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str, ...]:
    """The scores that ``outputs`` (a model's output dict) and ``context`` allow."""
    names = list(PLAIN_SCORES)
    if "reachability" in outputs:
        names.append("reachability")
    if "direct_feature" in outputs and "centroids" in context:
        names.append("reachability_l2")
    if "knn_similarity" in outputs:
        names.append("nearest_neighbour")
    if "meta_embedding" in outputs and "reachability_scale" in context:
        names += ["max_cosine", MSP_RESCALED]
    return tuple(n for n in OLTR_SCORES if n in names)


def _meta_norm(ops, meta):
    return ops.sqrt(ops.sum(ops.square(meta), axis=-1) + _SQUASH_EPSILON)


def rescaled_logits(outputs: Mapping[str, Any], trained_scale: float, scale: float):
    """The logits the model gives with reachability scale ``scale`` instead of ``trained_scale``."""
    # A tensor, not the caller's numpy array: `ndarray * Tensor` fails on PyTorch.
    logits = ops.convert_to_tensor(outputs["logits"])
    meta = ops.cast(outputs["meta_embedding"], logits.dtype)
    ratio = float(scale) / float(trained_scale)
    norm = _meta_norm(ops, meta)
    new_norm = ops.sqrt(ops.sum(ops.square(meta), axis=-1) * ratio**2 + _SQUASH_EPSILON)
    return logits * (ratio * (1.0 + norm) / (1.0 + new_norm))[:, None]


def compute_score(
    name: str,
    outputs: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    *,
    scale: float | None = None,
):
    """One open score [B] (higher = more known) from a model's output dict, in keras.ops.

    Args:
        name: one of `SCORE_DESCRIPTIONS`.
        outputs: the model's outputs: "logits", "probabilities" and, for the OLTR
            scores, "reachability", "direct_feature", "meta_embedding".
        context: `score_context(model)` (centroids, trained reachability scale).
        scale: s' of "msp_rescaled".
    """
    check_score_name(name)
    context = context or {}
    logits = outputs["logits"]
    if name == MSP:
        return ops.max(outputs["probabilities"], axis=-1)
    if name == "max_logit":
        return ops.max(logits, axis=-1)
    if name == "energy":
        return ops.logsumexp(logits, axis=-1)
    if name == "reachability":
        return ops.reshape(outputs["reachability"], (-1,))
    if name == "nearest_neighbour":
        return ops.reshape(outputs["knn_similarity"], (-1,))
    if name == "reachability_l2":
        feature = ops.cast(outputs["direct_feature"], "float32")
        centroids = ops.cast(ops.convert_to_tensor(context["centroids"]), "float32")
        feature = feature / ops.maximum(ops.norm(feature, axis=-1, keepdims=True), _NORM_EPSILON)
        centroids = centroids / ops.maximum(
            ops.norm(centroids, axis=-1, keepdims=True), _NORM_EPSILON
        )
        return ops.max(ops.matmul(feature, ops.transpose(centroids)), axis=-1)
    meta = ops.cast(outputs["meta_embedding"], logits.dtype)
    if name == "max_cosine":
        norm = _meta_norm(ops, meta)
        return ops.max(logits, axis=-1) * (1.0 + norm) / norm
    if scale is None:
        raise ValueError("`scale` (s') is needed for the msp_rescaled score. Received: scale=None")
    new_logits = rescaled_logits(outputs, context["reachability_scale"], scale)
    return ops.max(ops.softmax(new_logits, axis=-1), axis=-1)


def compute_scores(
    outputs: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    *,
    scale_grid: Sequence[float] = DEFAULT_SCALE_GRID,
) -> dict[str, Any]:
    """Every available score of one batch; "msp_rescaled" once per s' as "msp_rescaled@<s'>"."""
    context = context or {}
    scores = {}
    for name in available_scores(outputs, context):
        if name == MSP_RESCALED:
            for s in scale_grid:
                scores[rescaled_key(s)] = compute_score(name, outputs, context, scale=s)
        else:
            scores[name] = compute_score(name, outputs, context)
    return scores


def rescaled_key(scale: float) -> str:
    """The key of msp_rescaled at s' in `compute_scores`' result."""
    return f"{MSP_RESCALED}@{float(scale):g}"


# ----------------------------------------------------------------------------
# The decision rule
# ----------------------------------------------------------------------------


def top1(probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 class, row is finite) of a [N, K] numpy matrix; ties take the lowest index.

    The host-side twin of `finite_rows` + argmax for evaluation, which keeps only
    the top-1 of each image.
    """
    probabilities = np.asarray(probabilities)
    with np.errstate(invalid="ignore"):
        finite = np.abs(probabilities).sum(axis=-1) < np.inf
    filled = np.where(np.isnan(probabilities), -np.inf, probabilities)
    return np.argmax(filled, axis=-1).astype(np.int64), finite


def finite_rows(probabilities):
    """[B] booleans: the row holds no NaN or infinity (|x| summed < inf: builtin ops only)."""
    inf = ops.convert_to_tensor(float("inf"), probabilities.dtype)
    return ops.less(ops.sum(ops.abs(probabilities), axis=-1), inf)


def open_set_decision(predicted_class, score, threshold, *, valid=None):
    """The open-set rule: the top-1 class, or `UNKNOWN_CLASS` (-1) where it is not trusted.

    -1 where ``score < threshold``, where the score is NaN or infinite, or where the
    row's outputs were not finite (``valid`` False). Score and threshold are compared
    in `DECISION_DTYPE`, in the model graph, in evaluation and in every export. The
    comparisons are builtin ops of every runtime (TF, TFLite, ONNX); with numpy
    inputs the result is a backend tensor (`keras.ops.convert_to_numpy` it).

    Args:
        predicted_class: [N] top-1 class.
        score: [N] open score (higher = more known).
        threshold: the score's threshold (a number).
        valid: optional [N] booleans, False for rows with non-finite outputs.
    """
    score = ops.cast(score, DECISION_DTYPE)
    threshold = ops.convert_to_tensor(float(threshold), DECISION_DTYPE)
    inf = ops.convert_to_tensor(float("inf"), DECISION_DTYPE)
    known = ops.logical_and(ops.less(ops.abs(score), inf), ops.greater_equal(score, threshold))
    if valid is not None:
        known = ops.logical_and(known, ops.cast(valid, "bool"))
    predicted = ops.cast(predicted_class, "int64")
    return ops.where(known, predicted, ops.full_like(predicted, UNKNOWN_CLASS))


def decide_numpy(predicted_class, score, threshold, *, valid=None) -> np.ndarray:
    """`open_set_decision` on host arrays, as an int64 numpy array."""
    predicted = np.asarray(predicted_class).astype(np.int64)
    if predicted.size == 0:
        return predicted
    out = open_set_decision(
        predicted,
        np.asarray(score, dtype=np.float64),
        threshold,
        valid=None if valid is None else np.asarray(valid, dtype=bool),
    )
    return np.asarray(ops.convert_to_numpy(out)).astype(np.int64)


def ranking_score(score: Any, valid: Any = None) -> np.ndarray:
    """``score`` as float64, NaN/inf (and invalid rows) at -inf: rejected and ranked last."""
    score = np.asarray(score, dtype=np.float64)
    ok = np.isfinite(score)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    return np.where(ok, score, -np.inf)


def score_array(scores: Mapping[str, Any], name: str, params: Mapping[str, Any] | None = None):
    """The array of score ``name`` (with its params) from a `compute_scores` dict."""
    if name == MSP_RESCALED:
        return scores[rescaled_key((params or {})["reachability_scale"])]
    return scores[name]
