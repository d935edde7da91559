"""Backbone registry: names map to builder functions returning a feature-map model."""

_BACKBONES = {}


def register_backbone(name):
    """Decorator registering `fn(input_shape, **options) -> keras.Model` under `name`."""

    def decorator(fn):
        if name in _BACKBONES:
            raise ValueError(f"Backbone {name!r} is already registered.")
        _BACKBONES[name] = fn
        return fn

    return decorator


def list_backbones():
    """Names of the registered backbones, sorted."""
    return sorted(_BACKBONES)


def get_backbone(name, input_shape, **options):
    """Builds the backbone `name`: a keras.Model from raw [0, 255] images to [B, H, W, C]."""
    if name not in _BACKBONES:
        raise ValueError(f"Unknown backbone. Known: {list_backbones()}. Received: name={name!r}")
    return _BACKBONES[name](tuple(input_shape), **options)
