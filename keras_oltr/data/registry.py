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


def get_dataset(name: str, /, **kwargs) -> LongTailDataset:
    """Builds the dataset registered as `name` with the builder's keyword arguments.

    `name` is positional-only, so a builder may itself take a `name` argument.
    """
    return dataset_builder(name)(**kwargs)


_SET_BY_BUILDERS = ("split_files", "class_names", "name", "num_classes", "data_root")
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def dataset_parameters(name: str) -> dict[str, str]:
    """`{argument: annotation text}` of a builder, following `**kwargs` into the class.

    A builder that forwards `**kwargs` to a dataset class (e.g. `custom` to
    `SplitFileDataset`) accepts that class's keyword arguments too.
    """
    import inspect

    builder = dataset_builder(name)
    params, forwards = {}, False
    for p in inspect.signature(builder).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            forwards = True
        elif p.kind is not p.VAR_POSITIONAL:
            params[p.name] = "" if p.annotation is p.empty else str(p.annotation)
    if forwards:
        target = inspect.signature(builder).return_annotation
        classes = [c for c in _dataset_classes() if c.__name__ == str(target)]
        for cls in classes:
            for p in inspect.signature(cls.__init__).parameters.values():
                # The builder itself sets these; passing them again would clash.
                if p.kind is p.KEYWORD_ONLY and p.name not in _SET_BY_BUILDERS:
                    params.setdefault(p.name, "" if p.annotation is p.empty else str(p.annotation))
    return params


def _dataset_classes():
    seen, todo = [], [LongTailDataset]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def _cast(key: str, text: str, annotation: str):
    kinds = [k.strip() for k in annotation.replace("Optional[", "").rstrip("]").split("|")]
    if text.lower() == "none" and ("None" in kinds or not annotation):
        return None
    if "bool" in kinds:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"--dataset_arg={key}=... must be true or false. Received: {key}={text!r}")
    for kind, cast in (("int", int), ("float", float)):
        if kind in kinds:
            try:
                return cast(text)
            except ValueError:
                if kind == "int" and "float" in kinds:
                    continue
                what = "an integer" if kind == "int" else "a number"
                raise ValueError(
                    f"--dataset_arg={key}=... must be {what}. Received: {key}={text!r}"
                ) from None
    if kinds and any(k.startswith("str") for k in kinds):
        return text
    for cast in (int, float):  # unannotated: the old behaviour
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def parse_dataset_args(name: str, items) -> dict:
    """`["key=value", ...]` (the --dataset_arg flag) -> typed builder keyword arguments.

    Values are cast to the builder's parameter types (booleans accept
    true/false/yes/no/1/0); an unknown key or a value of the wrong type raises one
    ValueError naming it.
    """
    params = dataset_parameters(name)
    kwargs = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--dataset_arg must be key=value. Received: {item!r}")
        if key not in params:
            raise ValueError(
                f"Unknown --dataset_arg for dataset {name!r}. Known: {sorted(params)}. "
                f"Received: {key}"
            )
        kwargs[key] = _cast(key, value, params[key])
    return kwargs


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
