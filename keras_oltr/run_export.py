"""Exporting a run's best stage-2 model as a TF Serving SavedModel, on any backend."""

import json
import os
import subprocess
import sys

import keras
from absl import logging

import keras_oltr
from keras_oltr.export import export_workdir_saved_model
from keras_oltr.training import TrainingError

# The export of a run trained on another backend: TensorFlow in a child process.
_EXPORT_CHILD = """
import json, sys
from keras_oltr.export import export_workdir_saved_model
path, trained = export_workdir_saved_model(
    sys.argv[1], sys.argv[2], model_name=sys.argv[3], overwrite=True
)
print(json.dumps([path, float(trained.threshold), trained.threshold_source]))
"""


def export_best(config, workdir):
    """Exports the best stage-2 model under the workdir's export/; returns its path.

    The open score and threshold are the ones the evaluation chose on validation,
    else max probability at the paper's 0.1. TFLite and ONNX conversions are one
    command each (export/*.py). A SavedModel is a TensorFlow graph: after training on
    another Keras backend (JAX, PyTorch) the export runs in a child process under
    `KERAS_BACKEND=tensorflow`, from the saved `.keras` model (Keras files load on
    every backend).
    """
    if keras.backend.backend() == "tensorflow":
        path, trained = export_workdir_saved_model(
            workdir.root, workdir.export_dir, model_name=config.name, overwrite=True
        )
        threshold, source = trained.threshold, trained.threshold_source
    else:
        path, threshold, source = _export_with_tensorflow(config, workdir)
    logging.info("Exported %s (threshold %.4g, %s)", path, threshold, source)
    return path


def _export_with_tensorflow(config, workdir):
    logging.info(
        "Exporting with TensorFlow in a child process (trained on %s)", keras.backend.backend()
    )
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(keras_oltr.__file__)))
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=path)
    args = [sys.executable, "-c", _EXPORT_CHILD, workdir.root, workdir.export_dir, config.name]
    # Its log goes to this process's stderr; the last stdout line is the result.
    result = subprocess.run(args, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode:
        raise TrainingError(
            f"The SavedModel export (TensorFlow, in a child process) failed with exit code "
            f"{result.returncode}; its log is above. The trained models are saved: "
            f"`python export/to_saved_model.py --workdir={workdir.root} "
            f"--out={workdir.export_dir}` exports them again."
        )
    return json.loads(result.stdout.strip().splitlines()[-1])
