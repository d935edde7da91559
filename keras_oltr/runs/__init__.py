"""A run's folder: its layout, atomic file writes and resumable checkpoints.

The leaf package of keras_oltr: it imports nothing else of keras_oltr, so every
floor (training, evaluation, export, the experiment, benchmarks) may use it.
"""

from keras_oltr.runs.atomic import atomic_write, save_model_atomic, write_text_atomic
from keras_oltr.runs.checkpoint import read_state, restore_training_state, save_training_state
from keras_oltr.runs.errors import (
    CheckpointDamagedError,
    CheckpointNotFoundError,
    ConfigMismatchError,
    WorkdirError,
    WriteFailedError,
)
from keras_oltr.runs.lock import WorkdirInUseError, WorkdirLock
from keras_oltr.runs.workdir import CHECKPOINTS, STAGE_NAMES, STAGES, Workdir, check_stage

__all__ = [
    "CHECKPOINTS",
    "STAGES",
    "STAGE_NAMES",
    "CheckpointDamagedError",
    "CheckpointNotFoundError",
    "ConfigMismatchError",
    "Workdir",
    "WorkdirError",
    "WorkdirInUseError",
    "WorkdirLock",
    "WriteFailedError",
    "atomic_write",
    "check_stage",
    "read_state",
    "restore_training_state",
    "save_model_atomic",
    "save_training_state",
    "write_text_atomic",
]
