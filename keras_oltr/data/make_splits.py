"""Make OLTR-style long-tailed split files from any labelled image list.

From a balanced (or any) labelled set, `make_long_tail_splits` holds out some
classes as the open set, sets aside balanced val and test images per known class,
and subsamples the rest to a long-tailed train set following

- the exponential profile of CIFAR-LT: `n_i = n_max * (1 / imb) ** (i / (K - 1))`,
  class i in label order; or
- Pareto sampling as ImageNet-LT (Liu et al. 2019): K sizes drawn from a Pareto
  distribution with shape `alpha` (default 6), sorted, rescaled to
  `[n_min, n_max]` and assigned to the classes in a random order.

`write_split_files` writes them in the OLTR format (`relative/path label`, open
label -1) for `SplitFileDataset` / the registered `custom` dataset. Everything is a
function of the seed.
"""

from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np

PROFILES = ("exponential", "pareto")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def exponential_counts(n_max: int, num_classes: int, imbalance_factor: float) -> np.ndarray:
    """`n_i = int(n_max * (1 / imbalance_factor) ** (i / (K - 1)))`, i = 0..K-1."""
    if imbalance_factor < 1:
        raise ValueError(
            f"`imbalance_factor` must be >= 1. Received: imbalance_factor={imbalance_factor}"
        )
    if num_classes < 2:
        return np.full([num_classes], int(n_max), np.int64)
    exponents = np.arange(num_classes) / (num_classes - 1)
    return (n_max * (1.0 / imbalance_factor) ** exponents).astype(np.int64)


