"""Typed results of the open scores: known-vs-open ranking, the per-score table, the choice.

Every candidate open score (`keras_oltr.open_scores`) gets threshold-free metrics on
test (`RankingResult`); validation alone chooses a score and its threshold
(`ThresholdSelection`), and test metrics at that threshold are `OperatingPoint`s.
Numbers are fractions in [0, 1]; None where undefined (see `records`).
"""

from __future__ import annotations

from typing import Any

from keras_oltr.evaluation.records import Record, record

__all__ = [
    "GroupedOperatingPoint",
    "OpenScoreEntry",
    "OpenScoreTable",
    "OperatingPoint",
    "RankingResult",
    "ScaleGridEntry",
    "ThresholdFreeResult",
    "ThresholdSelection",
]


@record
class RankingResult(Record):
    """Threshold-free known-vs-open metrics of one score (open = positive class).

    Attributes:
        auroc, aupr: area under the ROC and precision-recall curves of the open score
            (the negated higher-is-known score); None without open or known images.
        fpr_at_95_tpr: share of open images kept at the strictest threshold that
            keeps ``tpr_level`` of the known images.
        threshold_at_95_tpr: that threshold, in the units of the score.
        tpr_level: the share of known images kept (0.95).
        num_known, num_open: images ranked.
    """

    auroc: float | None
    aupr: float | None
    fpr_at_95_tpr: float | None
    threshold_at_95_tpr: float | None
    tpr_level: float | None
    num_known: int
    num_open: int


@record
class ThresholdFreeResult(Record):
    """`RankingResult` of the max probability and of the reachability (None without it)."""

    msp: RankingResult
    reachability: RankingResult | None


@record
class OperatingPoint(Record):
    """Open-set metrics on test at one score's validation-chosen threshold.

    Attributes:
        f_measure, precision, recall: open-set F, P, R over known + open images.
        overall: known-image accuracy with rejected knowns counted wrong.
        open_rejection_rate: share of open images rejected.
    """

    f_measure: float | None
    precision: float | None
    recall: float | None
    overall: float | None
    open_rejection_rate: float | None


@record
class GroupedOperatingPoint(Record):
    """`OperatingPoint` with the shot-group accuracies (mean per-class, rejections wrong)."""

    f_measure: float | None
    precision: float | None
    recall: float | None
    overall: float | None
    many: float | None
    medium: float | None
    few: float | None
    open_rejection_rate: float | None


@record
class OpenScoreEntry(Record):
    """One open score's row of the per-score table: test ranking, validation choice.

    Attributes:
        description: what the score is.
        score_params: its parameters ({"reachability_scale": s'} for msp_rescaled).
        auroc, aupr, fpr_at_95_tpr, threshold_at_95_tpr, tpr_level, num_known,
            num_open: its `RankingResult` on test.
        val_threshold: the threshold maximising the validation open-set F (None
            without a validation split).
        val_open_f: that validation F.
        test_at_val_threshold: test metrics at ``val_threshold``.
        val_auroc: its known-vs-open AUROC on validation (None without open
            validation images); written only with a validation choice.
    """

    description: str
    score_params: dict[str, float]
    auroc: float | None
    aupr: float | None
    fpr_at_95_tpr: float | None
    threshold_at_95_tpr: float | None
    tpr_level: float | None
    num_known: int
    num_open: int
    val_threshold: float | None
    val_open_f: float | None
    test_at_val_threshold: OperatingPoint | None
    val_auroc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """As `Record.to_dict`; "val_auroc" (even null) exactly when there is a val choice."""
        result = super().to_dict()
        if self.test_at_val_threshold is not None:
            result["val_auroc"] = self.val_auroc
        return result


@record
class ScaleGridEntry(Record):
    """msp_rescaled at one reachability scale s': test ranking and validation F.

    Attributes:
        auroc, aupr, fpr_at_95_tpr: as `RankingResult`, on test.
        val_open_f, val_threshold: the best validation F and its threshold (None
            without a validation split).
    """

    auroc: float | None
    aupr: float | None
    fpr_at_95_tpr: float | None
    val_open_f: float | None
    val_threshold: float | None


@record
class OpenScoreTable(Record):
    """Every candidate open score on test and the one validation chose.

    Attributes:
        scores: {score name: entry}, in `open_scores.OLTR_SCORES` order.
        scale_grid: {f"{s':g}": entry} of msp_rescaled (empty for the plain model).
        chosen: the validation-chosen score name (None without a validation split).
    """

    scores: dict[str, OpenScoreEntry]
    scale_grid: dict[str, ScaleGridEntry]
    chosen: str | None


@record
class ThresholdSelection(Record):
    """The open score and threshold chosen on validation, and their test metrics.

    Attributes:
        score: the chosen score name (absent in older files: "msp").
        score_params: its parameters.
        score_description: what the score is.
        threshold: the chosen threshold on the score.
        val_open_f, val_precision, val_recall: open-set F, P, R on validation.
        used_open_val: whether open validation images took part.
        open_val_note: how the threshold was chosen, in words.
        num_val_known, num_val_open: validation images.
        test: test metrics at the chosen score and threshold.
    """

    score: str | None = None
    score_params: dict[str, float] | None = None
    score_description: str | None = None
    threshold: float | None
    val_open_f: float | None
    val_precision: float | None
    val_recall: float | None
    used_open_val: bool
    open_val_note: str | None = None
    num_val_known: int
    num_val_open: int
    test: GroupedOperatingPoint
