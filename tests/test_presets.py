"""The benchmark presets build the models they describe: MS1M-LT at 74,500 classes."""

import dataclasses

import numpy as np
import pytest

from keras_oltr import data
from keras_oltr.models import build_oltr_model, build_plain_model
from keras_oltr.presets import get_preset, list_presets, smoke

MS1M_CLASSES = 74_500


def _stage2(config, num_classes, input_shape, stage1_model=None):
    # As the oltr method builds it, without downloading the ImageNet weights.
    model_config = dataclasses.replace(config.model, backbone_weights=None)
    return build_oltr_model(
        num_classes,
        input_shape,
        backbone=model_config.backbone,
        backbone_options=model_config.backbone_options(),
        use_attention=model_config.use_attention,
        use_fc=model_config.use_fc,
        feature_dim=model_config.feature_dim,
        stage1_model=stage1_model,
    )


def test_ms1m_lt_preset_states_the_papers_settings():
    config = get_preset("ms1m_lt")
    assert config.dataset == "ms1m_lt"
    assert (config.model.backbone, config.model.backbone_weights) == ("resnet50", "imagenet")
    assert config.stage2.sampler == "class_aware"
    # The dataset reads split files under --data_root: nothing to download.
    with pytest.raises(ValueError, match="data_root"):
        data.get_dataset("ms1m_lt", data_root="/no/such/ms1m")


def test_ms1m_lt_stage2_model_builds_at_74500_classes():
    config = get_preset("ms1m_lt")
    model = _stage2(config, MS1M_CLASSES, (64, 64, 3))
    dim = config.model.feature_dim
    centroids = model.centroid_memory.centroids
    classifier = model.get_layer("classifier").trainable_weights[0]
    hallucinator = model.get_layer("meta_embedding").hallucinator.kernel
    assert tuple(centroids.shape) == (MS1M_CLASSES, dim)
    assert tuple(classifier.shape) == (MS1M_CLASSES, dim)
    assert tuple(hallucinator.shape) == (dim, MS1M_CLASSES)
    # Backbone + attention + fc and selector (D x D + D each) + the three K x D
    # matrices (centroids, classifier, hallucinator) + the hallucinator's K biases.
    fixed = (
        model.get_layer("backbone").count_params()
        + model.get_layer("modulated_attention").count_params()
    )
    expected = fixed + 2 * (dim * dim + dim) + 3 * MS1M_CLASSES * dim + MS1M_CLASSES
    assert model.count_params() == expected
    assert model.count_params() > 450_000_000  # the K x D heads dominate
    assert tuple(model.output["logits"].shape) == (None, MS1M_CLASSES)


def test_ms1m_lt_stage2_starts_from_its_stage1_model():
    # The preset's fc keeps the pooled width, so the hallucinator takes the stage-1
    # classifier (a narrower fc would make init_from_stage1 refuse it).
    config = get_preset("ms1m_lt")
    model_config = dataclasses.replace(config.model, backbone_weights=None)
    plain = build_plain_model(
        7, (32, 32, 3), backbone="resnet50", backbone_options=model_config.backbone_options()
    )
    model = _stage2(config, 7, (32, 32, 3), stage1_model=plain)
    kernel, bias = plain.get_layer("classifier").get_weights()
    hallucinator = model.get_layer("meta_embedding").hallucinator
    np.testing.assert_array_equal(hallucinator.get_weights()[0], kernel)
    np.testing.assert_array_equal(hallucinator.get_weights()[1], bias)


@pytest.mark.parametrize("name", list_presets())
def test_smoke_presets_start_stage2_from_stage1(name):
    # --smoke shrinks every preset to a width-4 ResNet-10; its stage 2 must still
    # take the hallucinator from the stage-1 classifier (use_fc presets included).
    config = smoke(get_preset(name))
    plain = build_plain_model(
        3,
        (32, 32, 3),
        backbone=config.model.backbone,
        backbone_options=config.model.backbone_options(),
    )
    model = _stage2(config, 3, (32, 32, 3), stage1_model=plain)
    np.testing.assert_array_equal(
        model.get_layer("meta_embedding").hallucinator.get_weights()[0],
        plain.get_layer("classifier").get_weights()[0],
    )
