"""What the export command-line tools share: workdir flags, loading, one-line errors.

`export/to_saved_model.py`, `export/to_tflite.py` and `export/to_onnx.py` are thin
scripts over this module and the converters; a user error (missing workdir piece,
bad flag value, existing output) ends with one line on stderr and exit status 2.
"""

import sys

from absl import flags

from keras_oltr.cli import EXIT_USER_ERROR, missing_package, print_error
from keras_oltr.export.workdir import WorkdirModel, load_workdir_model
from keras_oltr.runs import WorkdirError

USER_ERRORS = (WorkdirError, ValueError, OSError)


def define_workdir_flags():
    """Defines --workdir, --stage, --checkpoint and --threshold; returns their holders."""
    holders = {
        "workdir": flags.DEFINE_string("workdir", None, "Training workdir (config.json, stageN/)."),
        "stage": flags.DEFINE_enum("stage", "2", ["1", "2"], "1 (plain model) or 2 (OLTR)."),
        "checkpoint": flags.DEFINE_enum(
            "checkpoint", "best", ["best", "latest"], "Which checkpoint."
        ),
        "threshold": flags.DEFINE_float(
            "threshold",
            None,
            "Open-set threshold on the max probability; default: the score and threshold "
            "the evaluation chose on validation data, else max probability at 0.1.",
        ),
    }
    flags.mark_flag_as_required("workdir")
    return holders


def load_from_flags(holders) -> WorkdirModel:
    """The workdir's model, class names and decision rule, as the flags select them."""
    return load_workdir_model(
        holders["workdir"].value,
        stage=int(holders["stage"].value),
        checkpoint=holders["checkpoint"].value,
        threshold=holders["threshold"].value,
    )


def run(action) -> int:
    """Runs ``action()``; a user error prints ``error: <one line>`` and returns 2.

    The exporters make TensorFlow graphs, so another Keras backend is such an error
    (a model trained on JAX or PyTorch exports under TensorFlow: Keras files load on
    every backend).
    """
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        sys.stderr.write(
            "error: exporting needs Keras' TensorFlow backend (SavedModel, TFLite and ONNX "
            "are made from TensorFlow graphs); run this command with "
            f"KERAS_BACKEND=tensorflow. Received: KERAS_BACKEND={backend}\n"
        )
        return EXIT_USER_ERROR
    try:
        return action() or 0
    except USER_ERRORS as error:
        return print_error(error)
    except ImportError as error:  # a deployment package of the `deploy` extra
        return print_error(missing_package(error))


def main_of(action):
    """The `main(argv)` of an export CLI whose work is ``action()`` (see `run`)."""

    def main(argv):
        del argv
        return run(action)

    main.flag_modules = (action.__module__, __name__)  # the command's and the workdir flags
    return main
