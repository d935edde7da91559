"""One OLTR stage-2 train step on one JAX device and data-parallel over two.

Run by tests/test_other_backends.py as

    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \
        python tests/data_parallel_step.py OUT.npz

It trains one step of a tiny OLTR model (large-margin loss on, per-class counts
and repel term over the batch) on a fixed global batch of 16, first with no
distribution (one device), then, from the same weights, under the parallelism that
`keras_oltr.distribute.make_strategy("auto")` chooses on two devices
(`keras.distribution.DataParallel`, 8 images per device). It writes both runs'
logs and every weight after the step (centroid memory and batch-norm statistics
included) to OUT.npz; the test compares them.
"""

import sys

import keras
import numpy as np

from keras_oltr.distribute import make_strategy, num_data_replicas
from keras_oltr.layers import FusedBatchNormalization
from keras_oltr.models import build_oltr_model, build_plain_model, register_backbone
from keras_oltr.optimizers import CoupledSGD, layer_lr_multipliers

BACKBONE = "two_conv_test"
CLASSES, SHAPE, BATCH = 3, (12, 12, 1), 16


@register_backbone(BACKBONE)
def two_conv(input_shape):
    """Two conv + batch-norm + ReLU blocks: a ResNet's layers, seconds to compile."""
    images = keras.Input(input_shape)
    x = images / 255.0
    for i, filters in enumerate((4, 8)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(FusedBatchNormalization(momentum=0.9, name=f"bn{i}")(x))
    return keras.Model(images, x, name="backbone")


def _model():
    plain = build_plain_model(CLASSES, SHAPE, backbone=BACKBONE)
    return build_oltr_model(CLASSES, SHAPE, backbone=BACKBONE, stage1_model=plain)


def _step(model, weights, x, y):
    """Sets `weights`, compiles as stage 2 does, trains one step; (logs, weights after)."""
    model.set_weights(weights)
    optimizer = CoupledSGD(
        0.05,
        momentum=0.9,
        coupled_weight_decay=5e-4,
        lr_multipliers=layer_lr_multipliers(model, {"backbone": 0.5, "centroids": 2.0}),
    )
    model.compile(optimizer, large_margin_weight=0.1)
    logs = model.train_on_batch(x, y, return_dict=True)
    return {k: float(v) for k, v in logs.items()}, [np.asarray(w) for w in model.get_weights()]


def main(out):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, (BATCH, *SHAPE)).astype("float32")
    y = np.array([0] * 9 + [1] * 5 + [2] * 2, "int32")  # unequal class counts
    rng.shuffle(y)

    single = _model()
    weights = []
    for weight in single.weights:  # every weight from one seeded generator
        if weight.path.endswith(("moving_variance", "gamma")):
            value = np.ones(weight.shape)
        elif weight.path.endswith(("moving_mean", "beta")):
            value = np.zeros(weight.shape)
        else:
            value = rng.normal(scale=0.2, size=weight.shape)
        weights.append(value.astype("float32"))
    single_logs, single_after = _step(single, weights, x, y)

    strategy = make_strategy("auto")  # sets DataParallel over the two host devices
    distribution = keras.distribution.distribution()
    parallel = _model()
    parallel_logs, parallel_after = _step(parallel, weights, x, y)
    centroids = parallel.centroid_memory.centroids.value
    moved = [not np.array_equal(a, b) for a, b in zip(weights, single_after, strict=True)]
    np.savez(
        out,
        distribution=type(distribution).__name__,
        replicas=num_data_replicas(strategy),
        centroid_devices=len(centroids.sharding.device_set),
        single_logs=np.array([single_logs[k] for k in sorted(single_logs)]),
        parallel_logs=np.array([parallel_logs[k] for k in sorted(parallel_logs)]),
        log_names=np.array(sorted(single_logs)),
        names=np.array([w.path for w in parallel.weights]),
        moved=np.array(moved),
        **{f"single_{i}": w for i, w in enumerate(single_after)},
        **{f"parallel_{i}": w for i, w in enumerate(parallel_after)},
    )


if __name__ == "__main__":
    main(sys.argv[1])
