"""Layer, loss and fit numerics on whichever backend Keras runs.

The main test run executes this module on TensorFlow; test_other_backends.py runs it
again in a subprocess with KERAS_BACKEND=jax (without the TensorFlow conftest) and
compares the fit losses of the two backends. Nothing here imports TensorFlow.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest
from keras import ops
from numpy_reference import (
    np_colour_jitter,
    np_cosine_logits,
    np_large_margin_feature_gradient,
    np_meta_embedding,
    np_modulated_attention,
    np_reference_centroid_gradient,
)

from keras_oltr import colour_jitter
from keras_oltr.layers import (
    CosineClassifier,
    MetaEmbedding,
    ModulatedAttention,
    NearestNeighbourScore,
    balanced_bank,
)
from keras_oltr.losses import large_margin_loss
from keras_oltr.models import build_oltr_model, build_plain_model
from keras_oltr.optimizers import CoupledSGD, layer_lr_multipliers

BACKEND = keras.backend.backend()
RTOL, ATOL = 1e-5, 1e-6
FIT_OUT = "OLTR_FIT_LOSSES_OUT"  # where the JAX run writes its fit losses


def _grads(fn, *args):
    """Gradients of the scalar fn(*args) with respect to every argument."""
    if BACKEND == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(fn, argnums=tuple(range(len(args))))(*args)]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(*tensors)
        return [g.numpy() for g in tape.gradient(value, tensors)]
    if BACKEND == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        fn(*tensors).backward()
        return [t.grad.numpy() for t in tensors]
    raise NotImplementedError(BACKEND)


def test_model_packages_do_not_import_tensorflow():
    if BACKEND == "tensorflow":
        pytest.skip("on the TensorFlow backend TensorFlow is imported on purpose")
    assert "tensorflow" not in sys.modules


def test_meta_embedding_and_classifier_match_numpy():
    rng = np.random.default_rng(0)
    meta = MetaEmbedding(4, reachability_scale=7.0)
    meta.build((None, 6))
    c = rng.normal(size=(4, 6)).astype("float32")
    meta.memory.set_centroids(c)
    for weight in meta.hallucinator.weights + meta.selector.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    v = rng.normal(size=(5, 6)).astype("float32")
    got = {k: ops.convert_to_numpy(t) for k, t in meta(v).items()}
    expected = np_meta_embedding(
        v.astype(np.float64),
        c,
        *(ops.convert_to_numpy(w) for w in meta.hallucinator.weights),
        *(ops.convert_to_numpy(w) for w in meta.selector.weights),
        7.0,
    )
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=ATOL, err_msg=key)

    classifier = CosineClassifier(4, scale=16.0)
    logits = ops.convert_to_numpy(classifier(got["meta_embedding"]))
    w = ops.convert_to_numpy(classifier.weights[0])
    w = w.T if w.shape[0] != 4 else w
    np.testing.assert_allclose(
        logits, np_cosine_logits(got["meta_embedding"], w, 16.0), rtol=1e-4, atol=1e-5
    )


def test_modulated_attention_matches_numpy():
    rng = np.random.default_rng(1)
    layer = ModulatedAttention()
    f = rng.normal(size=(2, 3, 4, 8)).astype("float32")
    layer.build(f.shape)
    for weight in layer.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
    weights = {
        "theta_k": layer.theta.kernel,
        "theta_b": layer.theta.bias,
        "phi_k": layer.phi.kernel,
        "phi_b": layer.phi.bias,
        "g_k": layer.g.kernel,
        "g_b": layer.g.bias,
        "out_k": layer.out_conv.kernel,
        "fc_k": layer.spatial_fc.kernel,
        "fc_b": layer.spatial_fc.bias,
    }
    weights = {k: ops.convert_to_numpy(v).astype(np.float64) for k, v in weights.items()}
    for key in ("theta_k", "phi_k", "g_k", "out_k"):
        weights[key] = weights[key][0, 0]
    expected = np_modulated_attention(f.astype(np.float64), weights)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(f)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("lam", [0.01, 1.0])
def test_large_margin_gradients_match_the_reference_rule(lam):
    rng = np.random.default_rng(2)
    c = rng.normal(scale=0.5, size=(4, 3)).astype("float32")
    v = rng.normal(scale=0.5, size=(8, 3)).astype("float32")
    labels = np.array([0, 0, 2, 1, 2, 2, -1, 1], "int32")  # class 3 absent, one open -1

    def loss(features, centroids):
        return large_margin_loss(features, labels, centroids, weight=lam)[0]

    d_v, d_c = _grads(loss, v, c)
    expected_c, repel_mean = np_reference_centroid_gradient(v, labels, c, lam)
    assert repel_mean < 10.0
    np.testing.assert_allclose(d_c, expected_c, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        d_v, np_large_margin_feature_gradient(v, labels, c, lam), rtol=1e-4, atol=1e-7
    )


@pytest.mark.parametrize("k", [1, 3])
def test_nearest_neighbour_score_matches_numpy(k):
    rng = np.random.default_rng(4)
    bank = rng.normal(size=(9, 5)).astype("float32") * rng.uniform(0.1, 10, (9, 1))
    layer = NearestNeighbourScore(9, k=k)
    layer.build((None, 5))
    layer.set_bank(bank)
    v = rng.normal(size=(6, 5)).astype("float32")
    v[0] = 3.0 * bank[4]  # the same direction as a bank row: similarity 1 for k = 1
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    expected = np.sort(unit(v.astype(np.float64)) @ unit(bank.astype(np.float64)).T, axis=1)
    got = ops.convert_to_numpy(layer(v))
    np.testing.assert_allclose(got, expected[:, -k], rtol=1e-5, atol=1e-6)
    if k == 1:
        np.testing.assert_allclose(got[0], 1.0, atol=1e-6)


def test_balanced_bank_caps_each_class_deterministically():
    labels = np.repeat(np.arange(3), [50, 7, 2])
    features = np.arange(len(labels), dtype="float32")[:, None] * np.ones((1, 4), "float32")
    bank, bank_labels = balanced_bank(features, labels, max_per_class=5, seed=1)
    assert np.bincount(bank_labels).tolist() == [5, 5, 2]
    np.testing.assert_array_equal(bank[:, 0].astype(int), np.sort(bank[:, 0]).astype(int))
    again, _ = balanced_bank(features, labels, max_per_class=5, seed=1)
    np.testing.assert_array_equal(bank, again)
    with pytest.raises(ValueError, match="max_per_class"):
        balanced_bank(features, labels, max_per_class=0)


def fit_losses(steps=3):
    """Per-step losses and final centroids of a stock fit of a tiny OLTR model.

    Every weight is set from a seeded numpy generator, so all backends start from the
    same model; data, batch order and optimizer are fixed.
    """
    rng = np.random.default_rng(3)
    options = {"width": 4, "stem": "small"}
    plain = build_plain_model(3, (12, 12, 1), backbone_options=options)
    model = build_oltr_model(
        3, (12, 12, 1), backbone_options=options, use_attention=True, stage1_model=plain
    )
    for weight in sorted(model.weights, key=lambda w: w.path):
        if weight.path.endswith(("moving_variance", "gamma")):
            value = np.ones(weight.shape)
        elif weight.path.endswith(("moving_mean", "beta")):
            value = np.zeros(weight.shape)
        else:
            value = rng.normal(scale=0.2, size=weight.shape)
        weight.assign(value.astype("float32"))
    x = rng.uniform(0, 255, (16 * steps, 12, 12, 1)).astype("float32")
    y = rng.integers(0, 3, 16 * steps).astype("int32")
    optimizer = CoupledSGD(
        0.05,
        momentum=0.9,
        coupled_weight_decay=5e-4,
        lr_multipliers=layer_lr_multipliers(model, {"backbone": 0.5, "centroids": 2.0}),
    )
    model.compile(optimizer, large_margin_weight=0.1)
    losses = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(
            [float(logs["ce"]), float(logs["large_margin"])]
        )
    )
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    centroids = ops.convert_to_numpy(model.centroid_memory.centroids)
    return {"losses": losses, "centroids": centroids.tolist()}


def test_stock_fit_trains_and_moves_centroids():
    result = fit_losses()
    losses = np.asarray(result["losses"])
    assert losses.shape == (3, 2) and np.isfinite(losses).all()
    if os.environ.get(FIT_OUT):
        with open(os.environ[FIT_OUT], "w", encoding="utf-8") as f:
            json.dump(result, f)


ORDERS = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]


def _jitter_draws(rng, batch):
    """Per image: (flip, factors of the ops, op order); every order, strong factors."""
    return [(i % 2 == 1, rng.uniform(0.6, 1.4, 3), ORDERS[i % 6]) for i in range(batch)]


def _parameters(draws):
    """colour_jitter's layout: flip, then (factor, gray weight, mean weight) per step."""
    rows = []
    for flip, factors, order in draws:
        row = [float(flip)]
        for op in order:
            row += [factors[op], float(op == 2), float(op == 1)]
        rows.append(row)
    return np.array(rows, np.float32)


