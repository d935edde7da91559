"""The split names of a long-tailed open-set dataset, and the open-set label.

Known splits hold labels `0..K-1`; open splits hold `OPEN_LABEL` (-1). `open_val`
is optional.
"""

from __future__ import annotations

SPLITS = ("train", "val", "test", "open", "open_val")
KNOWN_SPLITS = ("train", "val", "test")
OPEN_SPLITS = ("open", "open_val")
OPEN_LABEL = -1


def check_split(split: str) -> None:
    """Raises ValueError for a split name outside `SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")
