"""The ResNet-10 settings, models and train-step jobs timed by model_step.py and
vs_reference.py."""

import contextlib

import keras

from keras_oltr.models import build_oltr_model, build_plain_model, resnet
from keras_oltr.optimizers import CoupledSGD, layer_lr_multipliers

CONFIGS = {
    "resnet10_224": dict(
        input_shape=(224, 224, 3),
        batch=64,
        num_classes=1000,
        backbone_options={"width": 64, "stem": "imagenet"},
        feature_dim=512,
    ),
    "resnet10_28": dict(
        input_shape=(28, 28, 1),
        batch=128,
        num_classes=10,
        backbone_options={"width": 16, "stem": "small"},
        feature_dim=128,
    ),
}


BATCH_NORMS = ("fused", "keras")


@contextlib.contextmanager
def _batch_norm_layer(kind):
    """Builds ResNets with `kind`'s batch norm: "fused" (keras_oltr's, the default) or
    "keras" (keras.layers.BatchNormalization, as before the fused layer), for A/B timing."""
    if kind not in BATCH_NORMS:
        raise ValueError(f"batch_norm must be one of {BATCH_NORMS}. Received: {kind!r}")
    fused = resnet.FusedBatchNormalization
    if kind == "keras":
        resnet.FusedBatchNormalization = keras.layers.BatchNormalization
    try:
        yield
    finally:
        resnet.FusedBatchNormalization = fused


def build_models(cfg, batch_norm="fused"):
    """The stage-1 (plain) and stage-2 (OLTR) models of a setting, compiled."""
    with _batch_norm_layer(batch_norm):
        return _build_models(cfg)


def _build_models(cfg):
    plain = build_plain_model(
        cfg["num_classes"], cfg["input_shape"], backbone_options=cfg["backbone_options"]
    )
    plain.compile(CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=5e-4))
    oltr = build_oltr_model(
        cfg["num_classes"],
        cfg["input_shape"],
        backbone_options=cfg["backbone_options"],
        use_attention=True,
        use_fc=True,
        feature_dim=cfg["feature_dim"],
        stage1_model=plain,  # feature_dim = 8 * width, so the hallucinator init fits
    )
    oltr.centroid_memory.set_centroids(
        keras.random.normal((cfg["num_classes"], cfg["feature_dim"]), seed=0)
    )
    oltr.compile(
        CoupledSGD(
            0.1,
            momentum=0.9,
            coupled_weight_decay=5e-4,
            lr_multipliers=layer_lr_multipliers(oltr, {"backbone": 0.1, "centroids": 0.1}),
        )
    )
    return plain, oltr


def train_job(model, x, y, loop, fit_steps):
    """(callable running train steps of `model` on one batch, steps per call).

    loop "train_on_batch": one step per call; "fit": `model.fit` over `fit_steps`
    steps of the same (device-resident) batch, as the trainer drives its steps.
    Both return numpy or Python values, so the steps have finished on return.
    """
    if loop == "train_on_batch":
        return (lambda: model.train_on_batch(x, y)), 1
    if loop != "fit":
        raise ValueError(f"`loop` must be train_on_batch or fit. Received: loop={loop!r}")

    def batches():
        while True:
            yield x, y

    def run():
        model.fit(batches(), steps_per_epoch=fit_steps, epochs=1, shuffle=False, verbose=0)

    return run, fit_steps
