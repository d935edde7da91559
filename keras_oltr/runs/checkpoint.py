"""Resumable training state: model weights, optimizer state and counters.

A checkpoint is a folder with model.weights.h5 (every model variable, centroids
and BatchNorm statistics included), optimizer.npz (all optimizer variables, the
iteration counter among them) and state.json (stage, step, best validation
accuracy), written last. The folder is written under a temporary name, fsynced
and renamed into place; the checkpoint it replaces is kept as `<dir>.prev`, so a
checkpoint damaged after the fact (power loss, a full disk, a truncated copy)
falls back to the previous one with a warning naming the damaged file.
"""

import json
import os
import shutil

import numpy as np
from absl import logging

from keras_oltr.runs.atomic import fault_point, fsync_dir, fsync_tree, tmp_path_for, write_failed
from keras_oltr.runs.errors import CheckpointDamagedError

STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"
PREVIOUS_SUFFIX = ".prev"


def save_training_state(directory, model, optimizer, state):
    """Writes the training state to `directory`; the one it replaces becomes .prev.

    Files are fsynced before the renames, so after a crash the folder holds either
    the old or the new complete checkpoint (or only .prev, which `read_state` uses).
    An OSError (disk full, ...) is one `WriteFailedError` naming the folder.
    """
    parent = os.path.dirname(os.path.abspath(directory))
    tmp = tmp_path_for(directory)
    try:
        os.makedirs(tmp)
        model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
        values = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
        np.savez(os.path.join(tmp, OPTIMIZER_FILE), **values)
        with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
        fsync_tree(tmp)
        fault_point("checkpoint")
        previous = directory + PREVIOUS_SUFFIX
        if os.path.isdir(directory):
            shutil.rmtree(previous, ignore_errors=True)
            os.rename(directory, previous)
        os.rename(tmp, directory)
        fsync_dir(parent)
    except OSError as error:  # disk full: the previous checkpoint stays as it was
        raise write_failed(error, directory) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_state_file(directory):
    path = os.path.join(directory, STATE_FILE)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        state = json.loads(text)
    except ValueError:
        raise CheckpointDamagedError(
            f"{path} is {'empty' if not text.strip() else 'not valid JSON'}"
        ) from None
    if not isinstance(state, dict) or "global_step" not in state:
        raise CheckpointDamagedError(f"{path} has no global_step")
    return state


def _check_files(directory):
    """Raises CheckpointDamagedError when a checkpoint file is missing or truncated."""
    import h5py

    weights = os.path.join(directory, WEIGHTS_FILE)
    try:
        with h5py.File(weights, "r") as f:
            f.visititems(lambda name, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
    except Exception as error:  # (h5py raises OSError, KeyError, ...)
        raise CheckpointDamagedError(f"{weights} cannot be read ({error})") from None
    optimizer = os.path.join(directory, OPTIMIZER_FILE)
    try:
        with np.load(optimizer) as data:
            for name in data.files:
                data[name]
    except Exception as error:  # (zipfile, numpy, OSError)
        raise CheckpointDamagedError(f"{optimizer} cannot be read ({error})") from None


def read_state(directory, *, warn=True):
    """The state.json of the newest readable checkpoint, or None when there is none.

    A damaged newest checkpoint is skipped (with a warning naming the damage) in
    favour of `<directory>.prev`.
    """
    found = locate_checkpoint(directory, warn=warn)
    return None if found is None else found[1]


def locate_checkpoint(directory, *, warn=True):
    """(folder, state) of the newest intact checkpoint in `directory` or its .prev."""
    damage = []
    for candidate in (directory, directory + PREVIOUS_SUFFIX):
        if not os.path.isfile(os.path.join(candidate, STATE_FILE)):
            continue
        try:
            state = _load_state_file(candidate)
            _check_files(candidate)
        except (CheckpointDamagedError, OSError) as error:
            damage.append(str(error))
            continue
        if damage and warn:
            logging.warning(
                "Checkpoint damaged: %s. Resuming from the previous checkpoint %s (step %d).",
                "; ".join(damage),
                candidate,
                state["global_step"],
            )
        return candidate, state
    if damage:
        raise CheckpointDamagedError(
            "No intact checkpoint to resume from: "
            + "; ".join(damage)
            + ". Start the stage over with --noresume."
        )
    return None


def restore_training_state(directory, model, optimizer):
    """Loads weights and optimizer variables (the optimizer must already be built).

    Returns the restored state dict (from `directory` or, when that is damaged, from
    its previous checkpoint).
    """
    found = locate_checkpoint(directory)
    if found is None:
        raise CheckpointDamagedError(f"No checkpoint in {directory}.")
    folder, state = found
    if folder != directory and os.path.isdir(directory):
        # Keep the damaged checkpoint aside (not as the next fallback) for inspection.
        damaged = directory + ".damaged"
        shutil.rmtree(damaged, ignore_errors=True)
        os.rename(directory, damaged)
    model.load_weights(os.path.join(folder, WEIGHTS_FILE))
    with np.load(os.path.join(folder, OPTIMIZER_FILE)) as data:
        values = [data[f"v{i:04d}"] for i in range(len(data.files))]
    if len(values) != len(optimizer.variables):
        raise ValueError(
            f"The checkpoint in {folder} has {len(values)} optimizer variables, the "
            f"optimizer {len(optimizer.variables)}: it was written for another model or "
            "configuration."
        )
    for variable, value in zip(optimizer.variables, values, strict=True):
        variable.assign(value)
    fault_point("restored")
    return state
