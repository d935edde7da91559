"""Serving sees the pixels evaluation sees: one preprocessing for every path.

A 224 px model gets the same non-square files through evaluation's pipeline
(`SplitFileDataset.eval_dataset`), the SavedModel's `serve_encoded` signature and
the predictor's `load_image`; the outputs must agree to 1e-4. The resampling itself
is checked against PIL (torchvision's backend), an independent implementation.
"""

import io
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_oltr.models as models
from keras_oltr import data, deferred_resize, export
from keras_oltr.data import resample, transforms

SIZE = 224
CLASS_NAMES = ["a", "b", "c"]
# (name, height, width, format): landscape, portrait, and a small one that is upscaled.
FILES = [
    ("wide.jpg", 300, 451, "JPEG"),
    ("tall.jpg", 517, 333, "JPEG"),
    ("small.png", 150, 199, "PNG"),
]


def _photo(height, width, seed):
    """Smooth colour image with some texture (compresses and resizes like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(7 * x + 3 * y), np.cos(5 * y - 2 * x), np.sin(11 * x * y)], -1)
    image = 127.5 + 100 * base + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _encode(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    encoded = {}
    for i, (name, height, width, fmt) in enumerate(FILES):
        encoded[name] = _encode(_photo(height, width, i), fmt)
        (root / name).write_bytes(encoded[name])
    lines = "\n".join(f"{name} {i}" for i, (name, *_) in enumerate(FILES)) + "\n"
    (root / "train.txt").write_text(lines)
    (root / "test.txt").write_text(lines)
    return root, encoded


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return models.build_plain_model(
        len(CLASS_NAMES), (SIZE, SIZE, 3), backbone_options={"width": 8}
    )


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("serving")
    return export.export_saved_model(model, str(out), CLASS_NAMES, threshold=0.0, warmup=False)


def _eval_images(root):
    ds = data.SplitFileDataset(
        data_root=str(root),
        split_files={"train": str(root / "train.txt"), "test": str(root / "test.txt")},
        num_classes=len(CLASS_NAMES),
        image_size=SIZE,
    )
    assert ds.augmentation == "imagenet"
    (images, _), *rest = list(ds.eval_dataset("test", len(FILES)))
    assert not rest
    return images.numpy()


def test_serve_encoded_matches_evaluation(files, model, exported):
    root, encoded = files
    evaluated = _eval_images(root)
    expected = model(evaluated, training=False)
    serve = tf.saved_model.load(exported).signatures[export.SERVE_ENCODED]
    served = serve(encoded_images=tf.constant([encoded[name] for name, *_ in FILES]))
    for key in ("logits", "probabilities"):
        np.testing.assert_allclose(
            served[key].numpy(), np.asarray(expected[key]), rtol=1e-4, atol=1e-4, err_msg=key
        )
    # The test can fail: the former serving path (a plain bilinear resize of the whole
    # image to 224 x 224) gives other outputs for the non-square files.
    decoded = [tf.io.decode_image(encoded[name], channels=3) for name, *_ in FILES[:2]]
    squashed = np.stack([tf.image.resize(d, (SIZE, SIZE)).numpy() for d in decoded])
    before = np.asarray(model(squashed, training=False)["logits"])
    assert np.abs(before - np.asarray(expected["logits"])[:2]).max() > 1e-3


def test_predictor_load_image_matches_evaluation(files):
    root, _ = files
    evaluated = _eval_images(root)
    for i, (name, *_) in enumerate(FILES):
        loaded = export.load_image(str(root / name), (SIZE, SIZE, 3))
        np.testing.assert_allclose(loaded, evaluated[i], atol=1e-4, err_msg=name)


def _pil_resize(array, height, width):
    """PIL's antialiased bilinear resize of each channel in float ("F") mode."""
    channels = [
        np.asarray(
            Image.fromarray(array[..., c].astype(np.float32), "F").resize(
                (width, height), Image.BILINEAR
            )
        )
        for c in range(array.shape[-1])
    ]
    return np.stack(channels, -1)


@pytest.mark.parametrize(
    "shape", [(300, 451), (517, 333), (150, 199), (224, 224), (90, 500), (600, 4000), (4000, 600)]
)
def test_test_transform_is_resize_then_centre_crop(shape):
    image = _photo(*shape, seed=3)
    out = transforms.imagenet_test_transform(tf.constant(image), SIZE).numpy()
    # Independently: PIL resizes the whole image (shorter side 256), then the centre crop.
    short = min(shape)
    new = [max(int(math.floor(d * 256 / short + 0.5)), 256) for d in shape]
    resized = _pil_resize(image, *new)
    top, left = (new[0] - SIZE) // 2, (new[1] - SIZE) // 2
    np.testing.assert_allclose(out, resized[top : top + SIZE, left : left + SIZE], atol=2e-3)


