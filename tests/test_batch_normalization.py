"""FusedBatchNormalization: the values of Keras' BatchNormalization, from a fused kernel.

Checked against the numpy formulas (numpy_reference.np_batch_norm_train) and against
`keras.layers.BatchNormalization` itself: outputs, input and weight gradients, moving
statistics, inference, mixed precision, saving.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy_reference import np_batch_norm_train

from keras_oltr.layers import FusedBatchNormalization

MOMENTUM, EPS = 0.9, 1e-5


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    layers = []
    for cls in (FusedBatchNormalization, keras.layers.BatchNormalization):
        layer = cls(momentum=MOMENTUM, epsilon=EPS)
        layer.build(shape)
        layers.append(layer)
    channels = shape[-1]
    weights = [
        rng.normal(1.0, 0.3, channels),  # gamma
        rng.normal(0.0, 0.3, channels),  # beta
        rng.normal(0.0, 0.5, channels),  # moving mean
        rng.uniform(0.5, 2.0, channels),  # moving variance
    ]
    for layer in layers:
        layer.set_weights([w.astype(np.float32) for w in weights])
    return layers, weights


def _train_call(layer, x, w):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * w)
    dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return y.numpy(), dx.numpy(), dgamma.numpy(), dbeta.numpy()


def test_training_step_matches_the_numpy_formulas_and_keras():
    shape = (6, 5, 7, 8)
    (fused, plain), (gamma, beta, mm, mv) = _pair(shape)
    rng = np.random.default_rng(1)
    x_np = rng.normal(2.0, 3.0, shape).astype(np.float32)
    w_np = rng.normal(size=shape).astype(np.float32)
    x, w = tf.constant(x_np), tf.constant(w_np)
    y, dx, dgamma, dbeta = _train_call(fused, x, w)
    y_ref, mean_ref, var_ref, input_gradient = np_batch_norm_train(
        x_np.astype(np.float64), gamma, beta, mm, mv, MOMENTUM, EPS
    )
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, input_gradient(w_np.astype(np.float64)), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), mean_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), var_ref, rtol=1e-5, atol=1e-6)
    # And the same as Keras' own layer, gradients of the weights included.
    y2, dx2, dgamma2, dbeta2 = _train_call(plain, x, w)
    np.testing.assert_allclose(y, y2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dx2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dgamma, dgamma2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dbeta, dbeta2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused.moving_variance.numpy(), plain.moving_variance.numpy(), 1e-6)


def test_inference_uses_the_moving_statistics_with_keras_code():
    (fused, plain), (gamma, beta, mm, mv) = _pair((4, 3, 3, 5))
    x = tf.random.normal((4, 3, 3, 5), seed=2)
    expected = (x.numpy() - mm) / np.sqrt(mv + EPS) * gamma + beta
    np.testing.assert_allclose(fused(x, training=False), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        fused(x, training=False), plain(x, training=False), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(fused.moving_mean.numpy(), mm, rtol=1e-7)  # not updated


def test_other_layouts_are_keras_code():
    (fused2, plain2), _ = _pair((4, 5))  # rank 2: the parent's code
    x2 = tf.random.normal((4, 5), seed=3)
    np.testing.assert_allclose(fused2(x2, training=True), plain2(x2, training=True), rtol=1e-5)


def test_frozen_layer_uses_moving_statistics():
    (fused, plain), _ = _pair((4, 3, 3, 5))
    fused.trainable = plain.trainable = False
    x = tf.random.normal((4, 3, 3, 5), seed=4)
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), rtol=1e-6)
    assert fused.moving_mean.numpy() == pytest.approx(plain.moving_mean.numpy())


def test_mixed_bfloat16_output_dtype_and_values():
    fused = FusedBatchNormalization(momentum=MOMENTUM, epsilon=EPS, dtype="mixed_bfloat16")
    plain = keras.layers.BatchNormalization(momentum=MOMENTUM, epsilon=EPS, dtype="mixed_bfloat16")
    x = tf.cast(tf.random.normal((4, 3, 3, 5), seed=5), tf.bfloat16)
    a, b = fused(x, training=True), plain(x, training=True)
    assert a.dtype == b.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(a, tf.float32), tf.cast(b, tf.float32), rtol=1e-2, atol=1e-2)


def test_saves_and_loads(tmp_path):
    inputs = keras.Input((3, 3, 5))
    model = keras.Model(inputs, FusedBatchNormalization(name="bn")(inputs))
    model.layers[-1].moving_mean.assign(np.arange(5, dtype=np.float32))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("bn"), FusedBatchNormalization)
    np.testing.assert_array_equal(loaded.get_layer("bn").moving_mean.numpy(), np.arange(5))
