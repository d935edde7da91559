"""A whole run, orchestrated in one place: the library behind trainers/train.py.

    stage 1 (plain model) -> stage 2 (the configured long-tail method; OLTR: centroids,
    meta-embedding) -> nearest-neighbour bank -> evaluation of both stages -> export

Every step reads and writes the run's folder through `keras_oltr.runs.Workdir`, so a
run killed at any point resumes where it stopped (`resume=True`). The dataset is
built once per run and handed to every step. Stage 2 is an extension point: the
method named by `ExperimentConfig.method` is looked up in `keras_oltr.methods`.
"""

import os
import shutil

import keras
import tensorflow as tf
from absl import logging

from keras_oltr import methods
from keras_oltr.data import get_dataset
from keras_oltr.data.fingerprint import dataset_fingerprints
from keras_oltr.distribute import num_data_replicas, worker_info
from keras_oltr.inference import add_feature_bank, has_accelerator
from keras_oltr.models import build_plain_model, load_stage_model
from keras_oltr.run_evaluation import evaluate_stages
from keras_oltr.run_export import export_best
from keras_oltr.runs import (
    Workdir,
    WorkdirError,
    WorkdirLock,
    WriteFailedError,
    save_model_atomic,
)
from keras_oltr.training import TrainingError, compile_for_stage, steps_per_epoch
from keras_oltr.training.shared_workdir import check_shared_workdir

RUN_STAGES = ("1", "2", "all")  # what --stage may ask for


def defers_jitter(config, dataset):
    """Whether the train step, not tf.data, applies the flip + colour jitter.

    `config.colour_jitter_on`: "train_step", "input_pipeline", or "auto" (the train
    step when the backend has an accelerator, whose step then does the per-pixel
    work that would otherwise cost the host's CPUs a quarter of the train
    transform). Only datasets that `can_defer_jitter` (ImageNet family, RGB) do.
    """
    if not dataset.can_defer_jitter:
        return False
    if config.colour_jitter_on == "auto":
        return has_accelerator()
    return config.colour_jitter_on == "train_step"


def default_run_name(config):
    """The run's name: the preset's, or the dataset's when it is not the preset's.

    A custom-data run (`--dataset=custom`) is named after its dataset (the `name`
    argument when given), not after the preset whose settings it borrows.
    """
    preset_dataset = config.name.removesuffix("_smoke")
    if config.dataset == preset_dataset or config.name.startswith(config.dataset):
        return config.name
    name = str(config.dataset_kwargs.get("name") or config.dataset)
    return name + ("_smoke" if config.name.endswith("_smoke") else "")


def check_splits(dataset, *, evaluate):
    """Raises TrainingError before any step when a split the run needs is missing."""
    needed = ["val"] + (["test"] if evaluate else [])
    missing = [s for s in needed if not dataset.has_split(s)]
    if missing:
        raise TrainingError(
            f"Dataset {dataset.name!r} has no {' / '.join(missing)} split, which this run "
            "needs (val picks the best checkpoint; test is evaluated at the end of "
            "--stage=all). Pass it (e.g. --dataset_arg=val=<split file>)"
            + (", or --noevaluate." if "test" in missing else ".")
        )


def _check_run(config, stage, strategy):
    """Everything about the flags that can fail, before anything is written."""
    replicas = num_data_replicas(strategy)
    if config.batch_size % replicas:
        raise TrainingError(
            f"The global batch size must divide over the {replicas} "
            f"replicas. Received: batch_size={config.batch_size}"
        )
    if stage not in RUN_STAGES:
        raise TrainingError(f"--stage must be 1, 2 or all. Received: stage={stage!r}")
    try:
        config.validate()
        methods.get_method(config.method)
    except ValueError as error:
        raise TrainingError(str(error)) from None


def _open_dataset(config):
    try:
        dataset = get_dataset(config.dataset, **config.dataset_kwargs)
        steps_per_epoch(dataset, config)  # a dataset too small for one batch fails here
        return dataset
    except (ValueError, TypeError, FileNotFoundError) as error:  # SplitFileError included
        raise TrainingError(str(error)) from None


def train_stage1(context):
    """Stage 1: the plain model (backbone + linear classifier), trained from scratch."""
    config, dataset = context.config, context.dataset
    with context.strategy.scope():
        model = build_plain_model(
            dataset.num_classes,
            context.input_shape,
            backbone=config.model.backbone,
            backbone_options=config.model.backbone_options(context.sync_bn),
        )
        compile_for_stage(
            model, config.stage1, dataset.train_counts, steps_per_epoch(dataset, config)
        )
    return context.train(1, model)


