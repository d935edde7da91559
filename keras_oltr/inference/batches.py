"""Running a model over a dataset's test-transform batches, on any Keras backend.

Centroids, the nearest-neighbour bank, per-epoch validation and evaluation all run
their passes through `eval_batches` and `inference_function`.
"""

from collections.abc import Mapping

import keras
import numpy as np

from keras_oltr import deferred_resize


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

    With an accelerator, datasets that can (`can_defer_resize`) stop the test
    transform after the decode and the model's compiled call finishes the resize on
    the accelerator (`keras_oltr.deferred_resize`): about 40% less of the host's
    CPU per test image. Without one, the input pipeline does all of it. Either way the
    model sees the same pixels (to float rounding).
    """
    if getattr(dataset, "can_defer_resize", False) and has_accelerator():
        kwargs["defer_resize"] = True
    return dataset.eval_dataset(split, batch_size, **kwargs)


def num_batches(dataset, split, batch_size):
    """The number of batches of a split, for progress bars; None when it is unknown.

    Counted from the split's listed images: unreadable ones shorten the pass.
    """
    try:
        return -(-int(dataset.num_examples(split)) // int(batch_size))
    except (AttributeError, TypeError, ValueError):
        return None


def model_images(images):
    """The model's input images from an `eval_dataset` batch's images.

    `{"canvas", "geometry"}` dicts (`eval_dataset(defer_resize=True)`) are finished
    (`deferred_resize.finish`); other images are returned as they are.
    """
    if isinstance(images, Mapping):
        return deferred_resize.finish(
            images[deferred_resize.CANVAS_KEY], images[deferred_resize.GEOMETRY_KEY]
        )
    return images


def with_deferred_resize(model):
    """A model that takes `{canvas, geometry}` batches, finishes the resize, runs `model`."""
    height, _, channels = model.inputs[0].shape[1:]
    side = deferred_resize.canvas_size(height)
    inputs = {
        deferred_resize.CANVAS_KEY: keras.Input(
            shape=(side, side, channels), dtype="uint8", name=deferred_resize.CANVAS_KEY
        ),
        deferred_resize.GEOMETRY_KEY: keras.Input(
            shape=(deferred_resize.GEOMETRY_SIZE,), name=deferred_resize.GEOMETRY_KEY
        ),
    }
    images = deferred_resize.FinishResize(name="finish_resize")(
        inputs[deferred_resize.CANVAS_KEY], inputs[deferred_resize.GEOMETRY_KEY]
    )
    return keras.Model(inputs, model(images, training=False), name=f"{model.name}_deferred_resize")


def inference_function(model, key=None):
    """Returns `images -> model(images, training=False)` as numpy arrays.

    On TensorFlow the call is one `tf.function` (traced per batch shape, with
    `reduce_retracing`), so tf.data batches stay in the graph. On JAX and PyTorch
    the batch is converted to numpy and run by `model.predict_on_batch` (compiled
    once per batch shape on JAX): a tf.Tensor cannot enter their traced functions.

    `images` may also be `{"canvas", "geometry"}` (from `eval_batches` or
    `eval_dataset(defer_resize=True)`): the compiled call then finishes the test
    resize first, on the model's device (`model_images`).

    Args:
        model: a Keras model whose call returns a dict of tensors.
        key: return only this output (an array) instead of the dict.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def call(images):
            outputs = model(model_images(images), training=False)
            return outputs if key is None else outputs[key]

        def run(images):
            return keras.tree.map_structure(lambda t: t.numpy(), call(images))

        return run

    finishing = []  # built on the first deferred batch

    def run(images):
        if isinstance(images, Mapping):
            if not finishing:
                finishing.append(with_deferred_resize(model))
            outputs = finishing[0].predict_on_batch(
                {name: np.asarray(value) for name, value in images.items()}
            )
        else:
            outputs = model.predict_on_batch(np.asarray(images))
        return outputs if key is None else outputs[key]

    return run
