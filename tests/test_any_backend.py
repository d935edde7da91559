"""Layer, loss and fit numerics on whichever backend Keras runs.

The main test run executes this module on TensorFlow; test_other_backends.py runs it
again in a subprocess with KERAS_BACKEND=jax (without the TensorFlow conftest) and
compares the fit losses of the two backends. Nothing here imports TensorFlow.
"""

import json
import os
import sys
import time
import tracemalloc

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

from keras_oltr import colour_jitter, open_scores
from keras_oltr.layers import (
    CosineClassifier,
    MetaEmbedding,
    ModulatedAttention,
    NearestNeighbourScore,
    balanced_bank,
    bank_cap,
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


@pytest.mark.parametrize("k, shards", [(1, 1), (1, 3), (4, 3), (4, 5)])
@pytest.mark.parametrize("bank_dtype", ["float32", "float16"])
def test_sharded_bank_matches_numpy_and_reloads(tmp_path, k, shards, bank_dtype):
    rng = np.random.default_rng(6)
    bank = rng.normal(size=(11, 5)).astype("float32") * rng.uniform(0.1, 10, (11, 1))
    inputs = keras.Input((5,))
    layer = NearestNeighbourScore(11, k=k, bank_dtype=bank_dtype, shards=shards)
    model = keras.Model(inputs, layer(inputs))
    layer.set_bank(bank)
    assert len(layer.non_trainable_weights) == shards and not layer.trainable_weights
    assert {w.dtype for w in layer.weights} == {bank_dtype}
    assert sum(int(w.shape[0]) for w in layer.weights) == 11
    v = rng.normal(size=(6, 5)).astype("float32")
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    stored = unit(bank.astype(np.float64)).astype(bank_dtype).astype(np.float64)
    expected = np.sort(unit(v.astype(np.float64)) @ stored.T, axis=1)[:, -k]
    got = ops.convert_to_numpy(model(v))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    if bank_dtype == "float16":  # storage rounding moves a cosine by < 1e-3
        exact = np.sort(unit(v.astype(np.float64)) @ unit(bank.astype(np.float64)).T, axis=1)
        np.testing.assert_allclose(got, exact[:, -k], atol=1e-3)
    path = tmp_path / "bank.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(ops.convert_to_numpy(reloaded(v)), got)
    assert reloaded.layers[-1].get_config() == layer.get_config()


def test_bank_saved_before_sharding_loads_as_one_weight():
    config = NearestNeighbourScore(9000, k=2).get_config()
    assert config["shards"] == 3 and config["bank_dtype"] == "float32"
    del config["shards"], config["bank_dtype"]  # the config of an older file
    layer = NearestNeighbourScore.from_config(config)
    layer.build((None, 4))
    assert layer.shards == 1 and [tuple(w.shape) for w in layer.weights] == [(9000, 4)]
    with pytest.raises(ValueError, match="bank_dtype='int8'"):
        NearestNeighbourScore(9, bank_dtype="int8")
    with pytest.raises(ValueError, match="shards=10"):
        NearestNeighbourScore(9, shards=10)


def test_set_bank_holds_one_shard_at_a_time():
    bank = np.random.default_rng(7).normal(size=(8192, 64)).astype("float32")
    layer = NearestNeighbourScore(8192, shards=8)
    layer.build((None, 64))
    tracemalloc.start()
    layer.set_bank(bank)
    final, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Beyond what stays (the weights' new buffers, where the backend allocates them
    # through numpy), set_bank holds one shard's normalised rows at a time: 1/8 of
    # the bank, not whole-bank copies (a float32 copy, the normalised result, the
    # assigned tensor).
    assert peak - final < 0.3 * bank.nbytes


def test_bank_cap_lowers_the_per_class_cap_to_fit_the_total():
    sizes = np.array([300, 40, 12, 7, 3, 1])
    for total in (6, 20, 40, 100, 163, 500):
        cap = bank_cap(sizes, 100, total)
        # Independent form: the largest c <= 100 with sum(min(n, c)) <= total.
        fits = [c for c in range(1, 101) if np.minimum(sizes, c).sum() <= total]
        assert cap == max(fits), total
    assert bank_cap(sizes, 100) == 100
    labels = np.random.default_rng(8).permutation(np.repeat(np.arange(6), sizes))
    features = np.arange(labels.size, dtype="float32")[:, None]
    bank, bank_labels = balanced_bank(features, labels, 100, seed=3, max_total=40)
    cap = bank_cap(sizes, 100, 40)
    np.testing.assert_array_equal(np.bincount(bank_labels), np.minimum(sizes, cap))
    assert len(bank) <= 40
    np.testing.assert_array_equal(labels[bank[:, 0].astype(int)], bank_labels)
    with pytest.raises(ValueError, match="max_total=5"):
        balanced_bank(features, labels, 100, max_total=5)


def _reference_balanced_rows(labels, max_per_class, seed):
    """The bank's rows written plainly: one label scan per class."""
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == label)
        if len(rows) > max_per_class:
            rows = np.sort(rng.choice(rows, max_per_class, replace=False))
        keep.append(rows)
    return np.concatenate(keep)


@pytest.mark.parametrize("seed", range(4))
def test_balanced_bank_is_the_reference_choice_draw_for_draw(seed):
    rng = np.random.default_rng(200 + seed)
    ids = rng.choice(np.arange(-1, 30), 8, replace=False)  # -1: unlabelled, dropped
    labels = rng.permutation(np.repeat(ids, rng.integers(1, 40, 8)))
    if np.all(labels < 0):
        labels[0] = 3
    features = rng.normal(size=(labels.size, 3))
    bank, bank_labels = balanced_bank(features, labels, 6, seed=seed)
    rows = _reference_balanced_rows(labels, 6, seed)
    np.testing.assert_array_equal(bank, features[rows])
    np.testing.assert_array_equal(bank_labels, labels[rows])


def test_balanced_bank_is_linear_in_the_images():
    # MS1M-LT at a quarter of its classes (18,625; 1..598 images, 384,778 in all), a
    # cap every class over 5 meets. One label scan per class took 3.2 s of CPU here.
    counts = np.maximum(1, (598 * np.arange(1, 18_626) ** -0.39).astype(int))
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(counts.size), counts))
    features = np.zeros((labels.size, 2), "float32")
    start = time.process_time()
    _, bank_labels = balanced_bank(features, labels, 5)
    assert time.process_time() - start < 1.0
    np.testing.assert_array_equal(np.bincount(bank_labels), np.minimum(counts, 5))


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


