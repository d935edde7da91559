"""Post-hoc methods: the stage-1 classifier changed without training, tau chosen on val.

tau-normalisation (Kang et al., ICLR 2020): W_k <- W_k / ||W_k||^tau, bias dropped,
tau in [0, 1]. Post-hoc logit adjustment (Menon et al., ICLR 2021): logits_k - tau
log pi_k, pi the training class prior, tau = 1 the paper's default. Both choose tau
on the validation split (never on test): the value of `TAU_NORM_GRID` /
`LOGIT_ADJUST_GRID` with the best overall validation accuracy, ties going to the
value nearest 1. The choice is computed from stage 1's validation features and
logits with the layers' own formulas, so it is reproducible and needs one pass.

The change is part of the saved model (`TauNormalisedDense`, `LogitAdjustment`), so
stage2/best.keras and every export apply it. Stage 2 trains 0 epochs: it writes
best.keras, latest.keras and the checkpoint like any stage, and the run's layout,
resume, evaluation and export are those of every method.
"""

import dataclasses

import numpy as np
from absl import logging
from keras import ops

from keras_oltr.config import StageConfig
from keras_oltr.inference import eval_batches, inference_function
from keras_oltr.layers import tau_normalise
from keras_oltr.losses.class_prior_ce import log_class_prior
from keras_oltr.methods.registry import register_method
from keras_oltr.models import build_plain_model, init_plain_from_stage1
from keras_oltr.training import TrainingError, compile_for_stage, steps_per_epoch

TAU_NORM_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # 0, 0.1, ..., 1
LOGIT_ADJUST_GRID = tuple(0.25 * i for i in range(9))  # 0, 0.25, ..., 2
TAU_TIE_BREAK = 1.0  # ties go to the tau nearest this


def post_hoc_stage2(config):
    """No training: stage 2 of 0 epochs (its other settings are unused)."""
    del config
    return StageConfig(epochs=0, freeze_backbone=True, large_margin_weight=0.0)


def validation_outputs(model, dataset, batch_size):
    """(direct features [N, D], logits [N, K], labels [N]) of the validation split."""
    predict = inference_function(model)
    features, logits, labels = [], [], []
    for images, batch_labels in eval_batches(dataset, "val", batch_size):
        outputs = predict(images)
        features.append(outputs["direct_feature"])
        logits.append(outputs["logits"])
        labels.append(np.asarray(batch_labels))
    if not labels:
        raise TrainingError(f"Dataset {dataset.name!r} has an empty val split: tau needs it.")
    return np.concatenate(features), np.concatenate(logits), np.concatenate(labels)


def choose_tau(grid, logits_for_tau, labels):
    """(tau, {tau: validation accuracy}): the grid value of best accuracy, ties nearest 1."""
    accuracies = {
        float(tau): float(np.mean(np.argmax(logits_for_tau(tau), axis=-1) == labels))
        for tau in grid
    }
    best = min(accuracies, key=lambda t: (-accuracies[t], abs(t - TAU_TIE_BREAK), t))
    return best, accuracies


def tau_norm_logits(features, kernel, tau):
    """logits of the tau-normalised classifier (no bias), as `TauNormalisedDense`."""
    return np.asarray(ops.convert_to_numpy(ops.matmul(features, tau_normalise(kernel, tau))))


def _save_untrained(context, model, name, tau, accuracies):
    """Stage 2 of 0 epochs: best/latest/checkpoint of ``model`` as it is."""
    config = context.config
    if config.stage2.epochs:
        logging.warning(
            "%s does not train: stage2.epochs=%d is ignored.", name, config.stage2.epochs
        )
    stage2 = dataclasses.replace(config.stage2, epochs=0, freeze_backbone=True)
    with context.strategy.scope():
        compile_for_stage(
            model, stage2, context.dataset.train_counts, steps_per_epoch(context.dataset, config)
        )
    logging.info(
        "%s: tau %g chosen on validation (accuracy per tau: %s)",
        name,
        tau,
        ", ".join(f"{t:g}: {100 * a:.2f}%" for t, a in accuracies.items()),
    )
    untrained = dataclasses.replace(context, config=dataclasses.replace(config, stage2=stage2))
    state = untrained.train(2, model)
    return state | {"tau": tau, "val_accuracy_per_tau": accuracies}


def _plain_from_stage1(context, stage1, name, head, tau):
    """The plain model with ``head`` (and ``tau``), its weights from stage 1."""
    with context.strategy.scope():
        model = build_plain_model(
            context.dataset.num_classes,
            context.input_shape,
            **context.model_kwargs(),
            name=f"{name}_model",
            head=head,
            tau=tau,
        )
        init_plain_from_stage1(model, stage1)
    return model


def _stage1_and_validation(context):
    stage1 = context.stage1_model()
    features, logits, labels = validation_outputs(
        stage1, context.dataset, context.config.eval_batch_size
    )
    return stage1, features, logits, labels


@register_method("tau_norm", stage2=post_hoc_stage2)
def tau_norm(context):
    """tau-normalisation of the stage-1 classifier, tau chosen on validation."""
    stage1, features, _, labels = _stage1_and_validation(context)
    kernel = stage1.get_layer("classifier").get_weights()[0]
    tau, accuracies = choose_tau(
        TAU_NORM_GRID, lambda t: tau_norm_logits(features, kernel, t), labels
    )
    model = _plain_from_stage1(context, stage1, "tau_norm", "tau_normalised", tau)
    return _save_untrained(context, model, "tau_norm", tau, accuracies)


@register_method("logit_adjust", stage2=post_hoc_stage2)
def logit_adjust(context):
    """Post-hoc logit adjustment of the stage-1 logits, tau chosen on validation."""
    stage1, _, logits, labels = _stage1_and_validation(context)
    log_prior = log_class_prior(context.dataset.train_counts)
    tau, accuracies = choose_tau(LOGIT_ADJUST_GRID, lambda t: logits - t * log_prior, labels)
    model = _plain_from_stage1(context, stage1, "logit_adjust", "adjusted_linear", tau)
    with context.strategy.scope():
        model.get_layer("logit_adjustment").set_log_prior(log_prior)
    return _save_untrained(context, model, "logit_adjust", tau, accuracies)
