"""OLTR evaluation: metrics over numpy arrays, reports, plots and model evaluation.

`metrics` combines the numbers of `closed_set`, `open_set`, `score_selection`
(the candidate open scores, chosen on validation), `ranking` and `calibration` into
one typed `results.EvaluationResult`; `metrics_file` writes and reads metrics.json,
`report` writes report.md, `tables` formats result tables; `plots` draws PNGs from a
result; `evaluate` runs a Keras model over a dataset.
"""

from keras_oltr.evaluation import open_score_results, results
from keras_oltr.evaluation.evaluate import collect_top1_outputs, evaluate_model
from keras_oltr.evaluation.metrics import (
    auroc,
    average_precision,
    closed_set_metrics,
    evaluate_predictions,
    evaluate_top1_predictions,
    expected_calibration_error,
    fpr_at_tpr,
    macro_f1,
    open_set_metrics,
    select_threshold,
    threshold_curves,
    threshold_free_metrics,
    top1_from_scores,
)
from keras_oltr.evaluation.metrics_file import (
    MetricsDocument,
    load_metrics_json,
    validate_metrics_json,
)
from keras_oltr.evaluation.open_score_results import *  # noqa: F403  (open_score_results.__all__)
from keras_oltr.evaluation.plots import write_plots
from keras_oltr.evaluation.records import to_json_compatible
from keras_oltr.evaluation.report import write_report
from keras_oltr.evaluation.results import *  # noqa: F403  (the typed results; results.__all__)
from keras_oltr.evaluation.tables import aggregate_rows, format_results_table, results_row
from keras_oltr.runs.errors import CheckpointNotFoundError, WorkdirError
from keras_oltr.shot_groups import CONVENTIONS, SHOT_GROUPS, shot_groups

__all__ = [
    "CONVENTIONS",
    "SHOT_GROUPS",
    "CheckpointNotFoundError",
    "MetricsDocument",
    "WorkdirError",
    "aggregate_rows",
    "auroc",
    "average_precision",
    "closed_set_metrics",
    "collect_top1_outputs",
    "evaluate_model",
    "evaluate_predictions",
    "evaluate_top1_predictions",
    "expected_calibration_error",
    "format_results_table",
    "fpr_at_tpr",
    "load_metrics_json",
    "macro_f1",
    "open_set_metrics",
    "results_row",
    "select_threshold",
    "shot_groups",
    "threshold_curves",
    "threshold_free_metrics",
    "to_json_compatible",
    "top1_from_scores",
    "validate_metrics_json",
    "write_plots",
    "write_report",
]
__all__ += results.__all__ + open_score_results.__all__
