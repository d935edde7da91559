"""Cosine-normalised classifier with the squashing input normalisation of OLTR."""

import keras
from keras import ops

from keras_oltr.layers._validation import check_positive_float, check_positive_int


def squash(vectors, epsilon=1e-12):
    """(|v| / (1 + |v|)) * v / |v|: keeps direction, maps the norm into [0, 1)."""
    norm = ops.sqrt(ops.sum(ops.square(vectors), axis=-1, keepdims=True) + epsilon)
    return (norm / (1.0 + norm)) * vectors / norm


@keras.saving.register_keras_serializable(package="keras_oltr")
class CosineClassifier(keras.layers.Layer):
    """logits = scale * squash(v) . W_hat^T with L2-normalised class rows, no bias.

    The squash lets the magnitude of the meta-embedding (scaled by reachability)
    reach the logits in a bounded way: a far-away input gets a small norm and so a
    flat softmax, which is what the open-set rejection relies on.

    Args:
        num_classes: number of classes K.
        scale: logit scale (16 in OLTR).
        **kwargs: base layer arguments.
    """

    def __init__(self, num_classes, scale=16.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.scale = check_positive_float("scale", scale)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "CosineClassifier expects inputs of shape [batch, D] with D known. "
                f"Received: input_shape={input_shape}"
            )
        dim = int(input_shape[-1])
        # Same scale as the reference's uniform(-1/sqrt(D), 1/sqrt(D)) initialisation.
        limit = 1.0 / dim**0.5
        self.kernel = self.add_weight(
            shape=(self.num_classes, dim),
            initializer=keras.initializers.RandomUniform(-limit, limit),
            name="kernel",
        )
        self.built = True

    def call(self, inputs):
        kernel = ops.convert_to_tensor(self.kernel)
        kernel = kernel / ops.sqrt(ops.sum(ops.square(kernel), axis=-1, keepdims=True) + 1e-12)
        return self.scale * ops.matmul(squash(inputs), ops.transpose(kernel))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "scale": self.scale})
        return config
