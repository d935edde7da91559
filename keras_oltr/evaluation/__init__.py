"""OLTR evaluation: metrics over numpy arrays, reports, plots and model evaluation.

`metrics` combines the numbers of `closed_set`, `open_set`, `ranking`, `calibration`
and `open_scores` (the candidate open scores, chosen on validation) into one typed
`results.EvaluationResult`; `report` writes metrics.json / report.md and result
tables; `plots` draws PNGs from a result; `evaluate` runs a Keras model over a dataset.
"""

from keras_oltr.evaluation import results
from keras_oltr.evaluation.evaluate import (
    CheckpointNotFoundError,
    WorkdirError,
    collect_top1_outputs,
    evaluate_model,
    evaluate_workdir,
)
from keras_oltr.evaluation.metrics import (
    CONVENTIONS,
    SHOT_GROUPS,
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
    shot_groups,
    threshold_curves,
    threshold_free_metrics,
    top1_from_scores,
)
from keras_oltr.evaluation.plots import write_plots
from keras_oltr.evaluation.report import (
    aggregate_rows,
    format_results_table,
    load_metrics_json,
    results_row,
    validate_metrics_json,
    write_report,
)
from keras_oltr.evaluation.results import *  # noqa: F403  (the typed results; results.__all__)

__all__ = [
    "CONVENTIONS",
    "SHOT_GROUPS",
    "CheckpointNotFoundError",
    "WorkdirError",
    "aggregate_rows",
    "auroc",
    "average_precision",
    "closed_set_metrics",
    "collect_top1_outputs",
    "evaluate_model",
    "evaluate_predictions",
    "evaluate_top1_predictions",
    "evaluate_workdir",
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
    "top1_from_scores",
    "validate_metrics_json",
    "write_plots",
    "write_report",
]
__all__ += results.__all__
