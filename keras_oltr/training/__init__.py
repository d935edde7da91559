"""Training one stage: its optimizer, its `fit` with validation and checkpoints.

The run as a whole (stage 1, centroids, stage 2, evaluation, export) is
`keras_oltr.experiment`'s; this package knows nothing of evaluation or export.
"""

from keras_oltr.training.errors import NonFiniteLossError, TrainingError
from keras_oltr.training.optimizer import compile_for_stage, learning_rate_schedule
from keras_oltr.training.stage import steps_per_epoch, train_stage
from keras_oltr.training.validation import validate

__all__ = [
    "NonFiniteLossError",
    "TrainingError",
    "compile_for_stage",
    "learning_rate_schedule",
    "steps_per_epoch",
    "train_stage",
    "validate",
]
