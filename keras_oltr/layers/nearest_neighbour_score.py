"""Open-set score: cosine similarity to the nearest training features (deep k-NN)."""

import keras
import numpy as np
from keras import ops

from keras_oltr.arrays import label_groups
from keras_oltr.layers._validation import check_positive_int

DEFAULT_BANK_PER_CLASS = 100  # train features per class in the bank (ImageNet-LT: 1280 max)
BANK_DTYPES = ("float32", "float16")
_MAX_SHARDS = 8
_MIN_SHARD_ROWS = 4096


def default_shards(bank_size):
    """Weights a bank of `bank_size` rows is split into: one per 4096 rows, at most 8."""
    return max(1, min(_MAX_SHARDS, -(-int(bank_size) // _MIN_SHARD_ROWS)))


def l2_normalize(features, epsilon=1e-12):
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    norm = ops.sqrt(ops.sum(ops.square(features), axis=-1, keepdims=True))
    return features / ops.maximum(norm, epsilon)


def bank_cap(class_sizes, max_per_class, max_total=None):
    """The features kept per class: `max_per_class`, lowered until the bank fits `max_total`.

    With `max_total`, the cap is the largest c <= `max_per_class` with
    sum_k min(n_k, c) <= `max_total` (n_k the images of class k): classes smaller than
    c keep every image, the others are cut to the same c, so no class loses a
    feature while a larger one keeps more than it. Every class keeps at least one,
    so `max_total` below the number of classes is an error.
    """
    sizes = np.asarray(class_sizes, np.int64)
    cap = check_positive_int("max_per_class", max_per_class)
    if max_total is None or sizes.size == 0:
        return cap
    check_positive_int("max_total", max_total)
    if max_total < sizes.size:
        raise ValueError(
            f"`max_total` must be at least the number of classes ({sizes.size}), so that "
            f"every class keeps a feature. Received: max_total={max_total}"
        )
    low, high = 1, cap  # sum(min(sizes, low)) <= max_total holds; find the largest
    while low < high:
        mid = (low + high + 1) // 2
        if np.minimum(sizes, mid).sum() <= max_total:
            low = mid
        else:
            high = mid - 1
    return low


def bank_rows(labels, max_per_class, seed=0, max_total=None):
    """The rows `balanced_bank` keeps: int64 indices into `labels`, in class order.

    At most `bank_cap(...)` rows per class, a seeded random choice among a larger
    class's rows (`rng.choice` of its size, classes ascending), ascending within a
    class; negative labels are dropped. One sort groups the rows, so the cost is
    O(N log N) plus one generator call per class over the cap, for any number of
    classes.
    """
    labels = np.asarray(labels).reshape(-1)
    check_positive_int("max_per_class", max_per_class)
    labelled = np.flatnonzero(labels >= 0)
    if labelled.size == 0:
        raise ValueError("No labelled features to build a bank from.")
    rows, starts, sizes, _ = label_groups(labels[labelled])
    cap = bank_cap(sizes, max_per_class, max_total)
    keep = np.repeat(sizes <= cap, sizes)  # over the positions of `rows`
    rng = np.random.default_rng(seed)
    over = sizes > cap
    for start, size in zip(starts[over].tolist(), sizes[over].tolist(), strict=True):
        keep[start + rng.choice(size, cap, replace=False)] = True
    return labelled[rows[keep]]


def balanced_bank(features, labels, max_per_class, seed=0, max_total=None):
    """At most `max_per_class` training features per class, picked at random with `seed`.

    Keeps the bank small for large training sets (ImageNet-LT has up to 1280 images a
    class) and stops head classes from dominating it. `max_total` caps the whole bank
    by lowering the per-class cap (`bank_cap`). Returns (features, labels) in class
    order, rows ascending within a class (`bank_rows`); labels outside [0, inf) are
    dropped.
    """
    features, labels = np.asarray(features), np.asarray(labels).reshape(-1)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(
            "`features` must be [N, D] with one label each. Received: features.shape="
            f"{features.shape}, labels.shape={labels.shape}"
        )
    keep = bank_rows(labels, max_per_class, seed, max_total)
    return features[keep], labels[keep]


@keras.saving.register_keras_serializable(package="keras_oltr")
class NearestNeighbourScore(keras.layers.Layer):
    """k-th largest cosine similarity between a feature and a bank of training features.

    The "deep nearest neighbours" open-set score (Sun et al., ICML 2022) on OLTR's
    direct feature: the bank holds L2-normalised training features (e.g. the
    `balanced_bank` of the train split) as non-trainable weights, so the score
    travels with the model into every export. Higher means closer to something seen
    in training, i.e. more "known"; an input far from every training image scores
    low. Unlike reachability (distance to the nearest class *centroid*), it does not
    assume that each class is one compact cluster.

    The bank is split along its rows into `shards` weights (`default_shards`: up to
    8 for banks above 4096 rows): `set_bank` then holds one shard's temporaries at a
    time, not the whole bank's, and a batch's similarities are reduced shard by
    shard. The score is the same for any number of shards.

    Args:
        bank_size: number of stored features N.
        k: which neighbour's similarity is the score (1 = the nearest).
        bank_dtype: storage of the bank, "float32" or "float16" (half the memory;
            the similarities are still computed in float32).
        shards: number of weights the bank is split into; None: `default_shards`.
        **kwargs: base layer arguments.

    Call: features [B, D] -> scores [B] in [-1, 1].
    """

    def __init__(self, bank_size, k=1, bank_dtype="float32", shards=None, **kwargs):
        super().__init__(**kwargs)
        self.bank_size = check_positive_int("bank_size", bank_size)
        self.k = check_positive_int("k", k)
        if self.k > self.bank_size:
            raise ValueError(f"`k` must be <= bank_size={bank_size}. Received: k={k}")
        if bank_dtype not in BANK_DTYPES:
            raise ValueError(
                f"`bank_dtype` must be one of {BANK_DTYPES}. Received: bank_dtype={bank_dtype!r}"
            )
        self.bank_dtype = bank_dtype
        self.shards = default_shards(bank_size) if shards is None else shards
        check_positive_int("shards", self.shards)
        if self.shards > self.bank_size:
            raise ValueError(
                f"`shards` must be <= bank_size={bank_size}. Received: shards={shards}"
            )

    def shard_bounds(self):
        """[(start, stop)] rows of the bank held by each shard, in order."""
        edges = np.linspace(0, self.bank_size, self.shards + 1).round().astype(int).tolist()
        return list(zip(edges[:-1], edges[1:], strict=True))

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "NearestNeighbourScore expects features of shape [batch, D] with D known. "
                f"Received: input_shape={input_shape}"
            )
        self.bank_shards = [
            self.add_weight(
                shape=(stop - start, int(input_shape[-1])),
                initializer="zeros",
                dtype=self.bank_dtype,
                trainable=False,
                name="bank" if i == 0 else f"bank_{i}",
            )
            for i, (start, stop) in enumerate(self.shard_bounds())
        ]
        self.built = True

    @property
    def bank_shape(self):
        """(bank_size, D) of the whole bank."""
        return (self.bank_size, int(self.bank_shards[0].shape[-1]))

    def set_bank(self, features):
        """Stores `features` ([bank_size, D], any scale) L2-normalised as the bank.

        Shard by shard: beyond the weights, only one shard's rows are held at a time.
        """
        features = np.asarray(features)
        if features.shape != self.bank_shape:
            raise ValueError(
                f"The bank must have shape {self.bank_shape}. Received: "
                f"features.shape={features.shape}"
            )
        for weight, (start, stop) in zip(self.bank_shards, self.shard_bounds(), strict=True):
            rows = np.array(features[start:stop], dtype="float32")
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            weight.assign(rows.astype(self.bank_dtype, copy=False))
            del rows

    def call(self, features):
        # bank @ features^T, [rows, B]: the batch is transposed, never the bank (a
        # transposed bank is a copy of it per call, about 3x slower on CPU).
        features = ops.transpose(l2_normalize(ops.cast(features, "float32")))
        best = []
        for weight in self.bank_shards:
            similarities = ops.matmul(ops.cast(weight, "float32"), features)
            if self.k == 1:
                best.append(ops.max(similarities, axis=0))
            else:
                rows = min(self.k, int(weight.shape[0]))
                best.append(ops.top_k(ops.transpose(similarities), rows)[0])
        if self.k == 1:
            score = best[0]
            for other in best[1:]:
                score = ops.maximum(score, other)
            return score
        best = best[0] if len(best) == 1 else ops.concatenate(best, axis=-1)
        return ops.top_k(best, self.k)[0][:, self.k - 1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "bank_size": self.bank_size,
                "k": self.k,
                "bank_dtype": self.bank_dtype,
                "shards": self.shards,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # A model saved before the bank was sharded holds it as one weight.
        return super().from_config({"shards": 1, **config})
