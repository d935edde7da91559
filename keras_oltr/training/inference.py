"""Running a model over tf.data batches during training, on any Keras backend."""

import keras
import numpy as np


def inference_function(model, key=None):
    """Returns `images -> model(images, training=False)` as numpy arrays.

    On TensorFlow the call is one `tf.function` (traced per batch shape, with
    `reduce_retracing`), so tf.data batches stay in the graph. On JAX and PyTorch
    the batch is converted to numpy and run by `model.predict_on_batch` (compiled
    once per batch shape on JAX): a tf.Tensor cannot enter their traced functions.

    Args:
        model: a Keras model whose call returns a dict of tensors.
        key: return only this output (an array) instead of the dict.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def call(images):
            outputs = model(images, training=False)
            return outputs if key is None else outputs[key]

        def run(images):
            return keras.tree.map_structure(lambda t: t.numpy(), call(images))

        return run

    def run(images):
        outputs = model.predict_on_batch(np.asarray(images))
        return outputs if key is None else outputs[key]

    return run
