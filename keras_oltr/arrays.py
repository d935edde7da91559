"""Checks of 1-D input arrays, with errors that name the argument; grouping by label."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_1d(name: str, value: Any, kind: str) -> np.ndarray:
    """Converts ``value`` to a 1-D array of integers ("int") or floats ("float")."""
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array. Received: {name}.shape={array.shape}")
    if kind == "int":
        if array.size and not (
            np.issubdtype(array.dtype, np.integer)
            or (
                np.issubdtype(array.dtype, np.floating)
                and np.all(np.isfinite(array))
                and np.all(array == np.round(array))
            )
        ):
            raise ValueError(f"`{name}` must hold integers. Received: {name}.dtype={array.dtype}")
        return array.astype(np.int64, copy=False)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"`{name}` must hold numbers. Received: {name}.dtype={array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)][:3]
        raise ValueError(f"`{name}` must be finite. Received non-finite values in {name}: {bad}")
    return array


def check_same_length(reference: tuple[str, np.ndarray], *others: tuple[str, np.ndarray]):
    ref_name, ref = reference
    for name, array in others:
        if array.shape[0] != ref.shape[0]:
            raise ValueError(
                f"`{name}` and `{ref_name}` must have the same length. Received: "
                f"len({name})={array.shape[0]}, len({ref_name})={ref.shape[0]}"
            )


def label_groups(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of each distinct label, from one stable sort: O(N log N), O(N + K) memory.

    Returns ``(rows, starts, sizes, values)``: ``rows`` orders the indices of
    ``labels`` by label, ascending indices within a label, and the g-th distinct
    label ``values[g]`` (ascending) owns ``rows[starts[g] : starts[g] + sizes[g]]``,
    i.e. ``np.flatnonzero(labels == values[g])`` without a pass per label.
    """
    labels = np.asarray(labels).reshape(-1)
    rows = np.argsort(labels, kind="stable")
    ordered = labels[rows]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if labels.size else rows
    sizes = np.diff(np.r_[starts, labels.size])
    return rows, starts, sizes, ordered[starts]
