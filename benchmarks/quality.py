"""The long-tail methods side by side on an embedded benchmark, over several seeds.

Rows (`--methods`, default all):

* plain: the stage-1 model (backbone + linear classifier, instance-balanced CE).
* plain20: the plain model trained as many epochs as OLTR's two stages together
  (its step decay stretched in proportion): a fair baseline for OLTR.
* oltr, crt, lws, tau_norm, logit_adjust, balanced_softmax: each a stage 2
  (`keras_oltr.methods`) on the **same** stage-1 model of the seed, trained once in
  `<out>/seed{s}/stage1` and copied into each method's workdir `<out>/seed{s}/<method>`.

Epoch budgets: with `--equal_budget` (default) every trained stage 2 (oltr, crt, lws,
balanced_softmax) runs OLTR's stage-2 epochs, so those rows and plain20 have the same
total; tau_norm and logit_adjust train nothing after stage 1. Without it each method
keeps its own schedule (`configure_method`; cRT / LWS scaled from Kang et al.). The
table's "epochs" column states each row's total. Every row is its best-validation
checkpoint evaluated on test (never chosen on test), the same evaluation as a
training run's; the best mean of each column is in bold. Writes quality.md and
quality.json (rows, per-row wall time) to `--out`.

    python benchmarks/quality.py --seeds=0,1,2 --out=runs/quality
    python benchmarks/quality.py --dataset=mixed_mnist_lt_b --out=runs/quality_b
    python benchmarks/quality.py --smoke --seeds=0 --out=/tmp/quality_smoke  # minutes
"""

import dataclasses
import json
import os
import shutil
import time

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_oltr.data import get_dataset
from keras_oltr.evaluation import aggregate_rows, evaluate_model, results_row
from keras_oltr.evaluation.markdown import fmt, is_missing, markdown_table
from keras_oltr.evaluation.tables import RESULT_COLUMNS
from keras_oltr.experiment import run_experiment
from keras_oltr.methods import configure_method, list_methods
from keras_oltr.models import load_stage_model
from keras_oltr.presets import get_preset, smoke
from keras_oltr.runs import Workdir

PLAIN_ROWS = ("plain", "plain20")
ALL_ROWS = (*PLAIN_ROWS, "oltr", "crt", "lws", "tau_norm", "logit_adjust", "balanced_softmax")

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
flags.DEFINE_string("preset", "mixed_mnist_lt", "Experiment preset.")
flags.DEFINE_string(
    "dataset", None, "Benchmark to run: the preset of this name (overrides --preset)."
)
flags.DEFINE_list("methods", list(ALL_ROWS), f"Rows to run, of {', '.join(ALL_ROWS)}.")
flags.DEFINE_bool(
    "equal_budget", True, "Every trained stage 2 runs OLTR's stage-2 epochs (equal totals)."
)
flags.DEFINE_bool("smoke", False, "Shrink the preset (presets.smoke): checks the script only.")
flags.DEFINE_string("out", "runs/quality", "Output folder.")


def method_config(base, method, seed, equal_budget):
    """The config of a stage-2 method's run: its schedule, the budget rule, the seed."""
    config = configure_method(base, method)
    if equal_budget and config.stage2.epochs > 0:
        stage2 = dataclasses.replace(config.stage2, epochs=base.stage2.epochs)
        config = dataclasses.replace(config, stage2=stage2)
    return dataclasses.replace(config, seed=seed)


def plain_long_config(base, seed):
    """The plain model with the epochs of both OLTR stages, its step decay stretched."""
    total = base.stage1.epochs + base.stage2.epochs
    stage1 = dataclasses.replace(
        base.stage1,
        epochs=total,
        step_epochs=max(1, round(base.stage1.step_epochs * total / base.stage1.epochs)),
    )
    return dataclasses.replace(base, stage1=stage1, seed=seed)


def evaluate_stage(workdir, stage, dataset, config, name, epochs):
    """The results row of a workdir's best model of ``stage``, with its total epochs."""
    metrics = evaluate_model(
        load_stage_model(workdir, stage, "best"),
        dataset,
        workdir.eval_dir(stage),
        threshold=config.threshold,
        batch_size=config.eval_batch_size,
        model_name=name,
    )
    return results_row(metrics, name) | {"epochs": epochs}


