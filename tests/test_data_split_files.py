"""Tests for SplitFileDataset on a small image tree written by the test."""

import codecs
import os

import numpy as np
import pytest
from absl import logging
from PIL import Image

from keras_oltr import colour_jitter, data, deferred_resize
from keras_oltr.data import data_root, split_file_parser

# (PIL mode, extension) cycled over the images: every decoder path is exercised.
MODES = [
    ("L", "jpg"),
    ("RGB", "jpg"),
    ("RGBA", "png"),
    ("L", "png"),
    ("CMYK", "jpg"),
    ("RGB", "png"),
]
NUM_CLASSES = 3


def _write(root, rel, mode, seed, size=(36, 44)):
    rng = np.random.default_rng(seed)
    depth = {"L": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
    # Smooth content so that JPEG round trips stay close to the original.
    base = rng.integers(40, 215, (1, 1, depth))
    arr = np.broadcast_to(base, (*size, depth)).astype(np.uint8)
    image = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode=mode)
    os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
    image.save(os.path.join(root, rel))
    return image


@pytest.fixture
def tree(tmp_path):
    """12 train images (4 per class, every format), 3 test, 2 open, 1 corrupt train image."""
    root = tmp_path / "images"
    lines = {"train": [], "test": [], "open": []}
    originals = {}
    for i in range(12):
        mode, ext = MODES[i % len(MODES)]
        rel = f"c{i % NUM_CLASSES}/img {i}.{ext}"  # a space in the name: paths may hold spaces
        originals[rel] = _write(str(root), rel, mode, i)
        lines["train"].append(f"{rel} {i % NUM_CLASSES}")
    for i in range(3):
        rel = f"test/t{i}.png"
        originals[rel] = _write(str(root), rel, "RGB", 100 + i)
        lines["test"].append(f"{rel} {i}")
    for i in range(2):
        rel = f"open/o{i}.jpg"
        originals[rel] = _write(str(root), rel, "L", 200 + i)
        lines["open"].append(f"{rel} -1")
    (root / "c0" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated garbage")
    lines["train"].append("c0/corrupt.jpg 0")
    files = {}
    for split, entries in lines.items():
        path = tmp_path / f"Toy_{split}.txt"
        path.write_text("\n".join(entries) + "\n")
        files[split] = str(path)
    return str(root), files, originals


def _dataset(tree, **kwargs):
    root, files, _ = tree
    kwargs.setdefault("image_size", 32)
    return data.SplitFileDataset(data_root=root, split_files=files, name="toy", **kwargs)


def test_loads_labels_and_decodes_every_format(tree):
    root, files, originals = tree
    ds = _dataset(tree, augmentation="small")
    assert ds.num_classes == NUM_CLASSES and ds.num_train == 13
    np.testing.assert_array_equal(ds.train_counts, [5, 4, 4])
    assert ds.num_examples("open") == 2 and not ds.has_split("val")
    batches = list(ds.eval_dataset("train", 4).as_numpy_iterator())
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    # The corrupt image is skipped, the 12 others come back in file order.
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, np.arange(12) % NUM_CLASSES)
    # Each image equals PIL's RGB conversion of the original, resized (36x44 -> 32x32
    # of a constant image is still that constant); JPEG may shift values a little.
    rels = [os.path.relpath(p, root) for p in ds.split_paths("train")[:12]]
    for image, rel in zip(images, rels, strict=True):
        mode, _ = MODES[int(rel.split(" ")[1].split(".")[0]) % len(MODES)]
        expected = np.asarray(originals[rel].convert("RGB"), np.float32)[0, 0]
        if mode == "CMYK":  # libjpeg and PIL convert CMYK differently: check it decoded
            assert image.std(axis=(0, 1)).max() < 3.0 and image.std(axis=-1).mean() > 1.0
            continue
        np.testing.assert_allclose(image.mean(axis=(0, 1)), expected, atol=4.0)
    open_labels = np.concatenate([y for _, y in ds.eval_dataset("open", 8).as_numpy_iterator()])
    np.testing.assert_array_equal(open_labels, [-1, -1])


