"""The two-stage OLTR trainer: the library behind trainers/train.py.

Stage 1 trains the plain model; stage 2 loads it, computes the class centroids and
trains the OLTR model with class-aware sampling. Every stage writes the resumable
checkpoint (every epoch and every `checkpoint_every_steps` steps), best.keras (best
validation accuracy) and latest.keras, where `Workdir` puts them.

An epoch ends in a fixed order: validation, best.keras, then the checkpoint that
marks the epoch done. Every file is written under a temporary name and renamed, so
a run killed at any moment resumes and writes the same files as an uninterrupted
one (bit-exact with --deterministic).
"""

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_oltr.distribute import worker_info
from keras_oltr.evaluation.metrics import group_accuracies, per_class_accuracy, shot_groups
from keras_oltr.models import build_oltr_model, build_plain_model
from keras_oltr.optimizers import CoupledSGD, layer_lr_multipliers
from keras_oltr.training.centroids import class_mean_features
from keras_oltr.training.checkpoint import (
    read_state,
    restore_training_state,
    save_training_state,
)
from keras_oltr.training.feature_bank import ensure_feature_bank
from keras_oltr.training.inference import eval_batches, has_accelerator, inference_function
from keras_oltr.training.workdir import (
    STAGE_NAMES,
    Workdir,
    WorkdirError,
    atomic_write,
    save_model_atomic,
    write_text_atomic,
)


class TrainingError(Exception):
    """A user-facing problem with a run (missing stage-1 model, bad batch size, ...)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def learning_rate_schedule(stage_config, steps_per_epoch):
    """Step decay (x gamma every step_epochs) or cosine decay, in optimizer steps."""
    lr = stage_config.learning_rate
    total = steps_per_epoch * stage_config.epochs
    if stage_config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(total, 1))
    if stage_config.schedule != "step":
        raise ValueError(
            f"`schedule` must be 'step' or 'cosine'. Received: schedule={stage_config.schedule!r}"
        )
    boundaries = list(
        range(stage_config.step_epochs, stage_config.epochs, stage_config.step_epochs)
    )
    if not boundaries:
        return keras.optimizers.schedules.PiecewiseConstantDecay([total + 1], [lr, lr])
    values = [lr * stage_config.gamma**k for k in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [b * steps_per_epoch for b in boundaries], values
    )


def _lr_multipliers(model, stage_config):
    """Per-layer learning-rate multipliers of a stage.

    The reference builds ModulatedAttention and the `use_fc` projection into its
    feature network, so they train at the backbone's learning rate; the
    classifier, the meta-embedding and the centroids have their own.
    """
    names = {layer.name for layer in model.layers}
    multipliers = {"backbone": stage_config.backbone_lr_multiplier}
    for name in ("modulated_attention", "feature_fc"):
        if name in names:
            multipliers[name] = stage_config.backbone_lr_multiplier
    if "meta_embedding" in names:
        multipliers["centroids"] = stage_config.centroid_lr_multiplier
    return multipliers


def compile_for_stage(model, stage, config, dataset, steps_per_epoch):
    """Compiles `model` for `stage` and builds its optimizer (so a checkpoint can load)."""
    stage_config = config.stage1 if stage == 1 else config.stage2
    if stage_config.freeze_backbone:
        model.get_layer("backbone").trainable = False
    optimizer = CoupledSGD(
        learning_rate_schedule(stage_config, steps_per_epoch),
        momentum=stage_config.momentum,
        coupled_weight_decay=stage_config.weight_decay,
        lr_multipliers=layer_lr_multipliers(model, _lr_multipliers(model, stage_config)),
    )
    model.compile(
        optimizer,
        large_margin_weight=stage_config.large_margin_weight if stage == 2 else 0.0,
        class_counts=dataset.train_counts,
        tau=stage_config.tau,
    )
    return model  # compile() built the optimizer, so a checkpoint can be restored


def _input_shape(dataset):
    return (dataset.image_size, dataset.image_size, dataset.channels)


def build_stage1_model(config, dataset, strategy):
    """The plain model for stage 1, created in `strategy`'s scope."""
    sync_bn = strategy.num_replicas_in_sync > 1
    with strategy.scope():
        return build_plain_model(
            dataset.num_classes,
            _input_shape(dataset),
            backbone=config.model.backbone,
            backbone_options=config.model.backbone_options(sync_bn),
        )


