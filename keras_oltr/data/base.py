"""`LongTailDataset`: the interface every long-tailed dataset implements.

A dataset knows its splits (train, val, test, open and optionally open_val) and
builds deterministic `tf.data` pipelines from them:

- The order of an epoch is computed in numpy from (seed, epoch, sampler)
  (see `samplers.py`); the pipeline is built from that index sequence, so a
  resumed run (`skip_batches=k`) sees exactly batches k.. of an uninterrupted one.
- Augmentation uses stateless random ops seeded by (seed, epoch, position in the
  epoch), so it is reproducible too.
- Under `tf.distribute`, `input_context` selects, from each global batch, the rows
  of the replicas that this input pipeline feeds, so that a step's per-replica
  batches together are exactly the one-device global batch.

Elements are `(images, labels)`: float32 `[b, H, W, C]` in `[0, 255]` (the model
normalises) and int32 `[b]`; open-set images have label -1. Two opt-in layouts
leave per-pixel work to the accelerator: `train_dataset(defer_jitter=True)` and
`eval_dataset(defer_resize=True)`.
"""

from __future__ import annotations

import abc

import numpy as np
import tensorflow as tf

from keras_oltr import colour_jitter, deferred_resize
from keras_oltr.data import augment, samplers, sharding, transforms
from keras_oltr.data.split_names import SPLITS, check_split
from keras_oltr.shot_groups import SHOT_GROUP_BOUNDS, shot_groups


