"""Evaluation reports: metrics.json (with a schema and validator), report.md, tables.

The metrics.json document is::

    {"schema_version": 1, "model_name": str, "dataset_name": str, "created": ISO date,
     "versions": {package: version}, "metrics": <evaluate_predictions dict>,
     "extra": dict or null}

`validate_metrics_json` checks it against `METRICS_JSON_SCHEMA`, a small hand-written
description of required keys and types (no jsonschema dependency).
"""

from __future__ import annotations

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

from keras_oltr.evaluation.metrics import SHOT_GROUPS, to_json_compatible

SCHEMA_VERSION = 1
METRICS_FILENAME = "metrics.json"
REPORT_FILENAME = "report.md"


class Nullable:
    """Schema node: ``spec`` or None."""

    def __init__(self, spec: Any):
        self.spec = spec


class Optional:
    """Schema node: a key that may be absent (older documents); when present, ``spec``."""

    def __init__(self, spec: Any):
        self.spec = spec


class ListOf:
    """Schema node: a list whose items all match ``spec``."""

    def __init__(self, spec: Any):
        self.spec = spec


# Leaf types. NUMBER accepts null because undefined metrics (NaN) are written as null.
NUMBER = "number_or_null"
INT = "int"
STR = "str"
BOOL = "bool"
DICT = "dict"

_GROUP_INTS = {name: INT for name in SHOT_GROUPS}
_GROUP_NUMBERS = {name: NUMBER for name in SHOT_GROUPS}
_THRESHOLD_FREE = {
    "auroc": NUMBER,
    "aupr": NUMBER,
    "fpr_at_95_tpr": NUMBER,
    "threshold_at_95_tpr": NUMBER,
    "tpr_level": NUMBER,
    "num_known": INT,
    "num_open": INT,
}
_HISTOGRAM = {"edges": ListOf(NUMBER), "known": ListOf(INT), "open": ListOf(INT)}

METRICS_SCHEMA = {
    "conventions": {
        "shot_groups": STR,
        "shot_group_bounds": {name: STR for name in SHOT_GROUPS},
        "open_threshold": NUMBER,
        "rejection": STR,
        "open_f": STR,
        "closed_f": STR,
        "threshold_free": STR,
        "fpr_at_95_tpr": STR,
        "ece": STR,
    },
    "counts": {
        "num_classes": INT,
        "num_known_test": INT,
        "num_open_test": INT,
        "classes_per_group": _GROUP_INTS,
        "test_images_per_group": _GROUP_INTS,
    },
    "closed": {"convention": STR, "overall": NUMBER, **_GROUP_NUMBERS, "macro_f1": NUMBER},
    "open": {
        "convention": STR,
        "threshold": NUMBER,
        "overall": NUMBER,
        **_GROUP_NUMBERS,
        "open_rejection_rate": NUMBER,
        "known_rejection_rate": NUMBER,
        "precision": NUMBER,
        "recall": NUMBER,
        "f_measure": NUMBER,
        "tp": INT,
        "fp": INT,
        "fn": INT,
    },
    "open_assignment": {
        "accepted": _GROUP_INTS,
        "rejected": INT,
        "argmax": _GROUP_INTS,
        "num_open": INT,
    },
    "threshold_free": {"msp": _THRESHOLD_FREE, "reachability": Nullable(_THRESHOLD_FREE)},
    "open_scores": Optional(
        {
            "scores": DICT,
            "scale_grid": DICT,
            "chosen": Nullable(STR),
        }
    ),
    "calibration": {
        "ece": NUMBER,
        "mce": NUMBER,
        "num_bins": INT,
        "bin_edges": ListOf(NUMBER),
        "bin_count": ListOf(INT),
        "bin_accuracy": ListOf(NUMBER),
        "bin_confidence": ListOf(NUMBER),
    },
    "threshold_selection": Nullable(
        {
            "score": Optional(STR),
            "score_params": Optional(DICT),
            "threshold": NUMBER,
            "val_open_f": NUMBER,
            "used_open_val": BOOL,
            "test": {"f_measure": NUMBER, "overall": NUMBER, **_GROUP_NUMBERS},
        }
    ),
    "curves": {
        name: ListOf(NUMBER)
        for name in (
            "thresholds",
            "precision",
            "recall",
            "f_measure",
            "overall",
            *SHOT_GROUPS,
            "open_rejection_rate",
        )
    },
    "histograms": {"msp": _HISTOGRAM, "reachability": Nullable(_HISTOGRAM)},
    "per_class": {
        "train_count": ListOf(INT),
        "test_count": ListOf(INT),
        "group": ListOf(STR),
        "closed_accuracy": ListOf(NUMBER),
        "open_accuracy": ListOf(NUMBER),
    },
}

