"""Throughput of the input pipeline alone: JPEG decode + augmentation, per stage.

Writes `--num_images` random-size JPEGs (256-400 px, smooth like photos) to a temp
dir and times, in interleaved rounds over the same files:

- the ImageNet-LT train transform (RandomResizedCrop 224 + flip + colour jitter
  0.4/0.4/0.4) and the test transform (resize 256 + centre crop 224), now and as
  they were before the speed work ("before": a frozen copy below), so the ratio
  now / before comes from one run on one machine state;
- today's train transform with the flip and colour jitter deferred to the train
  step ("train now, jitter in step": the host draws them, the accelerator applies
  them; what the trainer runs when the backend has a GPU). Its CPU work is the
  decode, crop, resize and the draws; the jitter's cost on the GPU is measured by
  `model_step.py --deferred_jitter`;
- today's test transform as `eval_dataset` runs it on the host (the resampler
  leaves each image transposed; one transpose per batch swaps them back) and as
  it runs with an accelerator ("test now, resize in step",
  `eval_dataset(defer_resize=True)`: the host decodes and hands over the input
  window the crop needs, the model's compiled call resamples it,
  `keras_oltr.deferred_resize`);
- the stages of today's train transform (read, + decode of the crop window, +
  resize, + flip and jitter);
- one epoch of `SplitFileDataset.train_dataset` (the whole pipeline: order,
  error skipping, batching) and passes of `eval_dataset` over the same files,
  host-only and with the resize deferred.
  Building a pipeline (tracing its functions) is timed apart: it is paid once per
  epoch, which 512 images would not amortise;
- the reference's torchvision/PIL transforms on the same files, if torchvision is
  installed (an optional benchmark dependency; skipped with a message otherwise),
  in a child process with one thread as a DataLoader worker runs them, including
  ToTensor and Normalize as the reference does.

Images per CPU-second (all threads' CPU time) is the number that says how many
cores a given GPU rate needs; images/s depends on the cores and on the load of a
shared machine.

    python benchmarks/input_pipeline.py --num_images=512 --rounds=3
"""

import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import tensorflow as tf
from absl import app, flags
from PIL import Image

from keras_oltr.data import SplitFileDataset, augment, decode, transforms

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 512, "JPEGs to generate.")
flags.DEFINE_integer("num_classes", 32, "Classes, with a long-tailed count profile.")
flags.DEFINE_integer("batch_size", 64, "Batch size of the timed pipelines.")
flags.DEFINE_integer("image_size", 224, "Model input size.")
flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds (the median is reported).")


def _write_images(root, n, k, rng):
    # Long-tailed labels, then smooth random images (compress like photos, not noise).
    weights = 0.9 ** np.arange(k)
    labels = rng.choice(k, size=n, p=weights / weights.sum())
    labels[:k] = np.arange(k)  # every class present
    lines, paths = [], []
    for i, y in enumerate(labels):
        h, w = rng.integers(256, 401, size=2)
        small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        rel = f"{y}/{i}.jpg"
        os.makedirs(os.path.join(root, str(y)), exist_ok=True)
        image.save(os.path.join(root, rel), quality=90)
        lines.append(f"{rel} {y}")
        paths.append(os.path.join(root, rel))
    split = os.path.join(root, "train.txt")
    with open(split, "w") as f:
        f.write("\n".join(lines) + "\n")
    return split, paths


# ----------------------------------------------- the transforms before this work
# A frozen copy of keras_oltr/data/transforms.py as of commit ab73e93 (decode of the
# crop window, float32 antialiased resize, op-by-op colour jitter in a switch_case),
# kept only to measure the speed-up against it in the same run.


def _before_crop_box(image_hw, seed):
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([image_hw, [1]], axis=0),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=augment.CROP_RATIO,
        area_range=augment.CROP_SCALE,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return begin[0], begin[1], size[0], size[1]


def _before_resize(image, size):
    return tf.image.resize(tf.cast(image, tf.float32), size, antialias=True)


def _before_gray(image):
    return tf.reduce_sum(image * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)


def _before_jitter(image, seed, x=augment.JITTER):
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    factors = tf.random.stateless_uniform([3], seeds[0], minval=1.0 - x, maxval=1.0 + x)

    def brightness(v):
        return tf.clip_by_value(v * factors[0], 0.0, 255.0)

    def contrast(v):
        mean = tf.reduce_mean(_before_gray(v))
        return tf.clip_by_value((v - mean) * factors[1] + mean, 0.0, 255.0)

    def saturation(v):
        gray = _before_gray(v)
        return tf.clip_by_value((v - gray) * factors[2] + gray, 0.0, 255.0)

    ops = (brightness, contrast, saturation)

    def apply(perm):
        def fn():
            v = image
            for i in perm:
                v = ops[i](v)
            return v

        return fn

    choice = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=6, dtype=tf.int32)
    return tf.switch_case(choice, [apply(p) for p in augment._ORDERS])


