"""Validation chooses the open score and its threshold; the per-score table on test.

Only validation chooses: each candidate open score (`keras_oltr.open_scores`) gets
the threshold that maximises the validation open-set F (`select_score_threshold`),
and the best validation AUROC picks the score (`choose_open_score`). Test data only
reports (`open_score_table`, `choose_on_validation`'s `ThresholdSelection`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from keras_oltr import open_scores as scores_lib
from keras_oltr.evaluation.checks import check_top1, top1_from_scores
from keras_oltr.evaluation.open_score_results import (
    GroupedOperatingPoint,
    OpenScoreEntry,
    OpenScoreTable,
    OperatingPoint,
    ScaleGridEntry,
    ThresholdSelection,
)
from keras_oltr.evaluation.open_set import (
    count_at_least,
    f_measure_arrays,
    open_set_metrics_from_decisions,
)
from keras_oltr.evaluation.ranking import auroc, threshold_free_metrics

__all__ = [
    "OPEN_VAL_NOTE",
    "check_scores",
    "choose_on_validation",
    "choose_open_score",
    "open_score_table",
    "rankable",
    "select_score_threshold",
    "select_threshold",
]

OPEN_VAL_NOTE = {
    True: "chosen on known val + open val images",
    False: (
        "no open validation data was used: with known images only, F is maximal when "
        "nothing is rejected, so the lowest threshold was kept"
    ),
}


def select_threshold(
    predicted_class: Any,
    max_probability: Any,
    labels: Any,
    num_classes: int,
) -> dict[str, Any]:
    """Threshold maximising the open-set F on a validation split.

    Candidates are the distinct max probabilities of the split (F only changes
    there); ties in F go to the lowest threshold. Without open images (no -1 labels)
    FN is always 0, so F is maximal when nothing is rejected and the lowest
    candidate is returned; a warning is logged.

    Returns:
        dict with "threshold", "open_f" (on this split), "precision", "recall",
        "used_open", "num_known", "num_open".
    """
    pred, prob, labels = check_top1(
        predicted_class, max_probability, labels, num_classes, prefix="val."
    )
    if labels.size == 0:
        raise ValueError("`val` must hold at least one image. Received: an empty split")
    if not np.any(labels < 0):
        logging.warning(
            "Threshold selection without open validation images: F is maximal when "
            "nothing is rejected, so the lowest candidate threshold is returned."
        )
    return select_score_threshold(pred, prob, labels)


def select_score_threshold(
    predicted_class: Any, score: Any, labels: Any, *, valid: Any = None
) -> dict[str, Any]:
    """The threshold on ``score`` that maximises the open-set F on a validation split.

    Candidates are the distinct finite scores (F only changes there); ties in F go to
    the lowest threshold. A sample counts as accepted when the decision rule
    (`open_scores.open_set_decision`) accepts it. Without open images F is maximal when nothing
    is rejected, so the lowest candidate wins.

    Returns:
        dict with "threshold", "open_f", "precision", "recall", "used_open",
        "num_known", "num_open".
    """
    predicted = np.asarray(predicted_class).astype(np.int64)
    labels = np.asarray(labels).astype(np.int64)
    score = scores_lib.ranking_score(score, valid)
    if labels.size == 0:
        raise ValueError("`val` must hold at least one image. Received: an empty split")
    candidates = np.unique(score[np.isfinite(score)])
    if candidates.size == 0:
        raise ValueError("No finite open score on the validation split: cannot choose a threshold.")
    known = labels >= 0
    n_known, n_open = int(known.sum()), int((~known).sum())
    tp = count_at_least(np.sort(score[known & (predicted == labels)]), candidates).astype(
        np.float64
    )
    fn = count_at_least(np.sort(score[~known]), candidates).astype(np.float64)
    precision, recall, f = f_measure_arrays(tp, n_known - tp, fn)
    best = int(np.argmax(f))  # first maximum = lowest threshold
    return {
        "threshold": float(candidates[best]),
        "open_f": float(f[best]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "used_open": n_open > 0,
        "num_known": n_known,
        "num_open": n_open,
    }


def rankable(score: Any, valid: Any = None) -> np.ndarray:
    """NaN/inf moved below every finite score: same ranks as the decision rule's order."""
    ranked = scores_lib.ranking_score(score, valid)
    finite = np.isfinite(ranked)
    low = ranked[finite].min() - 1.0 if finite.any() else 0.0
    return np.where(finite, ranked, low)


