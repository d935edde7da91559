"""Whether every known class has a train image that the input pipeline can read.

A class whose train images are all unreadable (missing, a link out of data_root,
corrupt, or over the pixel budget) would be skipped image by image while
training: the run would train without the class and report shot groups and
counts of images it never saw. `unreadable_classes` finds such classes before
training by reading and decoding, for each class, its train images in file order
until one decodes with the pipeline's own decoder (`decode.decode_image`): one
image per class when the data is sound, e.g. 1,000 decodes for ImageNet-LT.

The first images of all classes are decoded in one parallel tf.data pass. The
cost stays bounded when the data is not sound (say a copy that left every file
empty): a class is refused once its first `MAX_TRIES` images all fail, and the
check can stop after the block of `BLOCK` retried classes in which a given number
of refused classes was reached. Broken data then costs at most one decode per
class plus `MAX_TRIES * BLOCK` before the error.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_oltr.data import decode

# Decodes in flight at once, and results fetched at once, in the tf.data pass.
_WORKERS = 8
_BATCH = 4096
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


def _checker(channels: int, max_pixels: int):
    """A function of paths -> bool mask: which read and decode (`decode.decode_image`).

    One tf.data pass per call, decoding in parallel; an image that fails (missing,
    unreadable, undecodable, over `max_pixels`) is dropped by `ignore_errors`, so the
    mask is the set of indices that came through.
    """

    def check(index, path):
        image = decode.decode_image(tf.io.read_file(path), channels, max_pixels=max_pixels)
        return index, tf.shape(image)[0]  # the shape keeps the decode in the graph

    def readable(paths: list[str]) -> np.ndarray:
        mask = np.zeros(len(paths), bool)
        if not paths:
            return mask
        dataset = (
            tf.data.Dataset.from_tensor_slices((tf.range(len(paths)), tf.constant(paths)))
            .map(check, num_parallel_calls=_WORKERS, deterministic=False)
            .ignore_errors()
            .batch(_BATCH)
        )
        for indices, _ in dataset.as_numpy_iterator():
            mask[indices] = True
        return mask

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

    The first image of every class is read in one pass, so sound data costs one
    decode per class. Classes whose first image fails are retried in blocks of
    `BLOCK`, one round at a time (round r reads the r-th image of every class of the
    block still without a readable one), up to `max_tries` images. With
    `stop_after`, the check ends after the block in which that many classes were
    refused; the second value is then the label of the first class left unchecked
    (every class below it is checked), otherwise `num_classes`.
    """
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(num_classes + 1))
    sizes = np.diff(starts)
    readable = _checker(channels, max_pixels)

    def first_path(c):
        return str(paths[order[starts[c]]])

    def exhausted(c, tried):
        return tried >= min(sizes[c], max_tries)

    def refuse(classes, tried):
        return [UnreadableClass(c, int(sizes[c]), tried, first_path(c)) for c in classes]

    # Round 1 reads every class's first image in one pass; classes whose first image
    # fails are retried in blocks, one round (the next image of each) at a time.
    classes = np.flatnonzero(sizes > 0)
    passed = readable([first_path(c) for c in classes])
    retry = [int(c) for c in classes[~passed]]
    failed = refuse([c for c in retry if exhausted(c, 1)], 1)
    retry = [c for c in retry if not exhausted(c, 1)]
    for block_start in range(0, len(retry), BLOCK):
        pending, tried = retry[block_start : block_start + BLOCK], 1
        while pending:
            results = readable([str(paths[order[starts[c] + tried]]) for c in pending])
            tried += 1
            still = [c for c, read in zip(pending, results, strict=True) if not read]
            failed += refuse([c for c in still if exhausted(c, tried)], tried)
            pending = [c for c in still if not exhausted(c, tried)]
        rest = retry[block_start + BLOCK :]
        if stop_after is not None and len(failed) >= stop_after and rest:
            return sorted(failed, key=lambda u: u.label), rest[0]
    return sorted(failed, key=lambda u: u.label), num_classes
