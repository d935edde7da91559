"""`ArrayDataset`: a long-tailed dataset held in memory as uint8 arrays."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from keras_oltr.data import base, split_names


class ArrayDataset(base.LongTailDataset):
    """Long-tailed dataset from in-memory uint8 image arrays, one pair per split.

    Used for small benchmarks (mixed_mnist_lt, CIFAR-LT). Images stay at their
    stored resolution in memory and are resized to `image_size` by the transforms
    (a no-op when the sizes agree).

    Args:
        splits: `{"train": (images, labels), "val": ..., "test": ..., "open": ...,
            optionally "open_val": ...}`. `images` is uint8 `[N, H, W, C]` (or
            `[N, H, W]` for gray); `labels` int `[N]`, known labels in `0..K-1`;
            for open splits the labels must be -1 or None. "train", "val" and
            "test" are required.
        class_names: one name per known class.
        name: dataset name.
        image_size: size the model sees; default: the stored height.
        channels: 1 or 3; default: the stored channel count.
        horizontal_flip: whether flipping is a valid augmentation.
        augmentation: see `LongTailDataset`.

    Example:

    ```python
    ds = ArrayDataset(
        {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test),
         "open": (x_open, None)},
        class_names=[str(i) for i in range(10)], name="toy", horizontal_flip=False)
    for images, labels in ds.train_dataset(64, epoch=0, seed=1).take(1): ...
    ```
    """

    def __init__(
        self,
        splits: Mapping[str, tuple],
        *,
        class_names,
        name: str = "arrays",
        image_size: int | None = None,
        channels: int | None = None,
        horizontal_flip: bool = True,
        augmentation: str | None = None,
    ):
        for split in split_names.KNOWN_SPLITS:
            if split not in splits:
                raise ValueError(
                    f"`splits` must contain {split_names.KNOWN_SPLITS}. Received: splits.keys()="
                    f"{sorted(splits)}"
                )
        num_classes = len(class_names)
        self._images: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}
        for split, pair in splits.items():
            split_names.check_split(split)
            images, labels = pair
            images = np.asarray(images)
            if images.ndim == 3:
                images = images[..., None]
            if images.ndim != 4 or images.dtype != np.uint8:
                raise ValueError(
                    f"Images must be uint8 [N, H, W, C]. Received: split={split!r}, "
                    f"shape={images.shape}, dtype={images.dtype}"
                )
            if split in split_names.OPEN_SPLITS:
                if labels is None:
                    labels = np.full([len(images)], split_names.OPEN_LABEL)
                labels = np.asarray(labels)
                if np.any(labels != split_names.OPEN_LABEL):
                    raise ValueError(
                        f"Open-set labels must all be {split_names.OPEN_LABEL}. "
                        f"Received: split={split!r}, "
                        f"labels={np.unique(labels)[:10]}"
                    )
            else:
                labels = np.asarray(labels)
                if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                    raise ValueError(
                        f"Labels must lie in [0, {num_classes}). Received: split={split!r}, "
                        f"min={labels.min()}, max={labels.max()}"
                    )
            if labels.shape != (len(images),):
                raise ValueError(
                    f"Need one label per image. Received: split={split!r}, "
                    f"images.shape={images.shape}, labels.shape={labels.shape}"
                )
            self._images[split] = images
            self._labels[split] = labels.astype(np.int64)
        stored = self._images["train"].shape
        super().__init__(
            name=name,
            class_names=class_names,
            image_size=stored[1] if image_size is None else image_size,
            channels=stored[3] if channels is None else channels,
            train_labels=self._labels["train"],
            horizontal_flip=horizontal_flip,
            augmentation=augmentation,
        )
        for split, images in self._images.items():
            if images.shape[3] != self.channels:
                raise ValueError(
                    f"Images must have {self.channels} channels. Received: split={split!r}, "
                    f"shape={images.shape}"
                )
        self._tensors: dict[str, tf.Tensor] = {}

    def split_images(self, split: str) -> np.ndarray:
        """The stored uint8 images of `split`, `[N, H, W, C]`."""
        self.split_labels(split)
        return self._images[split]

    def _examples(self, split, indices, seeds, defer_jitter=False, defer_resize=False):
        if split not in self._tensors:
            # Converted once; the tf.data functions capture the tensor and gather rows.
            self._tensors[split] = tf.convert_to_tensor(self.split_images(split))
        images = self._tensors[split]
        labels = self.split_labels(split)[indices].astype(np.int32)
        if seeds is None:
            ds = tf.data.Dataset.from_tensor_slices((indices, labels))
            test = self._test_canvas if defer_resize else self._test_image
            fn = lambda i, y: (test(tf.gather(images, i)), y)
        else:
            ds = tf.data.Dataset.from_tensor_slices((indices, labels, seeds))
            fn = lambda i, y, s: (self._train_image(tf.gather(images, i), s, defer_jitter), y)
        return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