def _before_train(contents, size, seed):
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    shape = tf.image.extract_jpeg_shape(contents)
    y, x, h, w = _before_crop_box(shape[:2], seeds[0])
    crop = tf.image.decode_and_crop_jpeg(contents, tf.stack([y, x, h, w]), channels=3)
    image = _before_resize(crop, [size, size])
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    return _before_jitter(image, seeds[2])


def _before_test(contents, size):
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    resize_to = int(math.floor(size * transforms.TEST_RESIZE_RATIO + 0.5))
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize_to / tf.reduce_min(shape)
    new_hw = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), resize_to)
    resized = _before_resize(image, new_hw)
    top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
    return resized[top : top + size, left : left + size]


# ------------------------------------------------------------- the pipelines


def _now_stages(size):
    """Cumulative stages of today's train transform, as functions (bytes, seed) -> tensor."""

    def crop(contents, seed):
        seeds = tf.random.experimental.stateless_split(seed, num=3)
        y, x, h, w = augment._random_crop_box(tf.image.extract_jpeg_shape(contents)[:2], seeds[0])
        return tf.image.decode_and_crop_jpeg(contents, tf.stack([y, x, h, w]), channels=3)

    def resized(contents, seed):
        seeds = tf.random.experimental.stateless_split(seed, num=3)
        return augment.decode_random_resized_crop(contents, size, 3, seeds[0])

    return {
        "read": lambda contents, seed: tf.strings.length(contents),
        "+ decode crop window": crop,
        "+ resize": resized,
        "+ flip, jitter (= train)": lambda c, s: augment.imagenet_train_transform(c, size, 3, s),
    }


