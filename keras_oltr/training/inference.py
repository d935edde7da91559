"""Running a model over tf.data batches during training, on any Keras backend."""

from collections.abc import Mapping

import keras
import numpy as np

from keras_oltr.data.base import SWAPPED_IMAGES_KEY

# Batches of `eval_dataset(swap_axes=True)` hold [b, W, H, C]; this puts H first again.
_SWAP = (0, 2, 1, 3)


def has_accelerator():
    """Whether the Keras backend computes on a GPU or TPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def eval_batches(dataset, split, batch_size, **kwargs):
    """`dataset.eval_dataset(split, batch_size, **kwargs)` for `inference_function`.

    With an accelerator, datasets whose test transform leaves the image axes
    swapped (`swaps_test_axes`) yield them so, and the model's compiled call swaps
    them back on the accelerator: the host's CPUs skip one transpose per image
    (7-16% of the test transform's CPU in four runs). Without one, the input
    pipeline swaps them. Either way the model sees the same pixels.
    """
    if getattr(dataset, "swaps_test_axes", False) and has_accelerator():
        kwargs["swap_axes"] = True
    return dataset.eval_dataset(split, batch_size, **kwargs)


def swap_back(images):
    """`{SWAPPED_IMAGES_KEY: [b, W, H, C]}` -> `[b, H, W, C]`; other images as they are."""
    if isinstance(images, Mapping):
        return keras.ops.transpose(images[SWAPPED_IMAGES_KEY], _SWAP)
    return images


def _swapping_model(model):
    """A model that takes `[b, W, H, C]` images, swaps them and runs `model`."""
    height, width, channels = model.inputs[0].shape[1:]
    inputs = keras.Input(shape=(width, height, channels), name="swapped_images")
    outputs = model(keras.ops.transpose(inputs, _SWAP), training=False)
    return keras.Model(inputs, outputs, name=f"{model.name}_swapped_input")


def inference_function(model, key=None):
    """Returns `images -> model(images, training=False)` as numpy arrays.

    On TensorFlow the call is one `tf.function` (traced per batch shape, with
    `reduce_retracing`), so tf.data batches stay in the graph. On JAX and PyTorch
    the batch is converted to numpy and run by `model.predict_on_batch` (compiled
    once per batch shape on JAX): a tf.Tensor cannot enter their traced functions.

    `images` may also be `{SWAPPED_IMAGES_KEY: [b, W, H, C]}` (from `eval_batches`
    or `eval_dataset(swap_axes=True)`): the compiled call then swaps the axes back
    first, on the model's device.

    Args:
        model: a Keras model whose call returns a dict of tensors.
        key: return only this output (an array) instead of the dict.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def call(images):
            outputs = model(swap_back(images), training=False)
            return outputs if key is None else outputs[key]

        def run(images):
            return keras.tree.map_structure(lambda t: t.numpy(), call(images))

        return run

    swapping = []  # built on the first swapped batch

    def run(images):
        if isinstance(images, Mapping):
            if not swapping:
                swapping.append(_swapping_model(model))
            outputs = swapping[0].predict_on_batch(np.asarray(images[SWAPPED_IMAGES_KEY]))
        else:
            outputs = model.predict_on_batch(np.asarray(images))
        return outputs if key is None else outputs[key]

    return run
