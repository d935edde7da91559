"""Stage-2 long-tail methods: each is one registered function over the stage-1 model.

A method receives a `StageContext` (config, dataset, strategy, workdir, how to
train) after stage 1 has trained, trains its stage 2 into the workdir's `stage2/`
folder (best.keras, latest.keras, checkpoint; `keras_oltr.training.train_stage`
does all three) and returns the stage's state dict. `keras_oltr.experiment` picks
the method named by `ExperimentConfig.method` and does everything around it
(stage 1, the nearest-neighbour bank, evaluation, export) the same way for every
method. A new method is one function::

    @register_method("my_method")
    def my_method(context):
        model = ...  # from context.stage1_model()
        compile_for_stage(model, context.config.stage2, ...)
        return train_stage(2, model, ...)
"""

import dataclasses

from keras_oltr.inference import class_mean_features
from keras_oltr.models import build_oltr_model, load_stage_model
from keras_oltr.registry import Registry
from keras_oltr.runs import WorkdirError, read_state
from keras_oltr.training import TrainingError, compile_for_stage, steps_per_epoch, train_stage

_METHODS = Registry("method")


@dataclasses.dataclass(frozen=True)
class StageContext:
    """What a stage-2 method needs: the run's config, data, strategy and folder."""

    config: object  # ExperimentConfig
    dataset: object  # LongTailDataset
    strategy: object  # tf.distribute.Strategy
    workdir: object  # keras_oltr.runs.Workdir
    resume: bool = True
    verbose: int = 1
    defer_jitter: bool = False

    @property
    def input_shape(self):
        return (self.dataset.image_size, self.dataset.image_size, self.dataset.channels)

    @property
    def sync_bn(self):
        return self.strategy.num_replicas_in_sync > 1

    def stage1_model(self):
        """stage1/best.keras (raises TrainingError when stage 1 has not trained)."""
        try:
            return load_stage_model(self.workdir, 1, "best")
        except WorkdirError as error:
            raise TrainingError(str(error)) from None

    def train(self, stage, model):
        """Trains ``model`` (compiled) as stage ``stage`` of this run; returns its state."""
        return train_stage(
            stage,
            model,
            self.config,
            self.dataset,
            self.strategy,
            self.workdir,
            resume=self.resume,
            verbose=self.verbose,
            defer_jitter=self.defer_jitter,
        )


def register_method(name):
    """Decorator registering a stage-2 method `fn(StageContext) -> state dict`."""
    return _METHODS.register(name)


def list_methods():
    """Names of the registered stage-2 methods."""
    return _METHODS.names()


def get_method(name):
    """The stage-2 method registered as ``name``."""
    return _METHODS.get(name)


@register_method("oltr")
def oltr(context):
    """OLTR's stage 2 (Liu et al. 2019): the meta-embedding model from stage 1's best.

    The backbone (and the hallucinator) start from stage 1; the centroids start as
    the class means of the direct feature over the train split (not when resuming:
    the checkpoint holds them); the large-margin loss is on.
    """
    config = context.config
    with context.strategy.scope():
        model = build_oltr_model(
            context.dataset.num_classes,
            context.input_shape,
            backbone=config.model.backbone,
            backbone_options=config.model.backbone_options(context.sync_bn),
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
