"""tau-normalised linear classifier (Kang et al., ICLR 2020) as a frozen layer."""

import keras
import numpy as np
from keras import ops

from keras_oltr.layers._validation import check_positive_int

_EPSILON = 1e-12  # a zero class vector stays zero instead of dividing by 0


def tau_normalise(kernel, tau):
    """[D, K] kernel with each class column W_k divided by ||W_k||^tau (keras.ops)."""
    kernel = ops.convert_to_tensor(kernel)
    norms = ops.sqrt(ops.sum(ops.square(kernel), axis=0, keepdims=True))
    return kernel / ops.power(ops.maximum(norms, _EPSILON), tau)


@keras.saving.register_keras_serializable(package="keras_oltr")
class TauNormalisedDense(keras.layers.Layer):
    """logits = x . (W_k / ||W_k||^tau), no bias: tau-normalisation of a trained classifier.

    tau = 0 is the classifier as trained (without its bias), tau = 1 gives every
    class vector unit norm. The kernel is the stage-1 classifier's, frozen
    (`set_kernel`); tau is a config value, so the saved model and every export
    compute the normalised classifier.

    Args:
        num_classes: K.
        tau: in [0, 1].
        **kwargs: base layer arguments.
    """

    def __init__(self, num_classes, tau=1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        try:
            self.tau = float(tau)
        except (TypeError, ValueError):
            raise ValueError(f"`tau` must be in [0, 1]. Received: tau={tau!r}") from None
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"`tau` must be in [0, 1]. Received: tau={tau!r}")

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "TauNormalisedDense expects inputs of shape [batch, D] with D known. "
                f"Received: input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            shape=(int(input_shape[-1]), self.num_classes),
            initializer="glorot_uniform",
            trainable=False,
            name="kernel",
        )
        self.built = True

    def set_kernel(self, kernel):
        """Sets W, the [D, K] kernel of the trained linear classifier."""
        kernel = np.asarray(kernel, dtype="float32")
        if kernel.shape != tuple(self.kernel.shape):
            raise ValueError(
                f"`kernel` must have shape {tuple(self.kernel.shape)}. "
                f"Received: kernel.shape={kernel.shape}"
            )
        self.kernel.assign(kernel)

    def call(self, inputs):
        kernel = ops.cast(tau_normalise(self.kernel, self.tau), inputs.dtype)
        return ops.matmul(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "tau": self.tau})
        return config
