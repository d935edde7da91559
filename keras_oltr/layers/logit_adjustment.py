"""Post-hoc logit adjustment (Menon et al., ICLR 2021) as a frozen layer."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_oltr")
class LogitAdjustment(keras.layers.Layer):
    """logits_k -> logits_k - tau * log(pi_k), pi the training class prior.

    The log prior is a non-trainable weight (set with `set_log_prior`, saved with the
    model), tau a config value: the saved model and every export apply the
    adjustment, no Python step around them.

    Args:
        tau: the adjustment's strength, >= 0 (1 is the paper's default).
        **kwargs: base layer arguments.
    """

    def __init__(self, tau=1.0, **kwargs):
        super().__init__(**kwargs)
        try:
            self.tau = float(tau)
        except (TypeError, ValueError):
            raise ValueError(f"`tau` must be a number >= 0. Received: tau={tau!r}") from None
        if not (np.isfinite(self.tau) and self.tau >= 0):
            raise ValueError(f"`tau` must be a number >= 0. Received: tau={tau!r}")

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "LogitAdjustment expects logits of shape [batch, K] with K known. "
                f"Received: input_shape={input_shape}"
            )
        self.log_prior = self.add_weight(
            shape=(int(input_shape[-1]),), initializer="zeros", trainable=False, name="log_prior"
        )
        self.built = True

    def set_log_prior(self, log_prior):
        """Sets log(pi_k), a [K] array of finite values."""
        log_prior = np.asarray(log_prior, dtype="float32")
        if log_prior.shape != tuple(self.log_prior.shape) or not np.all(np.isfinite(log_prior)):
            raise ValueError(
                f"`log_prior` must be {tuple(self.log_prior.shape)} finite values. "
                f"Received: log_prior with shape {log_prior.shape}"
            )
        self.log_prior.assign(log_prior)

    def call(self, inputs):
        return inputs - self.tau * ops.cast(self.log_prior, inputs.dtype)[None, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"tau": self.tau})
        return config
