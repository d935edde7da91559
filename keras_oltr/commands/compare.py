r"""Compares evaluation runs: one table of mean ± std grouped by model name.

Usage::

    python trainers/compare.py runs/*/eval/stage2/metrics.json runs/*/eval/stage1/metrics.json
    python trainers/compare.py --glob='runs/seed*/eval/stage*/metrics.json'

Runs with the same ``model_name`` (e.g. several seeds of "oltr") are averaged; a
second table per model lists every open score's AUROC / AUPR / FPR@95TPR. Runs of
different datasets or experiments (the run name, e.g. a smoke run beside the main
one) are never averaged together: that is an error, unless `--group_by=dataset`
asks for one table per (dataset, run name).
"""

import glob

from absl import flags

from keras_oltr.cli import print_error, run
from keras_oltr.evaluation.metrics_file import load_metrics_json
from keras_oltr.evaluation.tables import (
    aggregate_rows,
    aggregate_score_tables,
    format_results_table,
    results_row,
)

_GLOB = flags.DEFINE_multi_string("glob", [], "Glob pattern(s) of metrics.json files.")
_GROUP_BY = flags.DEFINE_enum(
    "group_by",
    "none",
    ["none", "dataset"],
    "none: all runs must be of one dataset and run name; dataset: one table per "
    "(dataset, run name).",
)


def run_group(document):
    """(dataset, run name) of a metrics.json document; the run name may be unknown."""
    extra = document.extra or {}
    run_name = extra.get("run") or (extra.get("config") or {}).get("name") or "?"
    return document.dataset_name, str(run_name)


def _print_tables(documents):
    rows = [results_row(d.metrics, d.model_name) for d in documents]
    print(format_results_table(aggregate_rows(rows)))
    for model, table in aggregate_score_tables(documents).items():
        print(f"\nOpen scores of {model} (test; higher = more known; open = positive):")
        print(table)


def main(argv):
    paths = list(argv[1:])
    for pattern in _GLOB.value:
        paths += sorted(glob.glob(pattern, recursive=True))
    paths = list(dict.fromkeys(paths))  # a file named twice counts once
    if not paths:
        return print_error("no metrics.json files given (pass paths or --glob)")
    documents = []
    for path in paths:
        try:
            documents.append(load_metrics_json(path))
        except (OSError, ValueError) as error:
            return print_error(f"{path}: {error}")
    groups = {}
    for document in documents:
        groups.setdefault(run_group(document), []).append(document)
    if len(groups) > 1 and _GROUP_BY.value == "none":
        found = ", ".join(f"{d}/{r} ({len(g)})" for (d, r), g in sorted(groups.items()))
        return print_error(
            f"the files are runs of {len(groups)} datasets or experiments ({found}); "
            "their numbers do not average. Pass --group_by=dataset for one table each, "
            "or fewer files."
        )
    for index, ((dataset, run_name), group) in enumerate(sorted(groups.items())):
        if len(groups) > 1:
            print(("\n" if index else "") + f"## {dataset} / {run_name} ({len(group)} files)\n")
        _print_tables(group)
    conventions = sorted(
        {(d.metrics.conventions.shot_groups, d.metrics.open.threshold) for d in documents}
    )
    print(f"{len(paths)} runs; (shot groups, threshold): {conventions}")
    if len(conventions) > 1:
        print("warning: runs use different conventions; their numbers are not comparable")
    return 0


def console_main():
    """The `oltr-compare` console script (and `python trainers/compare.py`)."""
    run(main, doc=__doc__)


if __name__ == "__main__":
    console_main()
