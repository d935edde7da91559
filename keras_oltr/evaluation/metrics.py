"""OLTR evaluation metrics over numpy arrays: the entry points over the per-concern modules.

Definitions follow the reference implementation of Liu et al., CVPR 2019 and add
threshold-free open-set metrics and calibration; `conventions` states them. Each
concern has its module: `checks` (input checks), `closed_set`, `open_set` (F-measure,
curves), `score_selection` (validation chooses the open score and threshold; the
per-score table), `ranking` (AUROC / AUPR / FPR@95TPR) and `calibration`; shot groups
and the open scores with their decision rule are `keras_oltr.shot_groups` and
`keras_oltr.open_scores`. This module builds one typed result,
`results.EvaluationResult` (`evaluate_top1_predictions`, `evaluate_predictions`), and
re-exports the metric functions.

Every function is vectorised (bincount, one sort and cumulative counts); the core
functions take the top-1 ``predicted_class`` and ``max_probability`` arrays so that
a million predictions over a thousand classes never need an N x K matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_oltr import open_scores as scores_lib
from keras_oltr.evaluation.calibration import DEFAULT_ECE_BINS, expected_calibration_error
from keras_oltr.evaluation.checks import (
    as_1d,
    check_same_length,
    check_threshold,
    check_top1,
    top1_from_scores,
)
from keras_oltr.evaluation.closed_set import closed_set_metrics, macro_f1, per_class_accuracy
from keras_oltr.evaluation.conventions import conventions
from keras_oltr.evaluation.open_score_results import (
    RankingResult,
    ThresholdFreeResult,
    ThresholdSelection,
)
from keras_oltr.evaluation.open_set import (
    f_measure_counts,
    open_set_decisions,
    open_set_metrics,
    open_set_metrics_from_decisions,
    score_threshold_curves,
    score_thresholds,
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
from keras_oltr.evaluation.results import (
    CalibrationResult,
    ClosedSetResult,
    DeployedScore,
    EvaluationResult,
    GroupCounts,
    OpenAssignment,
    OpenSetResult,
    PerClassResult,
    ScoreHistogram,
    ScoreHistograms,
    TestCounts,
    ThresholdCurves,
)
from keras_oltr.evaluation.score_selection import (
    OPEN_VAL_NOTE,
    check_scores,
    choose_on_validation,
    choose_open_score,
    open_score_table,
    select_score_threshold,
    select_threshold,
)
from keras_oltr.open_scores import PAPER_THRESHOLD
from keras_oltr.shot_groups import SHOT_GROUPS, check_convention, check_train_counts, shot_groups

__all__ = [
    "DEFAULT_ECE_BINS",
    "DEFAULT_HISTOGRAM_BINS",
    "DEFAULT_TPR_LEVEL",
    "OPEN_VAL_NOTE",
    "auroc",
    "average_precision",
    "choose_open_score",
    "closed_set_metrics",
    "evaluate_predictions",
    "evaluate_top1_predictions",
    "expected_calibration_error",
    "f_measure_counts",
    "fpr_at_tpr",
    "macro_f1",
    "open_score_table",
    "open_set_decisions",
    "open_set_metrics",
    "open_set_metrics_from_decisions",
    "per_class_accuracy",
    "score_histogram",
    "score_threshold_curves",
    "select_score_threshold",
    "select_threshold",
    "threshold_curves",
    "threshold_free_metrics",
    "top1_from_scores",
]


def _group_counts(values: np.ndarray) -> GroupCounts:
    """[3] counts in `SHOT_GROUPS` order as a `GroupCounts`."""
    return GroupCounts(**{name: int(values[i]) for i, name in enumerate(SHOT_GROUPS)})


def _open_assignment(assignment: Mapping[str, Any]) -> OpenAssignment:
    return OpenAssignment(
        accepted=GroupCounts(**assignment["accepted"]),
        rejected=assignment["rejected"],
        argmax=GroupCounts(**assignment["argmax"]),
        num_open=assignment["num_open"],
    )


def deployed_score(
    selection: ThresholdSelection | None,
    test_scores: Mapping[str, np.ndarray],
    predicted_class: np.ndarray,
    labels: np.ndarray,
    train_counts: np.ndarray,
    *,
    convention: str = "strict",
) -> DeployedScore | None:
    """Curves, histogram and open assignment of the validation-chosen score on test.

    Everything is on the chosen score's own axis: the curve thresholds and histogram
    bins span its finite test values and the chosen threshold. None without a choice.
    """
    if selection is None or selection.score is None or selection.threshold is None:
        return None
    params = selection.score_params or {}
    values = np.asarray(scores_lib.score_array(test_scores, selection.score, params), np.float64)
    thresholds = score_thresholds(values, selection.threshold)
    curves = score_threshold_curves(
        predicted_class, values, labels, train_counts, thresholds=thresholds, convention=convention
    )
    finite = np.isfinite(values)
    histogram = score_histogram(
        labels[finite], values[finite], value_range=(thresholds[0], thresholds[-1])
    )
    decided = scores_lib.decide_numpy(predicted_class, values, selection.threshold)
    at = open_set_metrics_from_decisions(
        decided, predicted_class, labels, train_counts, convention=convention
    )
    return DeployedScore(
        score=selection.score,
        score_params=params,
        threshold=selection.threshold,
        curves=ThresholdCurves(**curves),
        histogram=ScoreHistogram(**histogram),
        open_assignment=_open_assignment(at["open_assignment"]),
    )


def evaluate_top1_predictions(
    predicted_class: Any,
    max_probability: Any,
    labels: Any,
    train_counts: Any,
    *,
    reachability: Any = None,
    threshold: float = PAPER_THRESHOLD,
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
            (`keras_oltr.open_scores.compute_scores`; higher = more
            known); "msp" is always added from ``max_probability``.

    Returns:
        An `EvaluationResult` with ``conventions``, ``counts``, ``closed``, ``open``,
        ``open_assignment``, ``threshold_free`` (msp, reachability), ``open_scores``
        (the per-score table, `open_score_table`), ``calibration``,
        ``threshold_selection`` (the chosen score, its params and threshold),
        ``curves``, ``histograms``, ``per_class`` and ``deployed`` (the chosen score
        on its own axis, `deployed_score`). Undefined numbers (NaN) are None.
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
    test_scores = {**check_scores(open_scores, labels.size, "open_scores"), "msp": prob}
    selection, score_table = choose_on_validation(
        val, test_scores, pred, labels, counts, convention=convention
    )
    reach_metrics = reach_hist = None
    if reachability is not None:
        reach_metrics = RankingResult(**threshold_free_metrics(labels, reachability))
        reach_hist = ScoreHistogram(**score_histogram(labels, reachability))

    return EvaluationResult(
        conventions=conventions(convention, threshold),
        counts=TestCounts(
            num_classes=num_classes,
            num_known_test=int(known.sum()),
            num_open_test=int((~known).sum()),
            classes_per_group=_group_counts(np.bincount(groups, minlength=3)),
            test_images_per_group=_group_counts(np.bincount(groups[labels[known]], minlength=3)),
        ),
        closed=ClosedSetResult.pick(closed),
        open=OpenSetResult.pick(open_),
        open_assignment=_open_assignment(open_["open_assignment"]),
        threshold_free=ThresholdFreeResult(
            msp=RankingResult(**threshold_free_metrics(labels, prob)), reachability=reach_metrics
        ),
        open_scores=score_table,
        calibration=CalibrationResult(**calibration),
        threshold_selection=selection,
        curves=ThresholdCurves(**curves),
        histograms=ScoreHistograms(
            msp=ScoreHistogram(**score_histogram(labels, prob, value_range=(0.0, 1.0))),
            reachability=reach_hist,
        ),
        per_class=PerClassResult(
            train_count=counts,
            test_count=closed["test_count"],
            group=np.asarray(SHOT_GROUPS)[groups],
            closed_accuracy=closed["per_class_accuracy"],
            open_accuracy=open_["per_class_accuracy"],
        ),
        deployed=deployed_score(
            selection, test_scores, pred, labels, counts, convention=convention
        ),
    )


def evaluate_predictions(
    scores: Any,
    labels: Any,
    train_counts: Any,
    *,
    from_logits: bool = False,
    reachability: Any = None,
    threshold: float = PAPER_THRESHOLD,
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
