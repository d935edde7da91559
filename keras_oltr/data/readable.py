"""Whether every known class has a train image that the input pipeline can read.

A class whose train images are all unreadable (missing, a link out of data_root,
corrupt, or over the pixel budget) would be skipped image by image while
training: the run would train without the class and report shot groups and
counts of images it never saw. `unreadable_classes` finds such classes before
training by reading and decoding, for each class, its train images in file order
until one decodes with the pipeline's own decoder (`decode.decode_image`): one
image per class when the data is sound, e.g. 1,000 decodes for ImageNet-LT.

The cost stays bounded when the data is not sound (say a copy that left every
file empty): a class is refused once its first `MAX_TRIES` images all fail, and
the check can stop after the block of `BLOCK` classes in which a given number of
refused classes was reached. Both rules make broken data cost at most
`MAX_TRIES * BLOCK` decodes beyond the sound classes before the error.
"""

from __future__ import annotations

import dataclasses
from concurrent import futures

import numpy as np
import tensorflow as tf

from keras_oltr.data import decode

# Decodes in flight at once (TensorFlow's decoders release the GIL).
_WORKERS = 8
# A class whose first MAX_TRIES train images (in file order) all fail is refused.
MAX_TRIES = 16
# Classes checked between two looks at the number of refused classes.
BLOCK = 512


@dataclasses.dataclass(frozen=True)
class UnreadableClass:
    """A class refused by the check: none of its first `tried` of `images` decodes."""

    label: int
    images: int
    tried: int
    first: str

    @property
    def which(self) -> str:
        """The images tried, in words: "its 3 image(s)", "the first 16 of its 40 images"."""
        if self.tried < self.images:
            return f"the first {self.tried} of its {self.images} images"
        return f"its {self.images} image(s)"


def _reader(channels: int, max_pixels: int):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)], reduce_retracing=True)
    def shape(path):
        contents = tf.io.read_file(path)
        return tf.shape(decode.decode_image(contents, channels, max_pixels=max_pixels))

    def readable(path: str) -> bool:
        try:
            shape(tf.constant(path))
        except tf.errors.OpError:
            return False
        return True

    return readable


def unreadable_classes(
    paths: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    channels: int,
    max_pixels: int,
    max_tries: int = MAX_TRIES,
    stop_after: int | None = None,
) -> tuple[list[UnreadableClass], int]:
    """Classes with no readable image among their first `max_tries`, and classes checked.

    Classes are checked in blocks of `BLOCK`; within a block, each class's images
    are tried in file order one round at a time (round r reads the r-th image of
    every class of the block still without a readable one), so sound data costs
    one decode per class. With `stop_after`, the check ends after the block in
    which that many classes were refused; the second value is then the number of
    classes checked (labels `0 .. checked-1`), otherwise `num_classes`.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(num_classes + 1))
    sizes = np.diff(starts)
    readable = _reader(channels, max_pixels)
    failed: list[UnreadableClass] = []
    with futures.ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for first in range(0, num_classes, BLOCK):
            last = min(first + BLOCK, num_classes)
            pending = [c for c in range(first, last) if sizes[c] > 0]
            tried = 0
            while pending:
                candidates = [str(paths[order[starts[c] + tried]]) for c in pending]
                results = list(pool.map(readable, candidates))
                tried += 1
                still = [c for c, ok in zip(pending, results, strict=True) if not ok]
                pending = [c for c in still if tried < min(sizes[c], max_tries)]
                failed += [
                    UnreadableClass(c, int(sizes[c]), tried, str(paths[order[starts[c]]]))
                    for c in still
                    if tried >= min(sizes[c], max_tries)
                ]
            if stop_after is not None and len(failed) >= stop_after and last < num_classes:
                return sorted(failed, key=lambda u: u.label), last
    return sorted(failed, key=lambda u: u.label), num_classes
