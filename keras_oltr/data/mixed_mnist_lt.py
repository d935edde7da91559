"""The embedded long-tailed open-set benchmarks `mixed_mnist_lt` and `mixed_mnist_lt_b`.

30 real 28x28 grayscale classes from MNIST, Fashion-MNIST and Animal-MNIST: 24 known
classes with long-tailed train counts (1000 down to 5; 10 many-, 7 medium-, 7 few-shot
classes), 20 val and 100 test images per known class, and 6 open classes (2 per source)
with 100 open-test and 20 open-val images each. The arrays ship with the package in
`keras_oltr/data/assets/` (about 2 MB each); `scripts/build_mixed_mnist_lt.py` rebuilds them
byte for byte from pinned registry packages, and the manifest beside each .npz records
provenance, licences and hashes. The class tables are in `assets/MIXED_MNIST_LT.md` and
`assets/MIXED_MNIST_LT_B.md`.

`mixed_mnist_lt_b` is a second, independent split of the same 30 classes, with the same
profile and split sizes, built with another seed: its 6 open classes are drawn at random
among the classes known in `mixed_mnist_lt` (so no open class is open in both), and its
head-to-tail ranks are redrawn. It is meant to confirm results obtained on the first
benchmark, not to tune on.

Arrays (N varies by split):
  {split}_images        uint8 [N, 28, 28, 1]
  {split}_labels        int32 [N]; known classes 0..23, -1 in `open` and `open_val`
  {split}_source_index  int32 [N, 2]: source id (index into `source_names`) and the
                        image's index within that source
  class_names           str [24], open_class_names str [6], source_names str [3]
for split in train, val, test, open, open_val.

Registered as `mixed_mnist_lt` and `mixed_mnist_lt_b`:
`keras_oltr.data.get_dataset("mixed_mnist_lt")` returns an `ArrayDataset` (28x28x1, no
horizontal flip since mirrored digits are not digits).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from absl import logging

from keras_oltr.data.array_dataset import ArrayDataset
from keras_oltr.data.registry import register_dataset
from keras_oltr.shot_groups import SHOT_GROUPS, shot_groups

NAME = "mixed_mnist_lt"
NAME_B = "mixed_mnist_lt_b"
VARIANTS = (NAME, NAME_B)
SPLITS = ("train", "val", "test", "open", "open_val")
ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
DEFAULT_PATH = os.path.join(ASSETS_DIR, f"{NAME}.npz")


def default_path(name: str = NAME) -> str:
    """The shipped .npz of benchmark `name` (one of `VARIANTS`)."""
    if name not in VARIANTS:
        raise ValueError(f"Unknown benchmark. Known: {list(VARIANTS)}. Received: name={name!r}")
    return os.path.join(ASSETS_DIR, f"{name}.npz")


def manifest_path_for(path: str) -> str:
    """Returns the manifest path that belongs beside an .npz path."""
    root, _ = os.path.splitext(path)
    return f"{root}.manifest.json"


def load_manifest(path: str | None = None, *, name: str = NAME) -> dict:
    """Loads the JSON manifest of the benchmark stored at `path` (default: `name`'s asset)."""
    with open(manifest_path_for(path or default_path(name))) as f:
        return json.load(f)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_mixed_mnist_lt_arrays(
    path: str | None = None, verify: bool = True, *, name: str = NAME
) -> dict:
    """Loads all benchmark arrays into memory.

    Args:
        path: the .npz file; defaults to the copy of `name` shipped in
            `keras_oltr/data/assets/`. Its manifest must sit beside it as
            `<stem>.manifest.json`.
        verify: check the file's SHA-256 against the manifest first.
        name: which benchmark, `mixed_mnist_lt` or `mixed_mnist_lt_b` (used for the
            default path and in messages).

    Returns:
        A dict from array name (see the module docstring) to numpy array.

    Raises:
        ValueError: the file's SHA-256 differs from the manifest's (a corrupted or
            regenerated file, or a Git LFS pointer instead of the data).
    """
    path = path or default_path(name)
    if verify:
        expected = load_manifest(path)["output"]["sha256"]
        actual = _sha256_file(path)
        if actual != expected:
            raise ValueError(
                f"SHA-256 of {path} does not match its manifest "
                f"{manifest_path_for(path)}: expected {expected}, got {actual}. The file is "
                "corrupted or was rebuilt without updating the manifest; rebuild it with "
                f"scripts/build_mixed_mnist_lt.py --variant={name}."
            )
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    logging.info(
        "Loaded %s from %s: %s",
        name,
        path,
        {split: len(arrays[f"{split}_labels"]) for split in SPLITS},
    )
    return arrays


def shot_group_sizes(
    train_labels: np.ndarray, num_classes: int, inclusive: bool = False
) -> dict[str, int]:
    """Classes per shot group from train labels, by the one rule of
    `keras_oltr.shot_groups` (strict by default, inclusive on request)."""
    counts = np.bincount(train_labels[train_labels >= 0], minlength=num_classes)
    groups = shot_groups(counts, "inclusive" if inclusive else "strict")
    return {name: int(np.sum(groups == i)) for i, name in enumerate(SHOT_GROUPS)}


def summary(arrays: dict | None = None, inclusive: bool = False, *, name: str = NAME) -> dict:
    """Per-split image counts, class counts and shot-group sizes of the benchmark.

    Args:
        arrays: the output of `load_mixed_mnist_lt_arrays`; benchmark `name` loaded if None.
        inclusive: use inclusive (>= 100, <= 20) instead of strict shot groups.
        name: the benchmark to load when `arrays` is None.

    Returns:
        {"splits": {split: images}, "num_known_classes", "num_open_classes",
         "train_per_class": [24 ints], "shot_groups": {"many", "medium", "few"},
         "shot_convention": "strict" | "inclusive"}.
    """
    if arrays is None:
        arrays = load_mixed_mnist_lt_arrays(name=name)
    num_classes = len(arrays["class_names"])
    train_labels = arrays["train_labels"]
    return {
        "splits": {split: int(len(arrays[f"{split}_labels"])) for split in SPLITS},
        "num_known_classes": num_classes,
        "num_open_classes": len(arrays["open_class_names"]),
        "train_per_class": np.bincount(train_labels, minlength=num_classes).tolist(),
        "shot_groups": shot_group_sizes(train_labels, num_classes, inclusive=inclusive),
        "shot_convention": "inclusive" if inclusive else "strict",
    }


def _array_dataset(name, path, image_size, channels, augmentation, verify) -> ArrayDataset:
    arrays = load_mixed_mnist_lt_arrays(path, verify=verify, name=name)
    splits = {split: (arrays[f"{split}_images"], arrays[f"{split}_labels"]) for split in SPLITS}
    return ArrayDataset(
        splits,
        class_names=arrays["class_names"].tolist(),
        name=name,
        image_size=image_size,
        channels=channels,
        # Digits are not mirror-symmetric, so flipping would create non-class images.
        horizontal_flip=False,
        augmentation=augmentation,
    )


@register_dataset(NAME)
def build_mixed_mnist_lt(
    *,
    path: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    augmentation: str | None = None,
    verify: bool = True,
) -> ArrayDataset:
    """Builds the `mixed_mnist_lt` dataset (registered under that name).

    Args:
        path: the .npz file; defaults to the shipped asset.
        image_size: size the model sees; default 28 (stored size).
        channels: 1 (default, stored) or 3.
        augmentation: see `LongTailDataset`; default "small" (pad-4 crop).
        verify: check the SHA-256 against the manifest.

    Returns:
        An `ArrayDataset` with splits train, val, test, open and open_val.
    """
    return _array_dataset(NAME, path, image_size, channels, augmentation, verify)


@register_dataset(NAME_B)
def build_mixed_mnist_lt_b(
    *,
    path: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    augmentation: str | None = None,
    verify: bool = True,
) -> ArrayDataset:
    """Builds the second benchmark `mixed_mnist_lt_b` (registered under that name).

    Same sources, profile and split sizes as `mixed_mnist_lt`, another known/open class
    partition (see `assets/MIXED_MNIST_LT_B.md`). Arguments as `build_mixed_mnist_lt`.
    """
    return _array_dataset(NAME_B, path, image_size, channels, augmentation, verify)
