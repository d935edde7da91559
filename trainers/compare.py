r"""Compares evaluation runs: one table of mean ± std grouped by model name.

Usage::

    python trainers/compare.py runs/*/eval/stage2/metrics.json runs/*/eval/stage1/metrics.json
    python trainers/compare.py --glob='runs/seed*/eval/stage*/metrics.json'

Runs with the same ``model_name`` (e.g. several seeds of "oltr") are averaged; a
second table per model lists every open score's AUROC / AUPR / FPR@95TPR.
"""

import glob
import sys

from absl import flags

from keras_oltr.cli import run
from keras_oltr.evaluation.metrics_file import load_metrics_json
from keras_oltr.evaluation.tables import (
    aggregate_rows,
    aggregate_score_tables,
    format_results_table,
    results_row,
)

_GLOB = flags.DEFINE_multi_string("glob", [], "Glob pattern(s) of metrics.json files.")


def main(argv):
    paths = list(argv[1:])
    for pattern in _GLOB.value:
        paths += sorted(glob.glob(pattern, recursive=True))
    paths = list(dict.fromkeys(paths))  # a file named twice counts once
    if not paths:
        print("error: no metrics.json files given (pass paths or --glob)", file=sys.stderr)
        return 1
    documents = []
    for path in paths:
        try:
            documents.append(load_metrics_json(path))
        except (OSError, ValueError) as error:
            print(f"error: {path}: {error}", file=sys.stderr)
            return 1
    rows = [results_row(d.metrics, d.model_name) for d in documents]
    conventions = sorted(
        {(d.metrics.conventions.shot_groups, d.metrics.open.threshold) for d in documents}
    )
    print(format_results_table(aggregate_rows(rows)))
    for model, table in aggregate_score_tables(documents).items():
        print(f"\nOpen scores of {model} (test; higher = more known; open = positive):")
        print(table)
    print(f"{len(paths)} runs; (shot groups, threshold): {conventions}")
    if len(conventions) > 1:
        print("warning: runs use different conventions; their numbers are not comparable")
    return 0


if __name__ == "__main__":
    run(main)
