"""Evaluating a run's trained stages: metrics.json, report.md, plots and results.md.

`evaluate_stages` runs at the end of a training run with the run's dataset;
`evaluate_workdir` (trainers/evaluate.py) rebuilds the dataset from config.json.
"""

import os

from keras_oltr.data import get_dataset
from keras_oltr.evaluation import evaluate_model, format_results_table, results_row
from keras_oltr.models import check_model_matches, load_stage_model
from keras_oltr.open_scores import PAPER_THRESHOLD
from keras_oltr.runs import (
    CHECKPOINTS,
    STAGES,
    Workdir,
    atomic_write,
    check_stage,
    write_text_atomic,
)

DEFAULT_MAX_UNREADABLE_FRACTION = 0.01


def evaluate_stages(config, dataset, workdir, *, max_unreadable_fraction=0.01):
    """Evaluates the best model of each stage; writes results.md; returns the table.

    Each stage's report folder is written under a temporary name and renamed, so
    metrics.json is never half-written.
    """
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    rows = []
    for stage in STAGES:
        model = load_stage_model(workdir, stage, "best")
        name = workdir.stage_name(stage, config.method)
        with atomic_write(workdir.eval_dir(stage), fault="metrics") as tmp:
            metrics = evaluate_model(
                model,
                dataset,
                tmp,
                threshold=config.threshold,
                batch_size=config.eval_batch_size,
                model_name=name,
                max_unreadable_fraction=max_unreadable_fraction,
                extra={
                    "run": config.name,
                    "workdir": os.path.abspath(workdir.root),
                    "checkpoint": workdir.model_path(stage, "best"),
                },
            )
        rows.append(results_row(metrics, name))
    table = format_results_table(rows)
    write_text_atomic(workdir.results_path, f"# {config.name} ({dataset.name})\n\n{table}\n")
    return table


def evaluate_workdir(
    workdir,
    *,
    stage=2,
    checkpoint="best",
    threshold=PAPER_THRESHOLD,
    convention="strict",
    batch_size=256,
    out_dir=None,
    max_unreadable_fraction=DEFAULT_MAX_UNREADABLE_FRACTION,
):
    """Loads ``<workdir>/stage{stage}/{checkpoint}.keras`` and evaluates it.

    The dataset is rebuilt from ``<workdir>/config.json`` ({"dataset": name,
    "dataset_kwargs": {...}}). Results go to ``out_dir`` (default
    ``<workdir>/eval/stage{stage}``).

    Raises:
        WorkdirError: missing or unreadable config.json.
        CheckpointNotFoundError: missing checkpoint file.
        ValueError: bad ``stage`` / ``checkpoint`` / ``convention`` values.
    """
    stage = check_stage(stage)
    if checkpoint not in CHECKPOINTS:
        raise ValueError(
            f"`checkpoint` must be one of {CHECKPOINTS}. Received: checkpoint={checkpoint!r}"
        )
    run = Workdir(workdir)
    config = run.read_config_document()
    model = load_stage_model(run, stage, checkpoint)
    dataset = get_dataset(config["dataset"], **config.get("dataset_kwargs", {}))
    # config.json of older runs records no classes or image size: the dataset does.
    check_model_matches(
        model,
        run.model_path(stage, checkpoint),
        class_names=dataset.class_names,
        image_shape=(dataset.image_size, dataset.image_size, dataset.channels),
        recorded_in=f"{run.config_path} (dataset {config['dataset']!r})",
    )
    return evaluate_model(
        model,
        dataset,
        out_dir or run.eval_dir(stage),
        threshold=threshold,
        convention=convention,
        batch_size=batch_size,
        model_name=run.stage_name(stage, config.get("method")),
        extra={
            "workdir": os.path.abspath(workdir),
            "checkpoint": run.model_path(stage, checkpoint),
            "config": config,
        },
        max_unreadable_fraction=max_unreadable_fraction,
    )
