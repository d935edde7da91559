"""The discriminative centroids (large-margin) loss of OLTR (SPEC section 3)."""

import tensorflow as tf
from keras import ops

from keras_oltr.layers.centroid_memory import (
    num_replicas,
    pairwise_squared_distances,
    replica_sum,
)


def large_margin_loss(
    features, labels, centroids, *, margin=10.0, repel_weight=0.01, global_counts=None
):
    """attract + repel_weight * repel over a (global) batch, as a per-replica loss.

    attract = sum_n ||v_n - c_{y_n}||^2 / (2B)
    repel   = max(0, margin - sum_{n, j != y_n} ||v_n - c_j||^2 / (B K))

    Distribution: B, the repel sum and the class counts are all-reduced over the
    replicas in sync. The returned per-replica value sums over the replicas to the
    global loss, and its gradients sum to the global gradients (the Keras convention
    for a loss under tf.distribute); with one replica it is just the loss.

    Gradients (the reference's custom backward): to the features, the ordinary ones;
    to the centroids, the repel term's ordinary gradient plus, for the attract term,
    the centre-loss direction delta_j / B with delta_j = sum_{y_n = j} (c_j - v_n) /
    (1 + n_j) instead of the plain derivative (SPEC section 4).

    Args:
        features: direct features v, [b, D] (the replica's part of the batch).
        labels: int labels in [0, K), [b].
        centroids: [K, D] tensor or variable (watch it on the tape for its gradient).
        margin: m of the repel hinge (10).
        repel_weight: weight of the repel term (0.01).
        global_counts: optional [K] per-class counts over the global batch, when the
            caller already all-reduced them.

    Returns:
        (loss, parts): the per-replica loss, and a dict of the global "attract" and
        "repel" values (identical on every replica), for logging.
    """
    features = ops.cast(features, "float32")
    centroids = ops.cast(centroids, "float32")
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    num_classes = ops.shape(centroids)[0]
    # Labels outside [0, K) (e.g. -1 for open-set images) take no part in the loss.
    valid = ops.cast(ops.logical_and(labels >= 0, labels < num_classes), "float32")
    one_hot = ops.one_hot(labels, num_classes, dtype="float32") * valid[:, None]
    local_batch = ops.cast(ops.shape(labels)[0], "float32")
    batch = replica_sum(local_batch)
    replicas = num_replicas()
    if global_counts is None:
        global_counts = replica_sum(ops.sum(one_hot, axis=0))

    attract = _attract(features * valid[:, None], centroids, one_hot, global_counts, batch)

    sq_dist = pairwise_squared_distances(features, centroids)
    local_repel_sum = ops.sum(sq_dist * (1.0 - one_hot) * valid[:, None])
    normaliser = batch * ops.cast(num_classes, "float32")
    global_repel_mean = replica_sum(ops.stop_gradient(local_repel_sum)) / normaliser
    repel_value = ops.maximum(margin - global_repel_mean, 0.0)
    active = ops.cast(global_repel_mean < margin, "float32")
    # The hinge of a global sum: its gradient is the active indicator times the
    # gradient of this replica's share of the sum; the value is the global value split
    # evenly over the replicas.
    repel_share = -active * local_repel_sum / normaliser
    repel = repel_share + ops.stop_gradient(repel_value / replicas - repel_share)

    loss = attract + repel_weight * repel
    global_attract = replica_sum(ops.stop_gradient(attract))
    return loss, {"attract": global_attract, "repel": repel_value}


@tf.custom_gradient
def _attract(features, centroids, one_hot, global_counts, batch):
    own = ops.matmul(one_hot, centroids)  # c_{y_n}, [b, D]
    diff = features - own
    value = ops.sum(ops.square(diff)) / (2.0 * batch)

    def grad(upstream):
        d_features = upstream * diff / batch
        # Centre-loss step: sum over this replica's samples of (c_j - v_n) / (1 + n_j),
        # with n_j the global count, so the replicas' gradients sum to delta_j / B.
        d_centroids = ops.matmul(ops.transpose(one_hot), -diff)
        d_centroids = upstream * d_centroids / (1.0 + global_counts[:, None]) / batch
        return d_features, d_centroids, None, None, None

    return value, grad
