"""The training-feature bank of the nearest-neighbour open-set score."""

import keras
import numpy as np
from absl import logging

from keras_oltr.inference.batches import eval_batches, inference_function
from keras_oltr.layers import DEFAULT_BANK_PER_CLASS, bank_rows
from keras_oltr.models import with_nearest_neighbour_score

DEFAULT_MAX_PER_CLASS = DEFAULT_BANK_PER_CLASS


def _gather_rows(chunks, rows):
    """``np.concatenate(chunks)[rows]`` without concatenating: one chunk at a time."""
    out = np.empty((len(rows), chunks[0].shape[1]), chunks[0].dtype)
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    start = 0
    for chunk in chunks:
        lo, hi = np.searchsorted(sorted_rows, [start, start + len(chunk)])
        out[order[lo:hi]] = chunk[sorted_rows[lo:hi] - start]
        start += len(chunk)
    return out


def train_feature_bank(
    model,
    dataset,
    max_per_class=DEFAULT_MAX_PER_CLASS,
    batch_size=256,
    seed=0,
    max_total=None,
):
    """Direct features of at most `max_per_class` train images per class, [N, D].

    One pass over the train split with the test transform (as for the centroids);
    the images kept per class are a seeded random choice (`bank_rows`, the rows of
    `balanced_bank`), so the bank is the same for the same model, dataset and seed.
    `max_total` caps the whole bank by lowering the per-class cap (`bank_cap`). The
    kept rows are copied out of the per-batch features, never out of one
    concatenation of the whole split.
    """

    features = inference_function(model, "direct_feature")
    feats, labels = [], []
    total = -(-dataset.num_train // batch_size)
    progbar = keras.utils.Progbar(total, unit_name="batch")
    logging.info("Collecting the nearest-neighbour feature bank over the train split")
    for step, (images, batch_labels) in enumerate(eval_batches(dataset, "train", batch_size)):
        feats.append(features(images).astype(np.float32, copy=False))
        labels.append(batch_labels.numpy())
        progbar.update(step + 1)
    rows = bank_rows(np.concatenate(labels), max_per_class, seed, max_total)
    return _gather_rows(feats, rows)


def add_feature_bank(
    model,
    dataset,
    max_per_class=DEFAULT_MAX_PER_CLASS,
    batch_size=256,
    seed=0,
    max_total=None,
    bank_dtype="float32",
):
    """``model`` with its nearest-neighbour score filled from ``dataset``'s train split.

    Adds a NearestNeighbourScore ("knn_similarity" output) when the model has none,
    or rebuilds it when its bank has another size or storage dtype, and fills the
    bank (`train_feature_bank`; `max_per_class` and `max_total` cap it, `bank_dtype`
    stores it). Deterministic for the same model, dataset and seed, so a rerun after
    a crash gives the same model. Returns the (possibly new) model.
    """
    bank = train_feature_bank(model, dataset, max_per_class, batch_size, seed, max_total)
    try:
        layer = model.get_layer("nearest_neighbour_score")
    except ValueError:
        layer = None
    if layer is not None and layer.bank_shape == bank.shape and layer.bank_dtype == bank_dtype:
        layer.set_bank(bank)
        return model
    base = model
    if layer is not None:  # another bank: rebuild the head on the same layers
        outputs = {k: v for k, v in model.output.items() if k != "knn_similarity"}
        base = type(model)(model.input, outputs, name=model.name)
    return with_nearest_neighbour_score(base, bank, bank_dtype=bank_dtype)