def test_gray_dataset_has_one_channel(tree):
    ds = _dataset(tree, channels=1, augmentation="small", horizontal_flip=False)
    x, _ = next(iter(ds.eval_dataset("test", 3)))
    assert x.shape == (3, 32, 32, 1)
    # Every format converts to gray, CMYK JPEGs included (libjpeg cannot do that
    # one itself): only the corrupt image is skipped.
    gray = np.concatenate([x for x, _ in ds.eval_dataset("train", 4).as_numpy_iterator()])
    assert gray.shape == (12, 32, 32, 1) and ds.num_unreadable == 1
    colour = _dataset(tree, augmentation="small")
    rgb = np.concatenate([x for x, _ in colour.eval_dataset("train", 4).as_numpy_iterator()])
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(gray[..., 0], luma, atol=1.5)


def test_corrupt_image_skipped_and_logged(tree, monkeypatch):
    warnings = []
    monkeypatch.setattr(logging, "warning", lambda msg, *args: warnings.append(msg % args))
    ds = _dataset(tree)
    batches = list(ds.train_dataset(4, epoch=0, seed=0).as_numpy_iterator())
    # 13 listed / 4 = 3 steps; the spare global batch refills the skipped image.
    assert len(batches) == 3 and all(x.shape == (4, 32, 32, 3) for x, _ in batches)
    corrupt = os.path.join(tree[0], "c0/corrupt.jpg")
    assert ds.unreadable_files == {corrupt: 1}
    assert ds.num_unreadable == 1
    assert len(warnings) == 1 and corrupt in warnings[0] and "1 unreadable" in warnings[0]
    list(ds.eval_dataset("train", 8))
    assert ds.unreadable_files == {corrupt: 2} and len(warnings) == 1  # logged once


