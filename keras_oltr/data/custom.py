"""The `custom` dataset: any images listed by OLTR-format split files.

Registered as `custom`; its image size and channels default to what the first
train images have (`probe_images`).
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from keras_oltr.data.registry import register_dataset
from keras_oltr.data.split_file_parser import escapes_data_root, read_class_names, read_split_file
from keras_oltr.data.split_files import SplitFileDataset

# Images read to infer the size and channels of a custom dataset.
PROBE_IMAGES = 8


@register_dataset("custom")
def custom(
    *,
    data_root: str,
    train: str,
    val: str | None = None,
    test: str | None = None,
    open: str | None = None,
    open_val: str | None = None,
    num_classes: int | None = None,
    class_names_file: str | None = None,
    name: str = "custom",
    image_size: int | None = None,
    channels: int | None = None,
    **kwargs,
) -> SplitFileDataset:
    """Any dataset described by OLTR-format split files (e.g. from `make_splits`).

    Args:
        data_root: folder the relative image paths start from.
        train, val, test, open, open_val: split file paths (train required).
        num_classes: K; inferred from the train labels (max + 1) unless given or
            implied by `class_names_file`.
        class_names_file: optional file with one class name per line.
        name: dataset name for logs and the default run name.
        image_size: model input size; default: the size of the first train images
            when they are all at most 224 px (e.g. 28 for MNIST-like data), else 224.
        channels: 1 or 3; default: 1 when the first train images are all grayscale,
            else 3.
        **kwargs: further `SplitFileDataset` arguments (horizontal_flip...).
    """
    given = {"train": train, "val": val, "test": test, "open": open, "open_val": open_val}
    if image_size is None or channels is None:
        probed_size, probed_channels = probe_images(data_root, train)
        if image_size is None:
            image_size = probed_size
        if channels is None:
            channels = probed_channels
    return SplitFileDataset(
        data_root=data_root,
        split_files={s: p for s, p in given.items() if p is not None},
        name=name,
        num_classes=num_classes,
        class_names=read_class_names(class_names_file),
        image_size=image_size,
        channels=channels,
        **kwargs,
    )


def probe_images(data_root: str, train_file: str, count: int = PROBE_IMAGES):
    """(image_size, channels) defaults read from the first images of a train file.

    The size is the largest side of the first `count` readable images when it is at
    most 224, else 224; channels is 1 when they are all grayscale, else 3. Falls
    back to (224, 3) when none can be read (loading reports the real problem).
    """
    sizes, grays = [], []
    if os.path.isdir(data_root) and os.path.isfile(train_file):
        entries, _ = read_split_file(train_file)
        for _, rel, _ in entries:
            if len(sizes) >= count:
                break
            if escapes_data_root(rel):
                continue
            try:
                image = tf.io.decode_image(
                    tf.io.read_file(os.path.join(data_root, rel)), expand_animations=False
                )
            except (tf.errors.OpError, ValueError):
                continue
            h, w, c = image.shape
            sizes.append(max(h, w))
            grays.append(c in (1, 2))
    if not sizes:
        return 224, 3
    size = max(sizes) if max(sizes) <= 224 else 224
    channels = 1 if all(grays) else 3
    logging.info(
        "Custom dataset: image_size=%d, channels=%d from its first %d train images "
        "(set --dataset_arg=image_size=... / channels=... to override).",
        size,
        channels,
        len(sizes),
    )
    return size, channels
