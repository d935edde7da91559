"""The discriminative centroids (large-margin) loss of OLTR and its centroid step."""

from keras import ops

from keras_oltr.distribute import num_replicas, replica_sum
from keras_oltr.layers.centroid_memory import pairwise_squared_distances


def large_margin_loss(
    features,
    labels,
    centroids,
    *,
    weight=1.0,
    margin=10.0,
    repel_weight=0.01,
    global_counts=None,
):
    """weight * (attract + repel_weight * repel) over a (global) batch, per replica.

    With B the global batch, K classes, v_n the direct features and c_j the centroids:

        attract = sum_n ||v_n - c_{y_n}||^2 / (2B)
        repel   = max(0, margin - sum_{n, j != y_n} ||v_n - c_j||^2 / (B K))

    Gradients. The features get the ordinary gradient of the weighted loss. The
    centroids get the ordinary gradient of the weighted repel term plus, in place of
    the attract term's derivative, the centre-loss step of the reference's custom
    backward, *not* multiplied by `weight`:

        delta_j / B,  delta_j = sum_{n: y_n = j} (c_j - v_n) / (1 + n_j)

    with n_j the number of samples of class j in the global batch (classes absent
    from the batch get zero). This is the one place the centroid rule is written:
    with the total loss CE + lambda * L_LM, an optimizer step moves c_j along
    delta_j / B + lambda * repel_weight * d(repel)/dc_j (plus decay), as the
    reference's `DiscCentroidsLoss` does (its backward returns the centroid
    gradient without the upstream factor that carries lambda). Any factor that
    comes from further up (a mixed-precision loss scale) is kept, so it is undone
    with the rest of the gradients.

    Distribution: B, the repel sum and the class counts are all-reduced over the
    replicas in sync. The returned per-replica value sums over the replicas to the
    global loss, and its gradients sum to the global gradients (the Keras convention
    under tf.distribute); with one replica (and on JAX/PyTorch) it is the loss itself.

    Labels outside [0, K) (e.g. -1 for open-set images) take no part in the loss.

    Args:
        features: direct features v, [b, D] (the replica's part of the batch).
        labels: int labels, [b].
        centroids: [K, D] tensor or variable.
        weight: lambda, the loss weight; it scales the value and every gradient
            except the attract term's centroid step.
        margin: m of the repel hinge (10).
        repel_weight: weight of the repel term (0.01).
        global_counts: optional [K] per-class counts over the global batch, when the
            caller already all-reduced them.

    Returns:
        (loss, parts): the per-replica weighted loss, and a dict of the global
        unweighted "attract" and "repel" values (identical on every replica).
    """
    features = ops.cast(features, "float32")
    centroids = ops.cast(centroids, "float32")
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    num_classes = ops.shape(centroids)[0]
    valid = ops.cast(ops.logical_and(labels >= 0, labels < num_classes), "float32")
    one_hot = ops.one_hot(labels, num_classes, dtype="float32") * valid[:, None]
    batch = replica_sum(ops.cast(ops.shape(labels)[0], "float32"))
    if global_counts is None:
        global_counts = replica_sum(ops.sum(one_hot, axis=0))
    weight = ops.cast(weight, "float32")

    features = features * valid[:, None]
    attract = _weighted_attract(features, centroids, one_hot, global_counts, batch, weight)
    own = ops.stop_gradient(ops.matmul(one_hot, centroids))
    attract_value = ops.sum(ops.square(ops.stop_gradient(features) - own)) / (2.0 * batch)

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
    repel = repel_share + ops.stop_gradient(repel_value / num_replicas() - repel_share)

    loss = attract + weight * repel_weight * repel
    return loss, {"attract": replica_sum(attract_value), "repel": repel_value}


@ops.custom_gradient
def _weighted_attract(features, centroids, one_hot, global_counts, batch, weight):
    """weight * sum ||v_n - c_{y_n}||^2 / (2B) with the reference's centroid step."""
    own = ops.matmul(one_hot, centroids)  # c_{y_n}, [b, D]
    diff = features - own
    value = weight * ops.sum(ops.square(diff)) / (2.0 * batch)

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        d_features = upstream * weight * diff / batch
        # Centre-loss step: this replica's sum of (c_j - v_n) / (1 + n_j) with n_j the
        # global count, so the replicas' gradients sum to delta_j / B. No `weight`.
        d_centroids = ops.matmul(ops.transpose(one_hot), -diff)
        d_centroids = upstream * d_centroids / (1.0 + global_counts[:, None]) / batch
        return (
            d_features,
            d_centroids,
            ops.zeros_like(one_hot),
            ops.zeros_like(global_counts),
            ops.zeros_like(batch),
            ops.zeros_like(weight),
        )

    return value, grad
