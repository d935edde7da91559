"""Open-set score: cosine similarity to the nearest training features (deep k-NN)."""

import keras
import numpy as np
from keras import ops

from keras_oltr.layers._validation import check_positive_int


def l2_normalize(features, epsilon=1e-12):
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    norm = ops.sqrt(ops.sum(ops.square(features), axis=-1, keepdims=True))
    return features / ops.maximum(norm, epsilon)


def balanced_bank(features, labels, max_per_class, seed=0):
    """At most `max_per_class` training features per class, picked at random with `seed`.

    Keeps the bank small for large training sets (ImageNet-LT has up to 1280 images a
    class) and stops head classes from dominating it. Returns (features, labels) in
    class order; labels outside [0, inf) are dropped.
    """
    features, labels = np.asarray(features), np.asarray(labels).reshape(-1)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(
            "`features` must be [N, D] with one label each. Received: features.shape="
            f"{features.shape}, labels.shape={labels.shape}"
        )
    check_positive_int("max_per_class", max_per_class)
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == label)
        if len(rows) > max_per_class:
            rows = np.sort(rng.choice(rows, max_per_class, replace=False))
        keep.append(rows)
    if not keep:
        raise ValueError("No labelled features to build a bank from.")
    keep = np.concatenate(keep)
    return features[keep], labels[keep]


@keras.saving.register_keras_serializable(package="keras_oltr")
class NearestNeighbourScore(keras.layers.Layer):
    """k-th largest cosine similarity between a feature and a bank of training features.

    The "deep nearest neighbours" open-set score (Sun et al., ICML 2022) on OLTR's
    direct feature: the bank holds L2-normalised training features (e.g. the
    `balanced_bank` of the train split) as a non-trainable weight, so the score
    travels with the model into every export. Higher means closer to something seen
    in training, i.e. more "known"; an input far from every training image scores
    low. Unlike reachability (distance to the nearest class *centroid*), it does not
    assume that each class is one compact cluster.

    Args:
        bank_size: number of stored features N.
        k: which neighbour's similarity is the score (1 = the nearest).
        **kwargs: base layer arguments.

    Call: features [B, D] -> scores [B] in [-1, 1].
    """

    def __init__(self, bank_size, k=1, **kwargs):
        super().__init__(**kwargs)
        self.bank_size = check_positive_int("bank_size", bank_size)
        self.k = check_positive_int("k", k)
        if self.k > self.bank_size:
            raise ValueError(f"`k` must be <= bank_size={bank_size}. Received: k={k}")

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "NearestNeighbourScore expects features of shape [batch, D] with D known. "
                f"Received: input_shape={input_shape}"
            )
        self.bank = self.add_weight(
            shape=(self.bank_size, int(input_shape[-1])),
            initializer="zeros",
            trainable=False,
            name="bank",
        )
        self.built = True

    def set_bank(self, features):
        """Stores `features` ([bank_size, D], any scale) L2-normalised as the bank."""
        features = np.asarray(features, dtype="float32")
        expected = tuple(self.bank.shape)
        if features.shape != expected:
            raise ValueError(
                f"The bank must have shape {expected}. Received: features.shape={features.shape}"
            )
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        self.bank.assign(features / np.maximum(norms, 1e-12))

    def call(self, features):
        features = l2_normalize(ops.cast(features, "float32"))
        similarities = ops.matmul(features, ops.transpose(ops.cast(self.bank, "float32")))
        if self.k == 1:
            return ops.max(similarities, axis=-1)
        return ops.top_k(similarities, self.k)[0][:, self.k - 1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update({"bank_size": self.bank_size, "k": self.k})
        return config
