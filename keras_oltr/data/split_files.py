"""`SplitFileDataset`: images on disk listed by OLTR split files.

The split files are parsed and checked while loading (`split_file_parser.py`):
everything wrong with them is raised as ONE `SplitFileError` that names the file
and line numbers, so that a long run never starts on broken splits.

Confinement (see `split_file_parser.DataRoot`): unless `allow_outside_data_root`,
every listed image must stay under `data_root` once symbolic links are resolved.
With `check_files` (the default) this is checked while loading, in the same one
file-system call per image as the existence check, and a link that leaves the
root is a `SplitFileError` naming the split file and line, like a `..` path.
Without `check_files` nothing is stat'ed while loading, so the pipelines check
each image lazily before reading it, and a link that leaves the root is skipped
as an unreadable image (with that reason).

Undecodable images found while training or evaluating are skipped and logged
(path, reason and running count, see `unreadable_files` and
`unreadable_reasons`); they never crash a run. Images whose header says they
have more than `max_pixels` pixels are among them: they are refused before
decoding (`decode.check_image_size`), so a small file cannot cost gigabytes.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from keras_oltr import colour_jitter, deferred_resize
from keras_oltr.data import augment, base, decode, split_names
from keras_oltr.data.data_root import DataRoot, check_paths, escapes_data_root, joiner, normal_path
from keras_oltr.data.readable import unreadable_classes
from keras_oltr.data.split_file_parser import MAX_QUOTED, Problems, SplitFileError, read_split_file

SPLIT_OVERLAP = ("warn", "error")


# Bytes of an unreadable image read again to say why it failed.
_DIAGNOSED_BYTES = 4 << 20


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
        check_files: check while loading that every listed image exists and that
            every class has a train image that decodes (`readable.py`).
        allow_outside_data_root: accept absolute paths, `..` paths and symbolic
            links that leave `data_root` (rejected by default: a received split
            file or image tree must not make the trainer read arbitrary files).
        split_overlap: an image listed in two splits (e.g. train and test) is
            logged as a warning ("warn") or is an error ("error").
        max_pixels: images whose header says they have more pixels (height *
            width) are skipped as unreadable, without being decoded.

    Raises:
        ValueError: `data_root` or a split file does not exist.
        SplitFileError: lines that are not text, malformed or duplicate lines,
            labels out of range, missing images, fewer than two classes, or classes
            without (readable) train images (all collected in one error).

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
        max_pixels: int = decode.MAX_PIXELS,
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
            split_names.check_split(split)
            if not os.path.isfile(path):
                raise ValueError(f"Split file not found. Received: split={split!r}, path={path!r}")
        if int(max_pixels) < 1:
            raise ValueError(f"`max_pixels` must be positive. Received: max_pixels={max_pixels}")
        self.max_pixels = int(max_pixels)
        decoding = {"channels": channels, "max_pixels": self.max_pixels}
        self.data_root = data_root
        root = None if allow_outside_data_root else DataRoot(data_root)
        join = joiner(data_root)
        self.split_files = dict(split_files)
        problems = Problems()
        parsed = {}
        for split, path in self.split_files.items():
            entries, file_problems = read_split_file(path)
            problems.update(file_problems)
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
                problems.add(
                    "empty_split",
                    f"{os.path.basename(self.split_files[split])}: no `relative/path label` "
                    f"lines (the {split} split is empty)",
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
                kept = []
                for entry in entries:
                    if escapes_data_root(entry[1]):
                        problems.add("outside", f"{fname}:{entry[0]}: {entry[1]}")
                    else:
                        kept.append(entry)
                parsed[split] = kept
        first_split: dict[str, tuple[str, int]] = {}
        overlaps = []
        for split, entries in parsed.items():
            fname = os.path.basename(self.split_files[split])
            for lineno, rel, _ in entries:
                key = normal_path(rel)
                if key in first_split and first_split[key][0] != split:
                    other, other_line = first_split[key]
                    overlaps.append(
                        f"{fname}:{lineno}: {rel} (also in the {other} split, "
                        f"{os.path.basename(self.split_files[other])}:{other_line})"
                    )
                else:
                    first_split.setdefault(key, (split, lineno))
        if overlaps and split_overlap == "error":
            for overlap in overlaps:
                problems.add("overlap", overlap)
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
            is_open = split in split_names.OPEN_SPLITS
            kept = []
            for lineno, rel, label in entries:
                ok = label == split_names.OPEN_LABEL if is_open else 0 <= label < num_classes
                if not ok and not parsed["train"]:
                    continue  # the empty train file is the problem, not this label
                if not ok:
                    expected = "-1" if is_open else f"0..{num_classes - 1}"
                    problems.add(
                        "label", f"{fname}:{lineno}: label {label}, expected {expected} ({rel})"
                    )
                    continue
                kept.append((lineno, rel, label))
            full = [join(rel) for _, rel, _ in kept]
            if check_files and full:
                for index, status, real in check_paths(full, root):
                    lineno, rel, _ = kept[index]
                    if status == "missing":
                        message = f"{fname}:{lineno}: {rel} not found under {data_root}"
                        problems.add("missing", message)
                    else:
                        problems.add(
                            "outside",
                            f"{fname}:{lineno}: {rel} (resolves to {real} through a symbolic link)",
                        )
            self._paths[split] = np.array(full, dtype=object)
            self._labels[split] = np.array([y for _, _, y in kept], dtype=np.int64)

        counts = np.bincount(self._labels["train"], minlength=num_classes)
        for c in np.flatnonzero(counts == 0 if parsed["train"] else []):
            problems.add("empty_class", f"{train_name}: class {c} ({class_names[c]})")
        if parsed["train"] and num_classes < 2:
            problems.add("classes", f"{train_name}: {num_classes} class ({class_names[0]})")
        self._root = root
        if check_files and not problems:  # a class whose images all fail would vanish
            refused, checked = unreadable_classes(
                self._paths["train"],
                self._labels["train"],
                num_classes,
                stop_after=MAX_QUOTED,
                **decoding,
            )
            for u in refused:
                problems.add(
                    "unreadable_class",
                    f"{train_name}: class {u.label} ({class_names[u.label]}), none of {u.which} "
                    f"(the first: {u.first}, {self._why_unreadable(u.first)})",
                )
            if checked < num_classes:
                problems.add(
                    "unchecked_classes",
                    f"{train_name}: classes {checked}..{num_classes - 1} not all checked "
                    f"(stopped after {len(refused)} unreadable classes)",
                )
        if problems:
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
        self._reasons: dict[str, str] = {}
        # Without check_files, links are checked where images are read.
        self._lazy_root = None if check_files else root
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
    def unreadable_reasons(self) -> dict[str, str]:
        """`{path: why it could not be loaded}` for the images in `unreadable_files`."""
        return dict(self._reasons)

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
                self._reasons[path] = self._why_unreadable(path)
                logging.warning(
                    "Skipping unreadable image %s: %s (%d unreadable image(s) so far: %s)",
                    path,
                    self._reasons[path],
                    len(self._unreadable),
                    ", ".join(list(self._unreadable)[:MAX_QUOTED]),
                )
        return True

    def _why_unreadable(self, path: str) -> str:
        """Why `path` failed to load, found again after the fact (failures are rare)."""
        if self._root is not None:
            status, real = self._root.check(path)
            if status == "outside":
                return (
                    f"a symbolic link to {real}, outside data_root (not read; pass "
                    "allow_outside_data_root=True to allow)"
                )
        try:
            with open(path, "rb") as f:
                contents = f.read(_DIAGNOSED_BYTES)
        except OSError as e:
            return f"cannot be read ({e.strerror or e})"
        return decode.why_undecodable(contents, self.max_pixels)

    def _confined(self, path) -> bool:
        return self._lazy_root.check(os.fsdecode(path.numpy()))[0] != "outside"

    def _load(self, path, seed, training, defer_jitter, defer_resize):
        if self._lazy_root is not None:  # fails (and is skipped) before reading
            inside = tf.py_function(self._confined, [path], Tout=tf.bool)
            guard = tf.debugging.Assert(inside, ["Image outside data_root:", path])
            with tf.control_dependencies([guard]):
                path = tf.identity(path)
        contents = tf.io.read_file(path)
        pixels = self.max_pixels
        if not training:
            image = decode.decode_image(contents, self.channels, max_pixels=pixels)
            return self._test_canvas(image) if defer_resize else self._test_image(image)
        if self.augmentation == "imagenet":
            return augment.imagenet_train_transform(
                contents,
                self.image_size,
                self.channels,
                seed,
                flip=self.horizontal_flip,
                defer_jitter=defer_jitter,
                max_pixels=pixels,
            )
        image = decode.decode_image(contents, self.channels, max_pixels=pixels)
        return self._train_image(image, seed)

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
