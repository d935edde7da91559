"""Passes of a model over a dataset: batches, centroids, the nearest-neighbour bank."""

from keras_oltr.inference.batches import (
    eval_batches,
    has_accelerator,
    inference_function,
    model_images,
    num_batches,
)
from keras_oltr.inference.centroids import class_mean_features
from keras_oltr.inference.feature_bank import add_feature_bank, train_feature_bank

__all__ = [
    "add_feature_bank",
    "class_mean_features",
    "eval_batches",
    "has_accelerator",
    "inference_function",
    "model_images",
    "num_batches",
    "train_feature_bank",
]
