"""The `custom` dataset: any images listed by OLTR-format split files.

Registered as `custom`; its image size and channels default to what the first
train images have (`probe_images`). The probe runs before the split files are
checked, so it guards itself: it skips paths that leave `data_root` as written or
through symbolic links (loading then reports them with file and line), and it
reads each image's size from its header before decoding it, refusing one of more
than `max_pixels` pixels with a ValueError naming the file (a 400 KB PNG whose
header says 20000 x 20000 would otherwise cost gigabytes).
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from keras_oltr.data import decode
from keras_oltr.data.data_root import DataRoot, escapes_data_root
from keras_oltr.data.registry import register_dataset
from keras_oltr.data.split_file_parser import read_class_names, read_split_file
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
    max_pixels: int = decode.MAX_PIXELS,
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
        max_pixels: pixel budget (height * width) of one image, read from its
            header before decoding: a larger first train image is a ValueError,
            a larger image later is skipped as unreadable.
        **kwargs: further `SplitFileDataset` arguments (horizontal_flip...).
    """
    given = {"train": train, "val": val, "test": test, "open": open, "open_val": open_val}
    if image_size is None or channels is None:
        probed_size, probed_channels = probe_images(
            data_root,
            train,
            max_pixels=max_pixels,
            allow_outside_data_root=kwargs.get("allow_outside_data_root", False),
        )
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
        max_pixels=max_pixels,
        **kwargs,
    )


def probe_images(
    data_root: str,
    train_file: str,
    count: int = PROBE_IMAGES,
    *,
    max_pixels: int = decode.MAX_PIXELS,
    allow_outside_data_root: bool = False,
):
    """(image_size, channels) defaults read from the first images of a train file.

    The size is the largest side of the first `count` readable images when it is at
    most 224, else 224; channels is 1 when they are all grayscale, else 3. Falls
    back to (224, 3) when none can be read (loading reports the real problem).
    Paths that leave `data_root`, as written or through symbolic links, are not
    read (unless `allow_outside_data_root`).

    Raises:
        ValueError: an image's header says it has more than `max_pixels` pixels
            (nothing is decoded).
    """
    sizes, grays = [], []
    if os.path.isdir(data_root) and os.path.isfile(train_file):
        entries, _ = read_split_file(train_file)
        root = None if allow_outside_data_root else DataRoot(data_root)
        for lineno, rel, _ in entries:
            if len(sizes) >= count:
                break
            path = os.path.join(data_root, rel)
            if root is not None and (escapes_data_root(rel) or root.check(path)[0] != "file"):
                continue
            try:
                contents = tf.io.read_file(path)
                height, width = (int(v) for v in decode.encoded_image_size(contents))
                if height * width > max_pixels:
                    raise ValueError(
                        f"Image too large: {path} ({os.path.basename(train_file)}:{lineno}) "
                        f"is {height}x{width} pixels by its header, more than "
                        f"max_pixels={max_pixels}; it was not decoded. Remove it from the "
                        "split file, or pass --dataset_arg=max_pixels=... to accept it."
                    )
                image = tf.io.decode_image(contents, expand_animations=False)
            except tf.errors.OpError:
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
