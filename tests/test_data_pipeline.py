"""Tests for the shared pipeline logic of LongTailDataset, through ArrayDataset."""

import numpy as np
import pytest
import tensorflow as tf
from numpy_reference import np_colour_jitter

from keras_oltr import colour_jitter, data
from keras_oltr.data import augment, decode, samplers, transforms

COUNTS = (40, 20, 12, 6, 2)  # 80 train images, 5 classes
BATCH = 8  # 10 steps per epoch


def _arrays(size=28, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(COUNTS)])
    # Encode the example index in pixel (0, 0, 0) so batches can be traced back.
    images = rng.integers(0, 256, (len(labels), size, size, channels), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels))
    test = rng.integers(0, 256, (10, size, size, channels), dtype=np.uint8)
    return {
        "train": (images, labels),
        "val": (test[:5], np.arange(5)),
        "test": (test, np.arange(10) % 5),
        "open": (test[:3], None),
    }


def _dataset(**kwargs):
    return data.ArrayDataset(
        _arrays(), class_names=list("abcde"), name="toy", horizontal_flip=False, **kwargs
    )


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_metadata_and_describe():
    ds = _dataset()
    assert ds.num_classes == 5 and ds.channels == 1 and ds.image_size == 28
    np.testing.assert_array_equal(ds.train_counts, COUNTS)
    assert ds.num_train == 80 and ds.steps_per_epoch(BATCH) == 10
    assert ds.steps_per_epoch(30) == 2  # int(80 / 30)
    assert ds.num_examples("open") == 3 and not ds.has_split("open_val")
    text = ds.describe()
    assert "max 40 / min 2" in text
    assert "many (> 100) 0, medium (20..100) 2, few (< 20) 3" in text
    with pytest.raises(ValueError, match="global_batch_size=100"):
        ds.steps_per_epoch(100)


def test_train_batches_shapes_and_order():
    ds = _dataset(augmentation="small")
    batches = _batches(ds.train_dataset(BATCH, epoch=1, seed=7, augment=False))
    assert len(batches) == 10
    images, labels = batches[0]
    assert images.shape == (BATCH, 28, 28, 1) and images.dtype == np.float32
    assert labels.dtype == np.int32
    # Without augmentation the images are the stored ones, in the numpy epoch order.
    order = samplers.epoch_order(ds.train_labels, 80, seed=7, epoch=1, sampler="random")
    seen = np.concatenate([x[:, 0, 0, 0] for x, _ in batches]).astype(np.int64)
    np.testing.assert_array_equal(seen, order)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), ds.train_labels[order])


@pytest.mark.parametrize("sampler", ["random", "class_aware"])
def test_resume_is_bit_exact_with_augmentation(sampler):
    ds = _dataset()
    kwargs = dict(epoch=3, seed=11, sampler=sampler, augment=True)
    full = _batches(ds.train_dataset(BATCH, **kwargs))
    resumed = _batches(ds.train_dataset(BATCH, skip_batches=6, **kwargs))
    assert len(full) == 10 and len(resumed) == 4
    for (xa, ya), (xb, yb) in zip(full[6:], resumed, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Augmentation does something and depends on the epoch.
    plain = _batches(ds.train_dataset(BATCH, epoch=3, seed=11, sampler=sampler, augment=False))
    assert not np.array_equal(full[0][0], plain[0][0])
    other = _batches(ds.train_dataset(BATCH, epoch=4, seed=11, sampler=sampler))
    assert not np.array_equal(full[0][0], other[0][0])


def test_class_aware_batches_follow_sampler():
    ds = _dataset()
    labels = np.concatenate(
        [y for _, y in _batches(ds.train_dataset(BATCH, epoch=0, seed=0, sampler="class_aware"))]
    )
    # 80 = 4 full cycles over 5 classes with 4 images per visit.
    np.testing.assert_array_equal(np.bincount(labels), [16] * 5)
    assert np.all(labels.reshape(-1, 4) == labels.reshape(-1, 4)[:, :1])


def _global(ds, **kwargs):
    return _batches(ds.train_dataset(BATCH, epoch=2, seed=5, sampler="class_aware", **kwargs))


@pytest.mark.parametrize("pipelines", [1, 2])
def test_sharded_batches_concatenate_to_global_batch(pipelines):
    ds = _dataset()
    replicas = 2
    reference = _global(ds, skip_batches=1)
    per_pipeline = [
        _global(
            ds,
            skip_batches=1,
            input_context=tf.distribute.InputContext(pipelines, i, replicas),
        )
        for i in range(pipelines)
    ]
    per_step = replicas // pipelines  # per-replica batches each pipeline yields per step
    for p in per_pipeline:
        assert len(p) == len(reference) * per_step
        assert all(x.shape[0] == BATCH // replicas for x, _ in p)
    for step, (x_ref, y_ref) in enumerate(reference):
        parts = [p[step * per_step + r] for p in per_pipeline for r in range(per_step)]
        np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), x_ref)
        np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), y_ref)


