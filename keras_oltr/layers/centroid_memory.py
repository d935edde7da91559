"""Class centroids kept as non-trainable state, with the OLTR centre-loss update."""

import keras
import tensorflow as tf
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


def replica_sum(value):
    """Sum of `value` over the replicas in sync (identity outside tf.distribute).

    Works in the replica context of any strategy, including the default one, and in a
    cross-replica context (where there is a single logical copy of the value).
    """
    if tf.distribute.in_cross_replica_context():
        return value
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas():
    """Replicas in sync (1 outside tf.distribute or in a cross-replica context)."""
    if tf.distribute.in_cross_replica_context():
        return 1.0
    ctx = tf.distribute.get_replica_context()
    return float(ctx.num_replicas_in_sync) if ctx is not None else 1.0


@keras.saving.register_keras_serializable(package="keras_oltr")
class CentroidMemory(keras.layers.Layer):
    """K x D class centroids: the visual memory of OLTR.

    The centroids are a non-trainable weight (like BatchNormalization's moving
    statistics): they are filled from stage-1 class means with `set_centroids`, then
    moved only by the centre-loss update of `compute_update` (SPEC section 4), never by
    the classifier's gradient. The update all-reduces per-class sums and counts across
    replicas, so every replica computes the same value; the variable is created with
    `only_first_replica` aggregation so an assignment in replica context keeps the
    replicas identical.

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
            trainable=False,
            aggregation="only_first_replica",
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

    def compute_update(self, features, labels):
        """The centre-loss step direction delta_j / B of SPEC section 4, [K, D].

        delta_j = sum_{n: y_n = j} (c_j - v_n) / (1 + n_j) over the global batch of
        size B; classes absent from the batch get zero. Sums, counts and B are
        all-reduced across replicas, so the result is identical on every replica.
        Labels outside [0, K) (for example -1 for open-set images) are ignored.
        """
        features = ops.cast(ops.stop_gradient(features), self.centroids.dtype)
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        valid = ops.logical_and(labels >= 0, labels < self.num_classes)
        one_hot = ops.one_hot(ops.where(valid, labels, 0), self.num_classes)
        one_hot = one_hot * ops.cast(valid, one_hot.dtype)[:, None]  # [B, K]
        one_hot = ops.cast(one_hot, self.centroids.dtype)
        counts = replica_sum(ops.sum(one_hot, axis=0))  # [K]
        feature_sums = replica_sum(ops.matmul(ops.transpose(one_hot), features))  # [K, D]
        batch = replica_sum(ops.cast(ops.shape(labels)[0], self.centroids.dtype))
        centroids = ops.convert_to_tensor(self.centroids)
        delta = (counts[:, None] * centroids - feature_sums) / (1.0 + counts[:, None])
        return delta / ops.maximum(batch, 1.0)

    def apply_update(self, features, labels, learning_rate):
        """Plain SGD step c <- c - lr * delta / B (no momentum); returns the new value."""
        self.centroids.assign_sub(learning_rate * self.compute_update(features, labels))
        return self.centroids

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config
