"""Epoch index sequences: plain random order and the OLTR class-aware sampler.

Pure numpy functions of a `np.random.Generator`, so that the order of an epoch is
a function of (seed, epoch, sampler) alone and can be recomputed exactly when a
run resumes. The tf.data pipeline is then built from the resulting index array.
"""

from __future__ import annotations

import numpy as np

from keras_oltr.arrays import label_groups

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


def _segment_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for each segment, vectorised."""
    lengths = np.asarray(lengths, np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, np.int64) - offsets, lengths) + np.arange(lengths.sum())


def _permutations(rng: np.random.Generator, sizes: np.ndarray) -> np.ndarray:
    """``rng.permutation(s)`` for each ``s`` of ``sizes``, in order, concatenated.

    A permutation of one element is filled in without a call: Fisher-Yates makes no
    swap and draws nothing from ``rng`` for it.
    """
    sizes = np.asarray(sizes, np.int64)
    out = np.zeros(int(sizes.sum()), np.int64)
    multi = sizes > 1
    if multi.any():
        positions = _segment_positions((np.cumsum(sizes) - sizes)[multi], sizes[multi])
        out[positions] = np.concatenate(list(map(rng.permutation, sizes[multi].tolist())))
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

    The random draws are, in this order: one permutation of each class's images
    (classes ascending), the permutations of the class cycle, then each class's
    reshuffles in the order the visits exhaust them. Classes are grouped by one sort
    and the visits are gathered vectorised, so an epoch costs O(N log N + n) time and
    O(N + n) memory whatever the number of classes; only the permutations (one per
    class and cycle, none for a one-image class) are drawn one call at a time.

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
    spc = int(samples_per_class)
    rows, starts, sizes, _ = label_groups(labels)
    num_classes = sizes.size
    # Each class's first pass over its images, laid out like `rows`.
    first_pass = _permutations(rng, sizes)
    visits = -(-n // spc)
    cycles = max(1, -(-visits // num_classes))  # the first cycle is drawn even for n = 0
    visit_class = np.concatenate([rng.permutation(num_classes) for _ in range(cycles)])[:visits]
    # The t-th visit of class c takes positions [t * spc, (t + 1) * spc) of the class's
    # stream: its first pass, then one reshuffle per further pass.
    per_class = np.bincount(visit_class, minlength=num_classes)
    by_class = np.argsort(visit_class, kind="stable")  # visits grouped by class, in time
    first_visit = np.cumsum(per_class) - per_class
    ordinal = np.empty(visits, np.int64)
    ordinal[by_class] = np.arange(visits) - np.repeat(first_visit, per_class)
    passes = np.maximum(1, -(-(per_class * spc) // sizes))
    # Reshuffle j >= 1 of class c happens in the visit that reaches position j * size.
    refill_class = np.repeat(np.arange(num_classes), passes - 1)
    refill_pass = _segment_positions(np.ones(num_classes, np.int64), passes - 1)
    refill_visit = by_class[first_visit[refill_class] + refill_pass * sizes[refill_class] // spc]
    drawn_order = np.argsort(refill_visit, kind="stable")  # passes ascend within a visit
    drawn_sizes = sizes[refill_class[drawn_order]]
    refills = _permutations(rng, drawn_sizes)
    refill_offset = np.empty(refill_class.size, np.int64)
    refill_offset[drawn_order] = np.cumsum(drawn_sizes) - drawn_sizes
    # Gather every position of every visit.
    cls = np.repeat(visit_class, spc)
    position = np.repeat(ordinal * spc, spc) + np.tile(np.arange(spc), visits)
    pass_index, within = np.divmod(position, sizes[cls])
    local = np.empty(position.size, np.int64)
    first = pass_index == 0
    local[first] = first_pass[starts[cls[first]] + within[first]]
    later = ~first
    refill_index = (np.cumsum(passes - 1) - (passes - 1))[cls[later]] + pass_index[later] - 1
    local[later] = refills[refill_offset[refill_index] + within[later]]
    return rows[starts[cls] + local][:n].astype(np.int64)


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
