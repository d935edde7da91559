"""Tests of the model builders, stage-1 initialisation and OLTR training with stock fit.

Models are tiny (ResNet-10 width 4-8, inputs 16-64 px); single train steps run eagerly
(run_eagerly=True) because tracing the step costs far more than running it on CPU.
The compiled path is exercised by the distributed fit test.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_oltr import data
from keras_oltr.inference import add_feature_bank
from keras_oltr.layers import bank_rows
from keras_oltr.models import (
    OLTRModel,
    build_oltr_model,
    build_plain_model,
    get_backbone,
    init_from_stage1,
    list_backbones,
    with_nearest_neighbour_score,
)
from keras_oltr.optimizers import CoupledSGD, layer_lr_multipliers

SMALL = {"width": 8, "stem": "small"}
TINY = {"width": 4, "stem": "small"}
PLAIN_KEYS = {"logits", "probabilities", "direct_feature"}
OLTR_KEYS = PLAIN_KEYS | {"reachability", "meta_embedding", "memory_feature", "selector"}


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_large_margin_terms(v, y, c):
    """attract, repel mean, and the centroid gradients of the reference rule (float64)."""
    v, c = v.astype(np.float64), c.astype(np.float64)
    b, k = len(y), len(c)
    sq = ((v[:, None] - c[None]) ** 2).sum(-1)
    own = np.eye(k, dtype=bool)[y]
    attract = sq[own].sum() / (2 * b)
    repel_mean = sq[~own].sum() / (b * k)
    delta = np.stack([(c[j] - v[y == j]).sum(0) / (1 + (y == j).sum()) for j in range(k)]) / b
    # d repel_mean / d c_j = sum_{n: y_n != j} 2 (c_j - v_n) / (B K); repel = m - mean.
    repel_grad = np.stack([-2.0 * (c[j] - v[y != j]).sum(0) / (b * k) for j in range(k)])
    return attract, repel_mean, delta, repel_grad


def np_cross_entropy(y, logits, log_prior=None):
    z = logits.astype(np.float64) + (0.0 if log_prior is None else log_prior)
    z = z - z.max(-1, keepdims=True)
    return -(z - np.log(np.exp(z).sum(-1, keepdims=True)))[np.arange(len(y)), y]


def _images(shape, batch=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, *shape)).astype("float32")


# ----------------------------------------------------------------------------- builders


def test_backbone_registry():
    assert {"resnet10", "resnet50", "resnet152"} <= set(list_backbones())
    with pytest.raises(ValueError, match="name='nope'"):
        get_backbone("nope", (32, 32, 3))
    with pytest.raises(ValueError, match="stem='tiny'"):
        get_backbone("resnet10", (32, 32, 3), stem="tiny")
    with pytest.raises(ValueError, match="weights='imagenet'"):
        get_backbone("resnet10", (32, 32, 3), weights="imagenet")


@pytest.mark.parametrize(
    "input_shape, options, feature_map",
    [((28, 28, 1), SMALL, (4, 4, 64)), ((64, 64, 3), {"width": 4}, (2, 2, 32))],
    ids=["small-stem", "imagenet-stem"],
)
def test_plain_model_outputs(input_shape, options, feature_map):
    model = build_plain_model(5, input_shape, backbone_options=options)
    assert isinstance(model, OLTRModel)
    assert tuple(model.get_layer("backbone").output.shape) == (None, *feature_map)
    out = model(_images(input_shape, batch=3))
    assert set(out) == PLAIN_KEYS
    assert tuple(out["logits"].shape) == (3, 5)
    assert tuple(out["direct_feature"].shape) == (3, feature_map[-1])
    np.testing.assert_allclose(
        out["probabilities"], np_softmax(np.asarray(out["logits"])), rtol=1e-5, atol=1e-7
    )
    # The classifier has a bias at stage 1 and sees the pooled feature.
    kernel, bias = model.get_layer("classifier").get_weights()
    assert kernel.shape == (feature_map[-1], 5) and bias.shape == (5,)
    assert model.centroid_memory is None


@pytest.mark.parametrize(
    "input_shape, options, use_attention, use_fc",
    [
        ((28, 28, 1), SMALL, True, False),
        ((28, 28, 1), SMALL, False, True),
        ((64, 64, 3), {"width": 4}, True, True),
    ],
    ids=["small-att", "small-fc", "imagenet-att-fc"],
)
def test_oltr_model_outputs(input_shape, options, use_attention, use_fc):
    model = build_oltr_model(
        5,
        input_shape,
        backbone_options=options,
        use_attention=use_attention,
        use_fc=use_fc,
        feature_dim=16,
    )
    names = {layer.name for layer in model.layers}
    assert ("modulated_attention" in names) == use_attention
    assert ("feature_fc" in names) == use_fc
    channels = model.get_layer("backbone").output.shape[-1]
    dim = 16 if use_fc else channels
    rng = np.random.default_rng(1)
    centroids = rng.normal(size=(5, dim)).astype("float32")
    model.centroid_memory.set_centroids(centroids)

    out = model(_images(input_shape, batch=3))
    assert set(out) == OLTR_KEYS
    expected = {
        "logits": (3, 5),
        "probabilities": (3, 5),
        "reachability": (3,),
        "direct_feature": (3, dim),
        "meta_embedding": (3, dim),
        "memory_feature": (3, dim),
        "selector": (3, dim),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    v = np.asarray(out["direct_feature"], np.float64)
    gamma = np.sqrt(((v[:, None] - centroids[None]) ** 2).sum(-1)).min(-1)
    np.testing.assert_allclose(out["reachability"], 10.0 / gamma, rtol=1e-5)
    np.testing.assert_allclose(
        out["probabilities"], np_softmax(np.asarray(out["logits"])), rtol=1e-5, atol=1e-7
    )
    if use_fc:
        assert (v >= 0).all()  # ReLU projection


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="num_classes=0"):
        build_plain_model(0, (28, 28, 1), backbone_options=SMALL)
    with pytest.raises(ValueError, match=r"input_shape=\(28, 28\)"):
        build_oltr_model(3, (28, 28), backbone_options=SMALL)
    with pytest.raises(ValueError, match="reachability_scale=0"):
        build_oltr_model(3, (28, 28, 1), backbone_options=SMALL, reachability_scale=0)
    with pytest.raises(ValueError, match="name='resnet11'"):
        build_plain_model(3, (28, 28, 1), backbone="resnet11")


# ----------------------------------------------------------------------------- stage 1 -> 2


def test_init_from_stage1_copies_backbone_and_hallucinator():
    rng = np.random.default_rng(2)
    stage1 = build_plain_model(4, (16, 16, 1), backbone_options=TINY)
    backbone1 = stage1.get_layer("backbone")
    # Move every stage-1 weight (BN statistics included) away from a fresh init.
    backbone1.set_weights(
        [np.abs(w + rng.normal(0, 0.1, w.shape)).astype("float32") for w in backbone1.get_weights()]
    )
    classifier = stage1.get_layer("classifier")
    classifier.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in classifier.get_weights()]
    )

    stage2 = build_oltr_model(4, (16, 16, 1), backbone_options=TINY, stage1_model=stage1)
    for a, b in zip(
        backbone1.get_weights(), stage2.get_layer("backbone").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    hallucinator = stage2.get_layer("meta_embedding").hallucinator
    for a, b in zip(classifier.get_weights(), hallucinator.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    # The same through the function on a fresh model.
    fresh = build_oltr_model(4, (16, 16, 1), backbone_options=TINY, use_attention=False)
    init_from_stage1(fresh, stage1)
    np.testing.assert_array_equal(
        fresh.get_layer("meta_embedding").hallucinator.kernel.numpy(), classifier.kernel.numpy()
    )
    x = _images((16, 16, 1), batch=2)
    np.testing.assert_allclose(fresh.get_layer("backbone")(x), backbone1(x), rtol=1e-5, atol=1e-5)


def test_init_from_stage1_mismatch():
    stage1 = build_plain_model(4, (16, 16, 1), backbone_options=TINY)
    with pytest.raises(ValueError, match="backbone"):
        build_oltr_model(4, (16, 16, 1), backbone_options=SMALL, stage1_model=stage1)
    # Same backbone, but a use_fc projection of another width feeds the hallucinator.
    with pytest.raises(ValueError, match="hallucinator"):
        build_oltr_model(
            4, (16, 16, 1), backbone_options=TINY, use_fc=True, feature_dim=8, stage1_model=stage1
        )
    with pytest.raises(ValueError, match="hallucinator"):
        build_oltr_model(5, (16, 16, 1), backbone_options=TINY, stage1_model=stage1)


# ----------------------------------------------------------------------------- gradients


def test_gradient_flow_and_no_classifier_gradient_to_centroids():
    model = build_oltr_model(
        3, (16, 16, 1), backbone_options=TINY, use_attention=True, use_fc=True, feature_dim=8
    )
    rng = np.random.default_rng(3)
    memory = model.centroid_memory
    memory.set_centroids(rng.normal(size=(3, 8)).astype("float32"))
    x, y = _images((16, 16, 1), batch=6), np.array([0, 1, 2, 0, 1, 2])
    watched = {
        "hallucinator": model.get_layer("meta_embedding").hallucinator.kernel,
        "selector": model.get_layer("meta_embedding").selector.kernel,
        "classifier": model.get_layer("classifier").kernel,
        "out_conv": model.get_layer("modulated_attention").out_conv.kernel,
        "feature_fc": model.get_layer("feature_fc").kernel,
        "backbone_stem": model.get_layer("backbone").get_layer("stem_conv").kernel,
        "backbone_last": model.get_layer("backbone").get_layer("stage4_block1_2_conv").kernel,
    }
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(memory.centroids.value)
        out = model(x, training=True)
        ce = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(y, out["logits"], from_logits=True)
        )
    for name, variable in watched.items():
        grad = tape.gradient(ce, variable)
        assert grad is not None, name
        assert np.abs(grad.numpy()).max() > 0, name
    centroid_grad = tape.gradient(ce, memory.centroids.value)
    assert centroid_grad is None or np.all(centroid_grad.numpy() == 0)


# ----------------------------------------------------------------------------- train_step


def _known_state_model(use_attention=True):
    model = build_oltr_model(3, (16, 16, 1), backbone_options=TINY, use_attention=use_attention)
    x = _images((16, 16, 1), batch=8, seed=4)
    y = np.array([0, 1, 2, 0, 1, 0, 0, 2])
    v = np.asarray(model(x, training=True)["direct_feature"])
    # Centroids near the class means, so that the repel hinge is active (mean < margin).
    rng = np.random.default_rng(5)
    means = np.stack([v[y == j].mean(0) for j in range(3)])
    model.centroid_memory.set_centroids(
        (means + rng.normal(0, 0.05, means.shape)).astype("float32")
    )
    return model, x, y


@pytest.mark.parametrize("lam", [0.01, 1.0])
def test_train_step_centroid_update_matches_numpy(lam):
    """One stock-fit step moves the centroids by the reference's rule.

    Before momentum and learning rate, the centroid gradient is
    delta_j / B (the centre-loss step, NOT scaled by lambda)
    + lambda * 0.01 * d repel / dc_j (scaled by lambda) + wd * c (coupled decay).
    """
    model, x, y = _known_state_model()
    # lr and wd larger than the reference values so that each term of the step is far
    # above the float32 rounding of the centroids (|c| ~ 1, ulp ~ 1e-7).
    lr, wd, mult = 0.5, 0.01, 0.5
    optimizer = CoupledSGD(
        lr,
        momentum=0.9,
        coupled_weight_decay=wd,
        lr_multipliers=layer_lr_multipliers(model, {"backbone": 0.0, "centroids": mult}),
    )
    model.compile(optimizer, large_margin_weight=lam, run_eagerly=True)
    c = model.centroid_memory.centroids.numpy().astype(np.float64)
    out = model(x, training=True)
    v = np.asarray(out["direct_feature"])
    attract, repel_mean, delta, repel_grad = np_large_margin_terms(v, y, c)
    assert repel_mean < 10.0  # the hinge is active: the repel gradient is in play
    backbone = model.get_layer("backbone")
    backbone_before = [w.numpy().copy() for w in backbone.trainable_weights]
    classifier_before = model.get_layer("classifier").kernel.numpy().copy()

    logs = model.train_on_batch(x, y, return_dict=True)

    terms = [lr * mult * delta, lr * mult * lam * 0.01 * repel_grad, lr * mult * wd * c]
    expected_step = -sum(terms)
    got_step = model.centroid_memory.centroids.numpy() - c
    np.testing.assert_allclose(got_step, expected_step, rtol=1e-4, atol=1e-7)
    # Leaving out any one term would fail the comparison above.
    for term in terms:
        assert np.abs(term).max() > 1e-6
    if lam != 1.0:  # the rule that scales the centre-loss step by lambda is not ours
        wrong = -(lam * terms[0] + terms[1] + terms[2])
        assert not np.allclose(got_step, wrong, rtol=1e-4, atol=1e-7)

    ce = np_cross_entropy(y, np.asarray(out["logits"])).mean()
    lm = attract + 0.01 * (10.0 - repel_mean)
    np.testing.assert_allclose(logs["ce"], ce, rtol=1e-5)
    np.testing.assert_allclose(logs["large_margin"], lm, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], ce + lam * lm, rtol=1e-5)

    for old, new in zip(backbone_before, backbone.trainable_weights, strict=True):
        np.testing.assert_array_equal(new.numpy(), old)
    assert np.abs(model.get_layer("classifier").kernel.numpy() - classifier_before).max() > 0


@pytest.mark.parametrize("lam", [0.01, 1.0])
def test_train_step_centroid_update_without_repel_or_decay(lam):
    """Hinge inactive (margin 0), no decay: the step is exactly -lr * delta / B, any lambda."""
    model, x, y = _known_state_model(use_attention=False)
    lr = 0.5
    model.compile(
        keras.optimizers.SGD(lr, momentum=0.9),
        large_margin_weight=lam,
        margin=0.0,
        run_eagerly=True,
    )
    c = model.centroid_memory.centroids.numpy().astype(np.float64)
    v = np.asarray(model(x, training=True)["direct_feature"])
    _, _, delta, _ = np_large_margin_terms(v, y, c)
    assert np.abs(lr * delta).max() > 1e-4
    model.train_on_batch(x, y)
    np.testing.assert_allclose(
        model.centroid_memory.centroids.numpy() - c, -lr * delta, rtol=1e-4, atol=1e-6
    )


def test_plain_model_train_step_balanced_softmax():
    model = build_plain_model(3, (16, 16, 1), backbone_options=TINY)
    counts = [100, 10, 1]
    model.compile(keras.optimizers.SGD(0.1), tau=1.0, class_counts=counts, run_eagerly=True)
    x, y = _images((16, 16, 1), batch=6, seed=6), np.array([0, 1, 2, 2, 1, 0])
    logits = np.asarray(model(x, training=True)["logits"])
    logs = model.train_on_batch(x, y, return_dict=True)
    assert "large_margin" not in logs
    log_prior = np.log(np.array(counts) / 111.0)
    np.testing.assert_allclose(logs["ce"], np_cross_entropy(y, logits, log_prior).mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], logs["ce"], rtol=1e-6)
    assert not np.isclose(logs["ce"], np_cross_entropy(y, logits).mean(), rtol=1e-3)


def test_compile_rejects_bad_arguments():
    model = build_plain_model(3, (16, 16, 1), backbone_options=TINY)
    with pytest.raises(ValueError, match="class_counts=None"):
        model.compile("sgd", tau=1.0)
    with pytest.raises(ValueError, match="tau=-1"):
        model.compile("sgd", tau=-1.0, class_counts=[1, 2, 3])
    with pytest.raises(ValueError, match="'backbon'"):
        layer_lr_multipliers(model, {"backbon": 0.1})
    with pytest.raises(ValueError, match="coupled_weight_decay=-0.1"):
        CoupledSGD(0.1, coupled_weight_decay=-0.1)
    with pytest.raises(ValueError, match="classifier=-1"):
        CoupledSGD(0.1, lr_multipliers={"classifier": -1.0})
    with pytest.raises(ValueError, match="optimizer"):
        model.compile("sgd", weight_decay=0.1)
    with pytest.raises(ValueError, match="'classifer'"):
        model.compile(CoupledSGD(0.1, lr_multipliers={"classifer": 2.0}))


def test_compile_builds_optimizer_with_centroid_slot():
    """The optimizer knows the centroids before fit (so a checkpoint can load)."""
    model = build_oltr_model(3, (16, 16, 1), backbone_options=TINY, use_attention=False)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9))
    assert model.optimizer.built
    centroids = model.centroid_memory.centroids
    slots = [v for v in model.optimizer.variables if "centroids" in v.path]
    assert [tuple(v.shape) for v in slots] == [tuple(centroids.shape)]


def test_oltr_model_keras_save_and_reload(tmp_path):
    model = build_oltr_model(3, (16, 16, 1), backbone_options=TINY, use_fc=True, feature_dim=8)
    rng = np.random.default_rng(7)
    model.centroid_memory.set_centroids(rng.normal(size=(3, 8)).astype("float32"))
    out_conv = model.get_layer("modulated_attention").out_conv.kernel
    out_conv.assign(rng.normal(0, 0.1, out_conv.shape).astype("float32"))
    x = _images((16, 16, 1), batch=3, seed=8)
    expected = model(x)
    path = tmp_path / "oltr.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, OLTRModel)
    np.testing.assert_array_equal(
        reloaded.centroid_memory.centroids.numpy(), model.centroid_memory.centroids.numpy()
    )
    got = reloaded(x)
    assert set(got) == OLTR_KEYS
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_add_feature_bank_stores_the_capped_rows_of_the_train_pass():
    model = build_oltr_model(3, (16, 16, 1), backbone_options=TINY, use_attention=False)
    images = _images((16, 16, 1), batch=40, seed=11).astype("uint8")
    labels = np.repeat([0, 1, 2], [25, 10, 5])
    dataset = data.ArrayDataset(
        {
            "train": (images, labels),
            "val": (images[:3], labels[:3]),
            "test": (images[:3], labels[:3]),
        },
        class_names=list("abc"),
        horizontal_flip=False,
    )
    features = np.concatenate(
        [
            np.asarray(model(x, training=False)["direct_feature"])
            for x, _ in dataset.eval_dataset("train", 40)
        ]
    )
    # Batches of 7; at most 6 a class, lowered to 5 for a total of 15: 5 + 5 + 5.
    scored = add_feature_bank(
        model, dataset, max_per_class=6, batch_size=7, max_total=15, bank_dtype="float16"
    )
    layer = scored.get_layer("nearest_neighbour_score")
    assert layer.bank_shape == (15, features.shape[1]) and layer.bank_dtype == "float16"
    rows = bank_rows(labels, 5, seed=0)
    assert np.bincount(labels[rows]).tolist() == [5, 5, 5]
    unit = features[rows] / np.linalg.norm(features[rows], axis=1, keepdims=True)
    bank = np.concatenate([np.asarray(w.numpy(), np.float32) for w in layer.weights])
    np.testing.assert_allclose(bank, unit, atol=1e-3)


def test_nearest_neighbour_score_model_saves_and_reloads(tmp_path):
    model = build_oltr_model(3, (16, 16, 1), backbone_options=TINY, use_attention=False)
    rng = np.random.default_rng(9)
    model.centroid_memory.set_centroids(rng.normal(size=(3, 32)).astype("float32"))
    x = _images((16, 16, 1), batch=4, seed=10)
    bank = np.asarray(model(x)["direct_feature"])[:3]
    scored = with_nearest_neighbour_score(model, bank)
    out = scored(x)
    assert set(out) == OLTR_KEYS | {"knn_similarity"}
    # The first three images are the bank: each is its own nearest neighbour.
    np.testing.assert_allclose(np.asarray(out["knn_similarity"])[:3], 1.0, atol=1e-5)
    np.testing.assert_allclose(out["logits"], model(x)["logits"], rtol=1e-6)
    path = tmp_path / "scored.keras"
    scored.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded(x)["knn_similarity"], out["knn_similarity"], rtol=1e-6)
