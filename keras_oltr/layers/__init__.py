"""OLTR building blocks as Keras 3 layers."""

from keras_oltr.layers.batch_normalization import FusedBatchNormalization
from keras_oltr.layers.centroid_memory import CentroidMemory, pairwise_squared_distances
from keras_oltr.layers.class_scale import ClassScale
from keras_oltr.layers.cosine_classifier import CosineClassifier, squash
from keras_oltr.layers.logit_adjustment import LogitAdjustment
from keras_oltr.layers.meta_embedding import MetaEmbedding
from keras_oltr.layers.modulated_attention import ModulatedAttention
from keras_oltr.layers.nearest_neighbour_score import (
    BANK_DTYPES,
    DEFAULT_BANK_PER_CLASS,
    NearestNeighbourScore,
    balanced_bank,
    bank_cap,
    bank_rows,
    default_shards,
    l2_normalize,
)
from keras_oltr.layers.tau_normalised_dense import TauNormalisedDense, tau_normalise

__all__ = [
    "BANK_DTYPES",
    "DEFAULT_BANK_PER_CLASS",
    "CentroidMemory",
    "ClassScale",
    "CosineClassifier",
    "FusedBatchNormalization",
    "LogitAdjustment",
    "MetaEmbedding",
    "ModulatedAttention",
    "NearestNeighbourScore",
    "TauNormalisedDense",
    "balanced_bank",
    "bank_cap",
    "bank_rows",
    "default_shards",
    "l2_normalize",
    "pairwise_squared_distances",
    "squash",
    "tau_normalise",
]
