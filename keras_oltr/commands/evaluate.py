r"""Evaluates a trained OLTR run: metrics.json, report.md and plots.

Usage::

    python trainers/evaluate.py --workdir=/runs/imagenet_lt_seed0 --stage=2 \
        --checkpoint=best --threshold=0.1 --convention=strict

Reads the run's config and ``stage{N}/{best,latest}.keras`` (no training) and writes
``<workdir>/eval/stage{N}/``: metrics.json and report.md with the per-score open-set
table (AUROC / AUPR / FPR@95TPR of every score, the score and threshold chosen on
validation) and plots. Exit status 2 with one line for a user error. All logic lives
in `keras_oltr.evaluation.evaluate_workdir`.
"""

from absl import flags

from keras_oltr.cli import print_error, run
from keras_oltr.evaluation.tables import (
    format_open_score_table,
    format_results_table,
    results_row,
)
from keras_oltr.run_evaluation import evaluate_workdir
from keras_oltr.runs import Workdir, WorkdirError

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (holds config.json).")
_STAGE = flags.DEFINE_enum(
    "stage", "2", ["1", "2"], "1: plain model, 2: the stage-2 method's model."
)
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Checkpoint to load.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.1, "Open-set rejection threshold on max prob.")
_CONVENTION = flags.DEFINE_enum(
    "convention", "strict", ["strict", "inclusive"], "Shot-group convention."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder (default <workdir>/eval/stageN).")
_MAX_UNREADABLE = flags.DEFINE_float(
    "max_unreadable_fraction",
    0.01,
    "Fail when more than this share of a test split's images is unreadable.",
)
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv

    stage = int(_STAGE.value)
    try:
        metrics = evaluate_workdir(
            _WORKDIR.value,
            stage=stage,
            checkpoint=_CHECKPOINT.value,
            threshold=_THRESHOLD.value,
            convention=_CONVENTION.value,
            batch_size=_BATCH_SIZE.value,
            out_dir=_OUT_DIR.value,
            max_unreadable_fraction=_MAX_UNREADABLE.value,
        )
    except (WorkdirError, ValueError, OSError) as error:
        return print_error(error)
    run_dir = Workdir(_WORKDIR.value)
    name = run_dir.stage_name(stage, run_dir.read_config_document().get("method"))
    print(format_results_table([results_row(metrics, name)]))
    if metrics.open_scores is not None:
        print(f"\nOpen scores of {name} (test; the chosen one is marked):")
        print(format_open_score_table(metrics.open_scores))
    return 0


def console_main():
    """The `oltr-evaluate` console script (and `python trainers/evaluate.py`)."""
    run(main, doc=__doc__)


if __name__ == "__main__":
    console_main()