def build_stage2_model(config, dataset, strategy, workdir):
    """The OLTR model, its backbone and hallucinator initialised from stage 1's best."""
    sync_bn = strategy.num_replicas_in_sync > 1
    with strategy.scope():
        stage1 = Workdir(workdir.root).load_model(1, "best")
        model = build_oltr_model(
            dataset.num_classes,
            _input_shape(dataset),
            backbone=config.model.backbone,
            backbone_options=config.model.backbone_options(sync_bn),
            use_attention=config.model.use_attention,
            use_fc=config.model.use_fc,
            feature_dim=config.model.feature_dim,
            reachability_scale=config.model.reachability_scale,
            classifier_scale=config.model.classifier_scale,
            stage1_model=stage1,
        )
    return model


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


def _train_data(dataset, config, stage_config, strategy, epoch, skip, steps):
    kwargs = dict(
        epoch=epoch,
        seed=config.seed,
        sampler=stage_config.sampler,
        samples_per_class=stage_config.samples_per_class,
        skip_batches=skip,
        defer_jitter=defers_jitter(config, dataset),
    )
    batch = config.batch_size
    if strategy.num_replicas_in_sync == 1:
        return dataset.train_dataset(batch, **kwargs).take(steps - skip)

    def fn(context):
        per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
        ds = dataset.train_dataset(batch, input_context=context, **kwargs)
        return ds.take((steps - skip) * per_pipeline)

    return strategy.distribute_datasets_from_function(fn)


def validate(model, dataset, config, predict_fn=None):
    """Closed-set validation accuracy (overall and per shot group) and reachability."""
    predict_fn = predict_fn or inference_function(model)
    out = {}
    for split in ("val", "open_val"):
        if not dataset.has_split(split):
            continue
        preds, labels, reach = [], [], []
        for images, batch_labels in eval_batches(dataset, split, config.eval_batch_size):
            outputs = predict_fn(images)
            preds.append(np.argmax(outputs["logits"], axis=-1))
            labels.append(batch_labels.numpy())
            if "reachability" in outputs:
                reach.append(outputs["reachability"])
        out[split] = (
            np.concatenate(preds),
            np.concatenate(labels),
            np.concatenate(reach) if reach else None,
        )
    predicted, labels, reach = out["val"]
    accuracy, _ = per_class_accuracy(predicted, labels, dataset.num_classes)
    groups = group_accuracies(accuracy, shot_groups(dataset.train_counts))
    result = {"val_accuracy": float(np.mean(predicted == labels))}
    result.update({f"val_{k}": float(v) for k, v in groups.items()})
    result["reachability_known"] = reach
    result["reachability_open"] = out["open_val"][2] if "open_val" in out else None
    return result


class _StepCheckpoint(keras.callbacks.Callback):
    """Saves the resumable state every `every` optimizer steps inside an epoch.

    Never at an epoch's last step: that checkpoint marks the epoch done and is
    written after validation and best.keras.
    """

    def __init__(self, save_fn, every, first_step, epoch_end_step):
        super().__init__()
        self.save_fn, self.every, self.first_step = save_fn, every, first_step
        self.epoch_end_step = epoch_end_step
        self.non_finite_step = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.non_finite_step = step
            self.model.stop_training = True
            return
        if self.every and step % self.every == 0 and step < self.epoch_end_step:
            if _weights_finite(self.model):
                self.save_fn(step)
            else:
                self.non_finite_step = step
                self.model.stop_training = True


def _weights_finite(model):
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(v))) for v in model.weights)


