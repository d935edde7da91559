"""Image decoding, training augmentation and test transforms (TensorFlow ops).

All functions work on single images and return float32 `[size, size, C]` images
with values in `[0, 255]`; normalisation is the model's job. Randomness comes only
from stateless ops fed by an explicit `seed` (an int `[2]` tensor), so that a given
(seed, epoch, position) always produces the same augmented image.

The test transform is also THE preprocessing of a deployed model: evaluation, the
SavedModel's `serve_encoded` signature, `export/predict.py` and the TFLite/ONNX
predictor all go through `test_transform` (`serving_transform` for encoded
bytes), so a served model sees the pixels its reported accuracy was measured on.

Two families:

- "imagenet" (large images, the OLTR reference): RandomResizedCrop(scale 0.08..1,
  ratio 3/4..4/3) + horizontal flip + colour jitter (brightness, contrast,
  saturation 0.4); test: resize the shorter side to `size * 256 / 224`, centre crop.
  The flip and jitter can be deferred (`defer_jitter=True`): their draws are then
  returned as a parameter vector beside the resized crop, for the model's train step
  to apply with the same function (`keras_oltr.colour_jitter`). The test resize can
  be deferred too (`imagenet_test_canvas`): the decoded input window then goes to
  the model's call, which resamples it (`keras_oltr.deferred_resize`).
- "small" (28-32 px data such as CIFAR or MNIST): pad-4 random crop (+ horizontal
  flip where the dataset allows it); test: plain resize to `size` (identity when the
  image already has that size).

Resizing is always bilinear with antialiasing (PIL's and torchvision's semantics).
Encoded images can be checked against a pixel budget from their header before
decoding (`check_image_size`), so a small file cannot cost gigabytes.
"""

from __future__ import annotations

import math
import types

import tensorflow as tf

from keras_oltr import colour_jitter, deferred_resize

AUGMENTATIONS = ("imagenet", "small")

CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = 0.4
TEST_RESIZE_RATIO = 256.0 / 224.0
SMALL_PADDING = 4


SMALL_IMAGE_MAX = 64  # image sizes up to this use the "small" family by default
MAX_PIXELS = 100_000_000  # default pixel budget of one served image (height * width)
_FORMATS = "JPEG, PNG, GIF, BMP or WebP"


def default_augmentation(image_size: int) -> str:
    """The transform family of a model input size: "small" up to 64 px, else "imagenet"."""
    return "small" if int(image_size) <= SMALL_IMAGE_MAX else "imagenet"


def _header_uint(header: tf.Tensor, start: int, length: int, *, big_endian: bool) -> tf.Tensor:
    digits = header[start : start + length]
    if big_endian:
        digits = digits[::-1]
    return tf.reduce_sum(digits * tf.constant([256**i for i in range(length)], tf.int64))


