"""Plain model vs OLTR on the embedded benchmark, over several seeds.

The plain model trains for as many epochs as both OLTR stages together (a fair
baseline, unlike the paper's 30-epoch plain model); OLTR runs stage 1 + stage 2.
Both are evaluated on their best-validation checkpoints (never on test). Prints and
writes a mean +- std table.

    python benchmarks/quality.py --seeds=0,1,2 --out=runs/quality
    python benchmarks/quality.py --dataset=mixed_mnist_lt_b --out=runs/quality_b

The fair baseline of one seed from the command line (mixed_mnist_lt: 12 + 8 epochs,
step decay every round(8 * 20 / 12) = 13 epochs)::

    python trainers/train.py --stage=1 --stage1_epochs=20 --stage1_step_epochs=13 \
        --seed=0 --workdir=runs/plain20_seed0
    python trainers/evaluate.py --workdir=runs/plain20_seed0 --stage=1
"""

import dataclasses
import json
import os
import time

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
flags.DEFINE_string("preset", "mixed_mnist_lt", "Experiment preset.")
flags.DEFINE_string(
    "dataset", None, "Benchmark to run: the preset of this name (overrides --preset)."
)
flags.DEFINE_string("out", "runs/quality", "Output folder.")


def main(argv):
    del argv
    from keras_oltr.data import get_dataset
    from keras_oltr.evaluation import (
        aggregate_rows,
        evaluate_model,
        format_results_table,
        load_metrics_json,
        results_row,
    )
    from keras_oltr.experiment import run_experiment
    from keras_oltr.models import load_stage_model
    from keras_oltr.presets import get_preset
    from keras_oltr.runs import Workdir

    logging.set_verbosity(logging.INFO)
    base = get_preset(FLAGS.dataset or FLAGS.preset)
    dataset = get_dataset(base.dataset, **base.dataset_kwargs)
    total_epochs = base.stage1.epochs + base.stage2.epochs
    rows, timings = [], {}
    for seed in (int(s) for s in FLAGS.seeds):
        config = dataclasses.replace(base, seed=seed)
        start = time.time()
        oltr_dir = Workdir(os.path.join(FLAGS.out, f"seed{seed}", "oltr"))
        run_experiment(config, oltr_dir, export=False, verbose=0)
        timings[f"oltr_seed{seed}_s"] = time.time() - start
        for stage, name in ((1, "plain (stage 1 only)"), (2, "oltr")):
            document = load_metrics_json(oltr_dir.metrics_path(stage))
            rows.append(results_row(document.metrics, name))

        # The fair baseline: the plain model with the same total number of epochs,
        # its step decay stretched in proportion.
        scale = total_epochs / base.stage1.epochs
        stage1 = dataclasses.replace(
            base.stage1,
            epochs=total_epochs,
            step_epochs=max(1, round(base.stage1.step_epochs * scale)),
        )
        plain_config = dataclasses.replace(config, stage1=stage1)
        plain_dir = Workdir(os.path.join(FLAGS.out, f"seed{seed}", "plain"))
        start = time.time()
        run_experiment(plain_config, plain_dir, stage="1", verbose=0)
        metrics = evaluate_model(
            load_stage_model(plain_dir, 1, "best"),
            dataset,
            plain_dir.eval_dir(1),
            threshold=config.threshold,
            model_name=f"plain ({total_epochs} epochs)",
        )
        timings[f"plain_seed{seed}_s"] = time.time() - start
        rows.append(results_row(metrics, f"plain ({total_epochs} epochs)"))

    table = format_results_table(aggregate_rows(rows))
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "quality.md"), "w", encoding="utf-8") as f:
        f.write(f"# {base.name}: seeds {', '.join(FLAGS.seeds)}\n\n{table}\n")
    with open(os.path.join(FLAGS.out, "quality.json"), "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "timings": timings}, f, indent=2)
    print(table)
    print(json.dumps(timings, indent=2))


if __name__ == "__main__":
    app.run(main)
