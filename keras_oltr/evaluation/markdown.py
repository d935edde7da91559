"""Markdown text of the results: numbers (None/NaN as n/a, mean ± std) and tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["fmt", "is_missing", "markdown_table"]


def is_missing(value: Any) -> bool:
    """Whether ``value`` is undefined: None, NaN or inf."""
    return value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value))


def fmt(value: Any, *, percent: bool = False, digits: int | None = None) -> str:
    """Formats a number (or a {"mean", "std", "n"} aggregate); None/NaN print as n/a.

    Args:
        value: a number, None, or an aggregate (printed "mean ± std" for n > 1).
        percent: print 100 * value with 1 decimal (default) instead of 3 decimals.
        digits: decimals, overriding the default.
    """
    if isinstance(value, Mapping):
        mean, std = value.get("mean"), value.get("std")
        if is_missing(mean):
            return "n/a"
        text = fmt(mean, percent=percent, digits=digits)
        if value.get("n", 1) > 1 and not is_missing(std):
            text += " ± " + fmt(std, percent=percent, digits=digits)
        return text
    if is_missing(value):
        return "n/a"
    if percent:
        return f"{100.0 * float(value):.{1 if digits is None else digits}f}"
    return f"{float(value):.{3 if digits is None else digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)
