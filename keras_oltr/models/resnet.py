"""ResNet backbones: a from-scratch ResNet-10 and keras.applications ResNet-50/152."""

import os

import keras
from keras import ops

from keras_oltr.layers._validation import check_positive_int
from keras_oltr.layers.batch_normalization import FusedBatchNormalization
from keras_oltr.models.backbones import register_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_STEMS = ("imagenet", "small")


def normalization_layer(channels, mean=IMAGENET_MEAN, std=IMAGENET_STD, name="normalize"):
    """Maps images in [0, 255] to (x / 255 - mean) / std, per channel.

    One-channel inputs use the mean of the per-channel statistics. Kept inside the
    model so exported graphs take raw pixel values.
    """
    if channels == 1 and len(mean) != 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"`mean` and `std` need {channels} values for {channels}-channel inputs. "
            f"Received: mean={mean}, std={std}"
        )
    return keras.layers.Normalization(
        mean=[255.0 * m for m in mean],
        variance=[(255.0 * s) ** 2 for s in std],
        name=name,
    )


@keras.saving.register_keras_serializable(package="keras_oltr")
class ReverseChannels(keras.layers.Layer):
    """RGB <-> BGR (a serialisable replacement for a Lambda layer)."""

    def call(self, inputs):
        return ops.flip(inputs, axis=-1)


def _conv_bn(x, filters, kernel_size, strides, name, activation=True, sync_bn=False):
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=keras.initializers.HeNormal(),
        name=f"{name}_conv",
    )(x)
    x = FusedBatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=sync_bn, name=f"{name}_bn"
    )(x)
    if activation:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _basic_block(x, filters, strides, name, sync_bn):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(
            x, filters, 1, strides, f"{name}_down", activation=False, sync_bn=sync_bn
        )
    y = _conv_bn(x, filters, 3, strides, f"{name}_1", sync_bn=sync_bn)
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", activation=False, sync_bn=sync_bn)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def build_resnet(
    input_shape,
    blocks_per_stage=(1, 1, 1, 1),
    width=64,
    stem="imagenet",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    sync_bn=False,
    name="backbone",
):
    """A BasicBlock ResNet returning the last feature map [B, H', W', 8 * width].

    Args:
        input_shape: (H, W, C) of the raw [0, 255] images.
        blocks_per_stage: BasicBlocks in each of the four stages ([1, 1, 1, 1] is
            ResNet-10, [2, 2, 2, 2] ResNet-18).
        width: channels of the first stage (64 in the paper); stages use
            width, 2 width, 4 width, 8 width.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool, for 224 px) or "small"
            (3x3/1 conv, no pooling, for 28-32 px inputs).
        mean, std: per-channel normalisation statistics in [0, 1] units.
        sync_bn: synchronise batch statistics across replicas, so a run on several
            devices computes what one device computes for the same global batch.
    """
    width = check_positive_int("width", width)
    if stem not in _STEMS:
        raise ValueError(f"`stem` must be one of {_STEMS}. Received: stem={stem!r}")
    if len(input_shape) != 3 or any(d is None or d <= 0 for d in input_shape):
        raise ValueError(
            f"`input_shape` must be (H, W, C) with known sizes. Received: input_shape={input_shape}"
        )
    if len(blocks_per_stage) != 4:
        raise ValueError(
            f"`blocks_per_stage` needs 4 entries. Received: blocks_per_stage={blocks_per_stage}"
        )
    inputs = keras.Input(input_shape, name="images")
    x = normalization_layer(input_shape[-1], mean, std)(inputs)
    if stem == "imagenet":
        x = _conv_bn(x, width, 7, 2, "stem", sync_bn=sync_bn)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    else:
        x = _conv_bn(x, width, 3, 1, "stem", sync_bn=sync_bn)
    for stage, blocks in enumerate(blocks_per_stage):
        filters = width * 2**stage
        for block in range(blocks):
            strides = 2 if (stage > 0 and block == 0) else 1
            x = _basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}", sync_bn)
    return keras.Model(inputs, x, name=name)


@register_backbone("resnet10")
def resnet10(input_shape, width=64, stem="imagenet", weights=None, **kwargs):
    """ResNet-10 (BasicBlock x [1, 1, 1, 1]) trained from scratch, as in OLTR."""
    if weights is not None:
        raise ValueError(
            "resnet10 is trained from scratch and has no published weights; load a "
            f"stage-1 checkpoint instead. Received: weights={weights!r}"
        )
    return build_resnet(input_shape, (1, 1, 1, 1), width=width, stem=stem, **kwargs)


def _application_backbone(app_fn, input_shape, weights, name):
    if not (weights is None or weights == "imagenet" or os.path.isfile(str(weights))):
        raise ValueError(
            "`weights` must be None, 'imagenet' or the path of an existing weights file. "
            f"Received: weights={weights!r}"
        )
    if input_shape[-1] != 3:
        raise ValueError(f"{name} takes RGB inputs. Received: input_shape={input_shape}")
    inputs = keras.Input(input_shape, name="images")
    # keras.applications ResNets expect "caffe" preprocessing: BGR, mean-subtracted.
    x = ReverseChannels(name="rgb_to_bgr")(inputs)
    x = keras.layers.Normalization(
        mean=[103.939, 116.779, 123.68], variance=[1.0, 1.0, 1.0], name="normalize"
    )(x)
    base = app_fn(include_top=False, weights=None, input_shape=input_shape)
    if weights is not None:
        if weights == "imagenet":
            base = app_fn(include_top=False, weights="imagenet", input_shape=input_shape)
        else:
            base.load_weights(weights)
    return keras.Model(inputs, base(x), name="backbone")


@register_backbone("resnet50")
def resnet50(input_shape, weights=None, **kwargs):
    """keras.applications ResNet-50 (MS1M-LT in OLTR); weights None, 'imagenet' or a path."""
    if kwargs:
        raise ValueError(f"resnet50 takes no options {sorted(kwargs)}. Received: {kwargs}")
    return _application_backbone(keras.applications.ResNet50, input_shape, weights, "resnet50")


@register_backbone("resnet152")
def resnet152(input_shape, weights=None, **kwargs):
    """keras.applications ResNet-152 (Places-LT in OLTR); weights None, 'imagenet' or a path."""
    if kwargs:
        raise ValueError(f"resnet152 takes no options {sorted(kwargs)}. Received: {kwargs}")
    return _application_backbone(keras.applications.ResNet152, input_shape, weights, "resnet152")
