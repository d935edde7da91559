"""The transform families and their evaluation (test) transform (TensorFlow ops).

The test transform works on single decoded images and returns float32
`[size, size, C]` images with values in `[0, 255]`; normalisation is the model's
job. It is also THE preprocessing of a deployed model: evaluation, the
SavedModel's `serve_encoded` signature, `export/predict.py` and the TFLite/ONNX
predictor all go through `test_transform` (`serving_transform` for encoded
bytes), so a served model sees the pixels its reported accuracy was measured on.

Two families (`AUGMENTATIONS`; their training augmentation is in `augment.py`):

- "imagenet" (large images, the OLTR reference): resize the shorter side to
  `size * 256 / 224`, centre crop. The test resize can be deferred
  (`imagenet_test_canvas`): the decoded input window then goes to the model's
  call, which resamples it (`keras_oltr.deferred_resize`).
- "small" (28-32 px data such as CIFAR or MNIST): plain resize to `size`
  (identity when the image already has that size).

Resizing is always bilinear with antialiasing (`resample.py`). Encoded images are
checked against a pixel budget from their header before decoding
(`decode.check_image_size`), so a small file cannot cost gigabytes.
"""

from __future__ import annotations

import math

import tensorflow as tf

from keras_oltr import deferred_resize
from keras_oltr.data.decode import MAX_PIXELS, decode_image
from keras_oltr.data.resample import resize, resize_to, separable_resize

AUGMENTATIONS = ("imagenet", "small")
TEST_RESIZE_RATIO = 256.0 / 224.0

SMALL_IMAGE_MAX = 64  # image sizes up to this use the "small" family by default


def default_augmentation(image_size: int) -> str:
    """The transform family of a model input size: "small" up to 64 px, else "imagenet"."""
    return "small" if int(image_size) <= SMALL_IMAGE_MAX else "imagenet"


def test_transform(image: tf.Tensor, size: int, augmentation: str | None = None) -> tf.Tensor:
    """The evaluation transform of a decoded image: float32 `[size, size, C]`.

    Args:
        image: uint8 (or float) `[h, w, C]`.
        size: model input height = width.
        augmentation: "imagenet" (shorter side to `size * 256 / 224`, centre crop) or
            "small" (resize to `size`, identity when already so); default:
            `default_augmentation(size)`, as datasets choose it.
    """
    augmentation = augmentation or default_augmentation(size)
    if augmentation not in AUGMENTATIONS:
        raise ValueError(
            f"`augmentation` must be one of {AUGMENTATIONS}. "
            f"Received: augmentation={augmentation!r}"
        )
    if augmentation == "small":
        return small_test_transform(image, size)
    return imagenet_test_transform(image, size)


def serving_transform(
    contents: tf.Tensor,
    image_shape,
    *,
    max_pixels: int = MAX_PIXELS,
    augmentation: str | None = None,
) -> tf.Tensor:
    """Encoded image bytes -> the float32 `[H, W, C]` image a deployed model takes.

    Checks the pixel budget from the header (`check_image_size`), decodes to C
    channels (`decode_image`) and applies the evaluation transform
    (`test_transform`), so serving sees the pixels evaluation saw.

    Raises:
        InvalidArgumentError (when run): an unsupported format, more than
            `max_pixels` pixels, or undecodable bytes.
    """
    height, width, channels = (int(d) for d in image_shape)
    image = decode_image(contents, channels, max_pixels=max_pixels)
    if height == width:
        image = test_transform(image, height, augmentation)
    else:  # no dataset makes non-square inputs; a plain resize keeps such models servable
        image = resize(image, [height, width])
    return tf.ensure_shape(image, (height, width, channels))


def small_test_transform(image: tf.Tensor, size: int) -> tf.Tensor:
    """Test transform for small images: resize to `size` (identity if already so)."""
    return resize_to(image, size)