def _val_auroc(values: Any, val_labels: np.ndarray, val_valid: Any = None) -> float:
    """Known-vs-open AUROC of a higher-is-known score on validation (NaN without opens)."""
    return auroc(np.asarray(val_labels) < 0, -rankable(values, val_valid))


def choose_open_score(
    val_predicted: Any,
    val_scores: Mapping[str, Any],
    val_labels: Any,
    *,
    val_valid: Any = None,
) -> dict[str, Any]:
    """Picks the open score by validation AUROC, and its threshold by validation F.

    The score is the one that best separates known from open validation images
    (AUROC, threshold-free); its threshold is the one that maximises the open-set F
    on validation. Choosing the score by F instead would rest on a handful of images:
    every score of a model shares its top-1 predictions, so F differs between scores
    only through the few images near the threshold. Without open validation images
    AUROC is undefined and the score is chosen by F (ties: the earlier score).

    ``val_scores`` is `open_scores.compute_scores`' dict (numpy). Every score gets its
    own best threshold; "msp_rescaled@<s'>" entries compete as one score
    "msp_rescaled" whose s' is the best of the grid by the same rule. Ties go to the
    earlier score of `OLTR_SCORES` (MSP first) and, within the grid, to the smaller s'.

    Returns:
        {"chosen": {"score", "score_params", "threshold", "open_f", "val_auroc", ...},
         "per_score": {name: selection dict (with "score_params", "val_auroc")},
         "scale_grid": {s': selection dict} (empty for the plain model)}.
    """
    labels = np.asarray(val_labels)
    has_open = bool(np.any(labels < 0)) and bool(np.any(labels >= 0))

    def rank_key(selection):
        val_auroc = selection["val_auroc"] if has_open else 0.0
        return (0.0 if math.isnan(val_auroc) else val_auroc, selection["open_f"])

    per_score, grid = {}, {}
    for key, values in val_scores.items():
        selection = select_score_threshold(val_predicted, values, val_labels, valid=val_valid)
        selection = selection | {
            "val_auroc": _val_auroc(values, labels, val_valid) if has_open else math.nan
        }
        if key.startswith(scores_lib.MSP_RESCALED + "@"):
            scale = float(key.split("@", 1)[1])
            grid[scale] = selection | {"score_params": {"reachability_scale": scale}}
        else:
            per_score[key] = selection | {"score_params": {}}
    if grid:
        best_scale = max(sorted(grid), key=lambda s: (*rank_key(grid[s]), -s))
        per_score[scores_lib.MSP_RESCALED] = grid[best_scale]
    order = [n for n in scores_lib.OLTR_SCORES if n in per_score]
    best = max(order, key=lambda n: (*rank_key(per_score[n]), -order.index(n)))
    chosen = {"score": best, **per_score[best]}
    return {"chosen": chosen, "per_score": per_score, "scale_grid": grid}


def check_scores(scores: Mapping[str, Any] | None, size: int, name: str) -> dict[str, np.ndarray]:
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


