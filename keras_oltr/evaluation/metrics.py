"""OLTR evaluation metrics over numpy arrays: the entry points over the per-concern modules.

Definitions follow the reference implementation of Liu et al., CVPR 2019 and add
threshold-free open-set metrics and calibration. Each concern has its module:
`shot_groups` (the one shot-group definition), `checks` (input checks),
`closed_set`, `open_set` (F-measure, curves, threshold selection), `ranking`
(AUROC / AUPR / FPR@95TPR), `calibration`, and `open_scores` (the open scores and the
decision rule). This module combines them into one typed result,
`results.EvaluationResult` (`evaluate_top1_predictions`, `evaluate_predictions`), and
re-exports their functions.

Conventions (also written into every result under "conventions"):

* Shot groups come from per-class train counts. "strict" (default): many > 100,
  medium 20..100, few < 20. "inclusive": many >= 100, medium 21..99, few <= 20.
  A group accuracy is the mean of the per-class accuracies of the group's classes
  that have test images; a group without such classes gives NaN.
* Open-set decision (the paper's rule, reported at the fixed threshold): predict -1
  ("open") when the max softmax probability is strictly below the threshold (default
  0.1). Validation also chooses an open score and its threshold (`open_scores`).
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

from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from keras_oltr.evaluation import open_scores as scores_lib
from keras_oltr.evaluation.calibration import DEFAULT_ECE_BINS, expected_calibration_error
from keras_oltr.evaluation.checks import (
    as_1d,
    check_convention,
    check_labels,
    check_same_length,
    check_threshold,
    check_top1,
    check_train_counts,
    top1_from_scores,
)
from keras_oltr.evaluation.closed_set import closed_set_metrics, macro_f1, per_class_accuracy
from keras_oltr.evaluation.open_scores import open_set_decision
from keras_oltr.evaluation.open_set import (
    DEFAULT_THRESHOLD,
    choose_open_score,
    f_measure_counts,
    open_set_decisions,
    open_set_metrics,
    open_set_metrics_from_decisions,
    select_score_threshold,
    select_threshold,
    threshold_curves,
)
from keras_oltr.evaluation.ranking import (
    DEFAULT_HISTOGRAM_BINS,
    DEFAULT_TPR_LEVEL,
    auroc,
    average_precision,
    fpr_at_tpr,
    score_histogram,
    threshold_free_metrics,
)
from keras_oltr.evaluation.results import EvaluationResult, to_json_compatible
from keras_oltr.evaluation.shot_groups import (
    CONVENTIONS,
    SHOT_GROUP_BOUNDS,
    SHOT_GROUPS,
    group_accuracies,
    shot_groups,
)

__all__ = [
    "CONVENTIONS",
    "DEFAULT_ECE_BINS",
    "DEFAULT_HISTOGRAM_BINS",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TPR_LEVEL",
    "OPEN_VAL_NOTE",
    "SHOT_GROUPS",
    "SHOT_GROUP_BOUNDS",
    "as_1d",
    "auroc",
    "average_precision",
    "check_labels",
    "check_same_length",
    "check_threshold",
    "check_top1",
    "check_convention",
    "check_train_counts",
    "choose_open_score",
    "closed_set_metrics",
    "evaluate_predictions",
    "evaluate_top1_predictions",
    "expected_calibration_error",
    "f_measure_counts",
    "fpr_at_tpr",
    "group_accuracies",
    "macro_f1",
    "open_score_table",
    "open_set_decisions",
    "open_set_metrics",
    "open_set_metrics_from_decisions",
    "per_class_accuracy",
    "score_histogram",
    "select_score_threshold",
    "select_threshold",
    "shot_groups",
    "threshold_curves",
    "threshold_free_metrics",
    "to_json_compatible",
    "top1_from_scores",
]


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
            row["val_auroc"] = picked.get("val_auroc")
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
) -> EvaluationResult:
    """Every OLTR metric from top-1 predictions.

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
        An `EvaluationResult` with ``conventions``, ``counts``, ``closed``, ``open``,
        ``open_assignment``, ``threshold_free`` (msp, reachability), ``open_scores``
        (the per-score table, `open_score_table`), ``calibration``,
        ``threshold_selection`` (the chosen score, its params and threshold),
        ``curves``, ``histograms`` and ``per_class``. Undefined numbers (NaN) are None.
    """
    check_convention(convention)
    threshold = check_threshold(threshold)
    counts = check_train_counts(train_counts)
    num_classes = counts.size
    pred, prob, labels = check_top1(predicted_class, max_probability, labels, num_classes)
    if labels.size == 0:
        raise ValueError("`labels` must hold at least one image. Received: len(labels)=0")
    if reachability is not None:
        reachability = as_1d("reachability", reachability, "float")
        check_same_length(("labels", labels), ("reachability", reachability))
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
        choice = choose_open_score(val_pred, shared, val_labels)
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
    # Read from its JSON form, so the typed result and metrics.json cannot disagree.
    return EvaluationResult.from_dict(to_json_compatible(result))


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
) -> EvaluationResult:
    """Every OLTR metric from an [N, K] probability (or logit) matrix.

    Convenience wrapper over `evaluate_top1_predictions`; see it for the arguments
    and the returned `EvaluationResult`. ``from_logits=True`` applies a softmax
    first; without it, rows must be probability distributions.
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
