"""BatchNormalization that trains with TensorFlow's fused kernel on the TensorFlow backend."""

import keras


@keras.saving.register_keras_serializable(package="keras_oltr")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization`; on TensorFlow, training runs one fused kernel.

    Keras 3 writes a training-mode batch norm as `moments` plus element-wise
    arithmetic: several passes over the activations forward and as many backward.
    TensorFlow's `FusedBatchNormV3` computes the batch statistics and the normalised
    output in one kernel and has a fused gradient.

    The values are Keras': y = (x - mean) / sqrt(variance + epsilon) * gamma + beta
    with the biased batch statistics, and moving = momentum * moving + (1 - momentum)
    * batch with the biased variance (the kernel returns the Bessel-corrected
    variance, n / (n - 1) times it, which is scaled back). Statistics are in float32,
    as Keras computes them under mixed precision (a bfloat16 input goes into the
    kernel as it is; the kernel accumulates in float32).

    The fused kernel serves training of a channels-last rank-4 input on the
    TensorFlow backend without mask, renorm or synchronized statistics. Everything
    else is the parent's code, inference included: with the fused op at inference,
    TensorFlow's graph optimiser fuses convolution, batch norm and ReLU into one
    oneDNN kernel that turns a NaN image into finite outputs (a class instead of
    "unknown"), and the exported models ran no faster. Weights and config are
    those of `keras.layers.BatchNormalization`; a saved model names this class, so
    loading it needs `keras_oltr.layers` imported (as every OLTR layer does).
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # The kernel reads bfloat16 and computes its statistics in float32 itself.
        x = inputs if inputs.dtype in (tf.float32, tf.bfloat16) else tf.cast(inputs, tf.float32)
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        empty = tf.zeros([0], tf.float32)
        y, mean, corrected_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=gamma,
            offset=beta,
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=True,
        )
        shape = tf.shape(x)
        n = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
        variance = corrected_variance * tf.math.divide_no_nan(n - 1.0, n)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(y, self.compute_dtype)

    def _fused_applies(self, inputs, training, mask):
        axis = self.axis if isinstance(self.axis, int) else None
        return (
            keras.backend.backend() == "tensorflow"
            and bool(training)
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and axis in (-1, 3)
        )