def test_resume_is_bit_exact(tree):
    ds = _dataset(tree, image_size=24)
    # Leave the corrupt image out: resuming is exact when no image fails to load.
    kwargs = dict(epoch=1, seed=3, sampler="class_aware")
    ds._labels["train"] = ds._labels["train"][:12]
    ds._paths["train"] = ds._paths["train"][:12]
    ds.train_labels = ds.train_labels[:12]
    full = list(ds.train_dataset(4, **kwargs).as_numpy_iterator())
    resumed = list(ds.train_dataset(4, skip_batches=1, **kwargs).as_numpy_iterator())
    assert len(full) == 3 and len(resumed) == 2
    for (xa, ya), (xb, yb) in zip(full[1:], resumed, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def _write_files(tmp_path, root, text):
    path = tmp_path / "Bad_train.txt"
    path.write_text(text)
    return {"train": str(path)}


def test_every_bad_split_case_in_one_error(tree, tmp_path):
    root, files, _ = tree
    good = open(files["train"]).read().splitlines()
    text = "\n".join(
        [
            good[0],  # line 1
            good[1],  # line 2
            "only_a_path.jpg",  # line 3: malformed
            f"{good[0].rsplit(' ', 1)[0]} 0",  # line 4: duplicate of line 1
            "c1/img 4.jpg 7",  # line 5: label out of range (num_classes=4)
            "c2/missing.jpg 2",  # line 6: missing file
            "c0/img 0.jpg notanint",  # line 7: malformed
        ]
    )
    split = _write_files(tmp_path, root, text + "\n")
    with pytest.raises(data.SplitFileError) as info:
        data.SplitFileDataset(data_root=root, split_files=split, num_classes=4)
    message = str(info.value)
    problems = info.value.problems
    assert set(problems) == {"malformed", "duplicate", "label", "missing", "empty_class"}
    assert "Bad_train.txt:3:" in message and "Bad_train.txt:7:" in message
    assert "Bad_train.txt:4:" in message and "first listed on line 1" in message
    assert "Bad_train.txt:5: label 7, expected 0..3" in message
    assert "Bad_train.txt:6: c2/missing.jpg not found" in message
    # Class 3 has no line at all: no train images.
    assert "Bad_train.txt: class 3" in message and "class 2" not in message
    assert len(problems["malformed"]) == 2


def test_error_quotes_a_sample_and_counts_all(tree, tmp_path):
    """200k missing images: one bounded message with the count, in a couple of seconds."""
    import time

    root, _, _ = tree
    n = 200_000
    # c0 exists (listed once), c9 does not, and a few folders of one file each (lstat).
    text = "".join(f"c{9 * (i % 2)}/missing{i}.jpg 0\n" for i in range(n))
    text += "".join(f"few{i}/x.jpg 0\n" for i in range(5)) + "c0/img 0.jpg 0\n"
    split = _write_files(tmp_path, root, text)
    start = time.perf_counter()
    with pytest.raises(data.SplitFileError, match="missing image files: 200,005 in all") as info:
        data.SplitFileDataset(data_root=root, split_files=split)
    seconds = time.perf_counter() - start
    message = str(info.value)
    assert "... and 199,985 more" in message and len(message) < 20 * 200
    assert info.value.counts["missing"] == n + 5
    assert len(info.value.problems["missing"]) == split_file_parser.MAX_QUOTED
    assert "Bad_train.txt:1: c0/missing0.jpg not found" in message
    assert seconds < 20, seconds  # about 2 s on a quiet 2-core machine


def test_split_files_with_a_byte_order_mark_read_as_plain_utf8(tree, tmp_path):
    root, files, _ = tree
    text = open(files["train"], encoding="utf-8").read()
    plain = data.SplitFileDataset(data_root=root, split_files=files)
    boms = {
        "utf-8-sig": b"",  # the codec writes its mark itself
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }
    for encoding, bom in boms.items():
        path = tmp_path / f"{encoding}_train.txt"
        path.write_bytes(bom + text.replace("\n", "\r\n").encode(encoding))
        ds = data.SplitFileDataset(data_root=root, split_files={**files, "train": str(path)})
        np.testing.assert_array_equal(ds.split_paths("train"), plain.split_paths("train"))
        np.testing.assert_array_equal(ds.split_labels("train"), plain.split_labels("train"))
    for ending in ("\r", "\r\n"):  # old Mac and Windows line ends, also in a bad file
        path = tmp_path / "line_ends_train.txt"
        path.write_bytes(text.replace("\n", ending).encode("utf-8"))
        ds = data.SplitFileDataset(data_root=root, split_files={**files, "train": str(path)})
        np.testing.assert_array_equal(ds.split_labels("train"), plain.split_labels("train"))
        path.write_bytes((text.replace("\n", ending) + "caf\xe9 0" + ending).encode("latin-1"))
        entries, problems = split_file_parser.read_split_file(str(path))
        assert len(entries) == len(plain.split_labels("train"))
        assert problems.quoted["encoding"][0].startswith(f"line_ends_train.txt:{len(entries) + 1}:")
    names = tmp_path / "names.txt"
    names.write_bytes(codecs.BOM_UTF16_LE + "cat\ndog\nfox\n".encode("utf-16-le"))
    assert split_file_parser.read_class_names(str(names)) == ("cat", "dog", "fox")


def test_split_files_that_are_not_text_name_the_file_and_line(tree, tmp_path):
    root, files, _ = tree
    lines = open(files["train"], encoding="utf-8").read().splitlines()
    cases = {
        # Latin-1 on line 2: every other line still reads.
        "latin1": ("\n".join([lines[0], "c0/caf\xe9.jpg 0", *lines[2:]]) + "\n").encode("latin-1"),
        "utf16_no_bom": ("\n".join(lines) + "\n").encode("utf-16-le"),
        "utf16_odd_bytes": codecs.BOM_UTF16_LE + ("\n".join(lines)).encode("utf-16-le") + b"x",
    }
    expected = {
        "latin1": "latin1_train.txt:2: not UTF-8 text (byte 0xe9",
        "utf16_no_bom": "utf16_no_bom_train.txt:1: holds NUL characters",
        "utf16_odd_bytes": f"utf16_odd_bytes_train.txt:{len(lines)}: not UTF-16 text",
    }
    for case, raw in cases.items():
        path = tmp_path / f"{case}_train.txt"
        path.write_bytes(raw)
        with pytest.raises(data.SplitFileError, match="not text") as info:
            data.SplitFileDataset(data_root=root, split_files={**files, "train": str(path)})
        assert expected[case] in str(info.value), str(info.value)
        assert set(info.value.problems) <= {"encoding", "empty_split", "empty_class"}
    names = tmp_path / "names.txt"
    names.write_bytes(b"cat\n\xffdog\n")
    with pytest.raises(ValueError, match=r"names.txt, line 2: not UTF-8 text"):
        split_file_parser.read_class_names(str(names))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_listing_a_folder_once_agrees_with_one_check_per_file(tmp_path):
    """check_paths (folders listed once) against DataRoot.check of each path."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "big").mkdir(parents=True)
    (root / "small").mkdir()
    outside.mkdir()
    (outside / "o.png").write_bytes(b"x")
    rels = []
    for folder, count in (("big", data_root.SCAN_MIN_FILES + 4), ("small", 3)):
        for i in range(count):
            (root / folder / f"{i}.png").write_bytes(b"x")
            rels.append(f"{folder}/{i}.png")
        (root / folder / "dir.png").mkdir()
        os.symlink(outside / "o.png", root / folder / "out.png")
        os.symlink(root / folder / "0.png", root / folder / "in.png")
        os.symlink(tmp_path / "nowhere.png", root / folder / "dangling.png")
        rels += [f"{folder}/{n}.png" for n in ("dir", "out", "in", "dangling", "gone")]
    os.symlink(outside, root / "away")
    rels += [f"away/{n}" for n in ["o.png"] * 1 + [f"{i}.png" for i in range(20)]]
    rels += [f"none/{i}.png" for i in range(20)]
    paths = [os.path.join(root, r) for r in rels]
    for root_ in (data_root.DataRoot(str(root)), None):
        got = {i: status for i, status, _ in data_root.check_paths(paths, root_)}
        for i, path in enumerate(paths):
            if root_ is not None:
                want = root_.check(path)[0]
            else:
                want = "file" if os.path.isfile(path) else "missing"
            assert got.get(i, "file") == want, (rels[i], root_)
    checked = data_root.check_paths(paths, data_root.DataRoot(str(root)))
    statuses = {rels[i]: s for i, s, _ in checked}
    assert statuses["big/out.png"] == "outside" and statuses["away/o.png"] == "outside"
    assert statuses["big/dir.png"] == "missing" and "big/in.png" not in statuses


def test_open_file_with_known_labels_is_rejected(tree, tmp_path):
    root, files, _ = tree
    open_path = tmp_path / "Bad_open.txt"
    open_path.write_text("open/o0.jpg 1\n")
    with pytest.raises(data.SplitFileError, match=r"Bad_open.txt:1: label 1, expected -1"):
        data.SplitFileDataset(
            data_root=root, split_files={"train": files["train"], "open": str(open_path)}
        )


def test_missing_paths_name_the_path(tree, tmp_path):
    root, files, _ = tree
    with pytest.raises(ValueError, match="data_root='/no/such/root'"):
        data.SplitFileDataset(data_root="/no/such/root", split_files=files)
    with pytest.raises(ValueError, match="Toy_nope.txt"):
        data.SplitFileDataset(data_root=root, split_files={"train": str(tmp_path / "Toy_nope.txt")})
    with pytest.raises(ValueError, match="ImageNet_LT_train.txt"):
        (tmp_path / "splits").mkdir()
        data.get_dataset("imagenet_lt", data_root=root, split_dir=str(tmp_path / "splits"))
    with pytest.raises(ValueError, match="split_dir="):
        data.get_dataset("places_lt", data_root=root, split_dir=str(tmp_path / "none"))


def test_imagenet_lt_and_custom_builders(tree, tmp_path):
    root, files, _ = tree
    split_dir = tmp_path / "ImageNet_LT"
    split_dir.mkdir()
    for split in ("train", "val", "test", "open"):
        src = files["test"] if split == "val" else files[split]
        (split_dir / f"ImageNet_LT_{split}.txt").write_text(open(src).read())
    with pytest.raises(data.SplitFileError, match="classes with zero train images: 997"):
        data.get_dataset("imagenet_lt", data_root=root, split_dir=str(split_dir))
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nfox\n")
    ds = data.get_dataset(
        "custom",
        data_root=root,
        train=files["train"],
        test=files["test"],
        open=files["open"],
        class_names_file=str(names),
        image_size=32,
    )
    assert ds.class_names == ("cat", "dog", "fox") and ds.has_split("open")


def test_paths_leaving_data_root_are_refused_unless_allowed(tree, tmp_path):
    root, files, _ = tree
    outside = tmp_path / "outside.png"
    _write(str(tmp_path), "outside.png", "RGB", 7)
    lines = open(files["train"]).read().splitlines()
    text = "\n".join([*lines, "../outside.png 1", f"{outside} 2"]) + "\n"
    split = _write_files(tmp_path, root, text)
    with pytest.raises(data.SplitFileError) as info:
        data.SplitFileDataset(data_root=root, split_files=split, image_size=32)
    assert len(info.value.problems["outside"]) == 2
    assert f"Bad_train.txt:{len(lines) + 1}: ../outside.png" in str(info.value)
    ds = data.SplitFileDataset(
        data_root=root, split_files=split, image_size=32, allow_outside_data_root=True
    )
    assert ds.num_train == len(lines) + 2


def test_label_typo_is_reported_without_sizing_by_it(tree, tmp_path):
    root, files, _ = tree
    lines = open(files["train"]).read().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0] + " 1000000000"
    split = _write_files(tmp_path, root, "\n".join(lines) + "\n")
    with pytest.raises(data.SplitFileError, match="Bad_train.txt:2: label 1000000000"):
        data.SplitFileDataset(data_root=root, split_files=split, image_size=32)


def test_image_in_two_splits_warns_or_fails(tree, monkeypatch):
    root, files, _ = tree
    with open(files["test"], "a") as f:
        f.write(open(files["train"]).readline())
    warnings = []
    monkeypatch.setattr(logging, "warning", lambda msg, *args: warnings.append(msg % args))
    _dataset(tree)
    assert any("listed in two splits" in w and "Toy_test.txt:4" in w for w in warnings)
    with pytest.raises(data.SplitFileError, match="also in the train split"):
        _dataset(tree, split_overlap="error")


def test_empty_train_file_is_named_as_such(tree, tmp_path):
    root, _, _ = tree
    split = _write_files(tmp_path, root, "\n")
    with pytest.raises(data.SplitFileError) as info:
        data.SplitFileDataset(data_root=root, split_files=split)
    assert set(info.value.problems) == {"empty_split"}


def _apply_deferred(batches):
    return [
        (
            colour_jitter.flip_and_jitter(
                x[colour_jitter.IMAGES_KEY], x[colour_jitter.JITTER_KEY]
            ).numpy(),
            y,
        )
        for x, y in batches
    ]


def test_deferred_jitter_gives_the_same_batches(tree):
    # The ImageNet-family pipeline with the flip and jitter left to the train step:
    # applying them to its batches gives the batches of the undeferred pipeline (the
    # corrupt image is skipped alike; every decoder path is in the tree).
    ds = _dataset(tree, augmentation="imagenet")
    assert ds.can_defer_jitter
    kwargs = dict(epoch=2, seed=5)
    plain = list(ds.train_dataset(4, **kwargs).as_numpy_iterator())
    deferred = list(ds.train_dataset(4, defer_jitter=True, **kwargs))
    assert set(deferred[0][0]) == {colour_jitter.IMAGES_KEY, colour_jitter.JITTER_KEY}
    assert deferred[0][0][colour_jitter.JITTER_KEY].shape == (4, colour_jitter.NUM_PARAMETERS)
    applied = _apply_deferred(deferred)
    assert len(applied) == len(plain) == 3
    for (xa, ya), (xb, yb) in zip(plain, applied, strict=True):
        np.testing.assert_allclose(xa, xb, atol=1e-3)
        np.testing.assert_array_equal(ya, yb.numpy())
    # The flip and jitter were deferred: the raw deferred images are not the output.
    raw = np.concatenate([x[colour_jitter.IMAGES_KEY].numpy() for x, _ in deferred])
    assert np.abs(raw - np.concatenate([x for x, _ in plain])).max() > 1.0


def test_only_the_imagenet_family_on_rgb_defers_jitter(tree):
    for kwargs in (dict(augmentation="small"), dict(augmentation="imagenet", channels=1)):
        ds = _dataset(tree, **kwargs)
        assert not ds.can_defer_jitter
        x, _ = next(iter(ds.train_dataset(4, epoch=0, seed=0, defer_jitter=True)))
        assert x.shape[0] == 4  # a plain image batch, not a dict
    ds = _dataset(tree, augmentation="imagenet")
    x, _ = next(iter(ds.train_dataset(4, epoch=0, seed=0, augment=False, defer_jitter=True)))
    assert x.shape == (4, 32, 32, 3)  # the test transform has no jitter to defer


def test_deferred_resize_gives_the_same_eval_batches(tree):
    # The test transform left to the accelerator: finishing the batches gives the
    # undeferred batches, every decoder path and channel count alike, with the
    # corrupt image skipped alike (its sentinel has the deferred structure).
    for kwargs in (dict(augmentation="imagenet"), dict(augmentation="imagenet", channels=1)):
        ds = _dataset(tree, **kwargs)
        assert ds.can_defer_resize
        plain = list(ds.eval_dataset("train", 5).as_numpy_iterator())
        deferred = list(ds.eval_dataset("train", 5, defer_resize=True))
        assert len(deferred) == len(plain) == 3  # 12 readable images
        for (xa, ya), (xb, yb) in zip(plain, deferred, strict=True):
            assert set(xb) == {deferred_resize.CANVAS_KEY, deferred_resize.GEOMETRY_KEY}
            finished = deferred_resize.finish(
                xb[deferred_resize.CANVAS_KEY], xb[deferred_resize.GEOMETRY_KEY]
            )
            np.testing.assert_allclose(xa, finished, atol=1e-3)
            np.testing.assert_array_equal(ya, yb.numpy())
    ds = _dataset(tree, augmentation="small")
    assert not ds.can_defer_resize
    x, _ = next(iter(ds.eval_dataset("test", 3, defer_resize=True)))
    assert x.shape == (3, 32, 32, 3)  # a plain image batch


def test_degenerate_datasets_are_refused_with_the_class_named(tree, tmp_path):
    root, files, _ = tree
    lines = open(files["train"], encoding="utf-8").read().splitlines()
    # One class only (every label 0), as a split file and as arrays.
    one = _write_files(tmp_path, root, "".join(r.rsplit(" ", 1)[0] + " 0\n" for r in lines))
    with pytest.raises(data.SplitFileError, match="fewer than two known classes.*Bad_train"):
        data.SplitFileDataset(data_root=root, split_files=one)
    images = np.zeros((4, 8, 8, 1), np.uint8)
    arrays = {s: (images, np.zeros(4, int)) for s in ("train", "val", "test")}
    with pytest.raises(ValueError, match="1 known class"):
        data.ArrayDataset(arrays, class_names=["a"])
    with pytest.raises(ValueError, match=r"class 1 \(b\) has no train image"):
        data.ArrayDataset(arrays, class_names=["a", "b"])
    # Every train image of class 1 unreadable (corrupt): refused, class and reason named.
    for rel in [r.rsplit(" ", 1)[0] for r in lines if r.endswith(" 1")]:
        with open(os.path.join(root, rel), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(data.SplitFileError, match="all unreadable") as info:
        data.SplitFileDataset(data_root=root, split_files=files)
    (message,) = info.value.problems["unreadable_class"]
    assert message.startswith("Toy_train.txt: class 1 (1), none of its 4 image(s)")
    assert "corrupt or truncated" in message
    # Without check_files nothing is decoded while loading: the pipeline skips them.
    data.SplitFileDataset(data_root=root, split_files=files, check_files=False)
