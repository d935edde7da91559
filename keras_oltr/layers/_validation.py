"""Argument checks shared by the layers; messages follow Keras' "Received: name=value"."""


def check_positive_int(name, value):
    """Returns `value` as an int, or raises ValueError naming `name` when it is not > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def check_positive_float(name, value):
    """Returns `value` as a float, or raises ValueError naming `name` when it is not > 0."""
    try:
        value_f = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a positive number. Received: {name}={value!r}"
        ) from None
    if not value_f > 0.0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return value_f
