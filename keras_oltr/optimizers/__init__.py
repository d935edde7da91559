"""Optimizers with the reference's PyTorch SGD semantics."""

from keras_oltr.optimizers.coupled_sgd import CoupledSGD, layer_lr_multipliers

__all__ = ["CoupledSGD", "layer_lr_multipliers"]
