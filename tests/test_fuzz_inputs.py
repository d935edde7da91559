"""Property-based fuzzing of what a user receives from others: split files and images.

In the manner of image libraries' fuzzers: hypothesis generates split files (random
bytes, byte-order marks, UTF-16/UTF-32/Latin-1 text, NULs, long lines, odd labels,
`..` and absolute paths, spaces) and image bytes (random bytes, truncated images,
headers that lie about the size, valid tiny images). For each, loading must give a
valid result or the project's own error naming the file: never another exception,
a hang or a crash.

Budget: every test is derandomized (the same examples in every CI run) with a fixed
`max_examples`; the file takes about a minute on a 2-core CPU.
"""

import io
import os
import struct
import tempfile
import zlib

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from keras_oltr.data import SplitFileDataset
from keras_oltr.data.decode import decode_image, why_undecodable
from keras_oltr.data.split_file_parser import SplitFileError, read_split_file


def fuzz(max_examples):
    """The fixed budget of one fuzz test: derandomized, no example database."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


MAX_PIXELS = 64 * 64


def _png(height, width, channels=3, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _png_claiming(data, height, width, fix_crc):
    """A PNG whose IHDR says height x width; its CRC fixed or left stale."""
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of header
    ihdr[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr))) if fix_crc else data[29:33]
    return data[:12] + bytes(ihdr) + crc + data[33:]


VALID = [_png(5, 7), _png(9, 4, channels=1, seed=1), _jpeg(8, 8, seed=2), _png(16, 16, seed=3)]

image_bytes = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda i, cut: VALID[i][:cut], st.integers(0, len(VALID) - 1), st.integers(0, 400)),
    st.builds(
        _png_claiming,
        st.sampled_from([VALID[0], VALID[3]]),
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**31 - 1),
        st.booleans(),
    ),
    st.builds(  # a valid image with one byte changed
        lambda i, at, value: (lambda d: d[: at % len(d)] + bytes([value]) + d[at % len(d) + 1 :])(
            VALID[i]
        ),
        st.integers(0, len(VALID) - 1),
        st.integers(0, 10_000),
        st.integers(0, 255),
    ),
    st.sampled_from(VALID),
)


@fuzz(150)
@given(contents=image_bytes, channels=st.sampled_from([1, 3]))
def test_decode_gives_an_image_within_the_cap_or_a_reason(contents, channels):
    try:
        image = decode_image(tf.constant(contents), channels, max_pixels=MAX_PIXELS).numpy()
    except tf.errors.InvalidArgumentError:
        reason = why_undecodable(contents, MAX_PIXELS)
        assert isinstance(reason, str) and reason
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == channels
    assert 0 < image.shape[0] * image.shape[1] <= MAX_PIXELS


@pytest.fixture(scope="module")
def tree():
    """data_root with two readable train images per class (classes 0, 1) and a test image."""
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "img"))
        names = ["a0.png", "a1.png", "b0.png", "b1.png", "t.png"]
        for i, name in enumerate(names):
            with open(os.path.join(root, "img", name), "wb") as f:
                f.write(_png(6, 6, seed=10 + i))
        train = os.path.join(root, "train.txt")
        with open(train, "w", encoding="utf-8") as f:
            f.write("img/a0.png 0\nimg/a1.png 0\nimg/b0.png 1\nimg/b1.png 1\n")
        yield root, train


def _load(root, split_files):
    return SplitFileDataset(
        data_root=root, split_files=split_files, image_size=8, max_pixels=MAX_PIXELS
    )


def _assert_loads_or_names(root, split_files, named):
    """The dataset loads with valid examples, or raises SplitFileError naming ``named``."""
    try:
        dataset = _load(root, split_files)
    except SplitFileError as error:
        assert os.path.basename(named) in str(error)
        return None
    assert dataset.num_classes >= 2
    counts = np.asarray(dataset.train_counts)
    assert counts.shape == (dataset.num_classes,) and np.all(counts >= 1)
    return dataset


split_line = st.tuples(
    st.one_of(
        st.sampled_from(["img/t.png", "img/a0.png", "img/nope.png", "img/../img/t.png"]),
        st.sampled_from(["../outside.png", "/etc/passwd", "img/t.png\0x", "a b/c d.png"]),
        st.text(max_size=40),
    ),
    st.one_of(
        st.integers(-3, 4).map(str),
        st.sampled_from(["", "x", "1.5", "99999999999999999999", "-0", "+1", "0x1", "٣"]),
    ),
).map(lambda t: f"{t[0]} {t[1]}")

split_text = st.builds(
    lambda lines, ending: ending.join(lines),
    st.lists(split_line, max_size=6),
    st.sampled_from(["\n", "\r\n", "\r"]),
)

split_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda text, encoding, bom: (
            (bom if encoding != "latin-1" else b"") + text.encode(encoding, errors="replace")
        ),
        split_text,
        st.sampled_from(["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "latin-1"]),
        st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00"]),
    ),
    st.builds(lambda text: text.encode("utf-16"), split_text),  # with its own BOM
    st.builds(lambda n: b"img/t.png " + b"1" * n + b"\n", st.integers(0, 5000)),  # a long line
)


@fuzz(120)
@given(contents=split_bytes)
def test_a_fuzzed_split_file_loads_or_is_one_error_naming_it(tree, contents):
    root, train = tree
    path = os.path.join(root, "test split.txt")
    with open(path, "wb") as f:
        f.write(contents)
    entries, problems = read_split_file(path)
    for lineno, rel, label in entries:
        assert lineno >= 1 and isinstance(rel, str) and isinstance(label, int)
    for messages in problems.quoted.values():
        assert all("test split.txt" in m for m in messages)
    dataset = _assert_loads_or_names(root, {"train": train, "test": path}, path)
    if dataset is not None:  # every accepted test image exists under data_root
        real_root = os.path.realpath(root)
        for image_path in dataset.split_paths("test"):
            real = os.path.realpath(image_path)
            assert real.startswith(real_root + os.sep) and os.path.isfile(real)


@fuzz(40)
@given(contents=image_bytes)
def test_a_class_whose_only_image_is_fuzzed_loads_or_is_named(tree, contents):
    root, _ = tree
    with open(os.path.join(root, "img", "fuzzed.png"), "wb") as f:
        f.write(contents)
    train = os.path.join(root, "train_fuzzed.txt")
    with open(train, "w", encoding="utf-8") as f:
        f.write("img/a0.png 0\nimg/a1.png 0\nimg/fuzzed.png 1\n")
    _assert_loads_or_names(root, {"train": train}, "fuzzed.png")
