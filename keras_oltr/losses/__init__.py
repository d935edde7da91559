"""Losses of OLTR and long-tailed baselines."""

from keras_oltr.losses.class_prior_ce import cross_entropy, log_class_prior
from keras_oltr.losses.large_margin import large_margin_loss

__all__ = ["cross_entropy", "large_margin_loss", "log_class_prior"]
