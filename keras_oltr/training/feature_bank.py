"""The training-feature bank of the nearest-neighbour open-set score."""

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_oltr.layers import balanced_bank

DEFAULT_MAX_PER_CLASS = 100


def train_feature_bank(model, dataset, max_per_class=DEFAULT_MAX_PER_CLASS, batch_size=256, seed=0):
    """Direct features of at most `max_per_class` train images per class, [N, D].

    One pass over the train split with the test transform (as for the centroids);
    the images kept per class are a seeded random choice (`balanced_bank`), so the
    bank is the same for the same model, dataset and seed.
    """

    @tf.function(reduce_retracing=True)
    def features(images):
        return model(images, training=False)["direct_feature"]

    feats, labels = [], []
    total = -(-dataset.num_train // batch_size)
    progbar = keras.utils.Progbar(total, unit_name="batch")
    logging.info("Collecting the nearest-neighbour feature bank over the train split")
    for step, (images, batch_labels) in enumerate(dataset.eval_dataset("train", batch_size)):
        feats.append(features(images).numpy().astype(np.float32))
        labels.append(batch_labels.numpy())
        progbar.update(step + 1)
    bank, _ = balanced_bank(np.concatenate(feats), np.concatenate(labels), max_per_class, seed)
    return bank
