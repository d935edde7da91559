"""Evaluation reports: metrics.json, report.md and result tables.

The metrics.json document is `results.MetricsDocument` in JSON::

    {"schema_version": 1, "model_name": str, "dataset_name": str, "created": ISO date,
     "versions": {package: version}, "metrics": <EvaluationResult.to_dict()>,
     "extra": dict or null}

`validate_metrics_json` checks a parsed document by reading it into the dataclasses
(`MetricsDocument.from_dict`); their field types are the schema.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import numpy as np
from absl import logging

from keras_oltr.evaluation.results import (
    EvaluationResult,
    MetricsDocument,
    OpenScoreEntry,
    OpenScoreTable,
    to_json_compatible,
)
from keras_oltr.training.workdir import METRICS_FILE, REPORT_FILE

SCHEMA_VERSION = 1


def validate_metrics_json(document: Mapping[str, Any]) -> None:
    """Checks a parsed metrics.json document (required keys and types; extra keys allowed).

    Raises:
        ValueError: one line per missing key or wrongly typed value, named by its
            key path (e.g. "metrics.open.f_measure: missing").
    """
    MetricsDocument.from_dict(document)


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that produced the numbers."""
    versions = {"python": platform.python_version()}
    for package in ("keras", "tensorflow", "numpy", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        import keras_oltr

        versions["keras_oltr"] = keras_oltr.__version__
    except (ImportError, AttributeError):
        pass
    return versions


def _fmt(value: Any, *, percent: bool = False, digits: int | None = None) -> str:
    """Formats a number (or a {"mean", "std"} aggregate); None/NaN print as n/a."""
    if isinstance(value, Mapping):
        mean, std = value.get("mean"), value.get("std")
        if _is_missing(mean):
            return "n/a"
        text = _fmt(mean, percent=percent, digits=digits)
        if value.get("n", 1) > 1 and not _is_missing(std):
            text += " ± " + _fmt(std, percent=percent, digits=digits)
        return text
    if _is_missing(value):
        return "n/a"
    if percent:
        return f"{100.0 * float(value):.{1 if digits is None else digits}f}"
    return f"{float(value):.{3 if digits is None else digits}f}"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value))


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Result tables (several models / seeds)
# ----------------------------------------------------------------------------

RESULT_COLUMNS = (
    ("closed_many", "closed many", True),
    ("closed_medium", "medium", True),
    ("closed_few", "few", True),
    ("closed_overall", "overall", True),
    ("open_many", "open many", True),
    ("open_medium", "medium", True),
    ("open_few", "few", True),
    ("open_f", "open F", False),
    ("auroc_msp", "AUROC msp", False),
    ("open_f_val_rule", "open F (val rule)", False),
    ("auroc_val_score", "AUROC (val score)", False),
)


def results_row(result: EvaluationResult, model_name: str = "model") -> dict[str, Any]:
    """One table row of an `EvaluationResult` (of a metrics.json document: ``.metrics``).

    Returns:
        {"model": name, "closed_many", ..., "open_f", "auroc_msp", "open_f_val_rule"
        (test F with the validation-chosen score and threshold), "auroc_val_score"
        (test AUROC of that score)}: fractions in [0, 1] or None.
    """
    closed, open_ = result.closed, result.open
    selection = result.threshold_selection
    chosen = _chosen_entry(result)
    return {
        "model": model_name,
        "closed_many": closed.many,
        "closed_medium": closed.medium,
        "closed_few": closed.few,
        "closed_overall": closed.overall,
        "open_many": open_.many,
        "open_medium": open_.medium,
        "open_few": open_.few,
        "open_f": open_.f_measure,
        "auroc_msp": result.threshold_free.msp.auroc,
        "open_f_val_rule": selection.test.f_measure if selection else None,
        "auroc_val_score": chosen.auroc if chosen else None,
    }


def _chosen_entry(result: EvaluationResult) -> OpenScoreEntry | None:
    """The per-score table's entry of the validation-chosen score, if both exist."""
    selection, table = result.threshold_selection, result.open_scores
    if selection is None or table is None:
        return None
    return table.scores.get(selection.score)


SCORE_COLUMNS = (("auroc", "AUROC"), ("aupr", "AUPR"), ("fpr_at_95_tpr", "FPR@95TPR"))


