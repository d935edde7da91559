"""Tests of the OLTR layers: shapes, weights, config, saving, bad arguments, numerics.

Every numeric check compares against the formulas written out in numpy (numpy_reference.py),
not against the code under test.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy_reference import (
    np_centre_update,
    np_cosine_logits,
    np_distances,
    np_meta_embedding,
    np_modulated_attention,
    np_squash,
)

from keras_oltr.layers import (
    CentroidMemory,
    CosineClassifier,
    MetaEmbedding,
    ModulatedAttention,
    pairwise_squared_distances,
    squash,
)
from keras_oltr.losses import large_margin_loss

RTOL, ATOL = 1e-5, 1e-6


def _attention_weights(layer):
    return {
        "theta_k": layer.theta.kernel.numpy()[0, 0],
        "theta_b": layer.theta.bias.numpy(),
        "phi_k": layer.phi.kernel.numpy()[0, 0],
        "phi_b": layer.phi.bias.numpy(),
        "g_k": layer.g.kernel.numpy()[0, 0],
        "g_b": layer.g.bias.numpy(),
        "out_k": layer.out_conv.kernel.numpy()[0, 0],
        "fc_k": layer.spatial_fc.kernel.numpy(),
        "fc_b": layer.spatial_fc.bias.numpy(),
    }


def _randomise_out_conv(layer, seed=0):
    rng = np.random.default_rng(seed)
    kernel = layer.out_conv.kernel
    kernel.assign(rng.normal(0.0, 0.5, kernel.shape).astype("float32"))


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("hw", [(7, 7), (4, 4), (3, 5)])
def test_modulated_attention_shapes_symbolic_and_eager(hw):
    h, w = hw
    layer = ModulatedAttention()
    symbolic = layer(keras.Input((h, w, 8)))
    assert tuple(symbolic.shape) == (None, h, w, 8)
    x = np.random.default_rng(0).normal(size=(2, h, w, 8)).astype("float32")
    assert tuple(layer(x).shape) == (2, h, w, 8)
    # The spatial mask covers exactly the H*W positions of this input.
    assert tuple(layer.spatial_fc.kernel.shape) == (h * w * 8, h * w)
    assert tuple(layer.theta.kernel.shape) == (1, 1, 8, 4)
    assert tuple(layer.out_conv.kernel.shape) == (1, 1, 4, 8)


def test_modulated_attention_reduction_ratio_sets_inner_channels():
    layer = ModulatedAttention(reduction_ratio=0.25)
    layer.build((None, 3, 3, 8))
    for conv in (layer.theta, layer.phi, layer.g):
        assert tuple(conv.kernel.shape) == (1, 1, 8, 2)


def test_meta_embedding_and_classifier_shapes():
    inputs = keras.Input((6,))
    meta = MetaEmbedding(3)(inputs)
    assert set(meta) == {
        "meta_embedding",
        "reachability",
        "memory_feature",
        "selector",
        "hallucination",
    }
    assert tuple(meta["meta_embedding"].shape) == (None, 6)
    assert tuple(meta["reachability"].shape) == (None,)
    assert tuple(meta["hallucination"].shape) == (None, 3)
    logits = CosineClassifier(3)(meta["meta_embedding"])
    assert tuple(logits.shape) == (None, 3)
    memory = CentroidMemory(3)
    assert tuple(memory(inputs).shape) == (3, 6)


# ----------------------------------------------------------------------------- weights


def test_weight_counts():
    memory = CentroidMemory(5)
    memory.build((None, 7))
    # Trainable so that stock fit hands them to the optimizer; only the large-margin
    # loss has a gradient for them (MetaEmbedding reads them through stop_gradient).
    assert memory.trainable_weights == [memory.centroids]
    assert len(memory.non_trainable_weights) == 0
    assert tuple(memory.centroids.shape) == (5, 7)
    np.testing.assert_array_equal(memory.centroids.numpy(), 0.0)

    meta = MetaEmbedding(5)
    meta.build((None, 7))
    trainable = {v.path.split("/")[-2] + "/" + v.name for v in meta.trainable_weights}
    assert trainable == {
        "hallucinator/kernel",
        "hallucinator/bias",
        "selector/kernel",
        "selector/bias",
        "centroid_memory/centroids",
    }
    assert meta.non_trainable_weights == []
    assert tuple(meta.hallucinator.kernel.shape) == (7, 5)
    assert tuple(meta.selector.kernel.shape) == (7, 7)

    classifier = CosineClassifier(5)
    classifier.build((None, 7))
    assert len(classifier.trainable_weights) == 1
    assert len(classifier.non_trainable_weights) == 0
    assert tuple(classifier.kernel.shape) == (5, 7)

    attention = ModulatedAttention()
    attention.build((None, 3, 5, 8))
    # theta, phi, g (kernel + bias), out_conv (kernel only), spatial_fc (kernel + bias).
    assert len(attention.trainable_weights) == 9
    assert attention.out_conv.bias is None
    np.testing.assert_array_equal(attention.out_conv.kernel.numpy(), 0.0)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (CentroidMemory(4, name="mem"), (2, 6)),
        (MetaEmbedding(4, reachability_scale=3.0, name="meta"), (2, 6)),
        (CosineClassifier(4, scale=8.0, name="cls"), (2, 6)),
        (ModulatedAttention(reduction_ratio=0.25, name="att"), (2, 3, 5, 8)),
    ],
    ids=lambda p: type(p).__name__ if isinstance(p, keras.layers.Layer) else "",
)
def test_config_round_trip(layer, input_shape):
    x = np.random.default_rng(1).normal(size=input_shape).astype("float32")
    layer.build(input_shape)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build(input_shape)
    clone.set_weights(layer.get_weights())
    if isinstance(layer, CentroidMemory):
        layer.set_centroids(np.arange(24, dtype="float32").reshape(4, 6))
        clone.set_weights(layer.get_weights())
        np.testing.assert_array_equal(clone(x), layer(x))
    else:
        if isinstance(layer, MetaEmbedding):
            values = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
            layer.memory.set_centroids(values)
            clone.memory.set_centroids(values)
        for got, want in zip(
            keras.tree.flatten(clone(x)), keras.tree.flatten(layer(x)), strict=True
        ):
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # Serialised through the registered name as well.
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == config


def _small_functional_model():
    inputs = keras.Input((3, 4, 8))
    x = ModulatedAttention(name="attention")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    meta = MetaEmbedding(3, name="meta")(x)
    logits = CosineClassifier(3, name="cls")(meta["meta_embedding"])
    return keras.Model(inputs, {"logits": logits, "reachability": meta["reachability"], "att": x})


def test_keras_save_and_reload_identical_outputs(tmp_path):
    model = _small_functional_model()
    _randomise_out_conv(model.get_layer("attention"))
    centroids = np.random.default_rng(3).normal(size=(3, 8)).astype("float32")
    model.get_layer("meta").memory.set_centroids(centroids)
    x = np.random.default_rng(4).normal(size=(5, 3, 4, 8)).astype("float32")
    expected = model(x)

    path = tmp_path / "layers.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.get_layer("meta").memory.centroids.numpy(), centroids)
    np.testing.assert_array_equal(
        reloaded.get_layer("attention").out_conv.kernel.numpy(),
        model.get_layer("attention").out_conv.kernel.numpy(),
    )
    got = reloaded(x)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- bad config


@pytest.mark.parametrize("cls", [CentroidMemory, MetaEmbedding, CosineClassifier])
@pytest.mark.parametrize("value, shown", [(0, "0"), (-1, "-1"), ("3", "'3'"), (2.0, "2.0")])
def test_bad_num_classes(cls, value, shown):
    with pytest.raises(ValueError, match=f"num_classes={shown}"):
        cls(value)


@pytest.mark.parametrize("scale", [0, -1.0])
def test_bad_classifier_scale(scale):
    with pytest.raises(ValueError, match=f"scale={scale}"):
        CosineClassifier(3, scale=scale)


def test_bad_reachability_scale():
    with pytest.raises(ValueError, match="reachability_scale=0"):
        MetaEmbedding(3, reachability_scale=0)


@pytest.mark.parametrize("ratio", [0, 2, -0.5, "abc", None])
def test_bad_reduction_ratio(ratio):
    with pytest.raises(ValueError, match=f"reduction_ratio={ratio}"):
        ModulatedAttention(reduction_ratio=ratio)


def test_set_centroids_shape_mismatch():
    memory = CentroidMemory(3)
    memory.build((None, 4))
    with pytest.raises(ValueError, match=r"values\.shape=\(3, 5\)"):
        memory.set_centroids(np.zeros((3, 5), "float32"))
    with pytest.raises(ValueError, match=r"values\.shape=\(4, 4\)"):
        memory.set_centroids(np.zeros((4, 4), "float32"))
    np.testing.assert_array_equal(memory.centroids.numpy(), 0.0)


@pytest.mark.parametrize(
    "layer",
    [CentroidMemory(3), MetaEmbedding(3), CosineClassifier(3)],
    ids=lambda x: type(x).__name__,
)
def test_wrong_input_rank_vector_layers(layer):
    with pytest.raises(ValueError, match=r"input_shape=\(None, 4, 5\)"):
        layer(keras.Input((4, 5)))


def test_modulated_attention_wrong_rank_and_unknown_spatial_dims():
    with pytest.raises(ValueError, match=r"rank 4.*input_shape=\(None, 4, 8\)"):
        ModulatedAttention()(keras.Input((4, 8)))
    with pytest.raises(ValueError, match=r"input_shape=\(None, None, None, 8\)"):
        ModulatedAttention()(keras.Input((None, None, 8)))
    with pytest.raises(ValueError, match=r"input_shape=\(None, 4, None, 8\)"):
        ModulatedAttention()(keras.Input((4, None, 8)))


# ----------------------------------------------------------------------------- numerics


def test_squash_and_cosine_logits_match_numpy():
    rng = np.random.default_rng(5)
    v = rng.normal(scale=3.0, size=(6, 5)).astype("float32")
    v[0] *= 1e-3  # a short vector: squash norm close to 0
    np.testing.assert_allclose(squash(v), np_squash(v), rtol=RTOL, atol=ATOL)
    norms = np.linalg.norm(np.asarray(squash(v)), axis=-1)
    np.testing.assert_allclose(
        norms, np.linalg.norm(v, axis=-1) / (1 + np.linalg.norm(v, axis=-1)), rtol=RTOL
    )

    layer = CosineClassifier(4, scale=16.0)
    layer.build((None, 5))
    w = rng.normal(scale=2.0, size=(4, 5)).astype("float32")
    layer.kernel.assign(w)
    np.testing.assert_allclose(layer(v), np_cosine_logits(v, w, 16.0), rtol=RTOL, atol=1e-5)
    # The row norm of W does not matter, only its direction.
    layer.kernel.assign(w * np.array([[1.0], [3.0], [0.1], [7.0]], "float32"))
    np.testing.assert_allclose(layer(v), np_cosine_logits(v, w, 16.0), rtol=RTOL, atol=1e-5)


def test_pairwise_squared_distances_match_numpy_and_are_non_negative():
    rng = np.random.default_rng(6)
    v = rng.normal(size=(5, 4)).astype("float32") * 100
    c = np.concatenate([v[:2], rng.normal(size=(2, 4)).astype("float32")])
    d = np.asarray(pairwise_squared_distances(v, c))
    assert (d >= 0).all()
    np.testing.assert_allclose(d, np_distances(v, c) ** 2, rtol=1e-4, atol=0.1)


def test_reachability_matches_numpy():
    rng = np.random.default_rng(7)
    memory = CentroidMemory(4)
    memory.build((None, 6))
    c = rng.normal(size=(4, 6)).astype("float32")
    memory.set_centroids(c)
    v = rng.normal(size=(5, 6)).astype("float32")
    gamma = np_distances(v, c).min(axis=1)
    np.testing.assert_allclose(memory.nearest_distance(v), gamma, rtol=RTOL)
    np.testing.assert_allclose(memory.reachability(v, scale=10.0), 10.0 / gamma, rtol=RTOL)
    np.testing.assert_allclose(memory.reachability(v, scale=2.5), 2.5 / gamma, rtol=RTOL)


def test_meta_embedding_matches_numpy():
    rng = np.random.default_rng(8)
    layer = MetaEmbedding(3, reachability_scale=10.0)
    layer.build((None, 5))
    c = rng.normal(size=(3, 5)).astype("float32")
    layer.memory.set_centroids(c)
    # Non-trivial biases so that a missing term shows.
    layer.hallucinator.bias.assign(rng.normal(size=(3,)).astype("float32"))
    layer.selector.bias.assign(rng.normal(size=(5,)).astype("float32"))
    v = rng.normal(size=(4, 5)).astype("float32")
    expected = np_meta_embedding(
        v,
        c,
        layer.hallucinator.kernel.numpy(),
        layer.hallucinator.bias.numpy(),
        layer.selector.kernel.numpy(),
        layer.selector.bias.numpy(),
        10.0,
    )
    got = layer(v)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


def test_modulated_attention_matches_numpy():
    rng = np.random.default_rng(9)
    layer = ModulatedAttention()
    f = rng.normal(size=(2, 3, 5, 8)).astype("float32")
    layer.build(f.shape)
    _randomise_out_conv(layer)
    # Sharper spatial mask than the default init gives, so MA is far from uniform.
    fc = layer.spatial_fc
    fc.kernel.assign(rng.normal(scale=0.3, size=fc.kernel.shape).astype("float32"))
    fc.bias.assign(rng.normal(size=fc.bias.shape).astype("float32"))
    expected = np_modulated_attention(f.astype(np.float64), _attention_weights(layer))
    got = np.asarray(layer(f))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-5)
    assert np.abs(got - f).max() > 1e-2  # not the identity any more


def _centroid_gradient(memory, v, labels, weight):
    """Gradient of the (attract-only) large-margin loss with respect to the centroids."""
    with tf.GradientTape() as tape:
        loss, _ = large_margin_loss(
            tf.constant(v), labels, memory.centroids, weight=weight, repel_weight=0.0
        )
    return tape.gradient(loss, memory.centroids.value).numpy()


@pytest.mark.parametrize("weight", [0.01, 1.0])
def test_centroid_update_matches_numpy(weight):
    """The centroids' gradient is the centre-loss step delta_j / B, for any loss weight."""
    rng = np.random.default_rng(10)
    memory = CentroidMemory(4)
    memory.build((None, 3))
    c = rng.normal(size=(4, 3)).astype("float32")
    memory.set_centroids(c)
    v = rng.normal(size=(7, 3)).astype("float32")
    labels = np.array([0, 0, 2, -1, 2, 2, 0])  # class 1 and 3 absent, one open-set -1
    got = _centroid_gradient(memory, v, labels, weight)
    np.testing.assert_allclose(got, np_centre_update(v, labels, c), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(got[[1, 3]], 0.0)
    # The -1 sample moves nothing: the same batch without it differs only through B.
    keep = labels >= 0
    without = _centroid_gradient(memory, v[keep], labels[keep], weight)
    np.testing.assert_allclose(got * len(labels), without * keep.sum(), rtol=RTOL, atol=ATOL)


def test_no_nan_when_feature_equals_centroid():
    memory = CentroidMemory(2)
    memory.build((None, 3))
    c = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]], "float32")
    memory.set_centroids(c)
    v = tf.constant(np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], "float32"))
    labels = np.array([0, 1])
    update = _centroid_gradient(memory, v.numpy(), labels, 1.0)
    assert np.isfinite(update).all()
    np.testing.assert_allclose(update, np_centre_update(v.numpy(), labels, c), atol=ATOL)
    np.testing.assert_array_equal(update[0], 0.0)
    with tf.GradientTape() as tape:
        tape.watch(v)
        reach = memory.reachability(v)
    grad = tape.gradient(reach, v).numpy()
    assert np.isfinite(np.asarray(reach)).all()
    assert np.isfinite(grad).all()
    # The second sample is an ordinary point: its gradient is the analytic one,
    # d(s / |v - c|)/dv = -s (v - c) / |v - c|^3.
    diff = v.numpy()[1] - c[1]
    np.testing.assert_allclose(grad[1], -10.0 * diff / np.linalg.norm(diff) ** 3, rtol=1e-4)

    meta = MetaEmbedding(2)
    meta.build((None, 3))
    meta.memory.set_centroids(c)
    with tf.GradientTape() as tape:
        tape.watch(v)
        out = meta(v)["meta_embedding"]
    grads = tape.gradient(out, [v, *meta.trainable_weights])
    assert np.isfinite(np.asarray(out)).all()
    # The centroids get no gradient from the meta-embedding (stop_gradient).
    centroid_index = 1 + meta.trainable_weights.index(meta.memory.centroids)
    assert grads[centroid_index] is None
    assert all(np.isfinite(g.numpy()).all() for g in grads if g is not None)


