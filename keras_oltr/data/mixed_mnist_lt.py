"""The embedded long-tailed open-set benchmark `mixed_mnist_lt`.

30 real 28x28 grayscale classes from MNIST, Fashion-MNIST and Animal-MNIST: 24 known
classes with long-tailed train counts (1000 down to 5; 10 many-, 7 medium-, 7 few-shot
classes), 20 val and 100 test images per known class, and 6 open classes (2 per source)
with 100 open-test and 20 open-val images each. The arrays ship with the package in
`keras_oltr/data/assets/` (about 2 MB); `scripts/build_mixed_mnist_lt.py` rebuilds them
byte for byte from pinned registry packages, and the manifest beside the .npz records
provenance, licences and hashes. The class table is in `assets/MIXED_MNIST_LT.md`.

Arrays (N varies by split):
  {split}_images        uint8 [N, 28, 28, 1]
  {split}_labels        int32 [N]; known classes 0..23, -1 in `open` and `open_val`
  {split}_source_index  int32 [N, 2]: source id (index into `source_names`) and the
                        image's index within that source
  class_names           str [24], open_class_names str [6], source_names str [3]
for split in train, val, test, open, open_val.

Registered as `mixed_mnist_lt`: `keras_oltr.data.get_dataset("mixed_mnist_lt")` returns an
`ArrayDataset` (28x28x1, no horizontal flip since mirrored digits are not digits).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from absl import logging

from keras_oltr.data.array_dataset import ArrayDataset
from keras_oltr.data.registry import register_dataset

NAME = "mixed_mnist_lt"
SPLITS = ("train", "val", "test", "open", "open_val")
ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
DEFAULT_PATH = os.path.join(ASSETS_DIR, f"{NAME}.npz")


def manifest_path_for(path: str) -> str:
    """Returns the manifest path that belongs beside an .npz path."""
    root, _ = os.path.splitext(path)
    return f"{root}.manifest.json"


def load_manifest(path: str | None = None) -> dict:
    """Loads the JSON manifest of the benchmark stored at `path` (default: the asset)."""
    with open(manifest_path_for(path or DEFAULT_PATH)) as f:
        return json.load(f)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_mixed_mnist_lt_arrays(path: str | None = None, verify: bool = True) -> dict:
    """Loads all benchmark arrays into memory.

    Args:
        path: the .npz file; defaults to the copy shipped in `keras_oltr/data/assets/`.
            Its manifest must sit beside it as `<name>.manifest.json`.
        verify: check the file's SHA-256 against the manifest first.

    Returns:
        A dict from array name (see the module docstring) to numpy array.

    Raises:
        ValueError: the file's SHA-256 differs from the manifest's (a corrupted or
            regenerated file, or a Git LFS pointer instead of the data).
    """
    path = path or DEFAULT_PATH
    if verify:
        expected = load_manifest(path)["output"]["sha256"]
        actual = _sha256_file(path)
        if actual != expected:
            raise ValueError(
                f"SHA-256 of {path} does not match its manifest "
                f"{manifest_path_for(path)}: expected {expected}, got {actual}. The file is "
                "corrupted or was rebuilt without updating the manifest; rebuild it with "
                "scripts/build_mixed_mnist_lt.py."
            )
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    logging.info(
        "Loaded %s from %s: %s",
        NAME,
        path,
        {split: len(arrays[f"{split}_labels"]) for split in SPLITS},
    )
    return arrays


def shot_group_sizes(
    train_labels: np.ndarray,
    num_classes: int,
    many_threshold: int = 100,
    few_threshold: int = 20,
    inclusive: bool = False,
) -> dict[str, int]:
    """Counts classes per shot group from train labels.

    Strict (default): many > many_threshold, few < few_threshold; inclusive: >= and <=.
    """
    counts = np.bincount(train_labels[train_labels >= 0], minlength=num_classes)
    if inclusive:
        many, few = counts >= many_threshold, counts <= few_threshold
    else:
        many, few = counts > many_threshold, counts < few_threshold
    return {
        "many": int(many.sum()),
        "medium": int((~many & ~few).sum()),
        "few": int(few.sum()),
    }


def summary(arrays: dict | None = None, inclusive: bool = False) -> dict:
    """Per-split image counts, class counts and shot-group sizes of the benchmark.

    Args:
        arrays: the output of `load_mixed_mnist_lt_arrays`; loaded if None.
        inclusive: use inclusive (>= 100, <= 20) instead of strict shot groups.

    Returns:
        {"splits": {split: images}, "num_known_classes", "num_open_classes",
         "train_per_class": [24 ints], "shot_groups": {"many", "medium", "few"},
         "shot_convention": "strict" | "inclusive"}.
    """
    if arrays is None:
        arrays = load_mixed_mnist_lt_arrays()
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
    arrays = load_mixed_mnist_lt_arrays(path, verify=verify)
    splits = {split: (arrays[f"{split}_images"], arrays[f"{split}_labels"]) for split in SPLITS}
    return ArrayDataset(
        splits,
        class_names=arrays["class_names"].tolist(),
        name=NAME,
        image_size=image_size,
        channels=channels,
        # Digits are not mirror-symmetric, so flipping would create non-class images.
        horizontal_flip=False,
        augmentation=augmentation,
    )
