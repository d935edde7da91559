"""The training-feature bank of the nearest-neighbour open-set score."""

import keras
import numpy as np
from absl import logging

from keras_oltr.layers import balanced_bank
from keras_oltr.training.inference import eval_batches, inference_function

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


def ensure_feature_bank(
    workdir, dataset, max_per_class=DEFAULT_MAX_PER_CLASS, batch_size=256, seed=0
):
    """Gives the best stage-2 model of `workdir` its nearest-neighbour score, in place.

    Loads `stage2/best.keras`, adds a NearestNeighbourScore ("knn_similarity" output)
    if the model has none, fills its bank from the train split (`train_feature_bank`)
    and writes the file back atomically, so that evaluation, export and prediction all
    read one self-contained model. Deterministic, so a rerun after a crash writes the
    same file. Returns the model.
    """
    from keras_oltr.models import with_nearest_neighbour_score
    from keras_oltr.training.workdir import save_model_atomic

    model = workdir.load_model(2, "best")
    bank = train_feature_bank(model, dataset, max_per_class, batch_size, seed)
    try:
        layer = model.get_layer("nearest_neighbour_score")
    except ValueError:
        layer = None
    if layer is None or tuple(layer.bank.shape) != bank.shape:
        base = model
        if layer is not None:  # a bank of another size: rebuild the head on the same layers
            outputs = {k: v for k, v in model.output.items() if k != "knn_similarity"}
            base = type(model)(model.input, outputs, name=model.name)
        model = with_nearest_neighbour_score(base, bank)
    else:
        layer.set_bank(bank)
    save_model_atomic(model, workdir.model_path(2, "best"))
    logging.info(
        "Nearest-neighbour bank of %d train features written into %s",
        len(bank),
        workdir.model_path(2, "best"),
    )
    return model