# ----------------------------------------------------------------------------- training


def test_modulated_attention_identity_at_init_and_moves_after_one_step():
    inputs = keras.Input((4, 4, 8))
    attention = ModulatedAttention(name="attention")
    x = attention(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(11)
    f = rng.normal(size=(8, 4, 4, 8)).astype("float32")
    y = rng.integers(0, 3, size=8)
    np.testing.assert_array_equal(attention(f), f)

    model.compile(
        keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(f, y, batch_size=8, epochs=1, verbose=0)
    assert np.abs(attention.out_conv.kernel.numpy()).max() > 0
    assert np.abs(np.asarray(attention(f)) - f).max() > 1e-6


def test_fit_step_moves_trainable_weights_not_centroids():
    inputs = keras.Input((5,))
    meta = MetaEmbedding(3, name="meta")(inputs)
    logits = CosineClassifier(3, name="cls")(meta["meta_embedding"])
    model = keras.Model(inputs, logits)
    rng = np.random.default_rng(12)
    c = rng.normal(size=(3, 5)).astype("float32")
    model.get_layer("meta").memory.set_centroids(c)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(
        keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = rng.normal(size=(8, 5)).astype("float32")
    model.fit(x, rng.integers(0, 3, size=8), batch_size=8, epochs=1, verbose=0)
    centroids = model.get_layer("meta").memory.centroids
    for old, new in zip(before, model.trainable_weights, strict=True):
        if new is not centroids:
            assert np.abs(new.numpy() - old).max() > 0, new.path
    # The classifier's loss has no gradient for the centroids: they stay put.
    np.testing.assert_array_equal(centroids.numpy(), c)
