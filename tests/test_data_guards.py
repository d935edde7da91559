"""Guards of the split-file datasets: data_root confinement and the pixel budget.

Each test builds a tiny tree of 8x8 PNGs in tmp_path. A symbolic link inside
data_root must not lead outside it, and a small PNG whose header claims 20000 x
20000 pixels must never be decoded (in the image-size probe or in the pipelines).
"""

import os
import resource
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from keras_oltr import data
from keras_oltr.data import decode, readable
from keras_oltr.data.custom import custom
from keras_oltr.data.split_file_parser import SplitFileError

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")


def _png(value=0, size=8):
    pixels = np.full((size, size, 3), value, np.uint8)
    return tf.io.encode_png(pixels).numpy()


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.fixture(scope="module")
def bomb():
    """A valid black gray PNG of 20000 x 20000 pixels in 389 KB (400 MB decoded)."""
    side = 20000
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def _tree(tmp_path, extra=(), first=(), per_class=3):
    """data_root with c{0,1}/{0..per_class-1}.png; train lines `first`, those, `extra`."""
    root = tmp_path / "img"
    lines = list(first)
    for label in range(2):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(per_class):
            (root / f"c{label}" / f"{i}.png").write_bytes(_png((40 * i + 100 * label) % 256))
            lines.append(f"c{label}/{i}.png {label}")
    lines.extend(extra)
    train = tmp_path / "my_train.txt"
    train.write_text("".join(line + "\n" for line in lines))
    return root, str(train)


def _load(root, train, **kwargs):
    return data.SplitFileDataset(
        data_root=str(root), split_files={"train": train}, image_size=8, **kwargs
    )


def test_link_leaving_data_root_names_split_file_and_line(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.png").write_bytes(_png(7))
    root, train = _tree(tmp_path, extra=["c0/link.png 0", "c1/passwd 1", "away/x.png 1"])
    os.symlink(outside / "x.png", root / "c0" / "link.png")  # an image elsewhere
    os.symlink("/etc/passwd", root / "c1" / "passwd")  # a system file
    os.symlink(outside, root / "away")  # a folder elsewhere
    with pytest.raises(SplitFileError, match="outside data_root") as info:
        _load(root, train)
    message = str(info.value)
    for line in ("my_train.txt:7: c0/link.png", "my_train.txt:8", "my_train.txt:9"):
        assert line in message, message
    assert str(outside / "x.png") in message and "/etc/passwd" in message
    assert len(info.value.problems["outside"]) == 3 and "missing" not in info.value.problems
    # The opt-out accepts them, as it accepts `..` paths (the passwd line is not an
    # image, so leave it out).
    root_file = tmp_path / "my_train.txt"
    root_file.write_text(root_file.read_text().replace("c1/passwd 1\n", ""))
    ds = _load(root, train, allow_outside_data_root=True)
    images = list(ds.eval_dataset("train", 16).as_numpy_iterator())[0][0]
    assert images.shape[0] == 8 and ds.num_unreadable == 0


def test_links_inside_data_root_are_accepted(tmp_path):
    root, train = _tree(tmp_path, extra=["c0/alias.png 0", "same/1.png 1"])
    os.symlink("2.png", root / "c0" / "alias.png")  # relative link to a sibling
    os.symlink(root / "c1", root / "same")  # a folder link within the root
    ds = _load(root, train)
    images, labels = list(ds.eval_dataset("train", 16).as_numpy_iterator())[0]
    assert images.shape == (8, 8, 8, 3) and ds.num_unreadable == 0
    np.testing.assert_array_equal(images[6], images[2])  # alias.png is c0/2.png
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 0, 1])
    # A data_root reached through a link is still the root.
    os.symlink(root, tmp_path / "root_link")
    assert _load(tmp_path / "root_link", train).num_train == 8


def test_link_leaving_data_root_skipped_without_check_files(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.png").write_bytes(_png(7))
    root, train = _tree(tmp_path, extra=["c0/link.png 0"])
    os.symlink(outside / "x.png", root / "c0" / "link.png")
    ds = _load(root, train, check_files=False)  # nothing stat'ed: checked when read
    images = np.concatenate([x for x, _ in ds.eval_dataset("train", 4).as_numpy_iterator()])
    assert images.shape[0] == 6
    link = os.path.join(str(root), "c0/link.png")
    assert list(ds.unreadable_files) == [link]
    assert "outside data_root" in ds.unreadable_reasons[link]


def test_pixel_bomb_first_in_train_is_refused_by_the_probe(tmp_path, bomb):
    root, train = _tree(tmp_path, first=["bomb.png 0"])
    (root / "bomb.png").write_bytes(bomb)
    assert os.path.getsize(root / "bomb.png") < 400_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ValueError, match="too large") as info:
        custom(data_root=str(root), train=train)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"peak RSS growth while probing the 20000x20000 PNG: {grown_mb:.1f} MB")
    message = str(info.value)
    assert "bomb.png" in message and "my_train.txt:1" in message and "20000x20000" in message
    assert grown_mb < 300, grown_mb


