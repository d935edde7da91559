"""`SplitFileDataset`: images on disk listed by OLTR split files.

A split file has one `relative/path label` line per image (open-set files use
label -1), e.g. `ImageNet_LT_train.txt`. Everything wrong with a set of split
files is collected while loading and raised as ONE `SplitFileError` that names the
file and line numbers, so that a long run never starts on broken splits.

Undecodable images found while training or evaluating are skipped and logged
(path and running count, see `unreadable_files`); they never crash a run.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping
from concurrent import futures

import numpy as np
import tensorflow as tf
from absl import logging

from keras_oltr import colour_jitter, deferred_resize
from keras_oltr.data import base, transforms
from keras_oltr.data.registry import register_dataset

# Offending lines quoted per kind of problem in a SplitFileError.
MAX_QUOTED = 10

PROBLEM_KINDS = {
    "malformed": "malformed lines (expected `relative/path label`)",
    "duplicate": "duplicate images",
    "label": "labels out of range",
    "missing": "missing image files",
    "outside": "paths outside data_root (pass allow_outside_data_root=True to allow)",
    "overlap": "images listed in two splits",
    "empty_split": "split files without images",
    "empty_class": "classes with zero train images",
}
SPLIT_OVERLAP = ("warn", "error")
# Images read to infer the size and channels of a custom dataset.
PROBE_IMAGES = 8


class SplitFileError(ValueError):
    """Invalid split files: lists every kind of problem with file and line numbers.

    Attributes:
        problems: `{kind: [message, ...]}` with one message per offending line (or
            class), kinds from `PROBLEM_KINDS`.
    """

    def __init__(self, problems: Mapping[str, list[str]]):
        self.problems = {k: list(v) for k, v in problems.items() if v}
        total = sum(len(v) for v in self.problems.values())
        if total == 1:  # one problem, one line
            (kind, (message,)), *_ = self.problems.items()
            super().__init__(f"Invalid split files: {PROBLEM_KINDS[kind]}: {message}")
            return
        lines = [f"Invalid split files: {total} problem(s)."]
        for kind, messages in self.problems.items():
            lines.append(f"{PROBLEM_KINDS[kind]}: {len(messages)} in all")
            lines.extend(f"  {m}" for m in messages[:MAX_QUOTED])
            if len(messages) > MAX_QUOTED:
                lines.append(f"  ... and {len(messages) - MAX_QUOTED} more")
        super().__init__("\n".join(lines))


def read_split_file(path: str):
    """Parses a split file.

    Returns:
        `(entries, problems)`: entries is a list of `(line_number, relative_path,
        label)` for the well-formed lines; problems maps "malformed" and
        "duplicate" to messages naming the file and line. Blank lines are ignored.
    """
    entries, problems = [], collections.defaultdict(list)
    seen: dict[str, int] = {}
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            parts = text.rsplit(maxsplit=1)  # paths may contain spaces, labels may not
            try:
                if len(parts) != 2:
                    raise ValueError
                label = int(parts[1])
            except ValueError:
                problems["malformed"].append(f"{name}:{lineno}: {text[:80]!r}")
                continue
            rel = parts[0]
            if rel in seen:
                problems["duplicate"].append(
                    f"{name}:{lineno}: {rel} (first listed on line {seen[rel]})"
                )
                continue
            seen[rel] = lineno
            entries.append((lineno, rel, label))
    return entries, problems


def _escapes(rel: str) -> bool:
    """Whether a split-file path leaves the data root (absolute, or `..` upwards)."""
    if os.path.isabs(rel) or rel.startswith(("/", "\\")) or os.path.splitdrive(rel)[0]:
        return True
    norm = os.path.normpath(rel)
    return norm == ".." or norm.startswith(".." + os.sep)


def _missing(paths: list[str]) -> list[bool]:
    # Thread pool: stat() latency dominates on network file systems.
    with futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda p: not os.path.isfile(p), paths, chunksize=256))


class SplitFileDataset(base.LongTailDataset):
    """Long-tailed dataset of image files listed by OLTR split files.

    Args:
        data_root: folder the relative paths in the split files start from.
        split_files: `{split: path}`; "train" is required, "val", "test", "open"
            and "open_val" are optional. Known splits hold labels `0..K-1`, open
            splits label -1.
        name: dataset name.
        num_classes: K; default: `len(class_names)`, else max train label + 1.
        class_names: optional names of the K classes (default "0".."K-1").
        image_size: height = width of the model input.
        channels: 1 or 3; every image is converted to it while decoding.
        horizontal_flip: whether flipping is a valid augmentation.
        augmentation: see `LongTailDataset`.
        check_files: check that every listed image exists while loading.
        allow_outside_data_root: accept absolute paths and `..` paths that leave
            `data_root` (rejected by default: a received split file must not make
            the trainer read arbitrary files).
        split_overlap: an image listed in two splits (e.g. train and test) is
            logged as a warning ("warn") or is an error ("error").

    Raises:
        ValueError: `data_root` or a split file does not exist.
        SplitFileError: malformed or duplicate lines, labels out of range, missing
            images, or classes without train images (all collected in one error).

    Caching: nothing is cached. Decoded ImageNet-size images do not fit in memory,
    and training crops are random, so only encoded bytes could be cached, which
    the OS page cache already does for repeated reads.
    """

    _may_drop_examples = True

    def __init__(
        self,
        *,
        data_root: str,
        split_files: Mapping[str, str],
        name: str = "split_files",
        num_classes: int | None = None,
        class_names=None,
        image_size: int = 224,
        channels: int = 3,
        horizontal_flip: bool = True,
        augmentation: str | None = None,
        check_files: bool = True,
        allow_outside_data_root: bool = False,
        split_overlap: str = "warn",
    ):
        if split_overlap not in SPLIT_OVERLAP:
            raise ValueError(
                f"`split_overlap` must be one of {SPLIT_OVERLAP}. "
                f"Received: split_overlap={split_overlap!r}"
            )
        if not os.path.isdir(data_root):
            raise ValueError(
                f"Image folder `data_root` does not exist. Received: data_root={data_root!r}"
            )
        if "train" not in split_files:
            raise ValueError(
                f"`split_files` must contain 'train'. Received: split_files={dict(split_files)}"
            )
        for split, path in split_files.items():
            base.check_split(split)
            if not os.path.isfile(path):
                raise ValueError(f"Split file not found. Received: split={split!r}, path={path!r}")
        self.data_root = data_root
        self.split_files = dict(split_files)
        problems = collections.defaultdict(list)
        parsed = {}
        for split, path in self.split_files.items():
            entries, file_problems = read_split_file(path)
            for kind, messages in file_problems.items():
                problems[kind].extend(messages)
            parsed[split] = entries

        if class_names is not None:
            class_names = tuple(class_names)
            if num_classes is not None and num_classes != len(class_names):
                raise ValueError(
                    "`num_classes` disagrees with `class_names`. Received: "
                    f"num_classes={num_classes}, len(class_names)={len(class_names)}"
                )
            num_classes = len(class_names)
        train_name = os.path.basename(self.split_files["train"])
        for split, entries in parsed.items():
            if not entries and split == "train":
                problems["empty_split"].append(
                    f"{os.path.basename(self.split_files[split])}: no `relative/path label` "
                    f"lines (the {split} split is empty)"
                )
        if num_classes is None:
            # Every class needs a train image, so there are at most as many classes as
            # train lines: a typo such as 1000000000 must not size anything.
            limit = max(len(parsed["train"]), 1)
            train_labels = [y for _, _, y in parsed["train"] if 0 <= y < limit]
            num_classes = max(train_labels) + 1 if train_labels else 1
        if class_names is None:
            class_names = tuple(str(i) for i in range(num_classes))
        if not allow_outside_data_root:
            for split, entries in parsed.items():
                fname = os.path.basename(self.split_files[split])
                for lineno, rel, _ in entries:
                    if _escapes(rel):
                        problems["outside"].append(f"{fname}:{lineno}: {rel}")
                parsed[split] = [e for e in entries if not _escapes(e[1])]
        first_split: dict[str, tuple[str, int]] = {}
        overlaps = []
        for split, entries in parsed.items():
            fname = os.path.basename(self.split_files[split])
            for lineno, rel, _ in entries:
                key = os.path.normpath(rel)
                if key in first_split and first_split[key][0] != split:
                    other, other_line = first_split[key]
                    overlaps.append(
                        f"{fname}:{lineno}: {rel} (also in the {other} split, "
                        f"{os.path.basename(self.split_files[other])}:{other_line})"
                    )
                else:
                    first_split.setdefault(key, (split, lineno))
        if overlaps and split_overlap == "error":
            problems["overlap"].extend(overlaps)
        elif overlaps:
            logging.warning(
                "%d image(s) are listed in two splits (pass split_overlap='error' to refuse): %s",
                len(overlaps),
                "; ".join(overlaps[:MAX_QUOTED]),
            )

        self._paths: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}
        for split, entries in parsed.items():
            fname = os.path.basename(self.split_files[split])
            is_open = split in base.OPEN_SPLITS
            kept = []
            for lineno, rel, label in entries:
                ok = label == base.OPEN_LABEL if is_open else 0 <= label < num_classes
                if not ok and not parsed["train"]:
                    continue  # the empty train file is the problem, not this label
                if not ok:
                    expected = "-1" if is_open else f"0..{num_classes - 1}"
                    problems["label"].append(
                        f"{fname}:{lineno}: label {label}, expected {expected} ({rel})"
                    )
                    continue
                kept.append((lineno, rel, label))
            full = [os.path.join(data_root, rel) for _, rel, _ in kept]
            if check_files and full:
                for (lineno, rel, _), gone in zip(kept, _missing(full), strict=True):
                    if gone:
                        problems["missing"].append(
                            f"{fname}:{lineno}: {rel} not found under {data_root}"
                        )
            self._paths[split] = np.array(full, dtype=object)
            self._labels[split] = np.array([y for _, _, y in kept], dtype=np.int64)

        counts = np.bincount(self._labels["train"], minlength=num_classes)
        for c in np.flatnonzero(counts == 0 if parsed["train"] else []):
            problems["empty_class"].append(f"{train_name}: class {c} ({class_names[c]})")
        if any(problems.values()):
            raise SplitFileError(problems)

        super().__init__(
            name=name,
            class_names=class_names,
            image_size=image_size,
            channels=channels,
            train_labels=self._labels["train"],
            horizontal_flip=horizontal_flip,
            augmentation=augmentation,
        )
        self._unreadable: collections.Counter = collections.Counter()
        logging.info("%s", self.describe())

    def split_paths(self, split: str) -> np.ndarray:
        """Full image paths of `split`, in file order."""
        self.split_labels(split)
        return self._paths[split]

    @property
    def unreadable_files(self) -> dict[str, int]:
        """`{path: times skipped}` for the images that failed to load so far."""
        return dict(self._unreadable)

    @property
    def num_unreadable(self) -> int:
        """Number of distinct images that failed to load so far."""
        return len(self._unreadable)

    def _report_unreadable(self, paths: np.ndarray, start, stop) -> bool:
        """Records and logs `paths[start:stop]`, the images that failed to load."""
        for path in paths[int(start) : int(stop)]:
            first = path not in self._unreadable
            self._unreadable[path] += 1
            if first:
                logging.warning(
                    "Skipping unreadable image %s (%d unreadable image(s) so far: %s)",
                    path,
                    len(self._unreadable),
                    ", ".join(list(self._unreadable)[:MAX_QUOTED]),
                )
        return True

    def _load(self, path, seed, training, defer_jitter, defer_resize):
        contents = tf.io.read_file(path)
        if not training:
            image = transforms.decode_image(contents, self.channels)
            return self._test_canvas(image) if defer_resize else self._test_image(image)
        if self.augmentation == "imagenet":
            return transforms.imagenet_train_transform(
                contents,
                self.image_size,
                self.channels,
                seed,
                flip=self.horizontal_flip,
                defer_jitter=defer_jitter,
            )
        return self._train_image(transforms.decode_image(contents, self.channels), seed)

    def _examples(self, split, indices, seeds, defer_jitter=False, defer_resize=False):
        training = seeds is not None
        paths = self.split_paths(split)[indices].astype(str)
        labels = self.split_labels(split)[indices].astype(np.int32)
        if seeds is None:
            seeds = np.zeros([len(indices), 2], np.int64)
        n = len(indices)
        size, channels = self.image_size, self.channels

        def load(path, label, seed, position):
            return self._load(path, seed, training, defer_jitter, defer_resize), label, position

        # Unreadable images raise inside the parallel map; `ignore_errors` drops them
        # and the scan below finds the gaps in the positions, reports those paths and
        # carries on. A sentinel at position n closes a gap at the very end.
        ds = tf.data.Dataset.from_tensor_slices(
            (paths, labels, seeds, np.arange(n, dtype=np.int64))
        )
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.ignore_errors()
        image = tf.zeros([size, size, channels])
        if defer_jitter:
            image = (image, tf.zeros([colour_jitter.NUM_PARAMETERS]))
        elif defer_resize and not training:
            side = deferred_resize.canvas_size(size)
            image = (
                tf.zeros([side, side, channels], tf.uint8),
                tf.zeros([deferred_resize.GEOMETRY_SIZE]),
            )
        sentinel = (
            image,
            tf.constant(0, tf.int32),
            tf.constant(n, tf.int64),
        )
        ds = ds.concatenate(tf.data.Dataset.from_tensors(sentinel))

        def check(expected, element):
            image, label, position = element
            reported = tf.cond(
                position > expected,
                lambda: tf.py_function(
                    lambda a, b: self._report_unreadable(paths, a, b),
                    [expected, position],
                    Tout=tf.bool,
                ),
                lambda: tf.constant(True),
            )
            return position + 1, (image, label, position < n, reported)

        ds = ds.scan(tf.constant(0, tf.int64), check)
        ds = ds.filter(lambda image, label, real, reported: tf.logical_and(real, reported))
        return ds.map(lambda image, label, real, reported: (image, label))


# ------------------------------------------------------------------ registered


def _read_class_names(path: str | None):
    if path is None:
        return None
    if not os.path.isfile(path):
        raise ValueError(f"Class names file not found. Received: class_names_file={path!r}")
    with open(path, encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())


def _official(prefix, name, data_root, split_dir, num_classes, class_names_file, **kwargs):
    if not os.path.isdir(data_root):
        raise ValueError(
            f"Image folder `data_root` (--data_root) does not exist. Received: "
            f"data_root={data_root!r}"
        )
    if not os.path.isdir(split_dir):
        raise ValueError(
            f"Folder of the {prefix} split files does not exist. Received: split_dir={split_dir!r}"
        )
    files = {s: os.path.join(split_dir, f"{prefix}_{s}.txt") for s in base.SPLITS}
    if not os.path.isfile(files["open_val"]):  # not part of the official release
        del files["open_val"]
    return SplitFileDataset(
        data_root=data_root,
        split_files=files,
        name=name,
        num_classes=num_classes,
        class_names=_read_class_names(class_names_file),
        **kwargs,
    )


@register_dataset("imagenet_lt")
def imagenet_lt(
    *,
    data_root: str = "data/ImageNet",
    split_dir: str = "data/ImageNet_LT",
    image_size: int = 224,
    class_names_file: str | None = None,
    **kwargs,
) -> SplitFileDataset:
    """ImageNet-LT (Liu et al. 2019): 1000 classes, ImageNet_LT_{train,val,test,open}.txt.

    Args:
        data_root: ImageNet folder the relative paths start from (train/, val/, ...).
        split_dir: folder holding the split files.
        image_size: model input size.
        class_names_file: optional file with 1000 class names, one per line.
        **kwargs: further `SplitFileDataset` arguments (e.g. check_files).
    """
    return _official(
        "ImageNet_LT",
        "imagenet_lt",
        data_root,
        split_dir,
        1000,
        class_names_file,
        image_size=image_size,
        **kwargs,
    )


@register_dataset("places_lt")
def places_lt(
    *,
    data_root: str = "data/Places365",
    split_dir: str = "data/Places_LT",
    image_size: int = 224,
    class_names_file: str | None = None,
    **kwargs,
) -> SplitFileDataset:
    """Places-LT (Liu et al. 2019): 365 classes, Places_LT_{train,val,test,open}.txt.

    Args: as `imagenet_lt`, with `data_root` the Places365 image folder.
    """
    return _official(
        "Places_LT",
        "places_lt",
        data_root,
        split_dir,
        365,
        class_names_file,
        image_size=image_size,
        **kwargs,
    )


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
        class_names=_read_class_names(class_names_file),
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
            if _escapes(rel):
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
