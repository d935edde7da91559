"""Result tables of one or several models (seeds averaged): Markdown, from typed results.

`results_row` takes one row of numbers from an `EvaluationResult`; `aggregate_rows`
averages the rows of a model name (several seeds); `format_results_table` prints
them. The columns show each number once: the closed-set protocol (top-1 accuracy
per shot group and overall, %) and the open-set protocol (open-set F with the
paper's fixed rule and with the validation-chosen rule, known-vs-open AUROC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_oltr.evaluation.markdown import fmt, is_missing, markdown_table
from keras_oltr.evaluation.metrics_file import MetricsDocument
from keras_oltr.evaluation.open_score_results import OpenScoreEntry, OpenScoreTable
from keras_oltr.evaluation.results import EvaluationResult

__all__ = [
    "RESULT_COLUMNS",
    "SCORE_COLUMNS",
    "aggregate_rows",
    "aggregate_score_tables",
    "format_open_score_table",
    "format_results_table",
    "results_row",
    "score_label",
]

# (row key, column title, printed in %): closed-set protocol, then open-set protocol.
RESULT_COLUMNS = (
    ("closed_many", "closed many (%)", True),
    ("closed_medium", "closed medium (%)", True),
    ("closed_few", "closed few (%)", True),
    ("closed_overall", "closed overall (%)", True),
    ("open_f", "open-set F (paper rule)", False),
    ("open_f_val_rule", "open-set F (val rule)", False),
    ("auroc_msp", "open-set AUROC (msp)", False),
    ("auroc_val_score", "open-set AUROC (val score)", False),
)

SCORE_COLUMNS = (("auroc", "AUROC"), ("aupr", "AUPR"), ("fpr_at_95_tpr", "FPR@95TPR"))


def results_row(result: EvaluationResult, model_name: str = "model") -> dict[str, Any]:
    """One table row of an `EvaluationResult` (of a metrics.json document: ``.metrics``).

    Returns:
        {"model": name, "closed_many", "closed_medium", "closed_few",
        "closed_overall" (closed-set top-1), "open_f" (test open-set F at the
        paper's fixed max-probability threshold), "open_f_val_rule" (test F with
        the validation-chosen score and threshold), "auroc_msp" (test AUROC of the
        max probability), "auroc_val_score" (test AUROC of the validation-chosen
        score)}: fractions in [0, 1] or None.
    """
    closed, selection = result.closed, result.threshold_selection
    chosen = _chosen_entry(result)
    return {
        "model": model_name,
        "closed_many": closed.many,
        "closed_medium": closed.medium,
        "closed_few": closed.few,
        "closed_overall": closed.overall,
        "open_f": result.open.f_measure,
        "open_f_val_rule": selection.test.f_measure if selection else None,
        "auroc_msp": result.threshold_free.msp.auroc,
        "auroc_val_score": chosen.auroc if chosen else None,
    }


def _chosen_entry(result: EvaluationResult) -> OpenScoreEntry | None:
    """The per-score table's entry of the validation-chosen score, if both exist."""
    selection, table = result.threshold_selection, result.open_scores
    if selection is None or table is None:
        return None
    return table.scores.get(selection.score)


def _aggregate(values: Sequence[Any]) -> dict[str, Any]:
    """{"mean", "std" (ddof=1; 0 for one value), "n"} of the values that are not missing."""
    array = np.array([float(v) for v in values if not is_missing(v)], np.float64)
    return {
        "mean": float(array.mean()) if array.size else None,
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "n": int(array.size),
    }


def aggregate_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Groups rows by "model" (e.g. several seeds) into {"mean", "std", "n"} values.

    std is the sample standard deviation (ddof=1), 0 for a single run; None values
    are left out of a column's statistics. Models keep their first-seen order.
    """
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(row["model"]), []).append(row)
    return [
        {"model": model, "runs": len(members)}
        | {key: _aggregate([m.get(key) for m in members]) for key, _, _ in RESULT_COLUMNS}
        for model, members in grouped.items()
    ]


def format_results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The closed-set and open-set protocol numbers of several models, one row each.

    Args:
        rows: dicts with "model" and the keys of `RESULT_COLUMNS`; values are
            floats, None (printed "n/a") or {"mean", "std", "n"} aggregates
            (printed "mean ± std"). Build them with `results_row` and, for several
            seeds, `aggregate_rows`.

    Returns:
        A Markdown table; closed-set accuracies in %, open-set F and AUROC as fractions.
    """
    header = ["model", *(title for _, title, _ in RESULT_COLUMNS)]
    if any("runs" in row for row in rows):
        header.insert(1, "runs")
    body = []
    for row in rows:
        cells = [str(row.get("model", "model"))]
        if "runs" in header:
            cells.append(str(row.get("runs", 1)))
        cells += [fmt(row.get(key), percent=percent) for key, _, percent in RESULT_COLUMNS]
        body.append(cells)
    return markdown_table(header, body)


def aggregate_score_tables(documents: Sequence[MetricsDocument]) -> dict[str, str]:
    """One Markdown table per model name: every open score's AUROC/AUPR/FPR95, mean ± std.

    Args:
        documents: metrics.json documents (several seeds of a model share its name).

    Returns:
        {model name: table}; the last column counts the runs whose validation chose
        the score.
    """
    grouped: dict[str, list[EvaluationResult]] = {}
    for document in documents:
        grouped.setdefault(document.model_name, []).append(document.metrics)
    tables = {}
    for model, members in grouped.items():
        score_tables = [m.open_scores.scores if m.open_scores else {} for m in members]
        rows = []
        for name in dict.fromkeys(name for table in score_tables for name in table):
            entries = [table[name] for table in score_tables if name in table]
            chosen = sum(
                m.threshold_selection is not None and m.threshold_selection.score == name
                for m in members
            )
            cells = [
                fmt(_aggregate([getattr(e, key) for e in entries]), digits=4)
                for key, _ in SCORE_COLUMNS
            ]
            rows.append([name, *cells, f"{chosen}/{len(members)}"])
        if rows:
            header = ["score", *(title for _, title in SCORE_COLUMNS), "chosen on val"]
            tables[model] = markdown_table(header, rows)
    return tables


def score_label(name: str, params: Mapping[str, float] | None) -> str:
    """A score's name with its parameters, e.g. "msp_rescaled (s'=0.3)"."""
    if params and "reachability_scale" in params:
        return f"{name} (s'={params['reachability_scale']:g})"
    return name


def format_open_score_table(open_scores: OpenScoreTable) -> str:
    """The per-score known-vs-open table of one model (`EvaluationResult.open_scores`)."""
    rows = []
    for name, entry in open_scores.scores.items():
        at = entry.test_at_val_threshold
        label = score_label(name, entry.score_params)
        rows.append(
            [
                label + (" **chosen**" if name == open_scores.chosen else ""),
                fmt(entry.auroc, digits=4),
                fmt(entry.aupr, digits=4),
                fmt(entry.fpr_at_95_tpr, digits=4),
                fmt(entry.val_auroc, digits=4),
                fmt(entry.val_threshold, digits=4),
                fmt(entry.val_open_f),
                fmt(at.f_measure if at else None),
            ]
        )
    header = [
        "score",
        "AUROC",
        "AUPR",
        "FPR@95TPR",
        "val AUROC",
        "val threshold",
        "val F",
        "test F @ val t",
    ]
    return markdown_table(header, rows)