def test_test_transform_can_leave_the_axes_swapped():
    # `swap_axes=True` is the same crop with height and width swapped, bit for bit;
    # the datasets batch such crops and swap whole batches back.
    for shape in [(300, 451), (517, 333), (90, 500)]:
        image = tf.constant(_photo(*shape, seed=6))
        plain = transforms.imagenet_test_transform(image, SIZE).numpy()
        swapped = transforms.imagenet_test_transform(image, SIZE, swap_axes=True).numpy()
        np.testing.assert_array_equal(swapped.transpose(1, 0, 2), plain)


def test_datasets_swap_test_batches_back(tmp_path):
    # Non-square, non-constant images: eval_dataset and train_dataset(augment=False)
    # of both dataset kinds give each image's own test transform, unswapped.
    shapes = [(60, 90), (90, 60), (75, 75)]
    images = [_photo(*shape, seed=7 + i) for i, shape in enumerate(shapes)]
    lines = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png {i % 2}")
    (tmp_path / "split.txt").write_text("\n".join(lines) + "\n")
    files = data.SplitFileDataset(
        data_root=str(tmp_path),
        split_files={"train": str(tmp_path / "split.txt"), "test": str(tmp_path / "split.txt")},
        image_size=32,
        augmentation="imagenet",
    )
    expected = np.stack([transforms.test_transform(tf.constant(x), 32, "imagenet") for x in images])
    batch = np.concatenate([x.numpy() for x, _ in files.eval_dataset("test", 2)])
    np.testing.assert_array_equal(batch, expected)  # file order
    np.testing.assert_allclose(
        _finished(files.eval_dataset("test", 2, defer_resize=True)), expected, atol=1e-3
    )
    batches = files.train_dataset(2, epoch=0, seed=0, augment=False)
    for x in np.concatenate([x.numpy() for x, _ in batches]):  # sampled order
        assert min(np.abs(x - e).max() for e in expected) == 0.0
    labels = np.array([0, 1, 0])
    for source in (
        np.stack([x[:60, :60] for x in images]),
        np.stack([x[:40, :60] for x in images]),
    ):
        arrays = data.ArrayDataset(
            {split: (source, labels) for split in ("train", "val", "test")},
            class_names=["a", "b"],
            image_size=32,
            augmentation="imagenet",
        )
        batch = np.concatenate([x.numpy() for x, _ in arrays.eval_dataset("test", 2)])
        want = np.stack([transforms.test_transform(tf.constant(x), 32, "imagenet") for x in source])
        np.testing.assert_array_equal(batch, want)
        deferred = arrays.eval_dataset("test", 2, defer_resize=True)
        np.testing.assert_allclose(_finished(deferred), want, atol=1e-3)


def _finished(batches):
    out = []
    for x, _ in batches:
        assert set(x) == {deferred_resize.CANVAS_KEY, deferred_resize.GEOMETRY_KEY}
        out.append(
            deferred_resize.finish(x[deferred_resize.CANVAS_KEY], x[deferred_resize.GEOMETRY_KEY])
        )
    return np.concatenate([keras.ops.convert_to_numpy(x) for x in out])


def test_a_dataset_with_its_own_test_transform_is_neither_swapped_nor_deferred():
    # The swap and the deferred resize assume the built-in "imagenet" transform; a
    # subclass with its own `_test_image` gets its images as it makes them.
    class Flipped(data.ArrayDataset):
        def _test_image(self, image):
            return tf.image.resize(image[::-1], [32, 32])

    images = np.stack([_photo(40, 60, seed=i) for i in range(2)])
    arrays = Flipped(
        {split: (images, np.array([0, 1])) for split in ("train", "val", "test")},
        class_names=["a", "b"],
        image_size=32,
        augmentation="imagenet",
    )
    assert not arrays.swaps_test_axes and not arrays.can_defer_resize
    want = tf.image.resize(images[:, ::-1], [32, 32]).numpy()
    for batches in (
        arrays.eval_dataset("test", 2),
        arrays.eval_dataset("test", 2, defer_resize=True),
    ):
        np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in batches]), want)


