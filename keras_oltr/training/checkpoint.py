"""Resumable training state: model weights, optimizer state and counters.

A checkpoint is a folder with model.weights.h5 (every model variable, centroids
and BatchNorm statistics included), optimizer.npz (all optimizer variables, the
iteration counter among them) and state.json (stage, step, best validation
accuracy). It is written to a temporary folder and renamed into place, so a run
killed while saving leaves the previous checkpoint intact.
"""

import json
import os
import shutil

import numpy as np

STATE_FILE = "state.json"


def save_training_state(directory, model, optimizer, state):
    """Atomically writes the training state to `directory`."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = directory + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model.save_weights(os.path.join(tmp, "model.weights.h5"))
    values = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
    np.savez(os.path.join(tmp, "optimizer.npz"), **values)
    with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2)
    old = directory + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(directory):
        os.rename(directory, old)
    os.rename(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def read_state(directory):
    """The state.json of a checkpoint, or None when there is no complete checkpoint."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(path):
        # A crash between the two renames leaves the previous checkpoint as ".old".
        old = directory + ".old"
        if os.path.isfile(os.path.join(old, STATE_FILE)):
            os.rename(old, directory)
            return read_state(directory)
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def restore_training_state(directory, model, optimizer):
    """Loads weights and optimizer variables (the optimizer must already be built)."""
    model.load_weights(os.path.join(directory, "model.weights.h5"))
    with np.load(os.path.join(directory, "optimizer.npz")) as data:
        values = [data[f"v{i:04d}"] for i in range(len(data.files))]
    if len(values) != len(optimizer.variables):
        raise ValueError(
            f"The checkpoint in {directory} has {len(values)} optimizer variables, the "
            f"optimizer {len(optimizer.variables)}: it was written for another model or "
            "configuration."
        )
    for variable, value in zip(optimizer.variables, values, strict=True):
        variable.assign(value)
    return read_state(directory)
