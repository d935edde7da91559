"""How the numbers are computed: the conventions written beside every result.

Conventions (written into every result under "conventions"):

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
"""

from __future__ import annotations

from keras_oltr.evaluation.results import Conventions, GroupBounds
from keras_oltr.shot_groups import SHOT_GROUP_BOUNDS

__all__ = ["conventions"]

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


def conventions(convention: str, threshold: float) -> Conventions:
    """The `Conventions` of a result: shot groups, the fixed threshold, the definitions."""
    return Conventions(
        shot_groups=convention,
        shot_group_bounds=GroupBounds(**SHOT_GROUP_BOUNDS[convention]),
        open_threshold=threshold,
        **_CONVENTION_TEXT,
    )