def _fmt_pct(value):
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def train_stage(stage, model, config, dataset, strategy, workdir, *, resume=True, verbose=1):
    """Trains one stage with checkpoints, validation and TensorBoard logs.

    A stage of 0 epochs does not train: its initial model is saved as best.keras
    and latest.keras (stage 2: the stage-1 weights with fresh centroids).

    Returns the stage's state dict (steps, best validation accuracy and epoch,
    per-epoch history).

    Raises:
        NonFiniteLossError: the loss or the weights became NaN/Inf; the last
            good checkpoint is kept.
    """
    stage_config = config.stage1 if stage == 1 else config.stage2
    is_chief, worker, _ = worker_info(strategy)
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    # Only the chief writes the run's files; other workers keep their own copies in
    # <workdir>/.worker{i}/ (every worker must run the same saves, and comparing the
    # copies shows that the workers agree).
    mine = Workdir(workdir.root, worker=0 if is_chief else worker)
    os.makedirs(mine.stage_dir(stage), exist_ok=True)
    steps = _steps_per_epoch(dataset, config)

    state = {"stage": stage, "global_step": 0, "best_val_accuracy": -1.0, "best_epoch": -1}
    state["history"] = []
    previous = read_state(workdir.checkpoint_dir(stage)) if resume else None
    if previous is not None:
        with strategy.scope():
            state = restore_training_state(workdir.checkpoint_dir(stage), model, model.optimizer)
        logging.info("Stage %d: resumed from step %d", stage, state["global_step"])
    iterations = int(model.optimizer.iterations.numpy())
    if iterations != state["global_step"]:
        raise TrainingError(
            f"Checkpoint step {state['global_step']} and optimizer step {iterations} differ."
        )
    if state["global_step"] > steps * stage_config.epochs:
        raise TrainingError(
            f"The stage-{stage} checkpoint is at step {state['global_step']}, beyond the "
            f"{stage_config.epochs} epoch(s) of {steps} steps configured."
        )
    writer = tf.summary.create_file_writer(workdir.tensorboard_dir(stage))
    predict_fn = inference_function(model)

    def save(step, current_state=None):
        current = dict(current_state or state, global_step=int(step))
        save_training_state(mine.checkpoint_dir(stage), model, model.optimizer, current)

    if stage_config.epochs == 0:
        logging.warning(
            "Stage %d has 0 epochs: its initial model is saved as best and latest.", stage
        )
        state["best_epoch"] = 0
        save_model_atomic(model, mine.model_path(stage, "best"), fault="best")
    first_epoch = state["global_step"] // steps
    for epoch in range(first_epoch, stage_config.epochs):
        skip = state["global_step"] - epoch * steps
        start = time.time()
        data = _train_data(dataset, config, stage_config, strategy, epoch, skip, steps)
        callback = _StepCheckpoint(
            save, config.checkpoint_every_steps, state["global_step"], (epoch + 1) * steps
        )
        logging.info(
            "Stage %d (%s) epoch %d/%d", stage, STAGE_NAMES[stage], epoch + 1, stage_config.epochs
        )
        history = model.fit(
            data,
            epochs=epoch + 1,
            initial_epoch=epoch,
            steps_per_epoch=steps - skip,
            callbacks=[callback],
            shuffle=False,  # the order is the sampler's, fixed by (seed, epoch)
            verbose=verbose,
        )
        if callback.non_finite_step is None and not _weights_finite(model):
            callback.non_finite_step = (epoch + 1) * steps
        if callback.non_finite_step is not None:
            kept = read_state(workdir.checkpoint_dir(stage), warn=False)
            raise NonFiniteLossError(
                f"Stage {stage}: the loss became NaN/Inf at step {callback.non_finite_step} "
                f"(epoch {epoch + 1}); stopped. The last good checkpoint "
                + (f"(step {kept['global_step']}) " if kept else "(none yet) ")
                + f"is kept in {workdir.checkpoint_dir(stage)}. Lower --stage{stage}_lr "
                "or check the input data."
            )
        state["global_step"] = (epoch + 1) * steps
        train_logs = {k: float(v[-1]) for k, v in history.history.items()}
        val = validate(model, dataset, config, predict_fn)
        lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        record = {"epoch": epoch + 1, "lr": lr, "seconds": time.time() - start, **train_logs}
        record.update({k: v for k, v in val.items() if not k.startswith("reachability")})
        state["history"].append(record)
        logging.info(
            "stage %d epoch %d/%d: loss %.4f acc %s%% | val acc %s%% (many %s / medium %s / "
            "few %s) | lr %.4g | %.1f s",
            stage,
            epoch + 1,
            stage_config.epochs,
            train_logs.get("loss", float("nan")),
            _fmt_pct(train_logs.get("accuracy")),
            _fmt_pct(val["val_accuracy"]),
            _fmt_pct(val.get("val_many")),
            _fmt_pct(val.get("val_medium")),
            _fmt_pct(val.get("val_few")),
            lr,
            record["seconds"],
        )
        if is_chief:
            with writer.as_default(step=state["global_step"]):
                for key, value in record.items():
                    if key != "epoch" and value is not None and math.isfinite(value):
                        tf.summary.scalar(key, value)
                if val["reachability_known"] is not None:
                    tf.summary.histogram("reachability/known_val", val["reachability_known"])
                if val["reachability_open"] is not None:
                    tf.summary.histogram("reachability/open_val", val["reachability_open"])
            writer.flush()
        # best.keras before the checkpoint that marks the epoch done: a kill between
        # the two reruns this epoch and writes the same best.keras again.
        if val["val_accuracy"] > state["best_val_accuracy"]:
            state["best_val_accuracy"] = val["val_accuracy"]
            state["best_epoch"] = epoch + 1
            save_model_atomic(model, mine.model_path(stage, "best"), fault="best")
        save(state["global_step"])
    if not os.path.isfile(mine.model_path(stage, "best")):
        raise TrainingError(
            f"Stage {stage} finished but {mine.model_path(stage, 'best')} is missing (deleted "
            "after training?). Start the stage over with --noresume."
        )
    save_model_atomic(model, mine.model_path(stage, "latest"), fault="latest")
    return state