def _aggregate(values: Sequence[Any]) -> dict[str, Any]:
    """{"mean", "std" (ddof=1; 0 for one value), "n"} of the values that are not missing."""
    array = np.array([float(v) for v in values if not _is_missing(v)], np.float64)
    return {
        "mean": float(array.mean()) if array.size else None,
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "n": int(array.size),
    }


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
                _fmt(_aggregate([getattr(e, key) for e in entries]), digits=4)
                for key, _ in SCORE_COLUMNS
            ]
            rows.append([name, *cells, f"{chosen}/{len(members)}"])
        if rows:
            header = ["score", *(title for _, title in SCORE_COLUMNS), "chosen on val"]
            tables[model] = _markdown_table(header, rows)
    return tables


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
    """A compact many/medium/few/overall/open-F table for several models.

    Args:
        rows: dicts with "model" and the keys of `RESULT_COLUMNS` ("closed_many",
            ..., "open_f", "auroc_msp"); values are floats, None (printed "n/a") or
            {"mean", "std", "n"} aggregates (printed "mean ± std"). Build them with
            `results_row` and, for several seeds, `aggregate_rows`.

    Returns:
        A Markdown table; accuracies in %, F and AUROC as fractions.
    """
    header = ["model", *(title for _, title, _ in RESULT_COLUMNS)]
    if any("runs" in row for row in rows):
        header.insert(1, "runs")
    body = []
    for row in rows:
        cells = [str(row.get("model", "model"))]
        if "runs" in header:
            cells.append(str(row.get("runs", 1)))
        cells += [_fmt(row.get(key), percent=percent) for key, _, percent in RESULT_COLUMNS]
        body.append(cells)
    return _markdown_table(header, body)


# ----------------------------------------------------------------------------
# metrics.json + report.md
# ----------------------------------------------------------------------------


def _report_markdown(document: MetricsDocument, plot_files: Sequence[str]) -> str:
    metrics = document.metrics
    conv, counts = metrics.conventions, metrics.counts
    closed, open_ = metrics.closed, metrics.open
    bounds, classes = conv.shot_group_bounds, counts.classes_per_group
    lines = [
        f"# OLTR evaluation: {document.model_name} on {document.dataset_name}",
        "",
        f"Created {document.created}. Shot groups: **{conv.shot_groups}** "
        f"(many {bounds.many}, medium {bounds.medium}, few {bounds.few} train images). "
        f"Open-set rule: {conv.rejection} (threshold {conv.open_threshold}).",
        "",
        f"Classes: {counts.num_classes} "
        f"(many {classes.many}, medium {classes.medium}, few {classes.few}); known test "
        f"images {counts.num_known_test}, open test images {counts.num_open_test}.",
        "",
        "## Top-1 accuracy (%) and open-set F (paper Table layout)",
        "",
        format_results_table([results_row(metrics, document.model_name)]),
        "",
        f"Closed-set macro-F1 (the reference's closed-set F-measure): "
        f"{_fmt(closed.macro_f1)}. Open-set precision {_fmt(open_.precision)}, "
        f"recall {_fmt(open_.recall)}; open images rejected "
        f"{_fmt(open_.open_rejection_rate, percent=True)}%, known images rejected "
        f"{_fmt(open_.known_rejection_rate, percent=True)}%.",
        "",
        "## Rejection threshold",
        "",
        *_threshold_section(metrics),
        "",
        "## Known vs open without a threshold (open = positive)",
        "",
    ]
    tf_rows = []
    for label, values in (
        ("max probability", metrics.threshold_free.msp),
        ("reachability", metrics.threshold_free.reachability),
    ):
        if values is None:
            tf_rows.append([label, "n/a", "n/a", "n/a"])
        else:
            tf_rows.append(
                [
                    label,
                    _fmt(values.auroc, digits=4),
                    _fmt(values.aupr, digits=4),
                    _fmt(values.fpr_at_95_tpr, digits=4),
                ]
            )
    assignment, calibration = metrics.open_assignment, metrics.calibration
    lines += [
        _markdown_table(["score", "AUROC", "AUPR", "FPR@95TPR"], tf_rows),
        "",
        f"Orientation: {conv.threshold_free}. FPR@95TPR: {conv.fpr_at_95_tpr}.",
        "",
        *_open_score_section(metrics.open_scores, document.model_name),
        "## Calibration (known test images)",
        "",
        f"ECE ({calibration.num_bins} bins): {_fmt(calibration.ece, digits=4)}; "
        f"MCE: {_fmt(calibration.mce, digits=4)}.",
        "",
        "## Where open images go",
        "",
        _markdown_table(
            ["", "many", "medium", "few", "rejected"],
            [
                [
                    f"accepted at {_fmt(open_.threshold)}",
                    *(str(n) for n in dataclasses.astuple(assignment.accepted)),
                    str(assignment.rejected),
                ],
                [
                    "argmax (no rejection)",
                    *(str(n) for n in dataclasses.astuple(assignment.argmax)),
                    "0",
                ],
            ],
        ),
        "",
    ]
    if plot_files:
        lines += ["## Plots", ""]
        lines += [f"![{os.path.splitext(name)[0]}]({name})" for name in plot_files]
        lines.append("")
    if document.extra:
        lines += ["## Extra", "", "```json", json.dumps(document.extra, indent=2), "```", ""]
    versions = ", ".join(f"{k} {v}" for k, v in document.versions.items())
    lines += [f"Versions: {versions}.", ""]
    return "\n".join(lines)


