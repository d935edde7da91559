"""Class centroids kept as non-trainable state, with the OLTR centre-loss update."""

import keras
from keras import ops

from keras_oltr.layers._validation import check_positive_int


def pairwise_squared_distances(features, centroids):
    """||f_n - c_k||^2 for all pairs, [B, D] x [K, D] -> [B, K], clamped at 0.

    Uses the expansion |f|^2 + |c|^2 - 2 f.c (one matmul, no [B, K, D] tensor); the
    clamp removes the small negative values that cancellation produces.
    """
    f_sq = ops.sum(ops.square(features), axis=-1, keepdims=True)
    c_sq = ops.sum(ops.square(centroids), axis=-1)
    dots = ops.matmul(features, ops.transpose(centroids))
    return ops.maximum(f_sq + c_sq[None, :] - 2.0 * dots, 0.0)


@keras.saving.register_keras_serializable(package="keras_oltr")
class CentroidMemory(keras.layers.Layer):
    """K x D class centroids: the visual memory of OLTR.

    The centroids are filled from stage-1 class means with `set_centroids` before
    stage 2, then moved only by the large-margin loss: its attract term's centroid
    gradient is the reference's centre-loss step delta_j / B, its repel term's the
    ordinary one (see `keras_oltr.losses.large_margin_loss`, the one place the rule is
    written). Every other reader (reachability, the memory feature of MetaEmbedding)
    goes through `stop_gradient`, so the classifier's loss never moves them.

    The weight is created trainable so that Keras' own `fit` hands it to the
    optimizer, on every backend: the reference moves its centroids with their own SGD
    (lr 0.01, momentum 0.9, weight decay 5e-4), which is what the optimizer then
    does, with the centroids' learning-rate multiplier. Set `trainable=False` on the
    layer to freeze them. Under tf.distribute the replicas apply the same all-reduced
    gradient, so the mirrored copies stay identical.

    Calling the layer on features returns the centroids (so it can sit in a functional
    graph); `distances`, `nearest_distance` and `reachability` give the geometry.

    Args:
        num_classes: number of known classes K.
        **kwargs: base layer arguments.
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "CentroidMemory expects features of shape [batch, D] with D known. "
                f"Received: input_shape={input_shape}"
            )
        self.feature_dim = int(input_shape[-1])
        self.centroids = self.add_weight(
            shape=(self.num_classes, self.feature_dim),
            initializer="zeros",
            trainable=True,
            name="centroids",
        )
        self.built = True

    def call(self, features):
        return ops.convert_to_tensor(self.centroids)

    def compute_output_shape(self, input_shape):
        return (self.num_classes, input_shape[-1])

    def set_centroids(self, values):
        """Sets the centroids, e.g. to the per-class means of the stage-1 features."""
        values = ops.convert_to_numpy(values) if not hasattr(values, "shape") else values
        expected = (self.num_classes, self.feature_dim)
        if tuple(values.shape) != expected:
            raise ValueError(
                f"`values` must have shape {expected} (num_classes, feature_dim). "
                f"Received: values.shape={tuple(values.shape)}"
            )
        self.centroids.assign(ops.cast(values, self.centroids.dtype))

    def distances(self, features):
        """Euclidean distance of every feature to every centroid, [B, K]."""
        centroids = ops.stop_gradient(ops.convert_to_tensor(self.centroids))
        # Distances in the centroids' dtype (float32), also under mixed precision.
        features = ops.cast(features, centroids.dtype)
        # The floor keeps the gradient finite when a feature sits exactly on a centroid
        # (a one-image class right after the centroids are set to class means).
        return ops.sqrt(ops.maximum(pairwise_squared_distances(features, centroids), 1e-12))

    def nearest_distance(self, features):
        """Distance to the nearest centroid, gamma in the paper, [B]."""
        return ops.min(self.distances(features), axis=-1)

    def reachability(self, features, scale=10.0, epsilon=1e-12):
        """scale / nearest distance: large near a known class, small far from all, [B]."""
        return scale / ops.maximum(self.nearest_distance(features), epsilon)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config
