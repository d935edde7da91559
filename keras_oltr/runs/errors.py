"""The errors of a run folder: something a step needs is missing, damaged or another run's."""


class WorkdirError(Exception):
    """A workdir lacks something a step needs, or cannot be used."""


class CheckpointNotFoundError(WorkdirError, FileNotFoundError):
    """The requested model file does not exist."""


class CheckpointDamagedError(WorkdirError):
    """A model or checkpoint file exists but cannot be read (truncated, corrupt)."""


class ConfigMismatchError(WorkdirError):
    """The workdir holds a run with another configuration."""


class WriteFailedError(WorkdirError):
    """An artefact could not be written (disk full, quota, I/O error); the old one is kept."""