def test_sharding_rejects_indivisible_batch():
    ds = _dataset()
    with pytest.raises(ValueError, match="global_batch_size=8, num_replicas=3"):
        ds.train_dataset(8, epoch=0, seed=0, input_context=tf.distribute.InputContext(1, 0, 3))


@pytest.mark.distributed
def test_mirrored_strategy_step_equals_global_batch(mirrored_strategy):
    strategy = mirrored_strategy
    ds = _dataset()
    reference = _global(ds)
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: ds.train_dataset(
            BATCH, epoch=2, seed=5, sampler="class_aware", input_context=ctx
        )
    )
    steps = 0
    for (x, y), (x_ref, y_ref) in zip(dist, reference, strict=True):
        xs = strategy.experimental_local_results(x)
        ys = strategy.experimental_local_results(y)
        np.testing.assert_array_equal(np.concatenate([t.numpy() for t in xs]), x_ref)
        np.testing.assert_array_equal(np.concatenate([t.numpy() for t in ys]), y_ref)
        steps += 1
    assert steps == 10


def test_eval_dataset_order_sharding_and_open_labels():
    ds = _dataset()
    arrays = _arrays()
    images, labels = next(iter(ds.eval_dataset("test", 16)))
    np.testing.assert_array_equal(images.numpy(), arrays["test"][0].astype(np.float32))
    np.testing.assert_array_equal(labels.numpy(), np.arange(10) % 5)
    open_labels = np.concatenate([y for _, y in _batches(ds.eval_dataset("open", 2))])
    np.testing.assert_array_equal(open_labels, [-1, -1, -1])
    shards = [
        _batches(ds.eval_dataset("test", 4, input_context=tf.distribute.InputContext(2, i, 2)))
        for i in range(2)
    ]
    ids = [np.concatenate([y for _, y in s]) for s in shards]
    assert all(x.shape[0] <= 2 for s in shards for x, _ in s)
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.sort(np.arange(10) % 5))
    with pytest.raises(ValueError, match="open_val"):
        ds.eval_dataset("open_val", 4)


def test_array_dataset_validation():
    arrays = _arrays()
    with pytest.raises(ValueError, match="Open-set labels"):
        data.ArrayDataset(
            {**arrays, "open": (arrays["open"][0], np.zeros(3))}, class_names=list("abcde")
        )
    with pytest.raises(ValueError, match="Labels must lie in"):
        data.ArrayDataset(arrays, class_names=list("abc"))
    with pytest.raises(ValueError, match="must contain"):
        data.ArrayDataset({"train": arrays["train"]}, class_names=list("abcde"))


def test_imagenet_transforms_rgb():
    rng = np.random.default_rng(0)
    image = tf.constant(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8))
    seed = tf.constant([1, 2], tf.int64)
    out = augment.imagenet_train_transform_array(image, 224, seed)
    again = augment.imagenet_train_transform_array(image, 224, seed)
    assert out.shape == (224, 224, 3) and out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), again.numpy())
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    test = transforms.imagenet_test_transform(image, 224)
    assert test.shape == (224, 224, 3)
    # Shorter side 260 -> 256: centre crop of a 295x256 resize; a constant image stays so.
    const = transforms.imagenet_test_transform(
        tf.fill([300, 260, 3], tf.constant(9, tf.uint8)), 224
    )
    np.testing.assert_allclose(const.numpy(), 9.0, atol=1e-3)