METRICS_JSON_SCHEMA = {
    "schema_version": INT,
    "model_name": STR,
    "dataset_name": STR,
    "created": STR,
    "versions": DICT,
    "metrics": METRICS_SCHEMA,
    "extra": Nullable(DICT),
}


def _leaf_ok(spec: str, value: Any) -> bool:
    if spec == NUMBER:
        return value is None or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if spec == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec == STR:
        return isinstance(value, str)
    if spec == BOOL:
        return isinstance(value, bool)
    if spec == DICT:
        return isinstance(value, Mapping)
    raise ValueError(f"Unknown schema leaf: {spec!r}")


def _validate(spec: Any, value: Any, path: str, errors: list[str]) -> None:
    if isinstance(spec, Nullable):
        if value is not None:
            _validate(spec.spec, value, path, errors)
    elif isinstance(spec, ListOf):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            _validate(spec.spec, item, f"{path}[{index}]", errors)
            if len(errors) > 50:
                return
    elif isinstance(spec, Optional):
        _validate(spec.spec, value, path, errors)
    elif isinstance(spec, Mapping):
        if not isinstance(value, Mapping):
            errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        for key, child in spec.items():
            if key in value:
                _validate(child, value[key], f"{path}.{key}", errors)
            elif not isinstance(child, Optional):
                errors.append(f"{path}.{key}: missing")
    elif not _leaf_ok(spec, value):
        errors.append(f"{path}: expected {spec}, got {value!r:.60}")


def validate_metrics_json(document: Mapping[str, Any], schema: Any = None) -> None:
    """Checks a metrics.json document (required keys and types; extra keys allowed).

    Args:
        document: the parsed JSON.
        schema: defaults to `METRICS_JSON_SCHEMA`; pass `METRICS_SCHEMA` to check a
            bare `evaluate_predictions` result.

    Raises:
        ValueError: listing every missing key or wrongly typed value.
    """
    errors: list[str] = []
    _validate(METRICS_JSON_SCHEMA if schema is None else schema, document, "$", errors)
    if errors:
        raise ValueError("Invalid metrics document:\n  " + "\n  ".join(errors))


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


def results_row(metrics: Mapping[str, Any], model_name: str | None = None) -> dict[str, Any]:
    """One table row from an `evaluate_predictions` dict or a metrics.json document.

    Returns:
        {"model": name, "closed_many", ..., "open_f", "auroc_msp", "open_f_val_rule"
        (test F with the validation-chosen score and threshold), "auroc_val_score"
        (test AUROC of that score)} (floats or None).
    """
    if "metrics" in metrics and "closed" not in metrics:
        model_name = model_name or metrics.get("model_name")
        metrics = metrics["metrics"]
    closed, open_ = metrics["closed"], metrics["open"]
    row = {"model": model_name or "model"}
    for group in (*SHOT_GROUPS, "overall"):
        row[f"closed_{group}"] = closed.get(group)
    for group in SHOT_GROUPS:
        row[f"open_{group}"] = open_.get(group)
    row["open_f"] = open_.get("f_measure")
    row["auroc_msp"] = (metrics.get("threshold_free") or {}).get("msp", {}).get("auroc")
    selection = metrics.get("threshold_selection") or {}
    row["open_f_val_rule"] = (selection.get("test") or {}).get("f_measure")
    chosen = (metrics.get("open_scores") or {}).get("scores", {}).get(selection.get("score"))
    row["auroc_val_score"] = (chosen or {}).get("auroc")
    return row


SCORE_COLUMNS = (("auroc", "AUROC"), ("aupr", "AUPR"), ("fpr_at_95_tpr", "FPR@95TPR"))