def _threshold_section(metrics: EvaluationResult) -> list[str]:
    """The fixed-threshold rule beside the validation-chosen one, and a note."""
    open_ = metrics.open
    rows = [
        [
            "paper rule (fixed)",
            "msp",
            _fmt(open_.threshold),
            _fmt(open_.f_measure),
            "n/a",
            _fmt(open_.overall, percent=True),
        ]
    ]
    selection = metrics.threshold_selection
    notes = []
    if selection:
        source = "val-chosen" + ("" if selection.used_open_val else " (no open val)")
        rows.append(
            [
                source,
                _score_label(selection.score or "msp", selection.score_params),
                _fmt(selection.threshold, digits=4),
                _fmt(selection.test.f_measure),
                _fmt(selection.val_open_f),
                _fmt(selection.test.overall, percent=True),
            ]
        )
        if not selection.used_open_val:
            notes = ["", f"Note: {selection.open_val_note or 'no open validation data.'}"]
    else:
        notes = ["", "No validation split: no score or threshold was chosen."]
    header = ["rule", "score", "threshold", "open F (test)", "open F (val)", "open overall (%)"]
    return [_markdown_table(header, rows), *notes]


def _score_label(name: str, params: Mapping[str, float] | None) -> str:
    if params and "reachability_scale" in params:
        return f"{name} (s'={params['reachability_scale']:g})"
    return name


def format_open_score_table(open_scores: OpenScoreTable) -> str:
    """The per-score known-vs-open table of one model (`EvaluationResult.open_scores`)."""
    rows = []
    for name, entry in open_scores.scores.items():
        at = entry.test_at_val_threshold
        label = _score_label(name, entry.score_params)
        rows.append(
            [
                label + (" **chosen**" if name == open_scores.chosen else ""),
                _fmt(entry.auroc, digits=4),
                _fmt(entry.aupr, digits=4),
                _fmt(entry.fpr_at_95_tpr, digits=4),
                _fmt(entry.val_auroc, digits=4),
                _fmt(entry.val_threshold, digits=4),
                _fmt(entry.val_open_f),
                _fmt(at.f_measure if at else None),
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
    return _markdown_table(header, rows)


def _open_score_section(open_scores: OpenScoreTable | None, model_name: str) -> list[str]:
    if open_scores is None or not open_scores.scores:
        return []
    lines = [
        f"## Open scores of {model_name} (higher = more known; open = positive)",
        "",
        format_open_score_table(open_scores),
        "",
        "AUROC, AUPR and FPR@95TPR are on test. The score and every threshold are "
        "chosen on validation only (known val + open val, never test; "
        "`keras_oltr.evaluation.open_set.choose_open_score`): each score's threshold "
        "maximises the validation open-set F (ties: the lowest threshold), and ties "
        "between scores go to the earlier row. Test F is at that validation threshold.",
        "",
    ]
    if open_scores.scale_grid:
        lines += [
            "msp_rescaled over the reachability scale s' (test AUROC reported, s' chosen "
            "by validation F):",
            "",
            _markdown_table(
                ["s'", "AUROC", "AUPR", "FPR@95TPR", "val F"],
                [
                    [
                        scale,
                        _fmt(entry.auroc, digits=4),
                        _fmt(entry.aupr, digits=4),
                        _fmt(entry.fpr_at_95_tpr, digits=4),
                        _fmt(entry.val_open_f),
                    ]
                    for scale, entry in open_scores.scale_grid.items()
                ],
            ),
            "",
        ]
    return lines


def write_report(
    metrics: EvaluationResult,
    out_dir: str,
    *,
    model_name: str,
    dataset_name: str,
    extra: Mapping[str, Any] | None = None,
    plot_files: Sequence[str] = (),
) -> MetricsDocument:
    """Writes ``out_dir/metrics.json`` and ``out_dir/report.md``.

    Args:
        metrics: the result of `evaluate_predictions`.
        out_dir: folder, created if needed.
        model_name: e.g. "plain" or "oltr"; `trainers/compare.py` groups by it.
        dataset_name: e.g. "imagenet_lt".
        extra: optional JSON-serialisable information (config, checkpoint, seed).
        plot_files: PNG file names inside ``out_dir`` to link from report.md.

    Returns:
        The metrics.json document.
    """
    document = MetricsDocument(
        schema_version=SCHEMA_VERSION,
        model_name=str(model_name),
        dataset_name=str(dataset_name),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions=package_versions(),
        metrics=metrics,
        extra=to_json_compatible(extra) if extra is not None else None,
    )
    data = document.to_dict()
    validate_metrics_json(data)  # what is written must load back
    os.makedirs(out_dir, exist_ok=True)
    metrics_path = os.path.join(out_dir, METRICS_FILE)
    with open(metrics_path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, allow_nan=False)
    with open(os.path.join(out_dir, REPORT_FILE), "w", encoding="utf-8") as f:
        f.write(_report_markdown(document, plot_files))
    logging.info("Wrote %s and %s in %s", METRICS_FILE, REPORT_FILE, out_dir)
    return document


def load_metrics_json(path: str) -> MetricsDocument:
    """Reads a metrics.json file (also those of older versions, schema_version 1).

    Raises:
        ValueError: naming ``path`` and every missing key or wrongly typed value.
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    try:
        return MetricsDocument.from_dict(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