def encoded_image_size(contents: tf.Tensor) -> tf.Tensor:
    """(height, width) int64 `[2]` of an encoded image, read from its header only.

    JPEG, PNG, GIF (logical screen), BMP and WebP are understood; other bytes give
    `[-1, -1]`. Nothing is decoded, so this costs the same for any image size.
    """

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64)

    def other():
        # 32 header bytes, zero-padded so that short files index safely.
        magic = tf.strings.join([tf.strings.substr(contents, 0, 32), tf.constant(b"\0" * 32)])
        head = tf.cast(tf.io.decode_raw(magic, tf.uint8)[:32], tf.int64)

        def starts(prefix, pos=0):
            return tf.equal(tf.strings.substr(magic, pos, len(prefix)), prefix)

        def le(start, length):
            return _header_uint(head, start, length, big_endian=False)

        bmp_height = le(22, 4)
        bmp_height = tf.abs(tf.where(bmp_height >= 2**31, bmp_height - 2**32, bmp_height))
        vp8l = le(21, 4)
        candidates = [
            (
                starts(b"\x89PNG\r\n\x1a\n"),
                [
                    _header_uint(head, 20, 4, big_endian=True),
                    _header_uint(head, 16, 4, big_endian=True),
                ],
            ),
            (starts(b"GIF8"), [le(8, 2), le(6, 2)]),
            (starts(b"BM"), [bmp_height, le(18, 4)]),
            (
                tf.logical_and(starts(b"RIFF"), starts(b"WEBPVP8 ", 8)),
                [le(28, 2) % 2**14, le(26, 2) % 2**14],
            ),
            (
                tf.logical_and(starts(b"RIFF"), starts(b"WEBPVP8L", 8)),
                [(vp8l // 2**14) % 2**14 + 1, vp8l % 2**14 + 1],
            ),
            (
                tf.logical_and(starts(b"RIFF"), starts(b"WEBPVP8X", 8)),
                [le(27, 3) + 1, le(24, 3) + 1],
            ),
        ]
        size = tf.constant([-1, -1], tf.int64)
        for matches, hw in reversed(candidates):
            size = tf.where(matches, tf.stack(hw), size)
        return size

    return tf.cond(tf.io.is_jpeg(contents), jpeg, other)


def check_image_size(contents: tf.Tensor, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """Returns `contents` once its header says it has at most `max_pixels` pixels.

    Fails with an InvalidArgumentError naming the size and the budget (or the
    supported formats) BEFORE anything is decoded: a 400 KB PNG of 20000 x 20000
    pixels would otherwise cost gigabytes.
    """
    max_pixels = int(max_pixels)
    if max_pixels < 1:
        raise ValueError(f"`max_pixels` must be positive. Received: max_pixels={max_pixels}")
    size = encoded_image_size(contents)
    known = tf.debugging.Assert(
        size[0] >= 0, [f"Unsupported image format: expected {_FORMATS} bytes."]
    )
    with tf.control_dependencies([known]):
        small = tf.debugging.Assert(
            size[0] * size[1] <= max_pixels,
            [
                f"Image too large: more than max_pixels={max_pixels} pixels "
                "(raise max_pixels to accept it). Received height, width:",
                size,
            ],
        )
    with tf.control_dependencies([small]):
        return tf.identity(contents)


def decode_image(contents: tf.Tensor, channels: int) -> tf.Tensor:
    """Decodes JPEG/PNG/BMP/GIF/WebP bytes to uint8 `[h, w, channels]`.

    Gray, RGB, RGBA and CMYK inputs are all converted to `channels` (1 or 3) by the
    decoders themselves (RGBA loses its alpha channel, CMYK JPEGs become RGB). GIF,
    BMP and WebP decoders only produce colour, and libjpeg converts only 1- and
    3-component JPEGs to gray, so for `channels=1` those (and CMYK JPEGs) decode to
    RGB and convert with the ITU-R 601-2 luma weights.
    """
    if channels == 1:

        def native():
            return tf.io.decode_image(contents, channels=1, expand_animations=False)

        def via_rgb():
            rgb = tf.io.decode_image(contents, channels=3, expand_animations=False)
            return tf.image.rgb_to_grayscale(rgb)

        def jpeg():
            cmyk = tf.equal(tf.image.extract_jpeg_shape(contents)[2], 4)
            return tf.cond(cmyk, via_rgb, native)

        png = tf.equal(tf.strings.substr(contents, 0, 8), b"\x89PNG\r\n\x1a\n")
        image = tf.cond(tf.io.is_jpeg(contents), jpeg, lambda: tf.cond(png, native, via_rgb))
    else:
        image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


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
    image = decode_image(check_image_size(contents, max_pixels), channels)
    if height == width:
        image = test_transform(image, height, augmentation)
    else:  # no dataset makes non-square inputs; a plain resize keeps such models servable
        image = _resize(image, [height, width])
    return tf.ensure_shape(image, (height, width, channels))


def _random_crop_box(image_hw: tf.Tensor, seed: tf.Tensor):
    """Samples a RandomResizedCrop box: (offset_y, offset_x, height, width)."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([image_hw, [1]], axis=0),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=CROP_RATIO,
        area_range=CROP_SCALE,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return begin[0], begin[1], size[0], size[1]


def _resample_rows(rows: tf.Tensor, out_size, scale=None, offset=0) -> tf.Tensor:
    """[h, n] -> float32 [out_size, n]: antialiased bilinear (triangle) along axis 0.

    Output row i is row `i + offset` of the input resized by `scale` (default
    `out_size / h`). TensorFlow's ScaleAndTranslate kernel with the n values of a
    row as its "channels": its inner loop then runs over n contiguous values
    instead of 3 interleaved channels, several times faster. The rows go in as the
    kernel's x axis: it resamples x first, then copies the (unscaled) y axis, so the
    copy is of the output rows, not of the input's (about 1.5x faster for a
    shrinking resize, bit-identical: the same weights in the same order).
    """
    if scale is None:
        scale = tf.cast(out_size, tf.float32) / tf.cast(tf.shape(rows)[0], tf.float32)
    out = tf.raw_ops.ScaleAndTranslate(
        images=rows[None, None, :, :],
        size=tf.stack([1, out_size]),
        scale=tf.stack([1.0, scale]),
        translation=tf.stack([0.0, -tf.cast(offset, tf.float32)]),
        kernel_type="triangle",
        antialias=True,
    )
    return out[0, 0, :, :]


def _separable_resize(image, size, scale=(None, None), offset=(0, 0), *, swap_axes=False):
    """Resamples the rows, then the columns (as rows of the transposed image).

    The column pass leaves the image transposed; `swap_axes=True` returns it so
    (`[size[1], size[0], C]`), for callers that swap a whole batch back at once.
    """
    channels = image.shape[-1]
    hw = tf.shape(image)[:2]
    rows = _resample_rows(tf.reshape(image, [hw[0], -1]), size[0], scale[0], offset[0])
    columns = tf.transpose(tf.reshape(rows, [size[0], hw[1], channels]), [1, 0, 2])
    out = _resample_rows(tf.reshape(columns, [hw[1], -1]), size[1], scale[1], offset[1])
    out = tf.reshape(out, [size[1], size[0], channels])
    return out if swap_axes else tf.transpose(out, [1, 0, 2])


def _resize(image: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize with antialiasing (as PIL does when downscaling) to float32.

    The same values as `tf.image.resize(image, size, antialias=True)`, computed
    faster: uint8 goes straight into the kernels (no float copy of the input); when
    an axis shrinks, the two axes are resampled one after the other, each as rows
    (bit-identical to the one-call kernel); when no axis shrinks, the triangle
    kernel is plain bilinear interpolation with half-pixel centres, so the bilinear
    kernel computes it (float rounding aside, < 0.01).
    """
    size = tf.convert_to_tensor(size, tf.int32)
    out = tf.cond(
        tf.reduce_all(tf.shape(image)[:2] <= size),
        lambda: tf.image.resize(image, size, method="bilinear"),
        lambda: _separable_resize(image, size),
    )
    out.set_shape([None, None, image.shape[-1]])
    return out


# Decoded margin around a JPEG crop window: one 4:2:0 MCU (16 px). libjpeg's chroma
# upsampling at the edge of a cropped decode differs from a full decode within it.
JPEG_WINDOW_MARGIN = 16


def decode_jpeg_window(contents: tf.Tensor, box, channels: int) -> tf.Tensor:
    """The `box` = (y, x, height, width) window of a JPEG, decoding little else.

    `tf.image.decode_and_crop_jpeg` on exactly the box differs from decoding the
    whole image and cropping at the box's edges for chroma-subsampled JPEGs (a few
    levels, in about half of random boxes): libjpeg upsamples the chroma at the
    decoded region's border from the border itself. Decoding the box plus a margin
    of one MCU and cropping in memory gives exactly the full decode's pixels, as
    PIL and torchvision (which decode whole images) see them.
    """
    y, x, h, w = (tf.convert_to_tensor(v, tf.int32) for v in box)
    shape = tf.image.extract_jpeg_shape(contents)
    y0 = tf.maximum(y - JPEG_WINDOW_MARGIN, 0)
    x0 = tf.maximum(x - JPEG_WINDOW_MARGIN, 0)
    y1 = tf.minimum(y + h + JPEG_WINDOW_MARGIN, shape[0])
    x1 = tf.minimum(x + w + JPEG_WINDOW_MARGIN, shape[1])
    window = tf.image.decode_and_crop_jpeg(
        contents, tf.stack([y0, x0, y1 - y0, x1 - x0]), channels=channels
    )
    image = window[y - y0 : y - y0 + h, x - x0 : x - x0 + w]
    image.set_shape([None, None, channels])
    return image


def decode_random_resized_crop(
    contents: tf.Tensor, size: int, channels: int, seed: tf.Tensor
) -> tf.Tensor:
    """Decodes encoded image bytes and applies RandomResizedCrop to `size`.

    JPEGs take a fast path that decodes only the crop window
    (`decode_jpeg_window`); other formats are decoded fully, then cropped. Both give
    the pixels of decoding the whole image and cropping it.
    """

    def jpeg():
        shape = tf.image.extract_jpeg_shape(contents)
        return decode_jpeg_window(contents, _random_crop_box(shape[:2], seed), channels)

    def other():
        image = decode_image(contents, channels)
        y, x, h, w = _random_crop_box(tf.shape(image)[:2], seed)
        return image[y : y + h, x : x + w]

    crop = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    image = _resize(crop, [size, size])
    image.set_shape([size, size, channels])
    return image


def random_resized_crop(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """RandomResizedCrop(scale 0.08..1, ratio 3/4..4/3) of a decoded image to `size`."""
    y, x, h, w = _random_crop_box(tf.shape(image)[:2], seed)
    out = _resize(image[y : y + h, x : x + w], [size, size])
    out.set_shape([size, size, image.shape[-1]])
    return out


# The 6 orders of (brightness, contrast, saturation) = ops (0, 1, 2).
_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))

# colour_jitter.flip_and_jitter's array functions as TensorFlow ops (tf.data runs
# TensorFlow whatever the Keras backend).
_TF_ARRAYS = types.SimpleNamespace(
    convert_to_tensor=tf.convert_to_tensor,
    mean=lambda x, axis, keepdims: tf.reduce_mean(x, axis=axis, keepdims=keepdims),
    clip=tf.clip_by_value,
    where=tf.where,
    flip=lambda x, axis: tf.reverse(x, [axis]),
    transpose=lambda x, axes: tf.transpose(x, perm=axes),
)


def _jitter_parameters(seed, brightness, contrast, saturation):
    """(factors of ops 0..2, their order [3]) from one seed, as the op-by-op form drew them."""
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    lows = tf.constant([1.0 - brightness, 1.0 - contrast, 1.0 - saturation])
    highs = tf.constant([1.0 + brightness, 1.0 + contrast, 1.0 + saturation])
    factors = tf.random.stateless_uniform([3], seeds[0], minval=lows, maxval=highs)
    choice = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=6, dtype=tf.int32)
    return factors, tf.gather(tf.constant(_ORDERS, tf.int32), choice)