def test_color_jitter_matches_numpy_formula():
    rng = np.random.default_rng(1)
    image = rng.uniform(10, 245, (6, 5, 3)).astype(np.float32)
    seed = tf.constant([4, 5], tf.int64)
    # Brightness alone: clip(x * f) with one factor f in [0.6, 1.4].
    out = augment.color_jitter(tf.constant(image), seed, 0.4, 0.0, 0.0).numpy()
    f = out.flat[0] / image.flat[0]
    assert 0.6 <= f <= 1.4 and abs(f - 1.0) > 1e-3
    np.testing.assert_allclose(out, np.clip(image * f, 0, 255), atol=1e-3)
    # Saturation alone: blend with the ITU-R 601 gray image.
    gray = image @ np.array([0.299, 0.587, 0.114], np.float32)
    out = augment.color_jitter(tf.constant(image), seed, 0.0, 0.0, 0.4).numpy()
    g = gray[..., None]
    f = (out.flat[0] - g.flat[0]) / (image.flat[0] - g.flat[0])
    assert 0.6 <= f <= 1.4
    np.testing.assert_allclose(out, np.clip((image - g) * f + g, 0, 255), atol=1e-3)
    # Contrast alone: blend with the mean gray level.
    out = augment.color_jitter(tf.constant(image), seed, 0.0, 0.4, 0.0).numpy()
    m = gray.mean()
    f = (out.flat[0] - m) / (image.flat[0] - m)
    np.testing.assert_allclose(out, np.clip((image - m) * f + m, 0, 255), atol=1e-2)
    # Zero ranges: identity.
    same = augment.color_jitter(tf.constant(image), seed, 0.0, 0.0, 0.0).numpy()
    np.testing.assert_allclose(same, image, atol=1e-3)


def test_registry():
    assert {"imagenet_lt", "places_lt", "custom", "cifar10_lt", "cifar100_lt"} <= set(
        data.list_datasets()
    )
    with pytest.raises(ValueError, match="Known datasets: .*imagenet_lt"):
        data.get_dataset("nope")


def test_cifar_lt_profile_from_arrays():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 60)
    x = rng.integers(0, 256, (600, 32, 32, 3), dtype=np.uint8)
    ds = data.get_dataset(
        "cifar10_lt",
        train_arrays=(x, y[:, None]),
        test_arrays=(x[:50], y[:50]),
        open_arrays=(x[:7], None),
        imbalance_factor=10,
        val_per_class=5,
    )
    expected = [int(55 * 0.1 ** (i / 9)) for i in range(10)]
    np.testing.assert_array_equal(ds.train_counts, expected)
    assert ds.num_examples("val") == 50 and ds.num_examples("open") == 7
    assert ds.augmentation == "small" and ds.horizontal_flip
    x_b, _ = next(iter(ds.train_dataset(16, epoch=0, seed=0)))
    assert x_b.shape == (16, 32, 32, 3)


