"""Experiment configs, the run layout (`Workdir`), checkpoints and the two-stage trainer."""

from keras_oltr.training.config import (
    ExperimentConfig,
    ModelConfig,
    StageConfig,
    get_preset,
    list_presets,
    register_preset,
    smoke,
)
from keras_oltr.training.trainer import NonFiniteLossError, TrainingError, run_experiment
from keras_oltr.training.workdir import (
    STAGE_NAMES,
    CheckpointDamagedError,
    CheckpointNotFoundError,
    ConfigMismatchError,
    Workdir,
    WorkdirError,
)

__all__ = [
    "STAGE_NAMES",
    "CheckpointDamagedError",
    "CheckpointNotFoundError",
    "ConfigMismatchError",
    "ExperimentConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "StageConfig",
    "TrainingError",
    "Workdir",
    "WorkdirError",
    "get_preset",
    "list_presets",
    "register_preset",
    "run_experiment",
    "smoke",
]
