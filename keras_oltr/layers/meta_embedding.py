"""Dynamic meta-embedding: direct feature + memory feature, scaled by reachability."""

import keras
from keras import ops

from keras_oltr.layers._validation import check_positive_float, check_positive_int
from keras_oltr.layers.centroid_memory import CentroidMemory


@keras.saving.register_keras_serializable(package="keras_oltr")
class MetaEmbedding(keras.layers.Layer):
    """OLTR's dynamic meta-embedding (paper section 3.1).

    For a direct feature v (shape [B, D]) and the centroids C of its `memory`:

    - gamma = min_i ||v - c_i||, reachability = scale / gamma;
    - o = softmax(hallucinator(v)) over the K classes, v_memory = o @ C;
    - e = tanh(selector(v)), the concept selector, D outputs;
    - v_meta = reachability * (v + e * v_memory).

    The centroids enter with stop_gradient: the classifier's loss never moves them
    (they move by the large-margin loss only, see CentroidMemory).

    Returns a dict: "meta_embedding" [B, D], "reachability" [B], "memory_feature"
    [B, D], "selector" [B, D], "hallucination" [B, K] (the softmax o).

    Args:
        num_classes: number of known classes K.
        reachability_scale: s in s / gamma (10 in the reference).
        **kwargs: base layer arguments.
    """

    def __init__(self, num_classes, reachability_scale=10.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.reachability_scale = check_positive_float("reachability_scale", reachability_scale)
        self.memory = CentroidMemory(num_classes, name="centroid_memory", dtype=self.dtype_policy)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "MetaEmbedding expects direct features of shape [batch, D] with D known. "
                f"Received: input_shape={input_shape}"
            )
        dim = int(input_shape[-1])
        self.memory.build(input_shape)
        # Sublayers follow this layer's dtype policy (float32 head under mixed precision).
        self.hallucinator = keras.layers.Dense(
            self.num_classes, name="hallucinator", dtype=self.dtype_policy
        )
        self.selector = keras.layers.Dense(dim, name="selector", dtype=self.dtype_policy)
        self.hallucinator.build(input_shape)
        self.selector.build(input_shape)
        self.built = True

    def call(self, direct_feature):
        centroids = ops.stop_gradient(ops.convert_to_tensor(self.memory.centroids))
        centroids = ops.cast(centroids, direct_feature.dtype)
        reachability = self.memory.reachability(direct_feature, scale=self.reachability_scale)
        reachability = ops.cast(reachability, direct_feature.dtype)
        hallucination = ops.softmax(self.hallucinator(direct_feature), axis=-1)
        memory_feature = ops.matmul(hallucination, centroids)
        selector = ops.tanh(self.selector(direct_feature))
        meta = reachability[:, None] * (direct_feature + selector * memory_feature)
        return {
            "meta_embedding": meta,
            "reachability": reachability,
            "memory_feature": memory_feature,
            "selector": selector,
            "hallucination": hallucination,
        }

    def compute_output_shape(self, input_shape):
        batch, dim = input_shape
        return {
            "meta_embedding": (batch, dim),
            "reachability": (batch,),
            "memory_feature": (batch, dim),
            "selector": (batch, dim),
            "hallucination": (batch, self.num_classes),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_classes": self.num_classes, "reachability_scale": self.reachability_scale}
        )
        return config