def jitter_vector(flip, factors, order) -> tf.Tensor:
    """float32 `[colour_jitter.NUM_PARAMETERS]`: flip, then (factor, gray, mean) per step.

    `flip` a bool scalar, `factors` of ops (brightness, contrast, saturation) and
    `order` the op applied at each of the three steps (see `keras_oltr.colour_jitter`).
    """
    order = tf.cast(order, tf.int32)
    steps = tf.stack(
        [
            tf.gather(factors, order),
            tf.cast(tf.equal(order, 2), tf.float32),  # saturation blends with gray
            tf.cast(tf.equal(order, 1), tf.float32),  # contrast with the mean gray
        ],
        axis=1,
    )
    return tf.concat([tf.cast(flip, tf.float32)[None], tf.reshape(steps, [9])], axis=0)


def flip_and_jitter_parameters(seeds: tf.Tensor, *, flip: bool) -> tf.Tensor:
    """The flip and colour-jitter draws of one training image, as a parameter vector.

    `seeds` are the image's three transform seeds (the crop uses the first): the flip
    is `stateless_random_flip_left_right`'s draw from `seeds[1]` (never when `flip`
    is False), the jitter factors and order come from `seeds[2]`.
    """
    flipped = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=1.0) < 0.5
    factors, order = _jitter_parameters(seeds[2], JITTER, JITTER, JITTER)
    return jitter_vector(tf.logical_and(flip, flipped), factors, order)


