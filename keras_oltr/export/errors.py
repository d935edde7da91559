"""The error of an exported model that cannot be used as it is on disk."""


class ModelFileError(ValueError):
    """An exported model or its metadata file is missing, damaged or of another model.

    The message names the file at fault (the model, its variables, or the metadata
    file beside it) on one line; the command-line tools print it with exit status 2.
    """
