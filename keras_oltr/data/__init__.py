"""Long-tailed datasets and deterministic tf.data input pipelines.

Importing this package registers the built-in datasets; build one by name::

    from keras_oltr import data
    ds = data.get_dataset("mixed_mnist_lt")
    train = ds.train_dataset(128, epoch=0, seed=0, sampler="class_aware")
"""

from keras_oltr.data import mixed_mnist_lt  # noqa: F401  (registers its dataset)
from keras_oltr.data.array_dataset import ArrayDataset
from keras_oltr.data.base import LongTailDataset
from keras_oltr.data.registry import get_dataset, list_datasets, register_dataset

__all__ = [
    "ArrayDataset",
    "LongTailDataset",
    "get_dataset",
    "list_datasets",
    "register_dataset",
]
