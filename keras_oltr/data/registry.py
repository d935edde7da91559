"""Dataset registry: names -> builder functions.

A new dataset is one decorated builder function::

    @register_dataset("my_lt")
    def my_lt(*, data_root="data/my", image_size=224, **kwargs) -> LongTailDataset:
        ...

    ds = get_dataset("my_lt", data_root="/datasets/my")
"""

from __future__ import annotations

from collections.abc import Callable

from keras_oltr.data.base import LongTailDataset

_REGISTRY: dict[str, Callable[..., LongTailDataset]] = {}


def register_dataset(name: str):
    """Decorator registering a dataset builder (keyword arguments only) under `name`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")

    def decorator(builder: Callable[..., LongTailDataset]):
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(
                f"A dataset is already registered under this name. Received: name={name!r}"
            )
        _REGISTRY[name] = builder
        return builder

    return decorator


def get_dataset(name: str, **kwargs) -> LongTailDataset:
    """Builds the dataset registered as `name` with the builder's keyword arguments."""
    return dataset_builder(name)(**kwargs)


def dataset_builder(name: str) -> Callable[..., LongTailDataset]:
    """The builder function registered as `name` (e.g. to inspect its arguments)."""
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown dataset. Known datasets: {list_datasets()}. Received: name={name!r}"
        )
    return _REGISTRY[name]


def list_datasets() -> list[str]:
    """Sorted names of the registered datasets."""
    return sorted(_REGISTRY)