def _apply_one(image, parameters):
    return colour_jitter.flip_and_jitter(image[None], parameters[None], _TF_ARRAYS)[0]


# XLA-compiled once per image shape (the train crop size: once per run): the whole
# flip + jitter fuses into a few loops over the image.
_apply_one_xla = tf.function(_apply_one, jit_compile=True, autograph=False)


def apply_flip_and_jitter(image: tf.Tensor, parameters: tf.Tensor) -> tf.Tensor:
    """`colour_jitter.flip_and_jitter` of one float32 `[H, W, 3]` image, XLA-compiled."""
    out = _apply_one_xla(tf.cast(image, tf.float32), parameters)
    out.set_shape(image.shape)
    return out


def color_jitter(
    image: tf.Tensor,
    seed: tf.Tensor,
    brightness: float = JITTER,
    contrast: float = JITTER,
    saturation: float = JITTER,
) -> tf.Tensor:
    """torchvision-style ColorJitter on a float RGB image in `[0, 255]`.

    Each factor is drawn uniformly from `[1 - x, 1 + x]`; brightness scales the
    image, contrast blends with the mean gray level, saturation blends with the
    grayscale image; the three are applied in a random order, clipping to
    `[0, 255]` after each, as torchvision does.
    """
    factors, order = _jitter_parameters(seed, brightness, contrast, saturation)
    return apply_flip_and_jitter(image, jitter_vector(False, factors, order))


