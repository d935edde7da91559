"""Learnable per-class logit scale: the LWS classifier of Kang et al. (ICLR 2020)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_oltr")
class ClassScale(keras.layers.Layer):
    """logits_k -> f_k * logits_k with one learnable scale f_k per class, f = 1 at start.

    Put after a frozen linear classifier it is Learnable Weight Scaling (LWS):
    f_k * (W_k . x + b_k), trained with class-balanced sampling while W, b and the
    backbone stay fixed. The scale is a weight of the model, so the saved model and
    every export apply it.
    """

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "ClassScale expects logits of shape [batch, K] with K known. "
                f"Received: input_shape={input_shape}"
            )
        self.scale = self.add_weight(
            shape=(int(input_shape[-1]),), initializer="ones", name="scale"
        )
        self.built = True

    def call(self, inputs):
        return inputs * ops.cast(self.scale, inputs.dtype)[None, :]

    def compute_output_shape(self, input_shape):
        return input_shape
