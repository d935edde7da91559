"""The OLTR model under a mixed-precision policy: a float32 head, finite training."""

import keras
import numpy as np
import pytest

from keras_oltr.models import build_oltr_model, build_plain_model


@pytest.fixture
def mixed_bfloat16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


def test_oltr_model_trains_under_mixed_bfloat16(mixed_bfloat16):
    options = {"width": 4, "stem": "small"}
    plain = build_plain_model(3, (12, 12, 1), backbone_options=options)
    model = build_oltr_model(3, (12, 12, 1), backbone_options=options, stage1_model=plain)
    memory = model.get_layer("meta_embedding").memory
    memory.set_centroids(np.random.default_rng(0).normal(size=(3, 32)).astype("float32"))
    # The backbone computes in bfloat16; the head and the centroids stay float32.
    assert model.get_layer("backbone").dtype_policy.compute_dtype == "bfloat16"
    assert model.get_layer("meta_embedding").hallucinator.compute_dtype == "float32"
    assert memory.centroids.dtype == "float32"
    x = np.random.default_rng(1).uniform(0, 255, (8, 12, 12, 1)).astype("float32")
    y = np.arange(8) % 3
    outputs = model(x)
    for key in ("logits", "probabilities", "reachability"):
        assert outputs[key].dtype == "float32", key
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), run_eagerly=True)
    before = memory.centroids.numpy().copy()
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["large_margin"])
    assert not np.array_equal(memory.centroids.numpy(), before)
