"""Image decoding, training augmentation and test transforms (TensorFlow ops).

All functions work on single images and return float32 `[size, size, C]` images
with values in `[0, 255]`; normalisation is the model's job. Randomness comes only
from stateless ops fed by an explicit `seed` (an int `[2]` tensor), so that a given
(seed, epoch, position) always produces the same augmented image.

Two families:

- "imagenet" (large images, the OLTR reference): RandomResizedCrop(scale 0.08..1,
  ratio 3/4..4/3) + horizontal flip + colour jitter (brightness, contrast,
  saturation 0.4); test: resize the shorter side to `size * 256 / 224`, centre crop.
- "small" (28-32 px data such as CIFAR or MNIST): pad-4 random crop (+ horizontal
  flip where the dataset allows it); test: plain resize to `size` (identity when the
  image already has that size).
"""

from __future__ import annotations

import math

import tensorflow as tf

AUGMENTATIONS = ("imagenet", "small")

CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = 0.4
TEST_RESIZE_RATIO = 256.0 / 224.0
SMALL_PADDING = 4


def decode_image(contents: tf.Tensor, channels: int) -> tf.Tensor:
    """Decodes JPEG/PNG/BMP/GIF bytes to uint8 `[h, w, channels]`.

    Gray, RGB, RGBA and CMYK inputs are all converted to `channels` (1 or 3) by the
    decoders themselves (RGBA loses its alpha channel, CMYK JPEGs become RGB).
    """
    image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


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


def _resize(image: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize with antialiasing (as PIL does when downscaling) to float32."""
    return tf.image.resize(tf.cast(image, tf.float32), size, antialias=True)


def decode_random_resized_crop(
    contents: tf.Tensor, size: int, channels: int, seed: tf.Tensor
) -> tf.Tensor:
    """Decodes encoded image bytes and applies RandomResizedCrop to `size`.

    JPEGs take a fast path that decodes only the crop window
    (`tf.image.decode_and_crop_jpeg`); other formats are decoded fully, then cropped.
    """

    def jpeg():
        shape = tf.image.extract_jpeg_shape(contents)
        y, x, h, w = _random_crop_box(shape[:2], seed)
        image = tf.image.decode_and_crop_jpeg(contents, tf.stack([y, x, h, w]), channels=channels)
        image.set_shape([None, None, channels])
        return image

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


def _grayscale(image: tf.Tensor) -> tf.Tensor:
    # ITU-R 601-2 luma, as PIL's convert("L") and torchvision's rgb_to_grayscale.
    return tf.reduce_sum(image * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)


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
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    lows = tf.constant([1.0 - brightness, 1.0 - contrast, 1.0 - saturation])
    highs = tf.constant([1.0 + brightness, 1.0 + contrast, 1.0 + saturation])
    factors = tf.random.stateless_uniform([3], seeds[0], minval=lows, maxval=highs)

    def adjust_brightness(x):
        return tf.clip_by_value(x * factors[0], 0.0, 255.0)

    def adjust_contrast(x):
        mean = tf.reduce_mean(_grayscale(x))
        return tf.clip_by_value((x - mean) * factors[1] + mean, 0.0, 255.0)

    def adjust_saturation(x):
        gray = _grayscale(x)
        return tf.clip_by_value((x - gray) * factors[2] + gray, 0.0, 255.0)

    ops = (adjust_brightness, adjust_contrast, adjust_saturation)
    perms = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))

    def apply(perm):
        def fn():
            x = image
            for i in perm:
                x = ops[i](x)
            return x

        return fn

    choice = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=6, dtype=tf.int32)
    out = tf.switch_case(choice, [apply(p) for p in perms])
    out.set_shape(image.shape)
    return out


def imagenet_train_transform(
    contents: tf.Tensor, size: int, channels: int, seed: tf.Tensor, *, flip: bool = True
) -> tf.Tensor:
    """Training augmentation of the OLTR reference, from encoded image bytes."""
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    image = decode_random_resized_crop(contents, size, channels, seeds[0])
    return _flip_and_jitter(image, seeds, flip=flip)


def imagenet_train_transform_array(
    image: tf.Tensor, size: int, seed: tf.Tensor, *, flip: bool = True
) -> tf.Tensor:
    """Training augmentation of the OLTR reference, from a decoded uint8 image."""
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    out = random_resized_crop(image, size, seeds[0])
    return _flip_and_jitter(out, seeds, flip=flip)


def _flip_and_jitter(image: tf.Tensor, seeds: tf.Tensor, *, flip: bool) -> tf.Tensor:
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    if image.shape[-1] == 3:  # colour jitter needs colour; gray images skip it
        image = color_jitter(image, seeds[2])
    return image


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


def imagenet_test_transform(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resize the shorter side to `size * 256 / 224`, then centre crop `size`."""
    resize_to = int(math.floor(size * TEST_RESIZE_RATIO + 0.5))
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize_to / tf.reduce_min(shape)
    new_hw = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), resize_to)
    resized = _resize(image, new_hw)
    top = (new_hw[0] - size) // 2
    left = (new_hw[1] - size) // 2
    out = resized[top : top + size, left : left + size]
    out.set_shape([size, size, image.shape[-1]])
    return out
