"""The training-feature bank of the nearest-neighbour open-set score."""

import keras
import numpy as np
from absl import logging

from keras_oltr.inference.batches import eval_batches, inference_function
from keras_oltr.layers import balanced_bank
from keras_oltr.models import with_nearest_neighbour_score

DEFAULT_MAX_PER_CLASS = 100


def train_feature_bank(model, dataset, max_per_class=DEFAULT_MAX_PER_CLASS, batch_size=256, seed=0):
    """Direct features of at most `max_per_class` train images per class, [N, D].

    One pass over the train split with the test transform (as for the centroids);
    the images kept per class are a seeded random choice (`balanced_bank`), so the
    bank is the same for the same model, dataset and seed.
    """

    features = inference_function(model, "direct_feature")
    feats, labels = [], []
    total = -(-dataset.num_train // batch_size)
    progbar = keras.utils.Progbar(total, unit_name="batch")
    logging.info("Collecting the nearest-neighbour feature bank over the train split")
    for step, (images, batch_labels) in enumerate(eval_batches(dataset, "train", batch_size)):
        feats.append(features(images).astype(np.float32))
        labels.append(batch_labels.numpy())
        progbar.update(step + 1)
    bank, _ = balanced_bank(np.concatenate(feats), np.concatenate(labels), max_per_class, seed)
    return bank


def add_feature_bank(model, dataset, max_per_class=DEFAULT_MAX_PER_CLASS, batch_size=256, seed=0):
    """``model`` with its nearest-neighbour score filled from ``dataset``'s train split.

    Adds a NearestNeighbourScore ("knn_similarity" output) when the model has none,
    or rebuilds it when its bank has another size, and fills the bank
    (`train_feature_bank`). Deterministic for the same model, dataset and seed, so a
    rerun after a crash gives the same model. Returns the (possibly new) model.
    """
    bank = train_feature_bank(model, dataset, max_per_class, batch_size, seed)
    try:
        layer = model.get_layer("nearest_neighbour_score")
    except ValueError:
        layer = None
    if layer is not None and tuple(layer.bank.shape) == bank.shape:
        layer.set_bank(bank)
        return model
    base = model
    if layer is not None:  # a bank of another size: rebuild the head on the same layers
        outputs = {k: v for k, v in model.output.items() if k != "knn_similarity"}
        base = type(model)(model.input, outputs, name=model.name)
    return with_nearest_neighbour_score(base, bank)
