"""Long-tailed datasets and deterministic tf.data input pipelines.

Importing this package registers the built-in datasets; build one by name::

    from keras_oltr import data
    ds = data.get_dataset("mixed_mnist_lt")
    train = ds.train_dataset(128, epoch=0, seed=0, sampler="class_aware")
"""

# Imported for their registrations: imagenet_lt, places_lt, ms1m_lt (imagenet_places_lt),
# custom, cifar10_lt, cifar100_lt (cifar_lt), mixed_mnist_lt and mixed_mnist_lt_b.
from keras_oltr.data import cifar_lt, custom, imagenet_places_lt, mixed_mnist_lt  # noqa: F401
from keras_oltr.data.array_dataset import ArrayDataset
from keras_oltr.data.base import LongTailDataset
from keras_oltr.data.registry import (
    dataset_builder,
    get_dataset,
    list_datasets,
    register_dataset,
)
from keras_oltr.data.split_file_parser import SplitFileError
from keras_oltr.data.split_files import SplitFileDataset

__all__ = [
    "ArrayDataset",
    "LongTailDataset",
    "SplitFileDataset",
    "SplitFileError",
    "dataset_builder",
    "get_dataset",
    "list_datasets",
    "register_dataset",
]
