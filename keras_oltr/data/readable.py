"""Whether every known class has a train image that the input pipeline can read.

A class whose train images are all unreadable (missing, a link out of data_root,
corrupt, or over the pixel budget) would be skipped image by image while
training: the run would train without the class and report shot groups and
counts of images it never saw. `unreadable_classes` finds such classes before
training by reading and decoding, for each class, its train images in file order
until one decodes with the pipeline's own decoder (`decode.decode_image`): one
image per class when the data is sound, e.g. 1,000 decodes for ImageNet-LT.
"""

from __future__ import annotations

from concurrent import futures

import numpy as np
import tensorflow as tf

from keras_oltr.data import decode

# Decodes in flight at once (TensorFlow's decoders release the GIL).
_WORKERS = 8


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
    paths: np.ndarray, labels: np.ndarray, num_classes: int, *, channels: int, max_pixels: int
) -> list[tuple[int, int, str]]:
    """`(class, number of train images, first path)` of classes with no readable image.

    Tries each class's images in file order, one round at a time (round r reads
    the r-th image of every class still without a readable one), so sound data
    costs one decode per class.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(num_classes + 1))
    readable = _reader(channels, max_pixels)
    pending = [c for c in range(num_classes) if starts[c + 1] > starts[c]]
    failed = []
    tried = 0
    with futures.ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        while pending:
            candidates = [str(paths[order[starts[c] + tried]]) for c in pending]
            results = list(pool.map(readable, candidates))
            tried += 1
            still = [c for c, ok in zip(pending, results, strict=True) if not ok]
            pending = [c for c in still if starts[c] + tried < starts[c + 1]]
            failed += [c for c in still if starts[c] + tried >= starts[c + 1]]
    return [
        (c, int(starts[c + 1] - starts[c]), str(paths[order[starts[c]]])) for c in sorted(failed)
    ]
