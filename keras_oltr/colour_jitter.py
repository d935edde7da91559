"""Horizontal flip + colour jitter of a batch from drawn parameters: the rule, once.

The ImageNet-family training augmentation ends with a horizontal flip and
torchvision's ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4): each op
blends the image with a reference and clips to `[0, 255]`,

    x <- clip((x - ref) * f + ref, 0, 255)

with ref = 0 for brightness, the image's mean gray level for contrast and the
per-pixel gray level for saturation (ITU-R 601-2 luma, 0.299 R + 0.587 G +
0.114 B, as PIL's convert("L")); the three ops run in a random order, each with
its own factor drawn from `[1 - 0.4, 1 + 0.4]`.

The random draws happen in the input pipeline (`keras_oltr.data.augment`,
stateless, from each example's seed) and are written as a float32 vector of
`NUM_PARAMETERS` per image:

    [flip, f_0, gray_0, mean_0, f_1, gray_1, mean_1, f_2, gray_2, mean_2]

flip is 1.0 to mirror the image, else 0.0; step s of the three applies factor f_s
with ref = gray_s * gray + mean_s * mean (one of gray_s, mean_s is 1.0 and the
other 0.0, or both 0.0 for brightness), which is exactly the reference each op
needs. `flip_and_jitter` applies such a vector. It runs in two places:

- in the input pipeline (`tf.data`, on the host's CPU), through TensorFlow ops;
- in the model's train step (keras.ops, on the accelerator, inside the compiled
  step), when the pipeline defers it (`train_dataset(..., defer_jitter=True)`):
  the pipeline then does no per-pixel work after the resize, a quarter of the
  train transform's CPU time.

Both give the same numbers (float rounding of the mean aside), because both run
this one function.
"""

import keras
from keras import ops

NUM_PARAMETERS = 10
IMAGES_KEY = "images"  # batch keys of a deferred-jitter input: {images, jitter}
JITTER_KEY = "jitter"


def flip_and_jitter(images, parameters, xp=None):
    """Flips and colour-jitters a batch of RGB images as `parameters` say.

    Args:
        images: float32 `[B, H, W, 3]` with values in `[0, 255]`.
        parameters: float32 `[B, NUM_PARAMETERS]`, as the module docstring lays out.
        xp: the array functions to use: `convert_to_tensor`, `mean`, `clip`,
            `where`, `flip` and `transpose` with keras.ops' signatures; default
            keras.ops. The input pipeline passes TensorFlow's
            (`keras_oltr.data.augment`).

    Returns:
        float32 `[B, H, W, 3]` in `[0, 255]`.
    """
    xp = xp or ops
    images, parameters = xp.convert_to_tensor(images), xp.convert_to_tensor(parameters)
    flip = parameters[:, 0:1, None, None] > 0.5
    x = xp.where(flip, xp.flip(images, axis=2), images)
    # Planar [B, C, H, W]: the gray level then reads three contiguous planes, which
    # XLA vectorises (about 1.7x faster on CPU than the interleaved layout).
    x = xp.transpose(x, axes=(0, 3, 1, 2))
    for step in range(3):
        f, use_gray, use_mean = (
            parameters[:, 1 + 3 * step + i, None, None, None] for i in range(3)
        )
        gray = x[:, 0] * 0.299 + x[:, 1] * 0.587 + x[:, 2] * 0.114
        # The mean of the [B, H, W] gray levels: about 15% faster under XLA on CPU
        # than reducing the [B, 1, H, W] plane.
        mean = xp.mean(gray, axis=(1, 2), keepdims=True)[:, None]
        gray = gray[:, None]
        # Exactly gray, mean or 0: the other term is a product with 0.0.
        reference = use_gray * gray + use_mean * mean
        x = xp.clip((x - reference) * f + reference, 0.0, 255.0)
    return xp.transpose(x, axes=(0, 2, 3, 1))


_fused = {}


def _fused_flip_and_jitter():
    """`flip_and_jitter`, XLA-compiled as one computation where the step is not.

    JAX compiles the whole train step already. TensorFlow runs OLTRModel's step
    without XLA (faster on CPU), which would leave the jitter as some 35 separate
    element-wise kernels over the batch; an XLA-compiled function inside the step
    fuses them. TensorFlow is imported only on its own backend.
    """
    backend = keras.backend.backend()
    if backend not in _fused:
        _fused[backend] = flip_and_jitter
        if backend == "tensorflow":
            import tensorflow as tf

            _fused[backend] = tf.function(flip_and_jitter, jit_compile=True, autograph=False)
    return _fused[backend]


def apply_deferred(x):
    """`x` with a deferred flip and jitter applied: `{images, jitter}` -> images.

    Any other `x` (a tensor, or a dict with other keys) is returned unchanged.
    """
    if isinstance(x, dict) and set(x) == {IMAGES_KEY, JITTER_KEY}:
        return _fused_flip_and_jitter()(x[IMAGES_KEY], x[JITTER_KEY])
    return x
