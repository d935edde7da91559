"""keras_oltr: Open Long-Tailed Recognition (Liu et al., CVPR 2019) in Keras 3."""

__version__ = "0.1.0"