def _steps_per_epoch(dataset, config):
    steps = dataset.steps_per_epoch(config.batch_size)
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    return steps


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
    """
    strategy = strategy or tf.distribute.get_strategy()
    if config.batch_size % strategy.num_replicas_in_sync:
        raise TrainingError(
            f"The global batch size must divide over the {strategy.num_replicas_in_sync} "
            f"replicas. Received: batch_size={config.batch_size}"
        )
    if stage not in ("1", "2", "all"):
        raise TrainingError(f"--stage must be 1, 2 or all. Received: stage={stage!r}")
    try:
        config.validate()
    except ValueError as error:
        raise TrainingError(str(error)) from None
    from keras_oltr.data import get_dataset

    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    is_chief, _, _ = worker_info(strategy)
    try:
        if is_chief:
            workdir.prepare()
    except WorkdirError as error:
        raise TrainingError(str(error)) from None
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        policy = "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
        keras.mixed_precision.set_dtype_policy(policy)
    try:
        dataset = get_dataset(config.dataset, **config.dataset_kwargs)
        steps = _steps_per_epoch(dataset, config)
    except (ValueError, TypeError, FileNotFoundError) as error:  # SplitFileError included
        raise TrainingError(str(error)) from None
    logging.info("%s", dataset.describe())
    if dataset.can_defer_jitter:
        logging.info(
            "Flip and colour jitter run in the %s (--colour_jitter_on=%s).",
            "train step" if defers_jitter(config, dataset) else "input pipeline",
            config.colour_jitter_on,
        )
    check_splits(dataset, evaluate=evaluate and stage == "all")
    if is_chief:
        try:
            workdir.write_config(config, dataset, resume=resume, stage=stage)
        except WorkdirError as error:
            raise TrainingError(str(error)) from None
    summary = {}
    if stage in ("1", "all"):
        model = build_stage1_model(config, dataset, strategy)
        with strategy.scope():
            compile_for_stage(model, 1, config, dataset, steps)
        summary["stage1"] = train_stage(
            1, model, config, dataset, strategy, workdir, resume=resume, verbose=verbose
        )
    if stage in ("2", "all"):
        try:
            model = build_stage2_model(config, dataset, strategy, workdir)
        except WorkdirError as error:
            raise TrainingError(str(error)) from None
        with strategy.scope():
            compile_for_stage(model, 2, config, dataset, steps)
        has_checkpoint = resume and read_state(workdir.checkpoint_dir(2), warn=False)
        if not has_checkpoint:
            try:
                means = class_mean_features(model, dataset, strategy, config.eval_batch_size)
            except ValueError as error:
                raise TrainingError(str(error)) from None
            with strategy.scope():
                model.centroid_memory.set_centroids(means)
        summary["stage2"] = train_stage(
            2, model, config, dataset, strategy, workdir, resume=resume, verbose=verbose
        )
        if is_chief:
            # The deployed open-set score needs training features (a bank in the model).
            ensure_feature_bank(workdir, dataset, batch_size=config.eval_batch_size)
    if evaluate and stage == "all" and is_chief:
        summary["results"] = evaluate_stages(
            config, dataset, workdir, max_unreadable_fraction=max_unreadable_fraction
        )
    if export and stage == "all" and is_chief:
        summary["export"] = export_best(config, workdir)
    return summary


def evaluate_stages(config, dataset, workdir, *, max_unreadable_fraction=0.01):
    """Evaluates the best plain and OLTR models; writes results.md; returns the table.

    Each stage's report folder is written under a temporary name and renamed, so
    metrics.json is never half-written.
    """
    from keras_oltr.evaluation import evaluate_model, format_results_table, results_row

    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    rows = []
    for stage in (1, 2):
        try:
            model = workdir.load_model(stage, "best")
        except WorkdirError as error:
            raise TrainingError(str(error)) from None
        name = workdir.stage_name(stage)
        with atomic_write(workdir.eval_dir(stage), fault="metrics") as tmp:
            try:
                metrics = evaluate_model(
                    model,
                    dataset,
                    tmp,
                    threshold=config.threshold,
                    batch_size=config.eval_batch_size,
                    model_name=name,
                    max_unreadable_fraction=max_unreadable_fraction,
                    extra={
                        "workdir": os.path.abspath(workdir.root),
                        "checkpoint": workdir.model_path(stage, "best"),
                    },
                )
            except ValueError as error:  # e.g. too many unreadable test images
                raise TrainingError(str(error)) from None
        rows.append(results_row(metrics, name))
    table = format_results_table(rows)
    write_text_atomic(workdir.results_path, f"# {config.name} ({dataset.name})\n\n{table}\n")
    return table


# The export of a run trained on another backend: TensorFlow in a child process.
_EXPORT_CHILD = """
import json, sys
from keras_oltr.export import export_workdir_saved_model
path, trained = export_workdir_saved_model(
    sys.argv[1], sys.argv[2], model_name=sys.argv[3], overwrite=True
)
print(json.dumps([path, float(trained.threshold), trained.threshold_source]))
"""


def export_best(config, workdir):
    """Exports the best OLTR model as a TF Serving SavedModel under the workdir's export/.

    The threshold is the one the evaluation chose on validation, else 0.1. TFLite
    and ONNX conversions are one command each (export/*.py). A SavedModel is a
    TensorFlow graph: after training on another Keras backend (JAX, PyTorch) the
    export runs in a child process under `KERAS_BACKEND=tensorflow`, from the saved
    `.keras` model (Keras files load on every backend).
    """
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    if keras.backend.backend() == "tensorflow":
        from keras_oltr.export import export_workdir_saved_model

        path, trained = export_workdir_saved_model(
            workdir.root, workdir.export_dir, model_name=config.name, overwrite=True
        )
        threshold, source = trained.threshold, trained.threshold_source
    else:
        path, threshold, source = _export_with_tensorflow(config, workdir)
    logging.info("Exported %s (threshold %.4g, %s)", path, threshold, source)
    return path


def _export_with_tensorflow(config, workdir):
    import subprocess
    import sys

    import keras_oltr

    logging.info(
        "Exporting with TensorFlow in a child process (trained on %s)", keras.backend.backend()
    )
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(keras_oltr.__file__)))
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=path)
    args = [sys.executable, "-c", _EXPORT_CHILD, workdir.root, workdir.export_dir, config.name]
    # Its log goes to this process's stderr; the last stdout line is the result.
    result = subprocess.run(args, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode:
        raise TrainingError(
            f"The SavedModel export (TensorFlow, in a child process) failed with exit code "
            f"{result.returncode}; its log is above. The trained models are saved: "
            f"`python export/to_saved_model.py --workdir={workdir.root} "
            f"--out={workdir.export_dir}` exports them again."
        )
    return json.loads(result.stdout.strip().splitlines()[-1])
