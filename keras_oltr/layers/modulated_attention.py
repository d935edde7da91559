"""Modulated attention (OLTR, section 3.2): self-attention modulated by a spatial mask."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_oltr")
class ModulatedAttention(keras.layers.Layer):
    """Self-attention over positions, modulated by a conditional spatial attention.

    For a feature map F of shape [B, H, W, C]:

    - theta, phi, g: 1x1 convolutions C -> C * `reduction_ratio` (C/2 by default);
    - A = softmax over positions of theta^T phi ([B, HW, HW]);
    - SA = 1x1 convolution C/2 -> C (zero-initialised, no bias) of A g;
    - MA = softmax over the HW positions of a Dense(HW) applied to flattened F;
    - output F + MA * SA, with MA broadcast over channels.

    The zero-initialised output convolution makes the layer the identity at
    initialisation, so it can be inserted into a trained backbone without changing it.
    H and W are read from the input shape at build time and must be known.

    Args:
        reduction_ratio: float in (0, 1]; inner channels are `max(1, int(C * ratio))`.
        **kwargs: base layer arguments (name, dtype, ...).
    """

    def __init__(self, reduction_ratio=0.5, **kwargs):
        super().__init__(**kwargs)
        try:
            ratio_ok = 0.0 < float(reduction_ratio) <= 1.0
        except (TypeError, ValueError):
            ratio_ok = False
        if not ratio_ok:
            raise ValueError(
                f"`reduction_ratio` must be in (0, 1]. Received: reduction_ratio={reduction_ratio}"
            )
        self.reduction_ratio = float(reduction_ratio)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "ModulatedAttention expects a feature map of rank 4 [batch, H, W, C]. "
                f"Received: input_shape={input_shape}"
            )
        _, height, width, channels = input_shape
        if height is None or width is None or channels is None:
            raise ValueError(
                "ModulatedAttention needs H, W and C known at build time (the spatial "
                f"mask is a Dense over H*W positions). Received: input_shape={input_shape}"
            )
        inner = max(1, int(channels * self.reduction_ratio))
        self._positions = height * width
        self._inner = inner
        policy = self.dtype_policy  # sublayers follow this layer's dtype policy
        self.theta = keras.layers.Conv2D(inner, 1, name="theta", dtype=policy)
        self.phi = keras.layers.Conv2D(inner, 1, name="phi", dtype=policy)
        self.g = keras.layers.Conv2D(inner, 1, name="g", dtype=policy)
        self.out_conv = keras.layers.Conv2D(
            channels,
            1,
            use_bias=False,
            kernel_initializer="zeros",
            name="out_conv",
            dtype=policy,
        )
        self.spatial_fc = keras.layers.Dense(self._positions, name="spatial_fc", dtype=policy)
        for conv in (self.theta, self.phi, self.g):
            conv.build(input_shape)
        self.out_conv.build((input_shape[0], height, width, inner))
        self.spatial_fc.build((input_shape[0], height * width * channels))
        self.built = True

    def call(self, inputs):
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        positions = self._positions
        theta = ops.reshape(self.theta(inputs), (batch, positions, self._inner))
        phi = ops.reshape(self.phi(inputs), (batch, positions, self._inner))
        g = ops.reshape(self.g(inputs), (batch, positions, self._inner))
        attention = ops.softmax(ops.matmul(theta, ops.transpose(phi, (0, 2, 1))), axis=-1)
        attended = ops.reshape(ops.matmul(attention, g), (batch, height, width, self._inner))
        self_attention = self.out_conv(attended)
        mask = ops.softmax(self.spatial_fc(ops.reshape(inputs, (batch, -1))), axis=-1)
        mask = ops.reshape(mask, (batch, height, width, 1))
        return inputs + mask * self_attention

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"reduction_ratio": self.reduction_ratio})
        return config
