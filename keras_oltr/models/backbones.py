"""Backbone registry: names map to builder functions returning a feature-map model."""

from keras_oltr.registry import Registry

_BACKBONES = Registry("backbone")


def register_backbone(name):
    """Decorator registering `fn(input_shape, **options) -> keras.Model` under `name`."""
    return _BACKBONES.register(name)


def list_backbones():
    """Names of the registered backbones, sorted."""
    return _BACKBONES.names()


def get_backbone(name, input_shape, **options):
    """Builds the backbone `name`: a keras.Model from raw [0, 255] images to [B, H, W, C]."""
    return _BACKBONES.get(name, argument="name")(tuple(input_shape), **options)