class LongTailDataset(abc.ABC):
    """Base class of long-tailed datasets with known and open-set splits.

    Subclasses call `__init__` with the dataset's metadata and implement
    `split_labels` and `_examples`; everything about ordering, sharding, batching
    and resuming lives here, once.

    Args:
        name: dataset name (as registered).
        class_names: one name per known class; its length is `num_classes`.
        image_size: height = width of the images the model sees.
        channels: 1 (gray) or 3 (RGB).
        train_labels: int array `[N_train]` of known labels `0..K-1`, every class at
            least once (K >= 2: fewer classes, or a class without images, is refused).
        horizontal_flip: whether a horizontal flip is a valid augmentation
            (False for digits, whose mirror image is not a digit).
        augmentation: `"imagenet"` (RandomResizedCrop + flip + colour jitter) or
            `"small"` (pad-4 random crop + flip); default: `"small"` when
            `image_size <= 64`, else `"imagenet"`.
    """

    def __init__(
        self,
        *,
        name: str,
        class_names,
        image_size: int,
        channels: int,
        train_labels: np.ndarray,
        horizontal_flip: bool = True,
        augmentation: str | None = None,
    ):
        self.name = str(name)
        self.class_names = tuple(str(c) for c in class_names)
        self.num_classes = len(self.class_names)
        if self.num_classes < 1:
            raise ValueError(
                f"`class_names` must not be empty. Received: class_names={class_names}"
            )
        if int(image_size) < 1:
            raise ValueError(f"`image_size` must be positive. Received: image_size={image_size}")
        self.image_size = int(image_size)
        if channels not in (1, 3):
            raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
        self.channels = int(channels)
        self.horizontal_flip = bool(horizontal_flip)
        if augmentation is None:
            augmentation = transforms.default_augmentation(self.image_size)
        if augmentation not in transforms.AUGMENTATIONS:
            raise ValueError(
                f"`augmentation` must be one of {transforms.AUGMENTATIONS}. "
                f"Received: augmentation={augmentation!r}"
            )
        self.augmentation = augmentation
        train_labels = np.asarray(train_labels)
        if train_labels.ndim != 1 or train_labels.size == 0:
            raise ValueError(
                "`train_labels` must be a non-empty 1-D array. "
                f"Received: train_labels.shape={train_labels.shape}"
            )
        if train_labels.min() < 0 or train_labels.max() >= self.num_classes:
            raise ValueError(
                f"Train labels must lie in [0, {self.num_classes}). Received: "
                f"min={train_labels.min()}, max={train_labels.max()}"
            )
        self.train_labels = train_labels.astype(np.int64)
        # A degenerate dataset trains and reports perfect scores or wrong counts.
        if self.num_classes < 2:
            raise ValueError(
                f"Dataset {self.name!r} has {self.num_classes} known class; open long-tailed "
                f"recognition needs at least two. Received: class_names={self.class_names}"
            )
        empty = np.flatnonzero(self.train_counts == 0)
        if empty.size:
            raise ValueError(
                f"Dataset {self.name!r}: class {empty[0]} ({self.class_names[empty[0]]}) has "
                f"no train image ({empty.size} class(es) have none); every known class needs "
                "at least one."
            )

    # ----------------------------------------------------------------- metadata

    @property
    def train_counts(self) -> np.ndarray:
        """Number of train images per class, int `[K]`."""
        return np.bincount(self.train_labels, minlength=self.num_classes)

    @property
    def num_train(self) -> int:
        """Number of train images."""
        return int(self.train_labels.size)

    # Subclasses fill `self._labels` ({split: int labels, -1 for open-set splits}).
    _labels: dict

    def split_labels(self, split: str) -> np.ndarray:
        """Labels of a split, int `[N]` (-1 for open-set splits).

        Raises ValueError for an unknown or absent split.
        """
        if not self.has_split(split):
            raise ValueError(
                f"Dataset {self.name!r} has no split {split!r}. Received: split={split!r}"
            )
        return self._labels[split]

    def has_split(self, split: str) -> bool:
        """Whether the dataset has `split` (`open_val` is optional)."""
        check_split(split)
        return split in self._labels

    def num_examples(self, split: str) -> int:
        """Number of examples in `split`."""
        return int(len(self.split_labels(split)))

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """`int(N_train / global_batch_size)`, for either sampler (as the reference counts)."""
        if global_batch_size < 1:
            raise ValueError(
                "`global_batch_size` must be positive. "
                f"Received: global_batch_size={global_batch_size}"
            )
        steps = self.num_train // int(global_batch_size)
        if steps < 1:
            raise ValueError(
                "`global_batch_size` is larger than the train set, so an epoch has no step. "
                f"Received: global_batch_size={global_batch_size}, num_train={self.num_train}"
            )
        return steps

    def describe(self) -> str:
        """Human-readable class-count summary (max/min, many/medium/few-shot sizes)."""
        counts = self.train_counts
        many, medium, few = (int(n) for n in np.bincount(shot_groups(counts), minlength=3))
        bounds = SHOT_GROUP_BOUNDS["strict"]
        splits = ", ".join(
            f"{s} {self.num_examples(s)}" for s in SPLITS if s != "train" and self.has_split(s)
        )
        return (
            f"{self.name}: {self.num_classes} classes, {self.num_train} train images "
            f"(max {counts.max()} / min {counts.min()} per class, imbalance "
            f"{counts.max() / max(counts.min(), 1):.1f}); shot groups (strict): "
            f"many ({bounds['many']}) {many}, medium ({bounds['medium']}) {medium}, "
            f"few ({bounds['few']}) {few} classes; "
            f"{splits + '; ' if splits else ''}{self.image_size}x{self.image_size}x{self.channels}"
        )

    # ---------------------------------------------------------------- pipelines

    @abc.abstractmethod
    def _examples(
        self,
        split: str,
        indices: np.ndarray,
        seeds: np.ndarray | None,
        defer_jitter: bool = False,
        defer_resize: bool = False,
    ) -> tf.data.Dataset:
        """Unbatched `(image, label)` dataset for `indices` of `split`, in order.

        `seeds` is an int64 `[n, 2]` array of per-example augmentation seeds, or
        None for the test transform (`_test_image`, whose images may come with
        height and width swapped: `swaps_test_axes`). With `defer_jitter` (only
        asked when `can_defer_jitter`) the image is `(image, jitter parameters)`,
        from `_train_image`; with `defer_resize` (only asked when
        `can_defer_resize`, for the test transform) it is `(canvas, geometry)`, from
        `_test_canvas`. An implementation may drop examples it cannot read
        (reporting them); it must not reorder them.
        """

    # Whether `_examples` may drop unreadable examples; then the train pipeline
    # draws one spare global batch to refill the epoch.
    _may_drop_examples = False

    @property
    def can_defer_jitter(self) -> bool:
        """Whether the train pipeline can leave flip and colour jitter to the train step.

        True for the "imagenet" augmentation of RGB images (the only one with a
        colour jitter); see `train_dataset(..., defer_jitter=True)`.
        """
        return self.augmentation == "imagenet" and self.channels == 3

    def _train_image(self, image: tf.Tensor, seed: tf.Tensor, defer_jitter: bool = False):
        """Training augmentation of a decoded uint8 image (`defer_jitter`: see `_examples`)."""
        if self.augmentation == "small":
            return augment.small_train_transform(
                image, self.image_size, seed, flip=self.horizontal_flip
            )
        return augment.imagenet_train_transform_array(
            image, self.image_size, seed, flip=self.horizontal_flip, defer_jitter=defer_jitter
        )

    def _builtin_imagenet_test(self) -> bool:
        # A subclass that overrides `_test_image` gets neither the swap nor the
        # deferred resize: both assume this class's transform.
        return (
            self.augmentation == "imagenet"
            and type(self)._test_image is LongTailDataset._test_image
        )

    @property
    def swaps_test_axes(self) -> bool:
        """Whether the test transform leaves height and width swapped before batching.

        The "imagenet" test transform's resampler leaves each image transposed;
        the pipelines swap whole batches back (about three quarters of the CPU of
        one transpose per image).
        """
        return self._builtin_imagenet_test()

    @property
    def can_defer_resize(self) -> bool:
        """Whether `eval_dataset` can leave the test resize to the accelerator.

        True for the "imagenet" test transform (see `keras_oltr.deferred_resize`).
        """
        return self._builtin_imagenet_test()

    def _test_image(self, image: tf.Tensor) -> tf.Tensor:
        """Test transform of a decoded uint8 image (axes swapped: `swaps_test_axes`)."""
        if self.augmentation == "small":
            return transforms.small_test_transform(image, self.image_size)
        return transforms.imagenet_test_transform(image, self.image_size, swap_axes=True)

    def _test_canvas(self, image: tf.Tensor):
        """`(canvas, geometry)` of a decoded uint8 image (see `can_defer_resize`)."""
        return transforms.imagenet_test_canvas(image, self.image_size)

    def train_dataset(
        self,
        global_batch_size: int,
        *,
        epoch: int,
        seed: int,
        sampler: str = "random",
        samples_per_class: int = 4,
        augment: bool = True,
        skip_batches: int = 0,
        input_context: tf.distribute.InputContext | None = None,
        defer_jitter: bool = False,
    ) -> tf.data.Dataset:
        """One epoch of training batches, `steps_per_epoch(B) - skip_batches` of them.

        Args:
            global_batch_size: batch size summed over all replicas (B).
            epoch: epoch number; with `seed` and `sampler` it fixes the order and
                the augmentation.
            seed: non-negative run seed.
            sampler: `"random"` or `"class_aware"` (4 consecutive images of a class).
            samples_per_class: consecutive images per class visit (class-aware).
            augment: training augmentation if True, else the test transform.
            skip_batches: number of leading global batches to leave out (resume).
            input_context: from `strategy.distribute_datasets_from_function`; the
                pipeline then yields per-replica batches of `B / num_replicas`.
            defer_jitter: when `augment` and `can_defer_jitter`, draw the flip and
                colour jitter here but leave applying them to the train step
                (`keras_oltr.colour_jitter`; `OLTRModel` does it on the
                accelerator): the batches are then `({"images": [b, S, S, 3],
                "jitter": [b, colour_jitter.NUM_PARAMETERS]}, labels)`, and
                applying the jitter to them gives the images of
                `defer_jitter=False`. Ignored by other datasets.

        Returns:
            A dataset of `(images, labels)`.
        """
        steps = self.steps_per_epoch(global_batch_size)
        if seed < 0:
            raise ValueError(f"`seed` must be non-negative. Received: seed={seed}")
        if not 0 <= skip_batches <= steps:
            raise ValueError(
                f"`skip_batches` must lie in [0, steps_per_epoch={steps}]. "
                f"Received: skip_batches={skip_batches}"
            )
        replicas, pipelines, pipeline_id = sharding.input_layout(input_context, global_batch_size)
        per_replica = global_batch_size // replicas
        rows = per_replica * (replicas // pipelines)
        spare = 1 if self._may_drop_examples else 0
        order = samplers.epoch_order(
            self.train_labels,
            (steps + spare) * global_batch_size,
            seed=seed,
            epoch=epoch,
            sampler=sampler,
            samples_per_class=samples_per_class,
        )
        # Rows [g*B, (g+1)*B) form global batch g; this pipeline's replicas take the
        # contiguous column block [id*rows, (id+1)*rows) of every global batch.
        columns = slice(pipeline_id * rows, (pipeline_id + 1) * rows)
        indices = order.reshape(-1, global_batch_size)[skip_batches:, columns].reshape(-1)
        seeds = None
        if augment:
            positions = np.arange(order.size, dtype=np.int64).reshape(-1, global_batch_size)
            positions = positions[skip_batches:, columns].reshape(-1)
            run_key = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0]
            seeds = np.stack([np.full_like(positions, run_key), positions], axis=-1)
        num_batches = (steps - skip_batches) * (replicas // pipelines)
        deferred = bool(defer_jitter and augment and self.can_defer_jitter)
        ds = self._examples("train", indices, seeds, defer_jitter=deferred)
        ds = ds.batch(per_replica, drop_remainder=True).take(num_batches)
        if not augment:
            ds = self._swap_test_batches(ds)
        if deferred:
            ds = ds.map(
                lambda pair, labels: (
                    {colour_jitter.IMAGES_KEY: pair[0], colour_jitter.JITTER_KEY: pair[1]},
                    labels,
                )
            )
        return ds.prefetch(tf.data.AUTOTUNE)

    def eval_dataset(
        self,
        split: str,
        batch_size: int,
        *,
        input_context: tf.distribute.InputContext | None = None,
        defer_resize: bool = False,
    ) -> tf.data.Dataset:
        """All examples of `split` in file order with the test transform.

        Args:
            split: one of `SPLITS` that the dataset has.
            batch_size: global batch size; the last batch may be smaller.
            input_context: shards the examples over input pipelines (example i goes
                to pipeline `i % num_input_pipelines`) and yields per-replica batches.
            defer_resize: when the dataset `can_defer_resize`, stop the test
                transform after the decode and yield `({"canvas": uint8 [b, 2S, 2S,
                C], "geometry": float32 [b, 6]}, labels)`, for the model's compiled
                call to finish on the accelerator (`keras_oltr.deferred_resize`;
                `keras_oltr.inference.inference_function` does): the same pixels
                (to float rounding), about 40% less of the host's CPU per image.
                Other datasets ignore it.
        """
        check_split(split)
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive. Received: batch_size={batch_size}")
        replicas, pipelines, pipeline_id = sharding.input_layout(input_context, batch_size)
        indices = np.arange(self.num_examples(split), dtype=np.int64)[pipeline_id::pipelines]
        deferred = bool(defer_resize and self.can_defer_resize)
        ds = self._examples(split, indices, None, defer_resize=deferred)
        ds = ds.batch(batch_size // replicas)
        if deferred:
            ds = ds.map(
                lambda pair, labels: (
                    {
                        deferred_resize.CANVAS_KEY: pair[0],
                        deferred_resize.GEOMETRY_KEY: pair[1],
                    },
                    labels,
                )
            )
        else:
            ds = self._swap_test_batches(ds)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _swap_test_batches(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """Batches of `_test_image` outputs -> `[b, H, W, C]` (see `swaps_test_axes`)."""
        if not self.swaps_test_axes:
            return ds
        return ds.map(
            lambda images, labels: (tf.transpose(images, [0, 2, 1, 3]), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
