"""Typed evaluation results: one frozen dataclass per concern, and their JSON form.

`evaluate_predictions` returns an `EvaluationResult`; `report.write_report` wraps it
in a `MetricsDocument` and writes that as metrics.json. Every class has ``to_dict()``
(the JSON-compatible dict of metrics.json: the field names are its keys, tuples are
lists, undefined numbers are null) and ``from_dict(data)``, which reads such a dict
back and raises ValueError naming the key path of every missing key or wrongly typed
value ("metrics.open.f_measure: expected a number, got 'x'"). Unknown keys are
ignored. A field with a default may be absent: older metrics.json files lack it,
and ``to_dict`` leaves it out while it is None.

Conventions: accuracies, rates, precision, recall, F, AUROC, AUPR and ECE are
fractions in [0, 1], not percent. A number is None where it is undefined (NaN when
computed: e.g. a shot group without test images, AUROC without open images).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "CalibrationResult",
    "ClosedSetResult",
    "Conventions",
    "EvaluationResult",
    "GroupBounds",
    "GroupCounts",
    "GroupedOperatingPoint",
    "MetricsDocument",
    "OpenAssignment",
    "OpenScoreEntry",
    "OpenScoreTable",
    "OpenSetResult",
    "OperatingPoint",
    "PerClassResult",
    "RankingResult",
    "ScaleGridEntry",
    "ScoreHistogram",
    "ScoreHistograms",
    "TestCounts",
    "ThresholdCurves",
    "ThresholdFreeResult",
    "ThresholdSelection",
    "to_json_compatible",
]

# Errors listed in one ValueError at most; a broken list would otherwise repeat itself.
_MAX_ERRORS = 50


def to_json_compatible(value: Any) -> Any:
    """Converts numpy scalars/arrays to Python types and NaN/inf to None, recursively."""
    if isinstance(value, Mapping):
        return {str(k): to_json_compatible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iub":
            return value.tolist()
        return [to_json_compatible(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


class _Reader:
    """Reads a JSON value as a field type, collecting one error per bad key path."""

    def __init__(self):
        self.errors: list[str] = []

    def fail(self, path: str, expected: str, value: Any) -> None:
        self.errors.append(f"{path or 'document'}: expected {expected}, got {value!r:.60}")

    def read(self, kind: Any, value: Any, path: str) -> Any:
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin in (typing.Union, types.UnionType):  # X | None: null allowed
            (inner,) = (a for a in args if a is not type(None))
            return None if value is None else self.read(inner, value, path)
        if origin is tuple:
            if not isinstance(value, list):
                return self.fail(path, "a list", value)
            items = []
            for index, item in enumerate(value):
                if len(self.errors) > _MAX_ERRORS:
                    break
                items.append(self.read(args[0], item, f"{path}[{index}]"))
            return tuple(items)
        if origin is dict:
            if not isinstance(value, Mapping):
                return self.fail(path, "an object", value)
            return {str(k): self.read(args[1], v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(kind, type) and issubclass(kind, _Record):
            return self.record(kind, value, path)
        return self.leaf(kind, value, path)

    def leaf(self, kind: Any, value: Any, path: str) -> Any:
        if kind is Any:
            return value
        if kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value):
                    return float(value)
            return self.fail(path, "a number", value)
        if kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return self.fail(path, "an integer", value)
        if kind in (str, bool):
            if isinstance(value, kind):
                return value
            return self.fail(path, "a string" if kind is str else "a boolean", value)
        raise TypeError(f"Unsupported result field type {kind!r} at {path}")

    def record(self, cls: type[_Record], value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            return self.fail(path, "an object", value)
        hints = _field_types(cls)
        values = {}
        for field in dataclasses.fields(cls):
            child = f"{path}.{field.name}" if path else field.name
            if field.name in value:
                values[field.name] = self.read(hints[field.name], value[field.name], child)
            elif field.default is dataclasses.MISSING:
                self.errors.append(f"{child}: missing")
        return cls(**values) if not self.errors else None


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _to_json(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return to_json_compatible(value)


class _Record:
    """Base of the result dataclasses: ``to_dict`` and ``from_dict`` from the field types."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-compatible dict (keys = field names; absent-able fields left out if None)."""
        return {
            field.name: _to_json(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if field.default is dataclasses.MISSING or getattr(self, field.name) is not None
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | None = None):
        """Reads ``to_dict``'s form back.

        Args:
            data: the parsed JSON object.
            path: key path named in errors (default: the class name).

        Raises:
            ValueError: one line per missing key or wrongly typed value.
        """
        reader = _Reader()
        result = reader.record(cls, data, cls.__name__ if path is None else path)
        if reader.errors:
            more = len(reader.errors) - _MAX_ERRORS
            lines = reader.errors[:_MAX_ERRORS] + ([f"... and {more} more"] if more > 0 else [])
            raise ValueError("\n".join(lines))
        return result


_frozen_result = dataclasses.dataclass(frozen=True, kw_only=True)


@_frozen_result
class GroupBounds(_Record):
    """Train images per class that define each shot group, as text (e.g. "> 100")."""

    many: str
    medium: str
    few: str


@_frozen_result
class GroupCounts(_Record):
    """A count per shot group (classes, images), in `SHOT_GROUPS` order."""

    many: int
    medium: int
    few: int


@_frozen_result
class Conventions(_Record):
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


@_frozen_result
class TestCounts(_Record):
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


@_frozen_result
class ClosedSetResult(_Record):
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


@_frozen_result
class OpenSetResult(_Record):
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


@_frozen_result
class OpenAssignment(_Record):
    """Where the open test images go, by shot group of their predicted class.

    Attributes:
        accepted: open images accepted at the fixed threshold, per group.
        rejected: open images rejected at the fixed threshold.
        argmax: open images per group of their top-1 class, without rejection.
        num_open: open test images.
    """

    accepted: GroupCounts
    rejected: int
    argmax: GroupCounts
    num_open: int


@_frozen_result
class RankingResult(_Record):
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


@_frozen_result
class ThresholdFreeResult(_Record):
    """`RankingResult` of the max probability and of the reachability (None without it)."""

    msp: RankingResult
    reachability: RankingResult | None


@_frozen_result
class OperatingPoint(_Record):
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


@_frozen_result
class GroupedOperatingPoint(_Record):
    """`OperatingPoint` with the shot-group accuracies (mean per-class, rejections wrong)."""

    f_measure: float | None
    precision: float | None
    recall: float | None
    overall: float | None
    many: float | None
    medium: float | None
    few: float | None
    open_rejection_rate: float | None


@_frozen_result
class OpenScoreEntry(_Record):
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
        """As `_Record.to_dict`; "val_auroc" (even null) exactly when there is a val choice."""
        result = super().to_dict()
        if self.test_at_val_threshold is not None:
            result["val_auroc"] = self.val_auroc
        return result


@_frozen_result
class ScaleGridEntry(_Record):
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


@_frozen_result
class OpenScoreTable(_Record):
    """Every candidate open score on test and the one validation chose.

    Attributes:
        scores: {score name: entry}, in `open_scores.OLTR_SCORES` order.
        scale_grid: {f"{s':g}": entry} of msp_rescaled (empty for the plain model).
        chosen: the validation-chosen score name (None without a validation split).
    """

    scores: dict[str, OpenScoreEntry]
    scale_grid: dict[str, ScaleGridEntry]
    chosen: str | None


@_frozen_result
class CalibrationResult(_Record):
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


@_frozen_result
class ThresholdSelection(_Record):
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


@_frozen_result
class ThresholdCurves(_Record):
    """Open-set metrics of the max-probability rule as functions of the threshold.

    Every field is a [T] tuple over ``thresholds`` (paper Fig. 8b); undefined
    values (no open or no known images, an empty group) are None.
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


@_frozen_result
class ScoreHistogram(_Record):
    """Histogram of a score over shared ``edges`` [B + 1]: ``known`` and ``open`` counts [B]."""

    edges: tuple[float | None, ...]
    known: tuple[int, ...]
    open: tuple[int, ...]


@_frozen_result
class ScoreHistograms(_Record):
    """Histograms of the max probability (over [0, 1]) and reachability (None without)."""

    msp: ScoreHistogram
    reachability: ScoreHistogram | None


@_frozen_result
class PerClassResult(_Record):
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


@_frozen_result
class EvaluationResult(_Record):
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | None = "metrics"):
        """As `_Record.from_dict`; errors name paths under "metrics" (metrics.json's key)."""
        return super().from_dict(data, path)


@_frozen_result
class MetricsDocument(_Record):
    """The metrics.json document: an `EvaluationResult` and what produced it.

    Attributes:
        schema_version: format version of the document (`report.SCHEMA_VERSION`).
        model_name: e.g. "plain" or "oltr"; runs of one name are averaged together.
        dataset_name: e.g. "imagenet_lt".
        created: ISO 8601 time of writing (UTC).
        versions: {package: version} of Python and the packages used.
        metrics: the results.
        extra: further JSON information (config, checkpoint, image counts) or None.
    """

    schema_version: int
    model_name: str
    dataset_name: str
    created: str
    versions: dict[str, str]
    metrics: EvaluationResult
    extra: dict[str, Any] | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | None = ""):
        """As `_Record.from_dict`; errors name paths from the document root."""
        return super().from_dict(data, path)
