"""Training one stage: one `fit` over the stage's epochs, resumable at any step.

A stage writes, through the run's `Workdir`: the resumable checkpoint (every epoch
and every `checkpoint_every_steps` steps), best.keras (best validation accuracy) and
latest.keras (the end of the stage). Every file is written under a temporary name
and renamed, so a run killed at any moment resumes and writes the same files as an
uninterrupted one (bit-exact with --deterministic). This module knows nothing of
evaluation or export: `keras_oltr.experiment` orchestrates the run.
"""

import os

import tensorflow as tf
from absl import logging

from keras_oltr.distribute import worker_info
from keras_oltr.runs import (
    Workdir,
    read_state,
    restore_training_state,
    save_model_atomic,
    save_training_state,
)
from keras_oltr.training.callbacks import StageProgress
from keras_oltr.training.errors import NonFiniteLossError, TrainingError


def steps_per_epoch(dataset, config):
    """Optimizer steps per epoch: the dataset's, capped by `max_steps_per_epoch`."""
    steps = dataset.steps_per_epoch(config.batch_size)
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    return steps


def train_data(dataset, config, stage_config, strategy, epochs, steps, *, skip=0, defer_jitter):
    """The train batches of ``epochs`` (a range) back to back, one dataset for one `fit`.

    Each epoch's order comes from (seed, epoch), so an epoch is the same batches
    whether the stage runs at once or resumes; the first epoch skips ``skip``
    batches already trained.
    """
    kwargs = dict(
        seed=config.seed,
        sampler=stage_config.sampler,
        samples_per_class=stage_config.samples_per_class,
        defer_jitter=defer_jitter,
    )
    first = epochs[0]

    def epochs_of(batch, per_pipeline=1, **extra):
        data = None
        for epoch in epochs:
            skipped = skip if epoch == first else 0
            ds = dataset.train_dataset(batch, epoch=epoch, skip_batches=skipped, **kwargs, **extra)
            ds = ds.take((steps - skipped) * per_pipeline)
            data = ds if data is None else data.concatenate(ds)
        return data

    if strategy.num_replicas_in_sync == 1:
        return epochs_of(config.batch_size)

    def fn(context):
        per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
        return epochs_of(config.batch_size, per_pipeline, input_context=context)

    return strategy.distribute_datasets_from_function(fn)


def train_stage(
    stage, model, config, dataset, strategy, workdir, *, resume=True, verbose=1, defer_jitter=False
):
    """Trains one compiled stage with checkpoints, validation and TensorBoard logs.

    Keras prints "Epoch 7/20" for epoch 7 of 20: one `fit` covers the stage, started
    at the resumed epoch (`initial_epoch`); a resume in the middle of an epoch first
    finishes that epoch in a `fit` of its own. A stage of 0 epochs does not train:
    its initial model is saved as best.keras, latest.keras and the checkpoint (a method
    that does not train, e.g. tau-normalisation, writes the same files as any other).

    Returns the stage's state dict (steps, best validation accuracy and epoch,
    per-epoch history).

    Raises:
        NonFiniteLossError: the loss or the weights became NaN/Inf; the last good
            checkpoint is kept.
        TrainingError: a checkpoint that does not fit this configuration.
    """
    stage_config = config.stage1 if stage == 1 else config.stage2
    is_chief, worker, _ = worker_info(strategy)
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    # Only the chief writes the run's files; other workers keep their own copies in
    # <workdir>/.worker{i}/ (every worker must run the same saves, and comparing the
    # copies shows that the workers agree).
    mine = Workdir(workdir.root, worker=0 if is_chief else worker)
    os.makedirs(mine.stage_dir(stage), exist_ok=True)
    steps = steps_per_epoch(dataset, config)
    state = _initial_state(stage, model, strategy, workdir, resume, stage_config.epochs, steps)

    def save_best():
        save_model_atomic(model, mine.model_path(stage, "best"), fault="best")

    def save_checkpoint(current):
        save_training_state(mine.checkpoint_dir(stage), model, model.optimizer, current)

    if stage_config.epochs == 0:
        logging.info("Stage %d has 0 epochs: its initial model is saved as best and latest.", stage)
        state["best_epoch"] = 0
        save_best()
        save_checkpoint(dict(state))
    first_epoch = state["global_step"] // steps
    progress = StageProgress(
        stage,
        stage_config.epochs,
        steps,
        state,
        save_checkpoint=save_checkpoint,
        save_best=save_best,
        dataset=dataset,
        eval_batch_size=config.eval_batch_size,
        writer=tf.summary.create_file_writer(workdir.tensorboard_dir(stage)) if is_chief else None,
        checkpoint_every_steps=config.checkpoint_every_steps,
    )
    if first_epoch < stage_config.epochs:
        logging.info(
            "Stage %d (%s): epochs %d-%d of %d",
            stage,
            workdir.stage_name(stage, config.method),
            first_epoch + 1,
            stage_config.epochs,
            stage_config.epochs,
        )
    # (first epoch, its batches already trained) of each fit: a partial epoch apart.
    skip = state["global_step"] - first_epoch * steps
    spans = [(first_epoch, skip)] if skip else []
    spans.append((first_epoch + (1 if skip else 0), 0))
    for start, skipped in spans:
        end = start + 1 if skipped else stage_config.epochs
        if start >= end or progress.non_finite_step is not None:
            continue
        model.fit(
            train_data(
                dataset,
                config,
                stage_config,
                strategy,
                range(start, end),
                steps,
                skip=skipped,
                defer_jitter=defer_jitter,
            ),
            epochs=end,
            initial_epoch=start,
            steps_per_epoch=steps - skipped,
            callbacks=[progress],
            shuffle=False,  # the order is the sampler's, fixed by (seed, epoch)
            verbose=verbose,
        )
    if progress.non_finite_step is not None:
        kept = read_state(workdir.checkpoint_dir(stage), warn=False)
        raise NonFiniteLossError(
            f"Stage {stage}: the loss became NaN/Inf at step {progress.non_finite_step} "
            f"(epoch {progress.non_finite_epoch}); stopped. The last good checkpoint "
            + (f"(step {kept['global_step']}) " if kept else "(none yet) ")
            + f"is kept in {workdir.checkpoint_dir(stage)}. Lower --stage{stage}_lr "
            "or check the input data."
        )
    if not os.path.isfile(mine.model_path(stage, "best")):
        raise TrainingError(
            f"Stage {stage} finished but {mine.model_path(stage, 'best')} is missing (deleted "
            "after training?). Start the stage over with --noresume."
        )
    save_model_atomic(model, mine.model_path(stage, "latest"), fault="latest")
    return state


def _initial_state(stage, model, strategy, workdir, resume, epochs, steps):
    """A fresh state, or the checkpoint's (weights and optimizer restored into ``model``)."""
    state = {"stage": stage, "global_step": 0, "best_val_accuracy": -1.0, "best_epoch": -1}
    state["history"] = []
    if resume and read_state(workdir.checkpoint_dir(stage)) is not None:
        with strategy.scope():
            state = restore_training_state(workdir.checkpoint_dir(stage), model, model.optimizer)
        logging.info("Stage %d: resumed from step %d", stage, state["global_step"])
    iterations = int(model.optimizer.iterations.numpy())
    if iterations != state["global_step"]:
        raise TrainingError(
            f"Checkpoint step {state['global_step']} and optimizer step {iterations} differ."
        )
    if state["global_step"] > steps * epochs:
        raise TrainingError(
            f"The stage-{stage} checkpoint is at step {state['global_step']}, beyond the "
            f"{epochs} epoch(s) of {steps} steps configured."
        )
    return state