def aggregate_score_tables(documents: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """One Markdown table per model name: every open score's AUROC/AUPR/FPR95, mean ± std.

    Args:
        documents: metrics.json documents (several seeds of a model share its name).

    Returns:
        {model name: table}; the last column counts the runs whose validation chose
        the score.
    """
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for document in documents:
        grouped.setdefault(str(document["model_name"]), []).append(document["metrics"])
    tables = {}
    for model, members in grouped.items():
        names: dict[str, None] = {}
        for metrics in members:
            names.update(dict.fromkeys((metrics.get("open_scores") or {}).get("scores", {})))
        rows = []
        for name in names:
            entries = [
                m["open_scores"]["scores"][name]
                for m in members
                if name in (m.get("open_scores") or {}).get("scores", {})
            ]
            chosen = sum((m.get("threshold_selection") or {}).get("score") == name for m in members)
            row = [name]
            for key, _ in SCORE_COLUMNS:
                values = np.array(
                    [float(e[key]) for e in entries if not _is_missing(e.get(key))], np.float64
                )
                aggregate = {
                    "mean": float(values.mean()) if values.size else None,
                    "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                    "n": int(values.size),
                }
                row.append(_fmt(aggregate, digits=4))
            rows.append([*row, f"{chosen}/{len(members)}"])
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
    result = []
    for model, members in grouped.items():
        out: dict[str, Any] = {"model": model, "runs": len(members)}
        for key, _, _ in RESULT_COLUMNS:
            values = np.array(
                [float(m[key]) for m in members if not _is_missing(m.get(key))], np.float64
            )
            out[key] = {
                "mean": float(values.mean()) if values.size else None,
                "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "n": int(values.size),
            }
        result.append(out)
    return result


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


def _report_markdown(document: Mapping[str, Any], plot_files: Sequence[str]) -> str:
    metrics = document["metrics"]
    conv = metrics["conventions"]
    closed, open_, counts = metrics["closed"], metrics["open"], metrics["counts"]
    bounds = conv["shot_group_bounds"]
    lines = [
        f"# OLTR evaluation: {document['model_name']} on {document['dataset_name']}",
        "",
        f"Created {document['created']}. Shot groups: **{conv['shot_groups']}** "
        f"(many {bounds['many']}, medium {bounds['medium']}, few {bounds['few']} train images). "
        f"Open-set rule: {conv['rejection']} (threshold {conv['open_threshold']}).",
        "",
        f"Classes: {counts['num_classes']} "
        f"(many {counts['classes_per_group']['many']}, "
        f"medium {counts['classes_per_group']['medium']}, "
        f"few {counts['classes_per_group']['few']}); known test images "
        f"{counts['num_known_test']}, open test images {counts['num_open_test']}.",
        "",
        "## Top-1 accuracy (%) and open-set F (paper Table layout)",
        "",
        format_results_table([results_row(metrics, document["model_name"])]),
        "",
        f"Closed-set macro-F1 (the reference's closed-set F-measure): "
        f"{_fmt(closed['macro_f1'])}. Open-set precision {_fmt(open_['precision'])}, "
        f"recall {_fmt(open_['recall'])}; open images rejected "
        f"{_fmt(open_['open_rejection_rate'], percent=True)}%, known images rejected "
        f"{_fmt(open_['known_rejection_rate'], percent=True)}%.",
        "",
        "## Rejection threshold",
        "",
    ]
    threshold_rows = [
        [
            "paper rule (fixed)",
            "msp",
            _fmt(open_["threshold"]),
            _fmt(open_["f_measure"]),
            "n/a",
            _fmt(open_["overall"], percent=True),
        ]
    ]
    selection = metrics.get("threshold_selection")
    notes = []
    if selection:
        source = "val-chosen" + ("" if selection["used_open_val"] else " (no open val)")
        threshold_rows.append(
            [
                source,
                _score_label(selection.get("score", "msp"), selection.get("score_params")),
                _fmt(selection["threshold"], digits=4),
                _fmt(selection["test"]["f_measure"]),
                _fmt(selection["val_open_f"]),
                _fmt(selection["test"]["overall"], percent=True),
            ]
        )
        if not selection["used_open_val"]:
            notes = ["", f"Note: {selection.get('open_val_note') or 'no open validation data.'}"]
    else:
        notes = ["", "No validation split: no score or threshold was chosen."]
    lines += [
        _markdown_table(
            ["rule", "score", "threshold", "open F (test)", "open F (val)", "open overall (%)"],
            threshold_rows,
        ),
        *notes,
        "",
        "## Known vs open without a threshold (open = positive)",
        "",
    ]
    tf_rows = []
    for score, label in (("msp", "max probability"), ("reachability", "reachability")):
        values = metrics["threshold_free"].get(score)
        if values is None:
            tf_rows.append([label, "n/a", "n/a", "n/a"])
        else:
            tf_rows.append(
                [
                    label,
                    _fmt(values["auroc"], digits=4),
                    _fmt(values["aupr"], digits=4),
                    _fmt(values["fpr_at_95_tpr"], digits=4),
                ]
            )
    assignment = metrics["open_assignment"]
    calibration = metrics["calibration"]
    lines += [
        _markdown_table(["score", "AUROC", "AUPR", "FPR@95TPR"], tf_rows),
        "",
        f"Orientation: {conv['threshold_free']}. FPR@95TPR: {conv['fpr_at_95_tpr']}.",
        "",
        *_open_score_section(metrics.get("open_scores"), document["model_name"]),
        "## Calibration (known test images)",
        "",
        f"ECE ({calibration['num_bins']} bins): {_fmt(calibration['ece'], digits=4)}; "
        f"MCE: {_fmt(calibration['mce'], digits=4)}.",
        "",
        "## Where open images go",
        "",
        _markdown_table(
            ["", "many", "medium", "few", "rejected"],
            [
                [
                    f"accepted at {_fmt(open_['threshold'])}",
                    *(str(assignment["accepted"][g]) for g in SHOT_GROUPS),
                    str(assignment["rejected"]),
                ],
                [
                    "argmax (no rejection)",
                    *(str(assignment["argmax"][g]) for g in SHOT_GROUPS),
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
    if document.get("extra"):
        lines += ["## Extra", "", "```json", json.dumps(document["extra"], indent=2), "```", ""]
    versions = ", ".join(f"{k} {v}" for k, v in document["versions"].items())
    lines += [f"Versions: {versions}.", ""]
    return "\n".join(lines)


def _score_label(name: str, params: Mapping[str, Any] | None) -> str:
    if params and "reachability_scale" in params:
        return f"{name} (s'={params['reachability_scale']:g})"
    return name


def format_open_score_table(open_scores: Mapping[str, Any]) -> str:
    """The per-score known-vs-open table of one model (metrics["open_scores"])."""
    chosen = open_scores.get("chosen")
    rows = []
    for name, row in open_scores["scores"].items():
        at = row.get("test_at_val_threshold") or {}
        label = _score_label(name, row.get("score_params"))
        rows.append(
            [
                label + (" **chosen**" if name == chosen else ""),
                _fmt(row["auroc"], digits=4),
                _fmt(row["aupr"], digits=4),
                _fmt(row["fpr_at_95_tpr"], digits=4),
                _fmt(row.get("val_auroc"), digits=4),
                _fmt(row.get("val_threshold"), digits=4),
                _fmt(row.get("val_open_f")),
                _fmt(at.get("f_measure")),
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


def _open_score_section(open_scores: Mapping[str, Any] | None, model_name: str) -> list[str]:
    if not open_scores or not open_scores.get("scores"):
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
    grid = open_scores.get("scale_grid") or {}
    if grid:
        lines += [
            "msp_rescaled over the reachability scale s' (test AUROC reported, s' chosen "
            "by validation F):",
            "",
            _markdown_table(
                ["s'", "AUROC", "AUPR", "FPR@95TPR", "val F"],
                [
                    [
                        scale,
                        _fmt(row["auroc"], digits=4),
                        _fmt(row["aupr"], digits=4),
                        _fmt(row["fpr_at_95_tpr"], digits=4),
                        _fmt(row.get("val_open_f")),
                    ]
                    for scale, row in grid.items()
                ],
            ),
            "",
        ]
    return lines


def write_report(
    metrics: Mapping[str, Any],
    out_dir: str,
    *,
    model_name: str,
    dataset_name: str,
    extra: Mapping[str, Any] | None = None,
    plot_files: Sequence[str] = (),
) -> dict[str, Any]:
    """Writes ``out_dir/metrics.json`` and ``out_dir/report.md``.

    Args:
        metrics: the dict returned by `evaluate_predictions`.
        out_dir: folder, created if needed.
        model_name: e.g. "plain" or "oltr"; `trainers/compare.py` groups by it.
        dataset_name: e.g. "imagenet_lt".
        extra: optional JSON-serialisable information (config, checkpoint, seed).
        plot_files: PNG file names inside ``out_dir`` to link from report.md.

    Returns:
        The metrics.json document (validated against `METRICS_JSON_SCHEMA`).
    """
    document = {
        "schema_version": SCHEMA_VERSION,
        "model_name": str(model_name),
        "dataset_name": str(dataset_name),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "metrics": to_json_compatible(metrics),
        "extra": to_json_compatible(extra) if extra is not None else None,
    }
    validate_metrics_json(document)
    os.makedirs(out_dir, exist_ok=True)
    metrics_path = os.path.join(out_dir, METRICS_FILENAME)
    with open(metrics_path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1, allow_nan=False)
    with open(os.path.join(out_dir, REPORT_FILENAME), "w", encoding="utf-8") as f:
        f.write(_report_markdown(document, plot_files))
    logging.info("Wrote %s and %s in %s", METRICS_FILENAME, REPORT_FILENAME, out_dir)
    return document


def load_metrics_json(path: str) -> dict[str, Any]:
    """Reads and validates a metrics.json file."""
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    try:
        validate_metrics_json(document)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return document