@pytest.mark.parametrize(
    "shape, on_host",
    [
        ((300, 451), False),  # shrinks, landscape
        ((517, 333), False),  # shrinks, portrait
        ((150, 199), False),  # upscaled
        ((256, 256), False),  # the crop of an unscaled image
        ((90, 500), False),
        ((600, 4000), True),  # shrinks by more than 2x: resampled on the host
        ((560, 560), True),
    ],
)
def test_deferred_resize_finishes_the_test_transform(shape, on_host):
    # The canvas + geometry that the pipeline hands over, finished by keras ops, is
    # the host's test transform (to float rounding) and PIL's resize + crop.
    image = _photo(*shape, seed=8)
    canvas, geometry = transforms.imagenet_test_canvas(tf.constant(image), SIZE)
    assert canvas.dtype == tf.uint8 and canvas.shape == (2 * SIZE, 2 * SIZE, 3)
    assert (geometry[4] == 0.0) == on_host
    out = keras.ops.convert_to_numpy(deferred_resize.finish(canvas[None], geometry[None]))[0]
    host = transforms.imagenet_test_transform(tf.constant(image), SIZE).numpy()
    if on_host:
        np.testing.assert_array_equal(out, host)  # carried bit for bit
    else:
        np.testing.assert_allclose(out, host, atol=1e-3)
    short = min(shape)
    new = [max(int(math.floor(d * 256 / short + 0.5)), 256) for d in shape]
    top, left = (new[0] - SIZE) // 2, (new[1] - SIZE) // 2
    resized = _pil_resize(image, *new)
    np.testing.assert_allclose(out, resized[top : top + SIZE, left : left + SIZE], atol=2e-3)


def test_deferred_resize_of_gray_images_and_mixed_batches():
    # One channel, and a batch mixing deferred and host-resampled images.
    rng = np.random.default_rng(9)
    size, shapes = 16, [(17, 20), (40, 70), (20, 17), (18, 18)]
    images = [rng.integers(0, 256, (*s, 1), dtype=np.uint8) for s in shapes]
    pairs = [transforms.imagenet_test_canvas(tf.constant(x), size) for x in images]
    assert [float(g[4]) > 0 for _, g in pairs] == [True, False, True, True]
    out = deferred_resize.finish(tf.stack([c for c, _ in pairs]), tf.stack([g for _, g in pairs]))
    want = np.stack([transforms.imagenet_test_transform(tf.constant(x), size) for x in images])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), want, atol=1e-3)


@pytest.mark.parametrize(
    "shape", [(180, 200), (224, 224), (230, 150), (400, 300), (64, 700), (1000, 1000)]
)
def test_resize_is_pils_antialiased_bilinear(shape):
    image = _photo(*shape, seed=4)
    out = resample.resize(tf.constant(image), [SIZE, SIZE]).numpy()
    np.testing.assert_allclose(out, _pil_resize(image, SIZE, SIZE), atol=2e-3)


@pytest.mark.parametrize("shape", [(300, 451), (517, 333), (230, 150), (64, 700), (225, 900)])
def test_shrinking_resize_is_bit_identical_to_tensorflows(shape):
    # The separable resize (rows, then columns, each as the kernel's x axis) is
    # tf.image.resize(antialias=True) to the last bit, uint8 and float input alike.
    image = _photo(*shape, seed=5)
    for pixels in (tf.constant(image), tf.constant(image.astype(np.float32) + 0.25)):
        out = resample.resize(pixels, [SIZE, SIZE]).numpy()
        expected = tf.image.resize(tf.cast(pixels, tf.float32), [SIZE, SIZE], antialias=True)
        np.testing.assert_array_equal(out, expected.numpy())


def test_small_models_resize_to_their_size():
    # 28 px models (MNIST-like) keep today's evaluation transform: a resize to 28 x 28,
    # the identity for 28 x 28 inputs.
    image = np.random.default_rng(0).integers(0, 256, (40, 33, 1), dtype=np.uint8)
    served = transforms.serving_transform(tf.constant(_encode(image[..., 0], "PNG")), (28, 28, 1))
    np.testing.assert_allclose(served.numpy(), _pil_resize(image, 28, 28), atol=2e-3)
    same = image[:28, :28]
    served = transforms.serving_transform(tf.constant(_encode(same[..., 0], "PNG")), (28, 28, 1))
    np.testing.assert_array_equal(served.numpy(), same.astype(np.float32))
