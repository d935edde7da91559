"""The registry of stage-2 methods and what a method receives (`StageContext`).

A method is a function `fn(StageContext) -> state dict` registered under a name,
with an optional rule deriving its stage-2 schedule from a preset
(`configure_method`); the trainer's `--method` picks one.
"""

import dataclasses

from keras_oltr.models import load_stage_model
from keras_oltr.registry import Registry
from keras_oltr.runs import WorkdirError
from keras_oltr.training import TrainingError, train_stage

_METHODS = Registry("method")
_SCHEDULES = {}  # method name -> fn(config) -> its stage-2 StageConfig


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

    def model_kwargs(self):
        """The architecture arguments of the model builders, from the config."""
        model = self.config.model
        return dict(backbone=model.backbone, backbone_options=model.backbone_options(self.sync_bn))

    def stage1_model(self):
        """stage1/best.keras (raises TrainingError when stage 1 has not trained)."""
        try:
            return load_stage_model(self.workdir, 1, "best")
        except WorkdirError as error:
            raise TrainingError(str(error)) from None

    def train(self, stage, model):
        """Trains ``model`` (compiled) as stage ``stage`` of this run; returns its state.

        A stage of 0 epochs saves ``model`` as it is (best, latest, checkpoint).
        """
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


def register_method(name, *, stage2=None):
    """Decorator registering a stage-2 method `fn(StageContext) -> state dict`.

    Args:
        name: the method's name (`--method`).
        stage2: optional `fn(ExperimentConfig) -> StageConfig`, the method's stage-2
            schedule derived from a preset (whose own `stage2` is OLTR's); None keeps
            the preset's.
    """
    register = _METHODS.register(name)

    def decorator(fn):
        register(fn)
        if stage2 is not None:
            _SCHEDULES[name] = stage2
        return fn

    return decorator


def list_methods():
    """Names of the registered stage-2 methods."""
    return _METHODS.names()


def get_method(name):
    """The stage-2 method registered as ``name`` (ValueError listing the known ones)."""
    return _METHODS.get(name, argument="--method")


def configure_method(config, name):
    """``config`` for method ``name``: `method` set, `stage2` the method's schedule.

    The trainer applies it to the preset before the command line's overrides, so
    `--stage2_epochs` and `--config.stage2.*` still change the method's schedule.
    """
    get_method(name)
    stage2 = _SCHEDULES[name](config) if name in _SCHEDULES else config.stage2
    return dataclasses.replace(config, method=name, stage2=stage2)