@pytest.mark.parametrize("augmentation", ["small", "imagenet"])
def test_pixel_bomb_later_in_train_is_skipped_and_named(tmp_path, bomb, augmentation):
    # After the probe's first 8 images (those would be a ValueError, as above).
    root, train = _tree(tmp_path, extra=["c1/bomb.png 1"], per_class=5)
    (root / "c1" / "bomb.png").write_bytes(bomb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ds = custom(data_root=str(root), train=train, augmentation=augmentation)
    assert (ds.image_size, ds.channels) == (8, 3)  # probed from the good images
    images = np.concatenate([x for x, _ in ds.eval_dataset("train", 4).as_numpy_iterator()])
    assert images.shape == (10, 8, 8, 3)
    batches = list(ds.train_dataset(5, epoch=0, seed=0).as_numpy_iterator())
    assert len(batches) == 2 and all(x.shape == (5, 8, 8, 3) for x, _ in batches)
    bomb = os.path.join(str(root), "c1/bomb.png")
    assert list(ds.unreadable_files) == [bomb]
    assert "20000x20000" in ds.unreadable_reasons[bomb]
    assert "max_pixels" in ds.unreadable_reasons[bomb]
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 300


def test_max_pixels_is_a_dataset_argument(tmp_path, bomb):
    root, train = _tree(tmp_path)
    with pytest.raises(ValueError, match="8x8 pixels by its header, more than max_pixels=63"):
        custom(data_root=str(root), train=train, max_pixels=63)  # 8x8 = 64 pixels: probe
    # Every image of both classes over budget: refused before training, class named.
    with pytest.raises(SplitFileError, match=r"(?s)all unreadable.*class 0 .*max_pixels=63"):
        custom(data_root=str(root), train=train, max_pixels=63, image_size=8, channels=3)
    ds = custom(
        data_root=str(root), train=train, max_pixels=63, image_size=8, channels=3, check_files=False
    )
    assert ds.max_pixels == 63
    assert list(ds.eval_dataset("train", 8).as_numpy_iterator()) == []
    assert ds.num_unreadable == 6
    assert all("max_pixels=63" in why for why in ds.unreadable_reasons.values())
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        decode.decode_image(tf.constant(bomb), 3)


def _classes_of_files(root, contents_by_class):
    """Writes c{k}/{i}.png with the given bytes; returns (paths, labels) in file order."""
    paths, labels = [], []
    for label, contents in enumerate(contents_by_class):
        (root / f"c{label}").mkdir(parents=True)
        for i, data_bytes in enumerate(contents):
            path = root / f"c{label}" / f"{i}.png"
            path.write_bytes(data_bytes)
            paths.append(str(path))
            labels.append(label)
    return np.array(paths, dtype=object), np.array(labels)


def test_readability_check_tries_at_most_max_tries_images_per_class(tmp_path, monkeypatch):
    tries = []
    original = readable._checker

    def counting_checker(channels, max_pixels):
        check = original(channels, max_pixels)
        return lambda paths: tries.extend(paths) or check(paths)

    monkeypatch.setattr(readable, "_checker", counting_checker)
    empty, good = b"", _png(7)
    # class 0: 20 empty files then a good one (refused: the first 16 fail);
    # class 1: 3 empty then good (kept); class 2: 2 files, both empty (refused).
    paths, labels = _classes_of_files(
        tmp_path, [[empty] * 20 + [good], [empty] * 3 + [good], [empty] * 2]
    )
    refused, checked = readable.unreadable_classes(paths, labels, 3, channels=3, max_pixels=10**6)
    assert checked == 3
    assert [(u.label, u.images, u.tried) for u in refused] == [
        (0, 21, readable.MAX_TRIES),
        (2, 2, 2),
    ]
    assert refused[0].first == paths[0]
    assert len(tries) == readable.MAX_TRIES + 4 + 2


def test_readability_check_stops_after_the_block_that_reaches_stop_after(tmp_path, monkeypatch):
    monkeypatch.setattr(readable, "BLOCK", 3)
    paths, labels = _classes_of_files(tmp_path, [[b"", b""]] * 10)
    refused, checked = readable.unreadable_classes(
        paths, labels, 10, channels=3, max_pixels=10**6, stop_after=4
    )
    assert checked == 6 and [u.label for u in refused] == list(range(6))
    everything, checked = readable.unreadable_classes(
        paths, labels, 10, channels=3, max_pixels=10**6
    )
    assert checked == 10 and len(everything) == 10


def test_a_split_of_empty_files_is_refused_after_a_bounded_check(tmp_path, monkeypatch):
    monkeypatch.setattr(readable, "BLOCK", 8)
    root = tmp_path / "img"
    paths, _ = _classes_of_files(root, [[b""] * 30] * 40)
    train = tmp_path / "my_train.txt"
    train.write_text(
        "".join(f"{os.path.relpath(p, root)} {i // 30}\n" for i, p in enumerate(paths))
    )
    with pytest.raises(SplitFileError) as info:
        custom(data_root=str(root), train=str(train), image_size=8, channels=3)
    message = str(info.value)
    assert "none of the first 16 of its 30 images" in message
    assert "classes 24..39 not all checked (stopped after 24 unreadable classes)" in message
    assert info.value.counts == {"unreadable_class": 24, "unchecked_classes": 1}
