"""Tests of the embedded mixed_mnist_lt and mixed_mnist_lt_b benchmarks and of their build
script's helpers."""

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time

import numpy as np
import pytest

from keras_oltr.data import mixed_mnist_lt

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_SCRIPT = os.path.join(REPO_ROOT, "scripts", "build_mixed_mnist_lt.py")

# The documented class tables (keras_oltr/data/assets/MIXED_MNIST_LT{,_B}.md), in label order.
EXPECTED_TRAIN_COUNTS = {
    "digit_0": 25,
    "digit_1": 316,
    "digit_2": 50,
    "digit_4": 1000,
    "digit_6": 251,
    "digit_7": 63,
    "digit_8": 6,
    "digit_9": 199,
    "fashion_tshirt_top": 398,
    "fashion_dress": 126,
    "fashion_coat": 16,
    "fashion_sandal": 79,
    "fashion_shirt": 10,
    "fashion_sneaker": 40,
    "fashion_bag": 158,
    "fashion_ankle_boot": 13,
    "animal_bear": 5,
    "animal_bird": 32,
    "animal_cat": 631,
    "animal_dog": 99,
    "animal_giraffe": 794,
    "animal_horse": 19,
    "animal_sheep": 501,
    "animal_zebra": 8,
}
EXPECTED_OPEN = [
    "digit_3",
    "digit_5",
    "fashion_trouser",
    "fashion_pullover",
    "animal_cow",
    "animal_elephant",
]
EXPECTED_TRAIN_COUNTS_B = {
    "digit_1": 501,
    "digit_2": 251,
    "digit_3": 794,
    "digit_4": 63,
    "digit_5": 99,
    "digit_6": 32,
    "digit_8": 10,
    "digit_9": 16,
    "fashion_tshirt_top": 19,
    "fashion_trouser": 8,
    "fashion_pullover": 158,
    "fashion_dress": 1000,
    "fashion_sandal": 126,
    "fashion_shirt": 40,
    "fashion_sneaker": 199,
    "fashion_bag": 5,
    "animal_bear": 398,
    "animal_cat": 631,
    "animal_cow": 79,
    "animal_dog": 50,
    "animal_elephant": 6,
    "animal_giraffe": 316,
    "animal_horse": 13,
    "animal_sheep": 25,
}
EXPECTED_OPEN_B = [
    "digit_0",
    "digit_7",
    "fashion_coat",
    "fashion_ankle_boot",
    "animal_bird",
    "animal_zebra",
]
EXPECTED = {
    "mixed_mnist_lt": (EXPECTED_TRAIN_COUNTS, EXPECTED_OPEN),
    "mixed_mnist_lt_b": (EXPECTED_TRAIN_COUNTS_B, EXPECTED_OPEN_B),
}
SPLIT_SIZES = {"train": 4839, "val": 480, "test": 2400, "open": 600, "open_val": 120}
SOURCE_OF_PREFIX = {"digit": 0, "fashion": 1, "animal": 2}
SOURCE_LABELS = {
    0: [str(i) for i in range(10)],
    1: "tshirt_top trouser pullover dress coat sandal shirt sneaker bag ankle_boot".split(),
    2: "bear bird cat cow dog elephant giraffe horse sheep zebra".split(),
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def variant(request):
    return request.param


@pytest.fixture(scope="module")
def arrays(variant):
    return mixed_mnist_lt.load_mixed_mnist_lt_arrays(name=variant)


@pytest.fixture(scope="module")
def expected(variant):
    return EXPECTED[variant]


def _source_of(name):
    return SOURCE_OF_PREFIX[name.split("_", 1)[0]]


def _groups(counts):
    counts = np.asarray(counts)
    return np.where(counts > 100, "many", np.where(counts < 20, "few", "medium"))


def test_arrays_have_documented_shapes_and_dtypes(arrays, expected):
    for split, size in SPLIT_SIZES.items():
        assert arrays[f"{split}_images"].shape == (size, 28, 28, 1)
        assert arrays[f"{split}_images"].dtype == np.uint8
        assert arrays[f"{split}_labels"].shape == (size,)
        assert arrays[f"{split}_labels"].dtype == np.int32
        assert arrays[f"{split}_source_index"].shape == (size, 2)
        # Real images, not blanks or padding.
        assert np.all(arrays[f"{split}_images"].reshape(size, -1).max(axis=1) > 0)
    assert arrays["class_names"].tolist() == list(expected[0])
    assert arrays["open_class_names"].tolist() == expected[1]
    assert arrays["source_names"].tolist() == ["mnist", "fashion_mnist", "animal_mnist"]


def test_per_class_counts(arrays, expected):
    train = np.bincount(arrays["train_labels"], minlength=24)
    np.testing.assert_array_equal(train, list(expected[0].values()))
    assert train.max() == 1000 and train.min() == 5
    np.testing.assert_array_equal(np.bincount(arrays["val_labels"], minlength=24), [20] * 24)
    np.testing.assert_array_equal(np.bincount(arrays["test_labels"], minlength=24), [100] * 24)
    # Open classes: labels all -1; 2 classes x (100 test, 20 val) per source.
    for split, per_class in (("open", 100), ("open_val", 20)):
        assert np.all(arrays[f"{split}_labels"] == -1)
        sources = arrays[f"{split}_source_index"][:, 0]
        np.testing.assert_array_equal(np.bincount(sources, minlength=3), [2 * per_class] * 3)


@pytest.mark.parametrize("inclusive", [False, True])
def test_summary_group_sizes(arrays, expected, inclusive):
    result = mixed_mnist_lt.summary(arrays, inclusive=inclusive)
    assert result["splits"] == SPLIT_SIZES
    # No class sits on a boundary, so both conventions give 10 / 7 / 7.
    assert result["shot_groups"] == {"many": 10, "medium": 7, "few": 7}
    assert result["shot_convention"] == ("inclusive" if inclusive else "strict")
    assert result["train_per_class"] == list(expected[0].values())


def test_shot_group_sizes_conventions_differ_on_boundaries():
    labels = np.repeat(np.arange(3), [100, 20, 50])
    strict = mixed_mnist_lt.shot_group_sizes(labels, 3)
    inclusive = mixed_mnist_lt.shot_group_sizes(labels, 3, inclusive=True)
    assert strict == {"many": 0, "medium": 3, "few": 0}
    assert inclusive == {"many": 1, "medium": 1, "few": 1}


def test_no_image_in_two_splits(arrays):
    owner_by_index, owner_by_pixels = {}, {}
    for split in SPLIT_SIZES:
        for (sid, idx), image in zip(
            arrays[f"{split}_source_index"], arrays[f"{split}_images"], strict=True
        ):
            key = (int(sid), int(idx))
            assert key not in owner_by_index, (key, owner_by_index.get(key), split)
            owner_by_index[key] = split
            digest = hashlib.sha256(image.tobytes()).hexdigest()
            assert digest not in owner_by_pixels, (digest, owner_by_pixels.get(digest), split)
            owner_by_pixels[digest] = split
    assert len(owner_by_pixels) == sum(SPLIT_SIZES.values())


def test_source_index_is_consistent_with_class_names(arrays):
    names = arrays["class_names"]
    for split in ("train", "val", "test"):
        provenance = arrays[f"{split}_source_index"]
        expected_source = np.array([_source_of(n) for n in names])[arrays[f"{split}_labels"]]
        np.testing.assert_array_equal(provenance[:, 0], expected_source)
        assert np.all(provenance[:, 1] >= 0)
        assert np.all(provenance[:, 1] < np.where(provenance[:, 0] == 2, 10_000, 70_000))
    # MNIST and Fashion-MNIST test images come from the official test set (index >= 60000),
    # train and val images from the official train set.
    for split, official_test in (("train", False), ("val", False), ("test", True)):
        provenance = arrays[f"{split}_source_index"]
        is_official_test = provenance[provenance[:, 0] < 2, 1] >= 60_000
        assert np.all(is_official_test == official_test)


def test_open_classes_absent_from_train_and_val(arrays):
    known, opened = set(arrays["class_names"].tolist()), set(arrays["open_class_names"].tolist())
    assert not known & opened
    assert len(known | opened) == 30
    for split in ("train", "val", "test"):
        labels = arrays[f"{split}_labels"]
        assert labels.min() == 0 and labels.max() == 23
    # Two open classes from each source, eight known.
    for sid in range(3):
        assert sum(_source_of(n) == sid for n in opened) == 2
        assert sum(_source_of(n) == sid for n in known) == 8


def test_class_order_mixed_across_sources_in_each_group(arrays):
    counts = np.bincount(arrays["train_labels"], minlength=24)
    sources = np.array([_source_of(n) for n in arrays["class_names"]])
    groups = _groups(counts)
    for group in ("many", "medium", "few"):
        assert set(sources[groups == group].tolist()) == {0, 1, 2}, group
        assert (groups == group).sum() >= 6
    # Animal-MNIST has 1000 images per class before the 120 test/val carve-out.
    assert counts[sources == 2].max() <= 880


def test_sha256_matches_manifest(variant):
    manifest = mixed_mnist_lt.load_manifest(name=variant)
    assert manifest["name"] == variant
    with open(mixed_mnist_lt.default_path(variant), "rb") as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == manifest["output"]["sha256"]
    assert len(data) == manifest["output"]["bytes"]


def test_manifest_agrees_with_arrays(arrays, variant, expected):
    manifest = mixed_mnist_lt.load_manifest(name=variant)
    assert manifest["splits"] == SPLIT_SIZES
    rows = manifest["known_classes"]
    assert [r["name"] for r in rows] == arrays["class_names"].tolist()
    assert [r["train"] for r in rows] == np.bincount(arrays["train_labels"]).tolist()
    assert [r["group"] for r in rows] == _groups([r["train"] for r in rows]).tolist()
    assert [o["name"] for o in manifest["open_classes"]] == expected[1]
    for source in manifest["sources"]:
        assert source["version"] and source["license"] and source["archive_sha256"]
        assert all(len(h) == 64 for h in source["files_sha256"].values())


@pytest.mark.parametrize("name", list(EXPECTED))
def test_corrupted_file_is_rejected(tmp_path, name):
    path = tmp_path / f"{name}.npz"
    shutil.copyfile(mixed_mnist_lt.default_path(name), path)
    shutil.copyfile(
        mixed_mnist_lt.manifest_path_for(mixed_mnist_lt.default_path(name)),
        mixed_mnist_lt.manifest_path_for(str(path)),
    )
    loaded = mixed_mnist_lt.load_mixed_mnist_lt_arrays(str(path), name=name)
    assert loaded["class_names"].tolist() == list(EXPECTED[name][0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"does not match its manifest.*--variant={name}"):
        mixed_mnist_lt.load_mixed_mnist_lt_arrays(str(path), name=name)


def test_second_benchmark_has_another_partition():
    a_open, b_open = EXPECTED_OPEN, EXPECTED_OPEN_B
    assert not set(a_open) & set(b_open)
    # Every open class of the second benchmark is a known class of the first.
    assert set(b_open) <= set(EXPECTED_TRAIN_COUNTS)
    # Known sets differ by exactly the swapped classes; each source keeps 2 open classes.
    assert set(EXPECTED_TRAIN_COUNTS_B) == (set(EXPECTED_TRAIN_COUNTS) | set(a_open)) - set(b_open)
    for sid in range(3):
        assert sum(_source_of(n) == sid for n in b_open) == 2
    # Same long-tail profile, another assignment of counts to classes.
    assert sorted(EXPECTED_TRAIN_COUNTS_B.values()) == sorted(EXPECTED_TRAIN_COUNTS.values())
    shared = set(EXPECTED_TRAIN_COUNTS) & set(EXPECTED_TRAIN_COUNTS_B)
    assert sum(EXPECTED_TRAIN_COUNTS[n] == EXPECTED_TRAIN_COUNTS_B[n] for n in shared) < 3


def _open_classes_by_rule(seed, excluded=()):
    """The stated rule, restated independently: per source, a seeded draw of 2 labels
    among those not in `excluded`."""
    names = []
    for sid, prefix in enumerate(SOURCE_OF_PREFIX):
        eligible = [
            label for label in range(10) if f"{prefix}_{SOURCE_LABELS[sid][label]}" not in excluded
        ]
        drawn = np.random.default_rng([seed, 2000, sid]).choice(eligible, 2, replace=False)
        names += [f"{prefix}_{SOURCE_LABELS[sid][label]}" for label in sorted(drawn.tolist())]
    return names


def test_open_classes_follow_the_stated_rule():
    manifest_a = mixed_mnist_lt.load_manifest(name="mixed_mnist_lt")
    manifest_b = mixed_mnist_lt.load_manifest(name="mixed_mnist_lt_b")
    assert (manifest_a["seed"], manifest_b["seed"]) == (20190616, 20190617)
    open_a = _open_classes_by_rule(manifest_a["seed"])
    assert open_a == EXPECTED_OPEN
    assert _open_classes_by_rule(manifest_b["seed"], excluded=open_a) == EXPECTED_OPEN_B
    assert "known in mixed_mnist_lt" in manifest_b["open_class_rule"]


def _load_build_script():
    if "build_mixed_mnist_lt" in sys.modules:
        return sys.modules["build_mixed_mnist_lt"]
    spec = importlib.util.spec_from_file_location("build_mixed_mnist_lt", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Registered before running, as importlib's recipe says: dataclasses look it up.
    sys.modules["build_mixed_mnist_lt"] = module
    spec.loader.exec_module(module)
    return module


def test_build_npz_writer_is_byte_deterministic(tmp_path):
    build = _load_build_script()
    rng = np.random.default_rng(0)
    arrays = {
        "b_images": rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8),
        "a_names": np.array(["x", "yy"]),
    }
    first, second = tmp_path / "1.npz", tmp_path / "2.npz"
    build.write_npz(str(first), arrays)
    time.sleep(2.1)  # zip timestamps have 2-second resolution
    build.write_npz(str(second), arrays)
    assert first.read_bytes() == second.read_bytes()
    with np.load(first, allow_pickle=False) as loaded:
        assert sorted(loaded.files) == ["a_names", "b_images"]
        np.testing.assert_array_equal(loaded["b_images"], arrays["b_images"])


def test_build_train_profile():
    # Both benchmarks use this profile (EXPECTED_TRAIN_COUNTS_B is a permutation of it).
    build = _load_build_script()
    counts = build.train_count_profile(24)
    assert counts[0] == 1000 and counts[-1] == 5
    assert counts == sorted(counts, reverse=True)
    assert 100 not in counts and 20 not in counts
    assert sorted(counts, reverse=True) == sorted(EXPECTED_TRAIN_COUNTS.values(), reverse=True)


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("MIXED_MNIST_LT_SOURCES"),
    reason="set MIXED_MNIST_LT_SOURCES to a directory with (or for) the source archives",
)
def test_rebuild_reproduces_committed_files(tmp_path):
    # One run decodes the sources once and writes every variant.
    build = _load_build_script()
    manifests = build.main(
        ["--sources_dir", os.environ["MIXED_MNIST_LT_SOURCES"], "--output_dir", str(tmp_path)]
    )
    assert sorted(manifests) == sorted(EXPECTED)
    for name in EXPECTED:
        with open(tmp_path / f"{name}.manifest.json") as f:
            rebuilt = json.load(f)
        # The manifest holds the .npz's SHA-256, so equal manifests mean identical files.
        assert rebuilt == mixed_mnist_lt.load_manifest(name=name), name


def test_registered_builder_returns_array_dataset(arrays, variant, expected):
    from keras_oltr import data

    assert variant in data.list_datasets()
    ds = data.get_dataset(variant)
    assert isinstance(ds, data.ArrayDataset)
    assert ds.name == variant
    assert ds.class_names == tuple(expected[0])
    assert (ds.image_size, ds.channels, ds.horizontal_flip) == (28, 1, False)
    np.testing.assert_array_equal(ds.train_counts, list(expected[0].values()))
    for split, size in SPLIT_SIZES.items():
        assert ds.num_examples(split) == size
    np.testing.assert_array_equal(ds.split_images("open"), arrays["open_images"])
    labels = np.concatenate([y.numpy() for _, y in ds.eval_dataset("test", 512)])
    np.testing.assert_array_equal(labels, arrays["test_labels"])


def test_preset_of_second_benchmark_differs_only_in_dataset():
    from keras_oltr.presets import get_preset

    a, b = get_preset("mixed_mnist_lt"), get_preset("mixed_mnist_lt_b")
    assert (b.name, b.dataset) == ("mixed_mnist_lt_b", "mixed_mnist_lt_b")
    assert dataclasses.replace(b, name=a.name, dataset=a.dataset) == a
