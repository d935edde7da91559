"""Quantised TFLite on the embedded mixed_mnist_lt benchmark: top-1 stays close to float32."""

import keras
import numpy as np
import pytest

import keras_oltr.models as models
from keras_oltr import export
from keras_oltr.data import get_dataset

# Budgets in top-1 percentage points against the float32 TFLite model.
MAX_DROP = {"float16": 0.5, "dynamic_int8": 2.0, "int8": 2.0}


@pytest.fixture(scope="module")
def dataset():
    return get_dataset("mixed_mnist_lt")


@pytest.fixture(scope="module")
def trained(dataset):
    """OLTR (width 8) trained ~300 steps: accuracy far above chance (1/24)."""
    keras.utils.set_random_seed(0)
    model = models.build_oltr_model(
        len(dataset.class_names), (28, 28, 1), backbone_options={"width": 8, "stem": "small"}
    )
    # As stage 1: no large-margin term while the centroids are not set (the centroid
    # step would pull zero centroids into the features from the first step).
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), large_margin_weight=0.0)
    for epoch in range(4):
        model.fit(dataset.train_dataset(64, epoch=epoch, seed=0), verbose=0, shuffle=False)
    # Centroids = class means of the trained features (as stage 2 starts), then a
    # short epoch more so that the memory path is exercised by the test too.
    features, labels = [], []
    for x, y in dataset.eval_dataset("train", 512):
        features.append(model(x, training=False)["direct_feature"].numpy())
        labels.append(y.numpy())
    features, labels = np.concatenate(features), np.concatenate(labels)
    centroids = np.stack([features[labels == k].mean(0) for k in range(len(dataset.class_names))])
    model.get_layer("meta_embedding").memory.set_centroids(centroids)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9))  # now with the large margin
    model.fit(dataset.train_dataset(64, epoch=4, seed=0), verbose=0, shuffle=False)
    return model


def _tflite_models(model, dataset, tmp_path, calibration, quantizations=None, **decision):
    """(quantization, predictor) of ``model`` as TFLite in float32 and each quantisation."""
    for quantization in ("float32", *(quantizations or MAX_DROP)):
        path = export.convert_tflite(
            model,
            str(tmp_path / f"{quantization}.tflite"),
            dataset.class_names,
            quantization=quantization,
            representative_images=calibration,
            **decision,
        )
        yield quantization, export.load_predictor(path)


def _top1(predictor, images, labels):
    probabilities = np.concatenate(
        [
            predictor.predict(images[i : i + 256])["probabilities"]
            for i in range(0, len(images), 256)
        ]
    )
    return 100.0 * float(np.mean(probabilities.argmax(-1) == labels))


@pytest.mark.slow
def test_quantised_tflite_top1_close_to_float32(trained, dataset, tmp_path, record_property):
    images, labels = [], []
    for x, y in dataset.eval_dataset("test", 512):
        images.append(x.numpy())
        labels.append(y.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    calibration = export.representative_images(dataset, 256, seed=1)
    keras_top1 = 100.0 * float(
        np.mean(
            trained.predict(images, batch_size=256, verbose=0)["probabilities"].argmax(-1) == labels
        )
    )
    top1 = {}
    for quantization, predictor in _tflite_models(trained, dataset, tmp_path, calibration):
        top1[quantization] = _top1(predictor, images, labels)
        record_property(f"top1_{quantization}", top1[quantization])
    print(f"\nkeras top-1 {keras_top1:.2f}; tflite top-1: {top1}")
    assert top1["float32"] == pytest.approx(keras_top1, abs=0.05)
    assert top1["float32"] > 50.0  # the comparison is meaningless near chance (4.2 %)
    for quantization, budget in MAX_DROP.items():
        assert abs(top1["float32"] - top1[quantization]) <= budget, (quantization, top1)


def _decisions(predictor, images, batch_size):
    outputs = [
        predictor.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)
    ]
    return (
        np.concatenate([o["predicted_class"] for o in outputs]),
        np.concatenate([o["open_score"] for o in outputs]),
    )


@pytest.mark.slow
@pytest.mark.parametrize("open_score", ["nearest_neighbour", "reachability"])
def test_int8_decision_does_not_depend_on_the_batch(trained, dataset, tmp_path, open_score):
    # The deployed model carries the nearest-neighbour bank; the threshold sits at the
    # median score of known and open test images, so about half of them are rejected.
    from keras_oltr.inference import train_feature_bank

    model = models.with_nearest_neighbour_score(trained, train_feature_bank(trained, dataset))
    images = np.concatenate(
        [next(iter(dataset.eval_dataset(split, 32)))[0].numpy() for split in ("test", "open")]
    )
    float_path = export.convert_tflite(
        model,
        str(tmp_path / "f32.tflite"),
        dataset.class_names,
        open_score=open_score,
        threshold=0.0 if open_score == "reachability" else -1.0,
    )
    _, scores = _decisions(export.load_predictor(float_path), images, 64)
    threshold = float(np.median(scores))
    rates = {}
    calibration = export.representative_images(dataset, 64, seed=1)
    # Every precision with the bank; reachability (no bank) in int8 only, where the
    # decision was batch-dependent.
    quantizations = None if open_score == "nearest_neighbour" else ["int8"]
    models_ = _tflite_models(
        model,
        dataset,
        tmp_path,
        calibration,
        quantizations,
        threshold=threshold,
        open_score=open_score,
    )
    for quantization, predictor in models_:
        one, one_scores = _decisions(predictor, images, 1)
        for batch in (2, 16, 64):
            many, many_scores = _decisions(predictor, images, batch)
            np.testing.assert_array_equal(many, one, err_msg=f"{quantization} batch {batch}")
            np.testing.assert_allclose(many_scores, one_scores, rtol=1e-6, atol=1e-6)
        # The rule itself: unknown exactly where the score is below the threshold.
        np.testing.assert_array_equal(one == -1, one_scores.astype(np.float32) < threshold)
        rates[quantization] = float(np.mean(one == -1))
    assert 0.2 < rates["float32"] < 0.8
    for quantization in set(rates) - {"float32"}:
        assert abs(rates[quantization] - rates["float32"]) <= 0.05, rates
