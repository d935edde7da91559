"""OLTR's stage 2 (Liu et al., CVPR 2019): the meta-embedding model on stage 1's backbone."""

from keras_oltr.inference import class_mean_features
from keras_oltr.methods.registry import register_method
from keras_oltr.models import build_oltr_model
from keras_oltr.runs import read_state
from keras_oltr.training import TrainingError, compile_for_stage, steps_per_epoch


@register_method("oltr")
def oltr(context):
    """OLTR's stage 2: the meta-embedding model from stage 1's best.

    The backbone (and the hallucinator) start from stage 1; the centroids start as
    the class means of the direct feature over the train split (not when resuming:
    the checkpoint holds them); the large-margin loss is on. The schedule is the
    preset's `stage2`.
    """
    config = context.config
    with context.strategy.scope():
        model = build_oltr_model(
            context.dataset.num_classes,
            context.input_shape,
            **context.model_kwargs(),
            use_attention=config.model.use_attention,
            use_fc=config.model.use_fc,
            feature_dim=config.model.feature_dim,
            reachability_scale=config.model.reachability_scale,
            classifier_scale=config.model.classifier_scale,
            stage1_model=context.stage1_model(),
        )
        compile_for_stage(
            model,
            config.stage2,
            context.dataset.train_counts,
            steps_per_epoch(context.dataset, config),
            large_margin=True,
        )
    checkpoint = context.workdir.checkpoint_dir(2)
    if not (context.resume and read_state(checkpoint, warn=False)):
        try:
            means = class_mean_features(
                model, context.dataset, context.strategy, config.eval_batch_size
            )
        except ValueError as error:
            raise TrainingError(str(error)) from None
        with context.strategy.scope():
            model.centroid_memory.set_centroids(means)
    return context.train(2, model)
