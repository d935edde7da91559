"""The errors a training run reports to its user as one line."""


class TrainingError(Exception):
    """A user-facing problem with a run (missing stage-1 model, bad batch size, ...)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