def test_open_scores_of_numpy_outputs_match_numpy():
    # Evaluation hands the scores numpy outputs on every backend; `ndarray * Tensor`
    # fails on PyTorch, so this runs there too (test_other_backends.py).
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=3.0, size=(4, 6)).astype("float32")
    meta = rng.normal(size=(4, 3)).astype("float32")
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    outputs = {"logits": logits, "probabilities": probabilities, "meta_embedding": meta}
    context = {"reachability_scale": 10.0}
    scores = open_scores.compute_scores(outputs, context, scale_grid=(1.0, 10.0))
    got = {name: ops.convert_to_numpy(value) for name, value in scores.items()}
    np.testing.assert_allclose(got["msp"], probabilities.max(axis=1), rtol=1e-6)
    m = np.linalg.norm(meta.astype(np.float64), axis=1)
    for scale in (1.0, 10.0):
        new = logits * (scale / 10.0) * ((1 + m) / (1 + m * scale / 10.0))[:, None]
        expected = (np.exp(new) / np.exp(new).sum(axis=1, keepdims=True)).max(axis=1)
        np.testing.assert_allclose(
            got[open_scores.rescaled_key(scale)], expected, rtol=1e-5, err_msg=str(scale)
        )
    np.testing.assert_allclose(got[open_scores.rescaled_key(10.0)], got["msp"], rtol=1e-5)


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