def open_score_table(
    test_scores: Mapping[str, np.ndarray],
    predicted_class: np.ndarray,
    labels: np.ndarray,
    train_counts: np.ndarray,
    *,
    choice: Mapping[str, Any] | None = None,
    convention: str = "strict",
) -> OpenScoreTable:
    """Threshold-free metrics of every open score on test, and F at its validation threshold.

    Args:
        test_scores: {name: [N]} (`compute_scores` keys; "msp_rescaled@<s'>" per s').
        predicted_class, labels, train_counts: the test top-1 classes, labels, counts.
        choice: `choose_open_score` on validation, or None (no val split).

    Returns:
        The table: an `OpenScoreEntry` per score, a `ScaleGridEntry` per s' of
        msp_rescaled, and the chosen score. msp_rescaled appears in ``scores`` only
        with a validation split (its s' is chosen there).
    """
    per_score = (choice or {}).get("per_score", {})
    grid_choice = (choice or {}).get("scale_grid", {})
    rows, grid = {}, {}
    for key, values in test_scores.items():
        if key.startswith(scores_lib.MSP_RESCALED + "@"):
            scale = float(key.split("@", 1)[1])
            picked = grid_choice.get(scale)
            grid[f"{scale:g}"] = ScaleGridEntry.pick(
                threshold_free_metrics(labels, rankable(values))
                | {
                    "val_open_f": picked["open_f"] if picked else None,
                    "val_threshold": picked["threshold"] if picked else None,
                }
            )
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
            **threshold_free_metrics(labels, rankable(values)),
            "val_threshold": None,
            "val_open_f": None,
            "test_at_val_threshold": None,
        }
        if picked:
            decided = scores_lib.decide_numpy(predicted_class, values, picked["threshold"])
            at = open_set_metrics_from_decisions(
                decided, predicted_class, labels, train_counts, convention=convention
            )
            row["val_threshold"] = picked["threshold"]
            row["val_open_f"] = picked["open_f"]
            row["val_auroc"] = picked.get("val_auroc")
            row["test_at_val_threshold"] = OperatingPoint.pick(at)
        rows[name] = OpenScoreEntry.pick(row)
    chosen = (choice or {}).get("chosen", {}).get("score")
    return OpenScoreTable(scores=rows, scale_grid=grid, chosen=chosen)


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


def choose_on_validation(
    val: Mapping[str, Any] | None,
    test_scores: Mapping[str, np.ndarray],
    predicted_class: np.ndarray,
    labels: np.ndarray,
    train_counts: np.ndarray,
    *,
    convention: str = "strict",
) -> tuple[ThresholdSelection | None, OpenScoreTable]:
    """The validation choice of score and threshold, and the per-score table on test.

    Args:
        val: validation predictions (see `metrics.evaluate_top1_predictions`) or None.
        test_scores: checked test open scores {name: [N]}, "msp" included.
        predicted_class, labels, train_counts: the checked test arrays.

    Returns:
        (the `ThresholdSelection` with its test metrics, None without ``val``;
        `open_score_table`).
    """
    selection, choice = None, None
    if val is not None:
        val_pred, val_prob, val_labels = _val_top1(val, train_counts.size)
        if not np.any(val_labels < 0):
            logging.warning(
                "Threshold selection without open validation images: F is maximal when "
                "nothing is rejected, so every score keeps its lowest candidate threshold."
            )
        val_scores = {
            **check_scores(val.get("open_scores"), val_labels.size, "val.open_scores"),
            "msp": val_prob,
        }
        shared = {k: v for k, v in val_scores.items() if k in test_scores}
        choice = choose_open_score(val_pred, shared, val_labels)
        chosen = choice["chosen"]
        decided = scores_lib.decide_numpy(
            predicted_class,
            scores_lib.score_array(test_scores, chosen["score"], chosen["score_params"]),
            chosen["threshold"],
        )
        at_chosen = open_set_metrics_from_decisions(
            decided, predicted_class, labels, train_counts, convention=convention
        )
        selection = ThresholdSelection(
            score=chosen["score"],
            score_params=chosen["score_params"],
            score_description=scores_lib.SCORE_DESCRIPTIONS[chosen["score"]],
            threshold=chosen["threshold"],
            val_open_f=chosen["open_f"],
            val_precision=chosen["precision"],
            val_recall=chosen["recall"],
            used_open_val=chosen["used_open"],
            open_val_note=OPEN_VAL_NOTE[chosen["used_open"]],
            num_val_known=chosen["num_known"],
            num_val_open=chosen["num_open"],
            test=GroupedOperatingPoint.pick(at_chosen),
        )
    table = open_score_table(
        test_scores, predicted_class, labels, train_counts, choice=choice, convention=convention
    )
    return selection, table