def run_seed(base, dataset, seed, rows_wanted, out):
    """Every wanted row of one seed: [(row, seconds)]."""
    results = []
    stage1_dir = Workdir(os.path.join(out, f"seed{seed}", "stage1"))
    plain = dataclasses.replace(configure_method(base, "oltr"), seed=seed)
    stage2_rows = [r for r in rows_wanted if r not in PLAIN_ROWS]
    if "plain" in rows_wanted or stage2_rows:
        start = time.time()
        run_experiment(plain, stage1_dir, stage="1", evaluate=False, export=False, verbose=0)
        if "plain" in rows_wanted:
            row = evaluate_stage(stage1_dir, 1, dataset, plain, "plain", base.stage1.epochs)
            results.append((row, time.time() - start))
    if "plain20" in rows_wanted:
        config = plain_long_config(base, seed)
        workdir = Workdir(os.path.join(out, f"seed{seed}", "plain20"))
        start = time.time()
        run_experiment(config, workdir, stage="1", evaluate=False, export=False, verbose=0)
        row = evaluate_stage(workdir, 1, dataset, config, "plain20", config.stage1.epochs)
        results.append((row, time.time() - start))
    for method in stage2_rows:
        config = method_config(base, method, seed, FLAGS.equal_budget)
        workdir = Workdir(os.path.join(out, f"seed{seed}", method))
        if not os.path.isdir(workdir.stage_dir(1)):
            shutil.copytree(stage1_dir.stage_dir(1), workdir.stage_dir(1))
        start = time.time()
        run_experiment(config, workdir, stage="2", evaluate=False, export=False, verbose=0)
        epochs = config.stage1.epochs + config.stage2.epochs
        row = evaluate_stage(workdir, 2, dataset, config, method, epochs)
        results.append((row, time.time() - start))
    return results


def format_table(rows):
    """Mean ± std per row and column, the best mean of each column in bold."""
    aggregated = aggregate_rows(rows)
    epochs = {row["model"]: row["epochs"] for row in rows}
    best = {}
    for key, _, _ in RESULT_COLUMNS:
        means = [r[key]["mean"] for r in aggregated if not is_missing(r[key]["mean"])]
        best[key] = max(means) if means else None
    body = []
    for row in aggregated:
        cells = [row["model"], str(epochs[row["model"]]), str(row["runs"])]
        for key, _, percent in RESULT_COLUMNS:
            text = fmt(row[key], percent=percent)
            mean = row[key]["mean"]
            cells.append(f"**{text}**" if mean is not None and mean == best[key] else text)
        body.append(cells)
    header = ["model", "epochs", "runs", *(title for _, title, _ in RESULT_COLUMNS)]
    return markdown_table(header, body)


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    unknown = sorted(set(FLAGS.methods) - set(ALL_ROWS) - set(list_methods()))
    if unknown:
        raise app.UsageError(f"--methods: unknown {unknown}; known: {', '.join(ALL_ROWS)}")
    base = get_preset(FLAGS.dataset or FLAGS.preset)
    if FLAGS.smoke:
        base = smoke(base)
    dataset = get_dataset(base.dataset, **base.dataset_kwargs)
    rows, timings = [], {}
    start = time.time()
    for seed in (int(s) for s in FLAGS.seeds):
        for row, seconds in run_seed(base, dataset, seed, FLAGS.methods, FLAGS.out):
            rows.append(row)
            timings[f"{row['model']}_seed{seed}_s"] = seconds
    timings["total_s"] = time.time() - start
    table = format_table(rows)
    budget = "equal (every trained stage 2 runs OLTR's stage-2 epochs)"
    if not FLAGS.equal_budget:
        budget = "each method's own schedule"
    text = (
        f"# {base.name}: seeds {', '.join(FLAGS.seeds)}\n\n{table}\n\n"
        f"epochs: total training epochs of the row (stage 1 + stage 2); budget: {budget}. "
        "Closed-set accuracies in %, open-set F and AUROC as fractions; mean ± std over "
        "the seeds; the best mean of each column in bold.\n"
    )
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "quality.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(FLAGS.out, "quality.json"), "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "timings": timings}, f, indent=2)
    print(text)
    print(json.dumps(timings, indent=2))


if __name__ == "__main__":
    app.run(main)