def _smooth_rgb(height, width, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(7 * x + 3 * y), np.cos(5 * y - 2 * x), np.sin(11 * x * y)], -1)
    return np.clip(127.5 + 100 * base + rng.normal(0, 10, (height, width, 3)), 0, 255).astype(
        np.uint8
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_decoded_jpeg_window_equals_decode_then_crop(channels):
    # The train transform decodes only the crop window (plus a margin); its pixels must
    # be exactly those of decoding the whole JPEG and cropping it, as PIL does.
    encoded = tf.io.encode_jpeg(tf.constant(_smooth_rgb(240, 320)), quality=90)
    whole = decode.decode_image(encoded, channels).numpy()
    rng = np.random.default_rng(0)
    boxes = [(0, 0, 240, 320), (13, 7, 101, 57), (200, 300, 40, 20), (239, 319, 1, 1)]
    for _ in range(40):
        h, w = rng.integers(1, 241), rng.integers(1, 321)
        boxes.append((rng.integers(0, 241 - h), rng.integers(0, 321 - w), h, w))
    raw_differs = 0
    for y, x, h, w in boxes:
        window = decode.decode_jpeg_window(encoded, (y, x, h, w), channels).numpy()
        np.testing.assert_array_equal(window, whole[y : y + h, x : x + w])
        raw = tf.image.decode_and_crop_jpeg(encoded, [y, x, h, w], channels=channels).numpy()
        raw_differs += int(not np.array_equal(raw, whole[y : y + h, x : x + w]))
    # Why the margin: without it, colour (chroma-subsampled) windows differ at their
    # edges; gray JPEGs have no chroma and never differ.
    assert (raw_differs > 0) == (channels == 3)


@pytest.mark.parametrize(
    "order", [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
)
def test_fused_jitter_matches_numpy_in_every_order(order):
    # Strong factors, so that the clipping between ops matters and the order shows.
    image = _smooth_rgb(40, 30).astype(np.float32)
    factors = np.array([1.4, 0.6, 1.35], np.float32)
    parameters = augment.jitter_vector(False, tf.constant(factors), tf.constant(order))
    got = augment.apply_flip_and_jitter(tf.constant(image), parameters)
    np.testing.assert_allclose(got.numpy(), np_colour_jitter(image, factors, order), atol=2e-3)
    other = np_colour_jitter(image, factors, order[::-1])
    assert np.abs(other - np_colour_jitter(image, factors, order)).max() > 1.0


def test_flip_and_jitter_use_the_documented_draws():
    # The fused flip + jitter equals torchvision's op-by-op semantics with the draws
    # of stateless_random_flip_left_right and color_jitter's factors and order.
    image = tf.constant(_smooth_rgb(24, 32).astype(np.float32))
    flips = 0
    for i in range(12):
        seeds = tf.random.experimental.stateless_split(tf.constant([i, 5], tf.int64), num=3)
        got = augment._flip_and_jitter(image, seeds, flip=True).numpy()
        flipped = tf.image.stateless_random_flip_left_right(image, seeds[1]).numpy()
        flips += int(not np.array_equal(flipped, image.numpy()))
        jitter_seeds = tf.random.experimental.stateless_split(seeds[2], num=4)
        factors = tf.random.stateless_uniform(
            [3], jitter_seeds[0], minval=[0.6, 0.6, 0.6], maxval=[1.4, 1.4, 1.4]
        ).numpy()
        choice = int(tf.random.stateless_uniform([], jitter_seeds[1], 0, 6, dtype=tf.int32))
        expected = np_colour_jitter(flipped, factors, augment._ORDERS[choice])
        np.testing.assert_allclose(got, expected, atol=2e-3)
    assert 0 < flips < 12


def test_array_dataset_defers_jitter_to_the_same_images():
    # From decoded arrays (ArrayDataset) too: the deferred batches, jittered by the
    # train step's function, are the undeferred pipeline's batches.
    ds = data.ArrayDataset(
        _arrays(size=40, channels=3), class_names=list("abcde"), augmentation="imagenet"
    )
    kwargs = dict(epoch=1, seed=2, sampler="class_aware")
    plain = _batches(ds.train_dataset(BATCH, **kwargs))
    deferred = list(ds.train_dataset(BATCH, defer_jitter=True, **kwargs))
    assert len(deferred) == len(plain) == 10
    flips = 0
    for (xa, ya), (x, y) in zip(plain, deferred, strict=True):
        jitter = x[colour_jitter.JITTER_KEY]
        got = colour_jitter.flip_and_jitter(x[colour_jitter.IMAGES_KEY], jitter).numpy()
        np.testing.assert_allclose(got, xa, atol=1e-3)
        np.testing.assert_array_equal(y.numpy(), ya)
        flips += int(np.sum(jitter[:, 0].numpy()))
    assert 0 < flips < 80