def _test_window(hw: tf.Tensor, size: int):
    """Where the "imagenet" test crop comes from in an image of `hw` = (h, w) pixels.

    The shorter side is resized to `size * 256 / 224` and the centre `size x size`
    crop kept. Only the input rows and columns within the triangle filter's reach of
    the crop (one pixel of the output grid, `1 / scale` input pixels when shrinking),
    with a pixel to spare, matter: the window `[first, last)` per axis.

    Returns:
        (first, last, scale, offset): int32 `[2]` window bounds, float32 `[2]` scale
        (resized / original size) and float32 `[2]` position of the crop in the
        window resized by `scale` (the resampler's translation is `-offset`).
    """
    resize_to = int(math.floor(size * TEST_RESIZE_RATIO + 0.5))
    shape = tf.cast(hw, tf.float32)
    scale = resize_to / tf.reduce_min(shape)
    new_hw = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), resize_to)
    crop_start = tf.cast((new_hw - size) // 2, tf.float32)  # top, left in the resized image
    scale = tf.cast(new_hw, tf.float32) / shape
    # Cropping the input first saves work on the columns (the rows pass reads only the
    # rows it needs anyway) and keeps the translations small, so the float32 sample
    # positions round less.
    reach = tf.math.ceil(1.0 / tf.minimum(scale, 1.0)) + 1.0
    first = tf.clip_by_value(tf.cast(tf.floor(crop_start / scale - reach), tf.int32), 0, hw)
    last = tf.cast(tf.math.ceil((crop_start + size) / scale + reach), tf.int32)
    last = tf.clip_by_value(last, first, hw)
    offset = crop_start - tf.cast(first, tf.float32) * scale
    return first, last, scale, offset


def imagenet_test_transform(image: tf.Tensor, size: int, *, swap_axes: bool = False) -> tf.Tensor:
    """Resize the shorter side to `size * 256 / 224`, then centre crop `size`.

    Only the `size x size` window that the crop keeps is computed (antialiased
    bilinear resampling with a translation, rows then columns), from only the input
    window that the crop's filter reaches (`_test_window`): equal to resizing the
    whole image and cropping (the same kernel weights; float rounding of the sample
    positions aside, < 0.01 on the 0-255 scale).

    Args:
        image: uint8 (or float) `[h, w, C]`.
        size: output height = width.
        swap_axes: return the crop with height and width swapped, as the column pass
            leaves it; `eval_dataset` swaps whole batches back, which takes about
            three quarters of the CPU of one transpose per image.
    """
    return _test_crop(image, size, *_test_window(tf.shape(image)[:2], size), swap_axes=swap_axes)


def _test_crop(image, size, first, last, scale, offset, *, swap_axes=False):
    window = image[first[0] : last[0], first[1] : last[1]]
    out = separable_resize(
        window, [size, size], (scale[0], scale[1]), (offset[0], offset[1]), swap_axes=swap_axes
    )
    out.set_shape([size, size, image.shape[-1]])
    return out


def imagenet_test_canvas(image: tf.Tensor, size: int):
    """The "imagenet" test transform left for the accelerator to finish.

    Returns what `keras_oltr.deferred_resize.finish` turns into
    `imagenet_test_transform(image, size)` (see that module for the layout): the
    uint8 input window that the crop reaches, in the top-left corner of a zero
    `[2 * size, 2 * size, C]` canvas, and its resampling geometry. A window that does
    not fit, or that shrinks by more than 2x (then the filter spans more taps than
    the accelerator's fixed-size resampler has), is resampled here instead and its
    float32 crop travels bit for bit in the canvas's bytes (geometry marks it).

    Args:
        image: uint8 `[h, w, C]`.
        size: output height = width.

    Returns:
        (canvas, geometry): uint8 `[2 * size, 2 * size, C]` and float32
        `[deferred_resize.GEOMETRY_SIZE]`.
    """
    channels = image.shape[-1]
    side = deferred_resize.canvas_size(size)
    first, last, scale, offset = _test_window(tf.shape(image)[:2], size)
    extent = last - first
    fits = tf.logical_and(
        tf.reduce_all(extent <= side),
        tf.reduce_all(scale >= 1.0 / deferred_resize.MAX_SHRINK),
    )

    def deferred():
        window = tf.slice(image, tf.concat([first, [0]], 0), tf.concat([extent, [-1]], 0))
        # Zero padding by concatenation (block copies; tf.pad of uint8 is several
        # times slower).
        out = tf.concat(
            [window, tf.zeros(tf.stack([extent[0], side - extent[1], channels]), image.dtype)], 1
        )
        out = tf.concat(
            [out, tf.zeros(tf.stack([side - extent[0], side, channels]), image.dtype)], 0
        )
        geometry = tf.concat([scale, -offset, tf.cast(extent, tf.float32)], 0)
        return out, geometry

    def here():
        crop = _test_crop(image, size, first, last, scale, offset)
        out = tf.reshape(tf.bitcast(crop, tf.uint8), [side, side, channels])
        return out, tf.constant([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])

    canvas, geometry = tf.cond(fits, deferred, here)
    canvas.set_shape([side, side, channels])
    geometry.set_shape([deferred_resize.GEOMETRY_SIZE])
    return canvas, geometry
