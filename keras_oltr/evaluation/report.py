"""The evaluation report: report.md beside metrics.json (`write_report`).

report.md is readable text of one `EvaluationResult`: the results table
(`tables.format_results_table`), both open-set rules (the paper's fixed threshold and
the validation-chosen score and threshold), the threshold-free known-vs-open metrics,
every open score, calibration, where open images go, and the plots.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from keras_oltr.evaluation.markdown import fmt, markdown_table
from keras_oltr.evaluation.metrics_file import MetricsDocument, write_metrics_json
from keras_oltr.evaluation.open_score_results import OpenScoreTable
from keras_oltr.evaluation.results import EvaluationResult
from keras_oltr.evaluation.tables import (
    format_open_score_table,
    format_results_table,
    results_row,
    score_label,
)
from keras_oltr.runs.workdir import METRICS_FILE, REPORT_FILE

__all__ = ["write_report"]


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
        "## Closed-set top-1 accuracy (%) and the open-set protocol",
        "",
        format_results_table([results_row(metrics, document.model_name)]),
        "",
        f"Closed-set macro-F1 (the reference's closed-set F-measure): "
        f"{fmt(closed.macro_f1)}. Open-set precision {fmt(open_.precision)}, "
        f"recall {fmt(open_.recall)}; open images rejected "
        f"{fmt(open_.open_rejection_rate, percent=True)}%, known images rejected "
        f"{fmt(open_.known_rejection_rate, percent=True)}%.",
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
                    fmt(values.auroc, digits=4),
                    fmt(values.aupr, digits=4),
                    fmt(values.fpr_at_95_tpr, digits=4),
                ]
            )
    calibration = metrics.calibration
    lines += [
        markdown_table(["score", "AUROC", "AUPR", "FPR@95TPR"], tf_rows),
        "",
        f"Orientation: {conv.threshold_free}. FPR@95TPR: {conv.fpr_at_95_tpr}.",
        "",
        *_open_score_section(metrics.open_scores, document.model_name),
        "## Calibration (known test images)",
        "",
        f"ECE ({calibration.num_bins} bins): {fmt(calibration.ece, digits=4)}; "
        f"MCE: {fmt(calibration.mce, digits=4)}.",
        "",
        "## Where open images go",
        "",
        markdown_table(["", "many", "medium", "few", "rejected"], _assignment_rows(metrics)),
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


def _assignment_rows(metrics: EvaluationResult) -> list[list[str]]:
    """Open images by the group of the class they are taken for, under each rule."""
    rules = [(f"msp >= {fmt(metrics.open.threshold)} (paper)", metrics.open_assignment)]
    deployed = metrics.deployed
    if deployed is not None:
        rule = f"{deployed.score} >= {fmt(deployed.threshold, digits=4)} (deployed)"
        rules.append((rule, deployed.open_assignment))
    rows = [
        [name, *(str(n) for n in dataclasses.astuple(a.accepted)), str(a.rejected)]
        for name, a in rules
    ]
    argmax = metrics.open_assignment.argmax
    rows.append(["argmax (no rejection)", *(str(n) for n in dataclasses.astuple(argmax)), "0"])
    return rows


def _threshold_section(metrics: EvaluationResult) -> list[str]:
    """The fixed-threshold rule beside the validation-chosen one, and a note."""
    open_ = metrics.open
    rows = [
        [
            "paper rule (fixed)",
            "msp",
            fmt(open_.threshold),
            fmt(open_.f_measure),
            "n/a",
            *(fmt(v, percent=True) for v in (open_.overall, open_.many, open_.medium, open_.few)),
        ]
    ]
    selection = metrics.threshold_selection
    notes = []
    if selection:
        source = "val-chosen" + ("" if selection.used_open_val else " (no open val)")
        test = selection.test
        rows.append(
            [
                source,
                score_label(selection.score or "msp", selection.score_params),
                fmt(selection.threshold, digits=4),
                fmt(test.f_measure),
                fmt(selection.val_open_f),
                *(fmt(v, percent=True) for v in (test.overall, test.many, test.medium, test.few)),
            ]
        )
        if not selection.used_open_val:
            notes = ["", f"Note: {selection.open_val_note or 'no open validation data.'}"]
    else:
        notes = ["", "No validation split: no score or threshold was chosen."]
    header = [
        "rule",
        "score",
        "threshold",
        "open F (test)",
        "open F (val)",
        "open overall (%)",
        "open many (%)",
        "open medium (%)",
        "open few (%)",
    ]
    note = (
        "Open accuracies: known test images with the rule applied, rejected ones counted "
        "wrong (shot groups: mean per-class accuracy)."
    )
    return [markdown_table(header, rows), "", note, *notes]


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
        "`keras_oltr.evaluation.score_selection.choose_open_score`): each score's "
        "threshold maximises the validation open-set F (ties: the lowest threshold), and "
        "ties between scores go to the earlier row. Test F is at that validation threshold.",
        "",
    ]
    if open_scores.scale_grid:
        lines += [
            "msp_rescaled over the reachability scale s' (test AUROC reported, s' chosen "
            "by validation F):",
            "",
            markdown_table(
                ["s'", "AUROC", "AUPR", "FPR@95TPR", "val F"],
                [
                    [
                        scale,
                        fmt(entry.auroc, digits=4),
                        fmt(entry.aupr, digits=4),
                        fmt(entry.fpr_at_95_tpr, digits=4),
                        fmt(entry.val_open_f),
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
    """Writes ``out_dir/metrics.json`` (`metrics_file.write_metrics_json`) and ``report.md``.

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
    document = write_metrics_json(
        metrics, out_dir, model_name=model_name, dataset_name=dataset_name, extra=extra
    )
    with open(os.path.join(out_dir, REPORT_FILE), "w", encoding="utf-8") as f:
        f.write(_report_markdown(document, plot_files))
    logging.info("Wrote %s and %s in %s", METRICS_FILE, REPORT_FILE, out_dir)
    return document
