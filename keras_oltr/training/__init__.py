"""Experiment configs, checkpoints, distribution helpers and the two-stage trainer."""

from keras_oltr.training.config import (
    ExperimentConfig,
    ModelConfig,
    StageConfig,
    get_preset,
    list_presets,
    register_preset,
    smoke,
)
from keras_oltr.training.trainer import TrainingError, run_experiment

__all__ = [
    "ExperimentConfig",
    "ModelConfig",
    "StageConfig",
    "TrainingError",
    "get_preset",
    "list_presets",
    "register_preset",
    "run_experiment",
    "smoke",
]