def pareto_counts(
    num_classes: int, n_max: int, n_min: int, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """K class sizes from a Pareto(alpha) draw, sorted descending, scaled to [n_min, n_max]."""
    if alpha <= 0:
        raise ValueError(f"`alpha` must be positive. Received: alpha={alpha}")
    if not 1 <= n_min <= n_max:
        raise ValueError(f"Need 1 <= n_min <= n_max. Received: n_min={n_min}, n_max={n_max}")
    x = np.sort(rng.pareto(alpha, size=num_classes) + 1.0)[::-1]
    span = x[0] - x[-1]
    unit = (x - x[-1]) / span if span > 0 else np.ones_like(x)
    return np.round(n_min + unit * (n_max - n_min)).astype(np.int64)


def read_labelled_list(path: str) -> list[tuple[str, str]]:
    """Reads `relative/path label` lines (label: any token) into `(path, label)` pairs."""
    if not os.path.isfile(path):
        raise ValueError(f"Labelled list not found. Received: path={path!r}")
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            parts = text.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(
                    f"Malformed line, expected `path label`. Received: {path}:{lineno}: {text!r}"
                )
            items.append((parts[0], parts[1]))
    return items


def scan_class_folders(root: str) -> list[tuple[str, str]]:
    """`(relative/path, class folder name)` for the images in a folder-per-class tree."""
    if not os.path.isdir(root):
        raise ValueError(f"Image folder not found. Received: root={root!r}")
    items = []
    for cls in sorted(os.listdir(root)):
        folder = os.path.join(root, cls)
        if not os.path.isdir(folder):
            continue
        for dirpath, _, files in sorted(os.walk(folder)):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    items.append((os.path.relpath(os.path.join(dirpath, f), root), cls))
    if not items:
        raise ValueError(f"No images found in class folders. Received: root={root!r}")
    return items


@dataclasses.dataclass(frozen=True)
class LongTailSplits:
    """Result of `make_long_tail_splits`.

    Attributes:
        splits: `{split: [(path, label), ...]}`, known labels `0..K-1`, open -1.
        class_names: original class label of each new known label.
        open_class_names: original labels of the held-out open classes.
        train_counts: int `[K]` train images per known class.
    """

    splits: dict
    class_names: tuple
    open_class_names: tuple
    train_counts: np.ndarray


def _sort_key(label: str):
    # Numeric labels sort as numbers, others as strings.
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def make_long_tail_splits(
    items,
    *,
    profile: str = "pareto",
    num_open_classes: int = 0,
    val_per_class: int = 20,
    test_per_class: int = 50,
    open_per_class: int | None = None,
    open_val_per_class: int = 0,
    n_max: int | None = None,
    n_min: int = 5,
    imbalance_factor: float = 100.0,
    pareto_alpha: float = 6.0,
    seed: int = 0,
) -> LongTailSplits:
    """Splits labelled items into long-tailed train, balanced val/test and open sets.

    Args:
        items: iterable of `(path, label)`; labels are any hashable tokens.
        profile: `"exponential"` (uses `imbalance_factor`) or `"pareto"` (uses
            `pareto_alpha`, `n_min`).
        num_open_classes: classes held out entirely as the open set.
        val_per_class, test_per_class: balanced val/test images per known class.
        open_per_class: open-test images per open class (default `test_per_class`).
        open_val_per_class: open-val images per open class (0: no open_val split).
        n_max: largest train class; default and upper bound: the fewest images any
            known class has left after val and test.
        n_min: smallest train class (Pareto profile).
        imbalance_factor: n_max / n_min of the exponential profile.
        pareto_alpha: Pareto shape (ImageNet-LT: 6).
        seed: seed of every random choice.
    """
    if profile not in PROFILES:
        raise ValueError(f"`profile` must be one of {PROFILES}. Received: profile={profile!r}")
    by_class = collections.defaultdict(list)
    for path, label in items:
        by_class[str(label)].append(str(path))
    labels = sorted(by_class, key=_sort_key)
    if not 0 <= num_open_classes < len(labels):
        raise ValueError(
            f"`num_open_classes` must lie in [0, {len(labels)}). "
            f"Received: num_open_classes={num_open_classes}"
        )
    rng = np.random.default_rng(seed)
    open_set = set(rng.choice(len(labels), size=num_open_classes, replace=False).tolist())
    known = [c for i, c in enumerate(labels) if i not in open_set]
    open_names = [c for i, c in enumerate(labels) if i in open_set]
    pools = {c: [by_class[c][j] for j in rng.permutation(len(by_class[c]))] for c in labels}

    held = val_per_class + test_per_class
    short = [f"{c} ({len(pools[c])})" for c in known if len(pools[c]) <= held]
    if short:
        raise ValueError(
            f"Known classes need more than val_per_class + test_per_class = {held} images. "
            f"Received: classes (images) {short[:10]}"
        )
    available = min(len(pools[c]) - held for c in known)
    n_max = available if n_max is None else n_max
    if not 1 <= n_max <= available:
        raise ValueError(
            f"`n_max` must lie in [1, {available}] (images left after val and test). "
            f"Received: n_max={n_max}"
        )
    if profile == "exponential":
        counts = exponential_counts(n_max, len(known), imbalance_factor)
    else:
        counts = rng.permutation(pareto_counts(len(known), n_max, n_min, pareto_alpha, rng))
    counts = np.maximum(counts, 1)

    splits = {"train": [], "val": [], "test": [], "open": []}
    for new_label, (c, n) in enumerate(zip(known, counts, strict=True)):
        pool = pools[c]
        splits["val"] += [(p, new_label) for p in pool[:val_per_class]]
        splits["test"] += [(p, new_label) for p in pool[val_per_class:held]]
        splits["train"] += [(p, new_label) for p in pool[held : held + n]]
    open_per_class = test_per_class if open_per_class is None else open_per_class
    if open_val_per_class > 0:
        splits["open_val"] = []
    for c in open_names:
        pool = pools[c]
        splits["open"] += [(p, -1) for p in pool[:open_per_class]]
        if open_val_per_class > 0:
            end = open_per_class + open_val_per_class
            splits["open_val"] += [(p, -1) for p in pool[open_per_class:end]]
    if not splits["open"]:
        del splits["open"]
    return LongTailSplits(
        splits=splits,
        class_names=tuple(known),
        open_class_names=tuple(open_names),
        train_counts=np.asarray(counts, np.int64),
    )


def write_split_files(result: LongTailSplits, out_dir: str, prefix: str = "LT") -> dict:
    """Writes `{prefix}_{split}.txt` files and `{prefix}_classes.txt` to `out_dir`.

    Returns:
        `{split: path}` plus `"class_names": path`.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for split, entries in result.splits.items():
        path = os.path.join(out_dir, f"{prefix}_{split}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{p} {y}\n" for p, y in entries)
        paths[split] = path
    path = os.path.join(out_dir, f"{prefix}_classes.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{c}\n" for c in result.class_names)
    paths["class_names"] = path
    return paths


__all__ = [
    "LongTailSplits",
    "exponential_counts",
    "make_long_tail_splits",
    "pareto_counts",
    "read_labelled_list",
    "scan_class_folders",
    "write_split_files",
]
