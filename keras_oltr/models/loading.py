"""Loading a run's saved models (`stage{N}/{best,latest}.keras`) with the custom layers."""

import keras

# The builders import every keras_oltr layer and model class, which registers them.
from keras_oltr.models import builders  # noqa: F401
from keras_oltr.runs import CheckpointDamagedError, Workdir


def load_stage_model(workdir, stage: int, checkpoint: str = "best"):
    """Loads `stage{N}/{checkpoint}.keras` of a run (not compiled).

    Raises:
        CheckpointNotFoundError: the file is missing (the message says why).
        CheckpointDamagedError: the file exists but cannot be read.
    """
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    path = workdir.require_model(stage, checkpoint)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # (zip, h5 and JSON errors alike)
        raise CheckpointDamagedError(
            f"{path} is damaged ({type(error).__name__}: {str(error)[:200]}). Rerun "
            f"--stage={stage} with the same flags to write it again."
        ) from None
