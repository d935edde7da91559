"""Workarounds for known Keras bugs, each applied by the trainer only where it bites.

Kept in one small module so that the model and layers stay on public Keras API, and
so that each workaround can be deleted when the Keras release it waits for is the
minimum version.
"""

import tensorflow as tf


def skip_prefit_batch_reduce(model, strategy):
    """Lets `model.fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Keras 3 (3.15 here) pulls a first batch before every `fit` and
    `strategy.reduce("MEAN", batch)`s it to build the model symbolically; under
    MultiWorkerMirroredStrategy that reduce fails ("Attempt to convert a value
    (PerReplica...)"). An OLTR model is built at construction and its optimizer in
    `compile`, so there is nothing left to build: on such a model the pre-fit build
    is skipped. Other strategies, and unbuilt models, are left alone.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    if not (model.built and model.optimizer is not None and model.optimizer.built):
        raise ValueError(
            "Under MultiWorkerMirroredStrategy the model and its optimizer must be built "
            "before fit (compile() builds the optimizer of a built OLTRModel)."
        )
    # Instance attribute: Keras calls self._maybe_symbolic_build(iterator=...).
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    return model
