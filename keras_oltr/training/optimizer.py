"""A stage's optimizer: the learning-rate schedule, per-module rates, and compile."""

import keras

from keras_oltr.optimizers import CoupledSGD, layer_lr_multipliers


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


def lr_multipliers(model, stage_config):
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


def compile_for_stage(model, stage_config, class_counts, steps_per_epoch, *, large_margin=False):
    """Compiles `model` with the stage's optimizer, built so that a checkpoint can load.

    Args:
        model: an `OLTRModel` (plain or OLTR).
        stage_config: the stage's `StageConfig`.
        class_counts: [K] train images per class (the class-prior-aware CE's prior).
        steps_per_epoch: optimizer steps per epoch (the schedule is in steps).
        large_margin: add the large-margin centroid loss (stage 2 of OLTR).
    """
    if stage_config.freeze_backbone:
        model.get_layer("backbone").trainable = False
    optimizer = CoupledSGD(
        learning_rate_schedule(stage_config, steps_per_epoch),
        momentum=stage_config.momentum,
        coupled_weight_decay=stage_config.weight_decay,
        lr_multipliers=layer_lr_multipliers(model, lr_multipliers(model, stage_config)),
    )
    model.compile(
        optimizer,
        large_margin_weight=stage_config.large_margin_weight if large_margin else 0.0,
        class_counts=class_counts,
        tau=stage_config.tau,
    )
    return model