def imagenet_train_transform(
    contents: tf.Tensor,
    size: int,
    channels: int,
    seed: tf.Tensor,
    *,
    flip: bool = True,
    defer_jitter: bool = False,
):
    """Training augmentation of the OLTR reference, from encoded image bytes.

    With `defer_jitter` (RGB only) the flip and colour jitter are drawn but not
    applied: returns `(image, parameters)` for `colour_jitter.flip_and_jitter`.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    image = decode_random_resized_crop(contents, size, channels, seeds[0])
    return _flip_and_jitter(image, seeds, flip=flip, defer=defer_jitter)


def imagenet_train_transform_array(
    image: tf.Tensor, size: int, seed: tf.Tensor, *, flip: bool = True, defer_jitter: bool = False
):
    """Training augmentation of the OLTR reference, from a decoded uint8 image.

    `defer_jitter` as in `imagenet_train_transform`.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    out = random_resized_crop(image, size, seeds[0])
    return _flip_and_jitter(out, seeds, flip=flip, defer=defer_jitter)


def _flip_and_jitter(image: tf.Tensor, seeds: tf.Tensor, *, flip: bool, defer: bool = False):
    if image.shape[-1] != 3:  # colour jitter needs colour; gray images skip it
        if defer:
            raise ValueError("Only RGB images can defer the colour jitter.")
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[1])
        return image
    # The same random draws as stateless_random_flip_left_right and color_jitter.
    parameters = flip_and_jitter_parameters(seeds, flip=flip)
    if defer:
        return image, parameters
    return apply_flip_and_jitter(image, parameters)


def small_train_transform(
    image: tf.Tensor, size: int, seed: tf.Tensor, *, flip: bool, padding: int = SMALL_PADDING
) -> tf.Tensor:
    """Pad-`padding` random crop (+ optional horizontal flip) for 28-32 px images.

    The crop keeps the image's own size (zero padding, as torchvision's
    `RandomCrop(size, padding=4)`); the result is then resized to `size` if needed.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    padded = tf.pad(tf.cast(image, tf.float32), [[padding, padding], [padding, padding], [0, 0]])
    offsets = tf.random.stateless_uniform(
        [2], seeds[0], minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    out = padded[offsets[0] : offsets[0] + h, offsets[1] : offsets[1] + w]
    if flip:
        out = tf.image.stateless_random_flip_left_right(out, seeds[1])
    return _resize_to(out, size)


def _resize_to(image: tf.Tensor, size: int) -> tf.Tensor:
    channels = image.shape[-1]
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    out = tf.cond(
        same,
        lambda: tf.cast(image, tf.float32),
        lambda: _resize(image, [size, size]),
    )
    out.set_shape([size, size, channels])
    return out


def small_test_transform(image: tf.Tensor, size: int) -> tf.Tensor:
    """Test transform for small images: resize to `size` (identity if already so)."""
    return _resize_to(image, size)


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
    out = _separable_resize(
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
