"""OLTR building blocks as Keras 3 layers."""

from keras_oltr.layers.batch_normalization import FusedBatchNormalization
from keras_oltr.layers.centroid_memory import CentroidMemory, pairwise_squared_distances
from keras_oltr.layers.cosine_classifier import CosineClassifier, squash
from keras_oltr.layers.meta_embedding import MetaEmbedding
from keras_oltr.layers.modulated_attention import ModulatedAttention
from keras_oltr.layers.nearest_neighbour_score import (
    NearestNeighbourScore,
    balanced_bank,
    l2_normalize,
)

__all__ = [
    "CentroidMemory",
    "CosineClassifier",
    "FusedBatchNormalization",
    "MetaEmbedding",
    "ModulatedAttention",
    "NearestNeighbourScore",
    "balanced_bank",
    "l2_normalize",
    "pairwise_squared_distances",
    "squash",
]
