"""Training augmentation of single images (TensorFlow ops), for both transform families.

Every function returns float32 `[size, size, C]` images with values in `[0, 255]`;
normalisation is the model's job. Randomness comes only from stateless ops fed by
an explicit `seed` (an int `[2]` tensor), so that a given (seed, epoch, position)
always produces the same augmented image.

- "imagenet" (the OLTR reference): RandomResizedCrop(scale 0.08..1, ratio
  3/4..4/3) + horizontal flip + colour jitter (brightness, contrast, saturation
  0.4). The flip and jitter can be deferred (`defer_jitter=True`): their draws are
  then returned as a parameter vector beside the resized crop, for the model's
  train step to apply with the same function (`keras_oltr.colour_jitter`).
- "small" (28-32 px data such as CIFAR or MNIST): pad-4 random crop (+ horizontal
  flip where the dataset allows it).
"""

from __future__ import annotations

import types

import tensorflow as tf

from keras_oltr import colour_jitter
from keras_oltr.data.decode import MAX_PIXELS, decode_image, decode_jpeg_window
from keras_oltr.data.resample import resize, resize_to

CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = 0.4
SMALL_PADDING = 4


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


def decode_random_resized_crop(
    contents: tf.Tensor, size: int, channels: int, seed: tf.Tensor, *, max_pixels: int = MAX_PIXELS
) -> tf.Tensor:
    """Decodes encoded image bytes and applies RandomResizedCrop to `size`.

    JPEGs take a fast path that decodes only the crop window
    (`decode_jpeg_window`); other formats are decoded fully, then cropped. Both give
    the pixels of decoding the whole image and cropping it. Both fail before
    decoding when the header says the image has more than `max_pixels` pixels.
    """

    def jpeg():
        shape = tf.image.extract_jpeg_shape(contents)
        box = _random_crop_box(shape[:2], seed)
        return decode_jpeg_window(contents, box, channels, max_pixels=max_pixels)

    def other():
        image = decode_image(contents, channels, max_pixels=max_pixels)
        y, x, h, w = _random_crop_box(tf.shape(image)[:2], seed)
        return image[y : y + h, x : x + w]

    crop = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    image = resize(crop, [size, size])
    image.set_shape([size, size, channels])
    return image


def random_resized_crop(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """RandomResizedCrop(scale 0.08..1, ratio 3/4..4/3) of a decoded image to `size`."""
    y, x, h, w = _random_crop_box(tf.shape(image)[:2], seed)
    out = resize(image[y : y + h, x : x + w], [size, size])
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
    max_pixels: int = MAX_PIXELS,
):
    """Training augmentation of the OLTR reference, from encoded image bytes.

    With `defer_jitter` (RGB only) the flip and colour jitter are drawn but not
    applied: returns `(image, parameters)` for `colour_jitter.flip_and_jitter`.
    Images of more than `max_pixels` pixels fail before decoding.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    image = decode_random_resized_crop(contents, size, channels, seeds[0], max_pixels=max_pixels)
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
    return resize_to(out, size)