def write_feature_bank(workdir, dataset, config):
    """Gives stage2/best.keras its nearest-neighbour score (a bank of train features).

    Evaluation, export and prediction then all read one self-contained model. The
    bank is deterministic, so a rerun after a crash writes the same file; its size
    and storage are `config.bank_per_class`, `bank_max_total` and `bank_dtype`.
    """
    model = add_feature_bank(
        load_stage_model(workdir, 2, "best"),
        dataset,
        max_per_class=config.bank_per_class,
        batch_size=config.eval_batch_size,
        max_total=config.bank_max_total or None,
        bank_dtype=config.bank_dtype,
    )
    save_model_atomic(model, workdir.model_path(2, "best"))
    logging.info("Nearest-neighbour bank written into %s", workdir.model_path(2, "best"))
    return model


def run_experiment(
    config,
    workdir,
    *,
    stage="all",
    strategy=None,
    resume=True,
    evaluate=True,
    export=True,
    verbose=1,
    max_unreadable_fraction=0.01,
):
    """Runs stage 1 and/or 2, then evaluation and export; returns a summary dict.

    Everything a run needs (config values, dataset splits, batch size, a usable
    workdir whose config.json matches) is checked before the first step, each
    problem raised as one TrainingError.

    Returns:
        {"stage1": state, "stage2": state, "results": the results table (str),
        "export": the SavedModel path}, for the steps that ran.
    """
    strategy = strategy or tf.distribute.get_strategy()
    _check_run(config, stage, strategy)
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    is_chief, _, _ = worker_info(strategy)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        policy = "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
        keras.mixed_precision.set_dtype_policy(policy)
    dataset = _open_dataset(config)
    logging.info("%s", dataset.describe())
    if dataset.can_defer_jitter:
        logging.info(
            "Flip and colour jitter run in the %s (--colour_jitter_on=%s).",
            "train step" if defers_jitter(config, dataset) else "input pipeline",
            config.colour_jitter_on,
        )
    check_splits(dataset, evaluate=evaluate and stage == "all")
    # The run's folder exists only once everything above holds; a folder this call
    # creates is removed again when the run fails before its first step.
    created = is_chief and not os.path.exists(workdir.root)
    lock = None
    try:
        if is_chief:
            workdir.prepare()
            lock = WorkdirLock(workdir.root).acquire()  # held until this run ends
            workdir.clean_tmp()
            workdir.write_config(
                config,
                dataset,
                fingerprints=dataset_fingerprints(dataset),
                resume=resume,
                stage=stage,
            )
        check_shared_workdir(workdir, strategy)  # several workers: one shared folder
        if stage == "2":
            workdir.require_model(1, "best")  # stage 2 alone needs stage 1's model
    except WorkdirError as error:
        if lock is not None:
            lock.release()
        if created:
            shutil.rmtree(workdir.root, ignore_errors=True)
        raise TrainingError(str(error)) from None
    context = methods.StageContext(
        config,
        dataset,
        strategy,
        workdir,
        resume=resume,
        verbose=verbose,
        defer_jitter=defers_jitter(config, dataset),
    )
    try:
        return _run_steps(context, stage, evaluate, export, max_unreadable_fraction, is_chief)
    except WriteFailedError as error:  # disk full: one line, the last checkpoint kept
        raise TrainingError(str(error)) from None
    finally:
        if lock is not None:
            lock.release()


def _run_steps(context, stage, evaluate, export, max_unreadable_fraction, is_chief):
    """The steps of `run_experiment` once its checks hold and its folder is locked."""
    config, dataset, workdir = context.config, context.dataset, context.workdir
    summary = {}
    if stage in ("1", "all"):
        summary["stage1"] = train_stage1(context)
    if stage in ("2", "all"):
        summary["stage2"] = methods.get_method(config.method)(context)
        if is_chief:
            write_feature_bank(workdir, dataset, config)
    if evaluate and stage == "all" and is_chief:
        try:
            summary["results"] = evaluate_stages(
                config, dataset, workdir, max_unreadable_fraction=max_unreadable_fraction
            )
        except (WorkdirError, ValueError) as error:  # e.g. too many unreadable test images
            raise TrainingError(str(error)) from None
    if export and stage == "all" and is_chief:
        summary["export"] = export_best(config, workdir)
    return summary
