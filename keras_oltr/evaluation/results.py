"""Typed evaluation results: one frozen dataclass per concern, `EvaluationResult` of all.

`metrics.evaluate_predictions` builds an `EvaluationResult` directly from the
computed numbers; `metrics_file` wraps it in a `MetricsDocument` (metrics.json).
Every class is a `records.Record`: fields hold plain Python values, ``to_dict()`` is
the JSON form and ``from_dict(data)`` reads it back with key-path errors.

Conventions: accuracies, rates, precision, recall, F, AUROC, AUPR and ECE are
fractions in [0, 1], not percent. A number is None where it is undefined (NaN when
computed: e.g. a shot group without test images, AUROC without open images).
The open-score results (ranking, per-score table, validation choice) are in
`open_score_results`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keras_oltr.evaluation.open_score_results import (
    OpenScoreTable,
    ThresholdFreeResult,
    ThresholdSelection,
)
from keras_oltr.evaluation.records import Record, record

__all__ = [
    "CalibrationResult",
    "ClosedSetResult",
    "Conventions",
    "DeployedScore",
    "EvaluationResult",
    "GroupBounds",
    "GroupCounts",
    "OpenAssignment",
    "OpenSetResult",
    "PerClassResult",
    "ScoreHistogram",
    "ScoreHistograms",
    "TestCounts",
    "ThresholdCurves",
]


@record
class GroupBounds(Record):
    """Train images per class that define each shot group, as text (e.g. "> 100")."""

    many: str
    medium: str
    few: str


@record
class GroupCounts(Record):
    """A count per shot group (classes, images), in `SHOT_GROUPS` order."""

    many: int
    medium: int
    few: int


@record
class Conventions(Record):
    """How the numbers were computed, as written beside them.

    Attributes:
        shot_groups: the shot-group convention, "strict" or "inclusive".
        shot_group_bounds: the train-count bounds of each group under it.
        open_threshold: the fixed rejection threshold on the max probability.
        rejection, open_f, closed_f, group_accuracy, threshold_free, fpr_at_95_tpr,
            ece, undefined_values: one-line descriptions of each definition.
    """

    shot_groups: str
    shot_group_bounds: GroupBounds
    open_threshold: float | None
    rejection: str
    open_f: str
    closed_f: str
    group_accuracy: str
    threshold_free: str
    fpr_at_95_tpr: str
    ece: str
    undefined_values: str


@record
class TestCounts(Record):
    """Sizes of the test set.

    Attributes:
        num_classes: known classes K.
        num_known_test, num_open_test: known (label >= 0) and open (-1) test images.
        classes_per_group: known classes per shot group.
        test_images_per_group: known test images per shot group of their class.
    """

    num_classes: int
    num_known_test: int
    num_open_test: int
    classes_per_group: GroupCounts
    test_images_per_group: GroupCounts


@record
class ClosedSetResult(Record):
    """Closed-set top-1 accuracy on the known test images (open images ignored).

    Attributes:
        convention: the shot-group convention.
        overall: top-1 accuracy over known images.
        many, medium, few: mean per-class accuracy of the group's classes with test
            images; None for a group without such classes.
        macro_f1: sklearn macro-F1 (the reference's closed-set "F-measure").
    """

    convention: str
    overall: float | None
    many: float | None
    medium: float | None
    few: float | None
    macro_f1: float | None


@record
class OpenSetResult(Record):
    """Open-set metrics at the fixed threshold on the max probability (the paper's rule).

    Attributes:
        threshold: images with max probability strictly below it are rejected (-1).
        convention: the shot-group convention.
        overall, many, medium, few: known-image accuracies with rejected knowns
            counted wrong (groups: mean per-class accuracy).
        open_rejection_rate: share of open images rejected (None without open images).
        known_rejection_rate: share of known images rejected.
        precision, recall, f_measure: open-set P, R, F over known + open images.
        tp, fp, fn: known correct; known wrong or rejected; open accepted.
    """

    threshold: float | None
    convention: str
    overall: float | None
    many: float | None
    medium: float | None
    few: float | None
    open_rejection_rate: float | None
    known_rejection_rate: float | None
    precision: float | None
    recall: float | None
    f_measure: float | None
    tp: int
    fp: int
    fn: int


@record
class OpenAssignment(Record):
    """Where the open test images go, by shot group of their predicted class.

    Attributes:
        accepted: open images accepted at the rule's threshold, per group.
        rejected: open images rejected at the rule's threshold.
        argmax: open images per group of their top-1 class, without rejection.
        num_open: open test images.
    """

    accepted: GroupCounts
    rejected: int
    argmax: GroupCounts
    num_open: int


@record
class CalibrationResult(Record):
    """Calibration of the known test images, equal-width bins (lo, hi] over [0, 1].

    Attributes:
        ece: expected calibration error, sum_b |B_b| / n * |acc(B_b) - conf(B_b)|.
        mce: maximum calibration error over non-empty bins.
        num_bins: number of bins B.
        bin_edges: [B + 1] edges.
        bin_count: [B] known images per bin.
        bin_accuracy, bin_confidence: [B] top-1 accuracy and mean max probability
            (None for empty bins).
    """

    ece: float | None
    mce: float | None
    num_bins: int
    bin_edges: tuple[float | None, ...]
    bin_count: tuple[int, ...]
    bin_accuracy: tuple[float | None, ...]
    bin_confidence: tuple[float | None, ...]


@record
class ThresholdCurves(Record):
    """Open-set metrics of one score's rule as functions of its threshold.

    Every field is a [T] tuple over ``thresholds``, in the units of the score (paper
    Fig. 8b for the max probability); undefined values (no open or no known images,
    an empty group) are None. Accuracies count rejected knowns as wrong.
    """

    thresholds: tuple[float | None, ...]
    precision: tuple[float | None, ...]
    recall: tuple[float | None, ...]
    f_measure: tuple[float | None, ...]
    overall: tuple[float | None, ...]
    open_rejection_rate: tuple[float | None, ...]
    many: tuple[float | None, ...]
    medium: tuple[float | None, ...]
    few: tuple[float | None, ...]


@record
class ScoreHistogram(Record):
    """Histogram of a score over shared ``edges`` [B + 1]: ``known`` and ``open`` counts [B]."""

    edges: tuple[float | None, ...]
    known: tuple[int, ...]
    open: tuple[int, ...]


@record
class ScoreHistograms(Record):
    """Histograms of the max probability (over [0, 1]) and reachability (None without)."""

    msp: ScoreHistogram
    reachability: ScoreHistogram | None


@record
class DeployedScore(Record):
    """The validation-chosen open score on test, each on its own axis: the deployed rule.

    Attributes:
        score: its name (`ThresholdSelection.score`).
        score_params: its parameters ({"reachability_scale": s'} for msp_rescaled).
        threshold: the chosen threshold; an image is accepted when its score is
            finite and ``score >= threshold`` in float32 (`open_scores.open_set_decision`).
        curves: the metrics at 101 thresholds from the lowest to the highest finite
            test score, the chosen threshold included in that span.
        histogram: known vs open counts of the finite test scores over the same span.
        open_assignment: where open images go at the chosen threshold.
    """

    score: str
    score_params: dict[str, float]
    threshold: float | None
    curves: ThresholdCurves
    histogram: ScoreHistogram
    open_assignment: OpenAssignment


@record
class PerClassResult(Record):
    """Per-class values, [K] tuples indexed by class.

    Attributes:
        train_count, test_count: train and known test images.
        group: shot group name.
        closed_accuracy: closed-set top-1 accuracy (None without test images).
        open_accuracy: accuracy at the fixed threshold, rejections counted wrong.
    """

    train_count: tuple[int, ...]
    test_count: tuple[int, ...]
    group: tuple[str, ...]
    closed_accuracy: tuple[float | None, ...]
    open_accuracy: tuple[float | None, ...]


@record
class EvaluationResult(Record):
    """Every OLTR metric of one evaluation (`evaluate_predictions`).

    Attributes:
        conventions: how the numbers were computed.
        counts: sizes of the test set.
        closed: closed-set accuracies.
        open: open-set metrics at the fixed threshold.
        open_assignment: where open images go at that threshold.
        threshold_free: AUROC / AUPR / FPR@95TPR of the max probability and reachability.
        open_scores: the per-score table (absent in older files).
        calibration: ECE of the known images.
        threshold_selection: the validation choice (None without a validation split).
        curves: metrics against the threshold.
        histograms: known vs open score histograms.
        per_class: per-class counts and accuracies.
        deployed: curves, histogram and open assignment of the validation-chosen
            score at its own scale (None without a validation choice, and in older files).
    """

    conventions: Conventions
    counts: TestCounts
    closed: ClosedSetResult
    open: OpenSetResult
    open_assignment: OpenAssignment
    threshold_free: ThresholdFreeResult
    open_scores: OpenScoreTable | None = None
    calibration: CalibrationResult
    threshold_selection: ThresholdSelection | None
    curves: ThresholdCurves
    histograms: ScoreHistograms
    per_class: PerClassResult
    deployed: DeployedScore | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | None = "metrics"):
        """As `Record.from_dict`; errors name paths under "metrics" (metrics.json's key)."""
        return super().from_dict(data, path)
