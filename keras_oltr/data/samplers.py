"""Epoch index sequences: plain random order and the OLTR class-aware sampler.

Pure numpy functions of a `np.random.Generator`, so that the order of an epoch is
a function of (seed, epoch, sampler) alone and can be recomputed exactly when a
run resumes. The tf.data pipeline is then built from the resulting index array.
"""

from __future__ import annotations

import numpy as np

SAMPLERS = ("random", "class_aware")


def random_order(num: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Returns `n` indices in `[0, num)`: concatenated random permutations.

    The first `num` entries are one permutation of all examples; when `n > num`
    further permutations follow, so every example appears once before any repeats.

    Args:
        num: number of examples to draw from.
        n: length of the returned sequence.
        rng: numpy random generator; the result is a function of its state.

    Returns:
        int64 array of shape `[n]`.
    """
    if num <= 0:
        raise ValueError(f"`num` must be positive. Received: num={num}")
    if n < 0:
        raise ValueError(f"`n` must be non-negative. Received: n={n}")
    reps = -(-n // num)  # ceil
    if reps == 0:
        return np.zeros([0], np.int64)
    order = np.concatenate([rng.permutation(num) for _ in range(reps)])
    return order[:n].astype(np.int64)


class _RandomCycle:
    """Cycles through `items` in a shuffled order, reshuffling when exhausted."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator):
        self._items = np.asarray(items)
        self._rng = rng
        self._order = self._rng.permutation(self._items)
        self._pos = 0

    def take(self, k: int) -> np.ndarray:
        out = np.empty([k], dtype=self._items.dtype)
        filled = 0
        while filled < k:
            if self._pos == len(self._order):
                self._order = self._rng.permutation(self._items)
                self._pos = 0
            m = min(k - filled, len(self._order) - self._pos)
            out[filled : filled + m] = self._order[self._pos : self._pos + m]
            filled += m
            self._pos += m
        return out


def class_aware_order(
    labels: np.ndarray, n: int, samples_per_class: int, rng: np.random.Generator
) -> np.ndarray:
    """Returns `n` example indices drawn by the OLTR class-aware sampler.

    Follows the reference `ClassAwareSampler`: the classes are visited in a
    shuffled order, reshuffled after every full cycle; at each visit
    `samples_per_class` consecutive images of the current class are taken from
    that class's own shuffled image list, which is cycled and reshuffled when
    exhausted. Every class is therefore equally frequent, whatever its size.

    Args:
        labels: int array `[N]` of class ids; classes without images are skipped.
        n: length of the returned sequence (it may end in the middle of a visit).
        samples_per_class: consecutive images taken per class visit.
        rng: numpy random generator; the result is a function of its state.

    Returns:
        int64 array of shape `[n]` of indices into `labels`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(
            f"`labels` must be a non-empty 1-D array. Received: labels.shape={labels.shape}"
        )
    if samples_per_class < 1:
        raise ValueError(
            f"`samples_per_class` must be >= 1. Received: samples_per_class={samples_per_class}"
        )
    if n < 0:
        raise ValueError(f"`n` must be non-negative. Received: n={n}")
    classes = np.unique(labels)
    per_class = {int(c): _RandomCycle(np.flatnonzero(labels == c), rng) for c in classes}
    class_cycle = _RandomCycle(classes, rng)
    visits = -(-n // samples_per_class)
    out = np.empty([visits * samples_per_class], np.int64)
    for v, c in enumerate(class_cycle.take(visits)):
        out[v * samples_per_class : (v + 1) * samples_per_class] = per_class[int(c)].take(
            samples_per_class
        )
    return out[:n]


def epoch_order(
    labels: np.ndarray,
    n: int,
    *,
    seed: int,
    epoch: int,
    sampler: str = "random",
    samples_per_class: int = 4,
) -> np.ndarray:
    """The index sequence of one training epoch, a pure function of its arguments.

    Args:
        labels: train labels `[N]`.
        n: number of indices wanted (steps * global batch, plus any spare rows).
        seed: run seed.
        epoch: epoch number (0-based).
        sampler: `"random"` or `"class_aware"`.
        samples_per_class: consecutive images per class visit (class-aware only).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"`sampler` must be one of {SAMPLERS}. Received: sampler={sampler!r}")
    rng = np.random.default_rng([int(seed), int(epoch), SAMPLERS.index(sampler)])
    if sampler == "random":
        return random_order(len(labels), n, rng)
    return class_aware_order(labels, n, samples_per_class, rng)
