"""The "imagenet" test resize, finished on the accelerator: the rule, once.

The test transform resizes the shorter side to `S * 256 / 224` (antialiased
bilinear, PIL's semantics) and keeps the centre `S x S` crop. On the host
(`keras_oltr.data.transforms.imagenet_test_transform`) that is one resampling pass
over the rows, a transpose and one over the columns: about half of the host's CPU
per test image, the JPEG decode most of the rest. With an accelerator, the input
pipeline can stop after the decode (`eval_dataset(..., defer_resize=True)`) and
hand over, per image:

- `canvas`, uint8 `[2S, 2S, C]`: the input window that the crop's filter reaches
  (`transforms._test_window`), in the top-left corner, zeros elsewhere;
- `geometry`, float32 `[6]`: `[scale_y, scale_x, translate_y, translate_x,
  extent_y, extent_x]`, the resampling of the window's `extent` rows and columns
  onto the crop (output pixel i samples input position `(i + 0.5 - translate) /
  scale`).

`finish`, inside the model's compiled call, resamples each canvas with the weights
of TensorFlow's ScaleAndTranslate kernel (triangle filter, antialiased: scaled by
`1 / scale` when shrinking; taps clamped to the window; weights normalised to sum
to 1), rows first, then columns, as the host does; the crop is the host's up to
float rounding (the same weights, summed in the same order; < 1e-3 on the 0-255
scale).

A window larger than the canvas, or one that shrinks by more than `MAX_SHRINK`
(whose filter would need more than `MAX_TAPS` taps), is resampled on the host
instead: its float32 crop fills the canvas's `4 S^2 C` bytes exactly, and
`extent = 0` marks it; `finish` reads those bytes back as floats. So every image
gets the host's transform, bit for bit or to float rounding.
"""

import math

import keras
from keras import ops

CANVAS_KEY = "canvas"  # batch keys of a deferred-resize input: {canvas, geometry}
GEOMETRY_KEY = "geometry"
GEOMETRY_SIZE = 6
MAX_SHRINK = 2.0  # largest input/output size ratio resampled on the accelerator
MAX_TAPS = 2 * math.ceil(MAX_SHRINK) + 1  # input pixels per output pixel at most


def canvas_size(size: int) -> int:
    """Side of the canvas for crops of `size`: its bytes hold a float32 crop."""
    return 2 * size


def _taps(scale, translate, extent, out_size, side):
    """Per tap k < `MAX_TAPS`: input indices and weights, lists of `[B, out_size]`.

    TensorFlow's span computation (kernels/image/scale_and_translate_op.cc) for the
    triangle kernel with antialiasing, in float32: the span of output pixel i runs
    from ceil(s - k - 0.5) to floor(s + k - 0.5), clamped to the input, with
    s = (i + 0.5) / scale - translate / scale and k = max(1 / scale, 1); a tap at
    input j weighs max(0, 1 - |j + 0.5 - s| / k), normalised by the span's sum. A
    sample outside the input gets no taps.
    """
    scale, translate, extent = (t[:, None] for t in (scale, translate, extent))
    extent = ops.maximum(extent, 1.0)  # host-resampled images: any valid span
    inv_scale = 1.0 / scale
    kernel_scale = ops.maximum(inv_scale, 1.0)
    one_over_kernel_scale = 1.0 / kernel_scale
    centres = ops.cast(ops.arange(out_size), "float32")[None, :] + 0.5
    sample = centres * inv_scale + (-inv_scale * translate)
    start = ops.clip(ops.ceil(sample - kernel_scale - 0.5), 0.0, extent - 1.0)
    end = ops.clip(ops.floor(sample + kernel_scale - 0.5), 0.0, extent - 1.0) + 1.0
    inside = ops.logical_and(sample >= 0.0, sample <= extent)
    indices, weights = [], []
    total = ops.zeros_like(sample)
    for k in range(MAX_TAPS):
        source = start + float(k)
        position = ops.abs((source + 0.5 - sample) * one_over_kernel_scale)
        weight = ops.where(ops.logical_and(source < end, position < 1.0), 1.0 - position, 0.0)
        total = total + weight  # in span order, as the kernel sums
        weights.append(weight)
        indices.append(ops.cast(ops.minimum(source, float(side - 1)), "int32"))
    normalise = ops.logical_and(inside, ops.abs(total) >= 1000.0 * 1.1754944e-38)
    one_over_total = ops.where(normalise, 1.0 / ops.where(normalise, total, 1.0), 0.0)
    weights = [w * one_over_total for w in weights]
    return indices, weights


def _resample_rows(images, scale, translate, extent, out_size):
    """`[B, N, M, C]` -> float32 `[B, out_size, M, C]`, resampled along axis 1.

    Each tap is one gather of whole rows (of the batch flattened to `[B * N, M * C]`),
    which every backend does as block copies, then a weighted sum in tap order.
    """
    _, n, m, channels = images.shape
    indices, weights = _taps(scale, translate, extent, out_size, n)
    rows = ops.reshape(images, (-1, m * channels))
    first_row = ops.arange(ops.shape(images)[0], dtype="int32")[:, None] * n
    out = None
    for index, weight in zip(indices, weights, strict=True):
        taken = ops.take(rows, ops.reshape(index + first_row, (-1,)), axis=0)
        taken = ops.reshape(ops.cast(taken, "float32"), (-1, out_size, m * channels))
        term = weight[:, :, None] * taken
        out = term if out is None else out + term
    return ops.reshape(out, (-1, out_size, m, channels))


def finish(canvas, geometry):
    """Canvases and geometries -> the test crops, float32 `[B, S, S, C]` in `[0, 255]`.

    Args:
        canvas: uint8 `[B, 2S, 2S, C]`, as the module docstring lays out.
        geometry: float32 `[B, GEOMETRY_SIZE]`.
    """
    canvas, geometry = ops.convert_to_tensor(canvas), ops.convert_to_tensor(geometry, "float32")
    _, side, _, channels = canvas.shape
    size = side // 2
    rows = _resample_rows(canvas, geometry[:, 0], geometry[:, 2], geometry[:, 4], size)
    # The columns as rows: transposed on the accelerator, then back.
    columns = ops.transpose(rows, (0, 2, 1, 3))
    crops = _resample_rows(columns, geometry[:, 1], geometry[:, 3], geometry[:, 5], size)
    crops = ops.transpose(crops, (0, 2, 1, 3))
    # Host-resampled images: the canvas's bytes are the float32 crop.
    flat = ops.reshape(canvas, (-1, side * side * channels))
    ready = ops.reshape(ops.view(flat, "float32"), (-1, size, size, channels))
    deferred = ops.reshape(geometry[:, 4] > 0.0, (-1, 1, 1, 1))
    return ops.where(deferred, crops, ready)


class FinishResize(keras.layers.Layer):
    """`finish` as a layer, for functional models that take `{canvas, geometry}`.

    Always float32, inputs never autocast: a mixed-precision policy must not round
    the geometry (or the crops) to 16 bits.
    """

    def __init__(self, **kwargs):
        kwargs.update(dtype="float32", autocast=False)
        super().__init__(**kwargs)

    def call(self, canvas, geometry):
        return finish(canvas, geometry)

    def compute_output_shape(self, canvas_shape, geometry_shape):
        batch, side, _, channels = canvas_shape
        return (batch, side // 2, side // 2, channels)