def _expected(images, draws):
    """Mirror where drawn, then the ops from their definitions (numpy_reference)."""
    return np.stack(
        [
            np_colour_jitter(image[:, ::-1] if flip else image, factors, order)
            for image, (flip, factors, order) in zip(images, draws, strict=True)
        ]
    )


def test_flip_and_jitter_matches_numpy_per_image():
    # The train step's flip + jitter of a batch (keras.ops): each image its own
    # flip, factors and op order, clipping between ops (so the order matters).
    rng = np.random.default_rng(4)
    images = rng.uniform(0, 255, (12, 9, 7, 3)).astype(np.float32)
    draws = _jitter_draws(rng, 12)
    got = ops.convert_to_numpy(
        colour_jitter.flip_and_jitter(ops.convert_to_tensor(images), _parameters(draws))
    )
    expected = _expected(images, draws)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    other = _expected(images, [(f, k, o[::-1]) for f, k, o in draws])
    assert np.abs(other - expected).max() > 1.0


def _rgb_models(count):
    """`count` tiny OLTR models on 12x12 RGB with the same weights, compiled alike."""
    models = []
    for _ in range(count):
        options = {"width": 4, "stem": "small"}
        plain = build_plain_model(3, (12, 12, 3), backbone_options=options)
        model = build_oltr_model(3, (12, 12, 3), backbone_options=options, stage1_model=plain)
        model.compile(CoupledSGD(0.05, momentum=0.9), large_margin_weight=0.1)
        models.append(model)
    for model in models[1:]:
        model.set_weights(models[0].get_weights())
    return models


def test_train_step_applies_a_deferred_jitter():
    # fit on ({"images", "jitter"}, labels) trains exactly as fit on the jittered images.
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 255, (16, 12, 12, 3)).astype(np.float32)
    draws = _jitter_draws(rng, 16)
    parameters = _parameters(draws)
    labels = rng.integers(0, 3, 16).astype("int32")
    jittered = _expected(images, draws).astype(np.float32)
    deferred, direct, unjittered = _rgb_models(3)
    batch = {colour_jitter.IMAGES_KEY: images, colour_jitter.JITTER_KEY: parameters}
    logs = deferred.fit(batch, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    expected = direct.fit(jittered, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(logs.history["loss"], expected.history["loss"], rtol=1e-4)
    for a, b in zip(deferred.get_weights(), direct.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # The same steps on the un-jittered images end elsewhere: the jitter mattered.
    unjittered.fit(images, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert (
        max(
            np.abs(a - b).max()
            for a, b in zip(deferred.get_weights(), unjittered.get_weights(), strict=True)
        )
        > 1e-3
    )
