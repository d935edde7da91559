"""Class means of the direct feature, the initial centroids of stage 2."""

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_oltr.distribute import sum_over_workers, worker_info
from keras_oltr.inference.batches import eval_batches, inference_function


def class_mean_features(model, dataset, strategy=None, batch_size=256):
    """Per-class mean of `model(x)["direct_feature"]` over the train split, [K, D].

    One pass with the test transform; with several workers each reads its shard of
    the train split and the sums and counts are all-reduced, so every worker gets
    the exact means of the whole split.
    """
    strategy = strategy or tf.distribute.get_strategy()
    _, worker, num_workers = worker_info(strategy)
    context = None
    if num_workers > 1:
        context = tf.distribute.InputContext(num_workers, worker, num_workers)
    batches = eval_batches(dataset, "train", batch_size * num_workers, input_context=context)

    features = inference_function(model, "direct_feature")
    sums, counts = None, np.zeros(dataset.num_classes, np.float64)
    total = -(-dataset.num_train // (batch_size * num_workers))
    progbar = keras.utils.Progbar(total, unit_name="batch")
    logging.info("Computing %d class centroids over the train split", dataset.num_classes)
    for step, (images, labels) in enumerate(batches):
        feats = features(images).astype(np.float64)
        labels = labels.numpy()
        if sums is None:
            sums = np.zeros((dataset.num_classes, feats.shape[1]), np.float64)
        np.add.at(sums, labels, feats)
        counts += np.bincount(labels, minlength=dataset.num_classes)
        progbar.update(step + 1)
    sums = sum_over_workers(strategy, sums).numpy()
    counts = sum_over_workers(strategy, counts).numpy()
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0)
        names = [dataset.class_names[c] for c in missing[:10]]
        raise ValueError(
            f"Stage 2 needs a centroid per class, but no train image of class(es) "
            f"{missing[:10].tolist()} ({names}) could be read (see the 'Skipping unreadable "
            "image' warnings): fix or remove those images."
        )
    return (sums / counts[:, None]).astype(np.float32)
