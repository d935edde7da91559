"""Tests for the epoch index samplers (pure numpy)."""

import numpy as np
import pytest

from keras_oltr.data import samplers


def _labels(counts):
    return np.concatenate([np.full(c, k) for k, c in enumerate(counts)])


def test_random_order_is_permutations():
    rng = np.random.default_rng(0)
    order = samplers.random_order(10, 25, rng)
    assert order.shape == (25,)
    # Two full permutations, then a partial one without repeats.
    np.testing.assert_array_equal(np.sort(order[:10]), np.arange(10))
    np.testing.assert_array_equal(np.sort(order[10:20]), np.arange(10))
    assert len(set(order[20:].tolist())) == 5


def test_class_aware_exact_frequencies_and_runs():
    counts = [50, 13, 7, 3, 1]
    labels = _labels(counts)
    spc, cycles = 4, 30
    n = len(counts) * spc * cycles
    order = samplers.class_aware_order(labels, n, spc, np.random.default_rng(1))
    classes = labels[order]
    # Every class appears exactly spc * cycles times, whatever its size.
    np.testing.assert_array_equal(np.bincount(classes), [spc * cycles] * len(counts))
    runs = classes.reshape(-1, spc)
    # 4 consecutive images of one class per visit.
    assert np.all(runs == runs[:, :1])
    # Each cycle visits every class exactly once, in a reshuffled order.
    visits = runs[:, 0].reshape(cycles, len(counts))
    assert all(sorted(v) == list(range(len(counts))) for v in visits)
    assert len({tuple(v) for v in visits}) > 1
    # A class's images are cycled: every image of class 1 (13 images) appears once
    # before any repeats.
    first = order[classes == 1][:13]
    np.testing.assert_array_equal(np.sort(first), np.flatnonzero(labels == 1))


def test_class_aware_reproducible_and_seed_dependent():
    labels = _labels([20, 10, 5])
    a = samplers.epoch_order(labels, 64, seed=3, epoch=2, sampler="class_aware")
    b = samplers.epoch_order(labels, 64, seed=3, epoch=2, sampler="class_aware")
    c = samplers.epoch_order(labels, 64, seed=4, epoch=2, sampler="class_aware")
    d = samplers.epoch_order(labels, 64, seed=3, epoch=3, sampler="class_aware")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)


def test_class_aware_partial_visit_and_errors():
    labels = _labels([5, 5])
    order = samplers.class_aware_order(labels, 7, 4, np.random.default_rng(0))
    assert order.shape == (7,)
    with pytest.raises(ValueError, match="samples_per_class"):
        samplers.class_aware_order(labels, 7, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="sampler='balanced'"):
        samplers.epoch_order(labels, 4, seed=0, epoch=0, sampler="balanced")
