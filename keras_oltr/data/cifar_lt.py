"""CIFAR-10-LT and CIFAR-100-LT (Cui et al. 2019 / Cao et al. 2019 profile).

Train: class i keeps `int(n_max * (1 / imbalance_factor) ** (i / (K - 1)))` images
of the CIFAR train set (n_max = 5000 or 500), chosen by a seeded shuffle. Test: the
full balanced CIFAR test set.

Choices (kept simple and explicit):

- Validation: with `val_per_class=0` (default) the val split is the test set, as in
  the CIFAR-LT literature; with `val_per_class > 0` that many images per class are
  first set aside from the train pool (then n_max shrinks by as much).
- Open set: `open_arrays` (images from other classes, e.g. SVHN or TinyImageNet;
  labels are ignored). When the CIFAR arrays are loaded from `keras.datasets`
  (no `train_arrays` given) and `open_arrays` is None, the test images of the
  other CIFAR serve as open set (CIFAR-100 test for cifar10_lt, CIFAR-10 test for
  cifar100_lt; the class overlap between the two is small but not nil, e.g. truck /
  pickup_truck). Otherwise the dataset has no open split.
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from keras_oltr.data.array_dataset import ArrayDataset
from keras_oltr.data.make_splits import exponential_counts
from keras_oltr.data.registry import register_dataset

CIFAR10_CLASSES = ("airplane automobile bird cat deer dog frog horse ship truck").split()

CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach "
    "couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster "
    "house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree "
    "motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear "
    "pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel "
    "streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
    "trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()


def make_cifar_lt(
    train_arrays,
    test_arrays,
    *,
    class_names,
    name: str,
    imbalance_factor: float = 100.0,
    open_arrays=None,
    val_per_class: int = 0,
    seed: int = 0,
    image_size: int = 32,
) -> ArrayDataset:
    """Builds a CIFAR-LT `ArrayDataset` from balanced `(images, labels)` arrays.

    Args:
        train_arrays: `(uint8 [N, H, W, 3], int [N] or [N, 1])` balanced train set.
        test_arrays: the balanced test set, same format.
        class_names: K class names.
        name: dataset name.
        imbalance_factor: n_max / n_min.
        open_arrays: optional `(images, labels_or_None)` of open-set images.
        val_per_class: images per class set aside for val (0: val = test).
        seed: seed of the image selection.
        image_size: model input size.
    """
    x, y = np.asarray(train_arrays[0]), np.asarray(train_arrays[1]).reshape(-1)
    x_test, y_test = np.asarray(test_arrays[0]), np.asarray(test_arrays[1]).reshape(-1)
    num_classes = len(class_names)
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in range(num_classes)]
    available = min(len(p) for p in pools) - val_per_class
    if available < 1:
        raise ValueError(
            "Too few train images per class for the requested val split. Received: "
            f"val_per_class={val_per_class}, smallest class={available + val_per_class}"
        )
    counts = exponential_counts(available, num_classes, imbalance_factor)
    train_idx = np.concatenate(
        [p[val_per_class : val_per_class + n] for p, n in zip(pools, counts, strict=True)]
    )
    splits = {"train": (x[train_idx], y[train_idx]), "test": (x_test, y_test)}
    if val_per_class > 0:
        val_idx = np.concatenate([p[:val_per_class] for p in pools])
        splits["val"] = (x[val_idx], y[val_idx])
    else:
        logging.info("%s: no val split requested, the test set doubles as val.", name)
        splits["val"] = splits["test"]
    if open_arrays is not None:
        splits["open"] = (np.asarray(open_arrays[0]), None)
    return ArrayDataset(
        splits,
        class_names=class_names,
        name=name,
        image_size=image_size,
        channels=3,
        horizontal_flip=True,
        augmentation="small",
    )


# keras.datasets' archive of each CIFAR: (URL, the file name in the Keras cache).
_ARCHIVES = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-batches-py-target",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python-target",
    ),
}


def _load_keras(which: str):
    """keras.datasets' CIFAR arrays, downloaded once into the Keras cache.

    Without network a download fails with one ValueError naming the URL and the
    cache file a user can fill by hand (the archive saved under that name).
    """
    import keras  # local: only needed when downloading

    module = keras.datasets.cifar10 if which == "cifar10" else keras.datasets.cifar100
    try:
        return module.load_data()
    except Exception as error:  # keras' get_file raises a bare Exception on URL errors
        url, name = _ARCHIVES[which]
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        cache = os.path.join(home, "datasets", name)
        raise ValueError(
            f"{which} must be downloaded by keras.datasets from {url}, which failed "
            f"({' '.join(str(error).split())[:200]}). Without network, save that archive "
            f"as {cache} and run again."
        ) from None


def _cifar_lt_builder(name, which, other, class_names):
    """The registered builder of one CIFAR-LT dataset (open set: the other CIFAR's test)."""

    def build(
        *,
        imbalance_factor: float = 100.0,
        train_arrays=None,
        test_arrays=None,
        open_arrays=None,
        val_per_class: int = 0,
        seed: int = 0,
        image_size: int = 32,
    ) -> ArrayDataset:
        if (train_arrays is None) != (test_arrays is None):
            raise ValueError(
                "Pass both `train_arrays` and `test_arrays` or neither. Received: "
                f"train_arrays given={train_arrays is not None}, "
                f"test_arrays given={test_arrays is not None}"
            )
        if train_arrays is None:
            train_arrays, test_arrays = _load_keras(which)
            if open_arrays is None:
                open_arrays = (_load_keras(other)[1][0], None)
        return make_cifar_lt(
            train_arrays,
            test_arrays,
            class_names=class_names,
            name=name,
            open_arrays=open_arrays,
            imbalance_factor=imbalance_factor,
            val_per_class=val_per_class,
            seed=seed,
            image_size=image_size,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"{which.upper()}-LT; arrays from `keras.datasets` (download) unless given, open "
        f"set from the {other.upper()} test split. See the module docstring."
    )
    return build


cifar10_lt = register_dataset("cifar10_lt")(
    _cifar_lt_builder("cifar10_lt", "cifar10", "cifar100", CIFAR10_CLASSES)
)
cifar100_lt = register_dataset("cifar100_lt")(
    _cifar_lt_builder("cifar100_lt", "cifar100", "cifar10", CIFAR100_CLASSES)
)
