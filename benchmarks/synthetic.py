"""Synthetic model outputs shared by the benchmarks (no flags: any script imports it)."""

import numpy as np


def fake_top1(rng, n, k, open_fraction):
    """(predicted, max probability, labels) of n test images over k classes.

    A share `open_fraction` of the labels is -1 (open); 40% of the predictions are
    right (known images only), and their max probability is higher by 0.3.
    """
    labels = rng.integers(0, k, n)
    labels[rng.random(n) < open_fraction] = -1
    correct = rng.random(n) < 0.4
    predicted = np.where(correct & (labels >= 0), labels, rng.integers(0, k, n))
    max_probability = np.clip(rng.beta(2, 2, n) + 0.3 * correct, 0, 1)
    return predicted, max_probability, labels