def _tf_pipelines(paths, size, batch):
    seeds = np.stack([np.zeros(len(paths), np.int64), np.arange(len(paths))], axis=-1)

    def pipeline(fn, batch_fn=None):
        ds = tf.data.Dataset.from_tensor_slices((paths, seeds))
        ds = ds.map(
            lambda p, s: fn(tf.io.read_file(p), s),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        # Variable-size stages (the crop) are reduced to one number per image.
        ds = ds.map(lambda *x: x if x[0].shape.is_fully_defined() else tf.size(x[0]))
        ds = ds.batch(batch)
        if batch_fn is not None:
            ds = ds.map(batch_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def test_swapped(contents, seed):
        image = decode.decode_image(contents, 3)
        return transforms.imagenet_test_transform(image, size, swap_axes=True)

    def test_deferred(contents, seed):
        return transforms.imagenet_test_canvas(decode.decode_image(contents, 3), size)

    pipelines = {
        "train before": pipeline(lambda c, s: _before_train(c, size, s)),
        "train now": pipeline(lambda c, s: augment.imagenet_train_transform(c, size, 3, s)),
        "train now, jitter in step": pipeline(
            lambda c, s: augment.imagenet_train_transform(c, size, 3, s, defer_jitter=True)
        ),
        "test before": pipeline(lambda c, s: _before_test(c, size)),
        # As `eval_dataset` runs it: each image comes out of the resampler transposed,
        # the batch is swapped back at once.
        "test now": pipeline(test_swapped, lambda images: tf.transpose(images, [0, 2, 1, 3])),
        "test now, resize in step": pipeline(test_deferred),
    }
    for name, fn in _now_stages(size).items():
        pipelines[f"stage: {name}"] = pipeline(fn)
    return pipelines


def _time_tf(ds):
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    for x in ds:
        count += int(tf.nest.flatten(x)[0].shape[0])
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


# The reference's transforms (torchvision on PIL images), run in a child process:
# torch and TensorFlow do not load into one process reliably. One thread, as in a
# DataLoader worker; ToTensor and Normalize are part of the reference's pipeline.
_TORCHVISION = textwrap.dedent(
    """
    import sys, time
    try:
        import torch
        from torchvision import transforms as tv
    except ImportError:
        sys.exit(3)
    from PIL import Image
    torch.set_num_threads(1)
    paths = open(sys.argv[1]).read().split()
    size, resize_to = int(sys.argv[2]), int(sys.argv[3])
    normalize = tv.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    pipelines = [
        tv.Compose([tv.RandomResizedCrop(size), tv.RandomHorizontalFlip(),
                    tv.ColorJitter(0.4, 0.4, 0.4, 0), tv.ToTensor(), normalize]),
        tv.Compose([tv.Resize(resize_to), tv.CenterCrop(size), tv.ToTensor(), normalize]),
    ]
    def load(path):
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    rates = []
    for transform in pipelines:
        for path in paths[:32]:
            transform(load(path))  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        for path in paths:
            transform(load(path))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        rates += [len(paths) / wall, len(paths) / cpu]
    print(*rates)
    """
)


def _torchvision(root, paths, size):
    """Runs of the reference's train and test transforms, or None without torchvision."""
    listing = os.path.join(root, "paths.txt")
    with open(listing, "w") as f:
        f.write("\n".join(paths))
    resize_to = int(math.floor(size * transforms.TEST_RESIZE_RATIO + 0.5))
    latest = {}

    def child():
        result = subprocess.run(
            [sys.executable, "-c", _TORCHVISION, listing, str(size), str(resize_to)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 3:
            return None
        if result.returncode:
            raise RuntimeError(f"torchvision benchmark failed: {result.stderr[-2000:]}")
        rates = [float(v) for v in result.stdout.split()]
        latest["test"] = tuple(rates[2:])
        return tuple(rates[:2])

    if child() is None:
        return None
    return {"torchvision train": child, "torchvision test": lambda: latest["test"]}


build_seconds = []  # CPU seconds to build a dataset pipeline and its iterator


def _dataset_epoch(
    root, split, size, batch, defer_jitter=False, evaluation=False, defer_resize=False
):
    ds = SplitFileDataset(data_root=root, split_files={"train": split}, image_size=size)
    epochs = iter(range(1, 1_000_000))

    def run():
        cpu = time.process_time()
        epoch = next(epochs)
        if evaluation:
            batches = ds.eval_dataset("train", batch, defer_resize=defer_resize)
        else:
            batches = ds.train_dataset(batch, epoch=epoch, seed=0, defer_jitter=defer_jitter)
        batches = iter(batches)
        build_seconds.append(time.process_time() - cpu)
        count, start, cpu = 0, time.perf_counter(), time.process_time()
        for images, _ in batches:
            count += int(tf.nest.flatten(images)[0].shape[0])
        return count / (time.perf_counter() - start), count / (time.process_time() - cpu)

    return run


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    cores = len(os.sched_getaffinity(0))
    size, batch = FLAGS.image_size, FLAGS.batch_size
    with tempfile.TemporaryDirectory() as root:
        split, paths = _write_images(root, FLAGS.num_images, FLAGS.num_classes, rng)
        runs = {
            name: (lambda ds=ds: _time_tf(ds))
            for name, ds in _tf_pipelines(paths, size, batch).items()
        }
        runs["dataset train epoch"] = _dataset_epoch(root, split, size, batch)
        runs["dataset train epoch, jitter in step"] = _dataset_epoch(
            root, split, size, batch, defer_jitter=True
        )
        runs["dataset eval pass"] = _dataset_epoch(root, split, size, batch, evaluation=True)
        runs["dataset eval pass, resize in step"] = _dataset_epoch(
            root, split, size, batch, evaluation=True, defer_resize=True
        )
        reference = _torchvision(root, paths, size)
        runs.update(reference or {})
        for run in runs.values():
            run()  # warm-up: tracing, XLA compilation, file cache
        results = {name: [] for name in runs}
        for _ in range(FLAGS.rounds):
            for name, run in runs.items():
                results[name].append(run())
    median = {name: np.median(np.array(r), axis=0) for name, r in results.items()}
    print(
        f"input pipeline: {FLAGS.num_images} JPEGs 256-400 px -> {size} px, batch {batch}, "
        f"{cores} cores, median of {FLAGS.rounds} interleaved rounds"
    )
    print(f"{'pipeline':<38} {'images/s':>10} {'per CPU-s':>10}")
    for name, (wall, cpu) in median.items():
        print(f"{name:<38} {wall:>10.1f} {cpu:>10.1f}")
    print(
        f"building a dataset pipeline and its iterator: {np.median(build_seconds):.2f} CPU-s "
        "(median; not in the dataset rows)"
    )
    print("ratios of images per CPU-second (images/s in brackets):")
    deferred = "train now, jitter in step"
    deferred_resize = "test now, resize in step"
    pairs = [("train now", "train before"), (deferred, "train before")]
    pairs += [("test now", "test before"), (deferred_resize, "test before")]
    if reference is None:
        print("  torchvision is not installed: the reference pipeline was not measured.")
    else:
        pairs += [
            ("train now", "torchvision train"),
            (deferred, "torchvision train"),
            ("test now", "torchvision test"),
            (deferred_resize, "torchvision test"),
        ]
    for a, b in pairs:
        print(f"  {a} / {b}: {median[a][1] / median[b][1]:.2f} ({median[a][0] / median[b][0]:.2f})")


if __name__ == "__main__":
    app.run(main)
