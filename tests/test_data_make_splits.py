"""Tests for the long-tail split tool."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_oltr import data
from keras_oltr.data import make_splits


def _items(num_classes=8, per_class=120):
    return [(f"c{c}/{i}.png", str(c)) for c in range(num_classes) for i in range(per_class)]


def test_exponential_profile_counts():
    result = make_splits.make_long_tail_splits(
        _items(),
        profile="exponential",
        imbalance_factor=10,
        num_open_classes=2,
        val_per_class=5,
        test_per_class=10,
        seed=0,
    )
    k = 6
    expected = [int(105 * 0.1 ** (i / (k - 1))) for i in range(k)]
    np.testing.assert_array_equal(result.train_counts, expected)
    train_labels = np.array([y for _, y in result.splits["train"]])
    np.testing.assert_array_equal(np.bincount(train_labels), expected)
    assert np.all(np.bincount([y for _, y in result.splits["val"]]) == 5)
    assert np.all(np.bincount([y for _, y in result.splits["test"]]) == 10)
    # Open classes are absent from every known split; the open set holds only them.
    open_paths = {p for p, _ in result.splits["open"]}
    assert len(open_paths) == 2 * 10
    assert {p.split("/")[0] for p in open_paths} == {f"c{c}" for c in result.open_class_names}
    known = [p for s in ("train", "val", "test") for p, _ in result.splits[s]]
    assert not open_paths & set(known)
    assert len(set(known)) == len(known)  # no image in two splits
    assert all(p.startswith(f"c{result.class_names[y]}/") for p, y in result.splits["train"])


def test_pareto_profile_range_and_seed():
    kwargs = dict(profile="pareto", n_max=100, n_min=5, val_per_class=5, test_per_class=5)
    a = make_splits.make_long_tail_splits(_items(20), seed=1, **kwargs)
    b = make_splits.make_long_tail_splits(_items(20), seed=1, **kwargs)
    c = make_splits.make_long_tail_splits(_items(20), seed=2, **kwargs)
    assert a.train_counts.max() == 100 and a.train_counts.min() == 5
    # Pareto(6) is heavy-headed toward small values: most classes are below the midpoint.
    assert np.sum(a.train_counts < 52) > 10
    assert a.splits == b.splits and a.splits != c.splits


def test_pareto_counts_formula():
    rng = np.random.default_rng(0)
    x = np.sort(np.random.default_rng(0).pareto(6.0, 10) + 1)[::-1]
    expected = np.round(5 + (x - x[-1]) / (x[0] - x[-1]) * 95)
    np.testing.assert_array_equal(make_splits.pareto_counts(10, 100, 5, 6.0, rng), expected)


def test_too_small_classes_rejected():
    with pytest.raises(ValueError, match="val_per_class \\+ test_per_class = 70"):
        make_splits.make_long_tail_splits(_items(3, 60))


def test_round_trip_through_split_file_dataset(tmp_path):
    root = tmp_path / "tree"
    for c in range(4):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (20, 20), (c * 50, i * 10, 0)).save(root / f"class_{c}" / f"{i}.png")
    items = make_splits.scan_class_folders(str(root))
    assert len(items) == 48
    result = make_splits.make_long_tail_splits(
        items,
        profile="exponential",
        imbalance_factor=4,
        num_open_classes=1,
        val_per_class=2,
        test_per_class=2,
        open_val_per_class=3,
        seed=0,
    )
    paths = make_splits.write_split_files(result, str(tmp_path / "splits"), prefix="Toy")
    assert os.path.basename(paths["train"]) == "Toy_train.txt"
    ds = data.get_dataset(
        "custom",
        data_root=str(root),
        class_names_file=paths["class_names"],
        image_size=16,
        **{s: paths[s] for s in ("train", "val", "test", "open", "open_val")},
    )
    assert ds.num_classes == 3 and ds.class_names == result.class_names
    np.testing.assert_array_equal(ds.train_counts, [8, 4, 2])  # 8 * (1/4) ** (i / 2)
    assert ds.num_examples("open") == 2 and ds.num_examples("open_val") == 3
    _, labels = next(iter(ds.eval_dataset("open", 8)))
    np.testing.assert_array_equal(labels.numpy(), [-1, -1])
    # A labelled list works the same as the folder tree.
    listing = tmp_path / "all.txt"
    listing.write_text("".join(f"{p} {c}\n" for p, c in items))
    assert make_splits.read_labelled_list(str(listing)) == items
