"""Throughput of the training input pipeline alone (JPEG decode + augmentation).

Writes `--num_images` random-size JPEGs (256-400 px) to a temp dir, builds a
SplitFileDataset over them and times one pass of `train_dataset` at 224 px with
the random and the class-aware sampler.

    python benchmarks/input_pipeline.py --num_images=1024 --batch_size=128
"""

import os
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

from keras_oltr.data import SplitFileDataset

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 1024, "JPEGs to generate.")
flags.DEFINE_integer("num_classes", 32, "Classes, with a long-tailed count profile.")
flags.DEFINE_integer("batch_size", 128, "Global batch size.")
flags.DEFINE_integer("image_size", 224, "Model input size.")
flags.DEFINE_integer("epochs", 2, "Timed epochs per sampler (after one warm-up epoch).")


def _write_images(root, n, k, rng):
    # Long-tailed labels, then smooth random images (compress like photos, not noise).
    weights = 0.9 ** np.arange(k)
    labels = rng.choice(k, size=n, p=weights / weights.sum())
    labels[:k] = np.arange(k)  # every class present
    lines = []
    for i, y in enumerate(labels):
        h, w = rng.integers(256, 401, size=2)
        small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        rel = f"{y}/{i}.jpg"
        os.makedirs(os.path.join(root, str(y)), exist_ok=True)
        image.save(os.path.join(root, rel), quality=90)
        lines.append(f"{rel} {y}")
    path = os.path.join(root, "train.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _images_per_second(ds, sampler, batch, epochs):
    for _ in ds.train_dataset(batch, epoch=0, seed=0, sampler=sampler):
        pass  # warm-up: tracing, file cache
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    for epoch in range(1, epochs + 1):
        for images, _ in ds.train_dataset(batch, epoch=epoch, seed=0, sampler=sampler):
            count += int(images.shape[0])
    # CPU seconds of all threads: images per CPU-second stays meaningful on a loaded box.
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as root:
        split = _write_images(root, FLAGS.num_images, FLAGS.num_classes, rng)
        ds = SplitFileDataset(
            data_root=root, split_files={"train": split}, image_size=FLAGS.image_size
        )
        rates = {
            s: _images_per_second(ds, s, FLAGS.batch_size, FLAGS.epochs)
            for s in ("random", "class_aware")
        }
    print(
        f"input pipeline: {FLAGS.num_images} JPEGs 256-400 px -> {FLAGS.image_size} px, "
        f"batch {FLAGS.batch_size}, {cores} cores"
    )
    print(f"{'sampler':<12} {'images/s':>10} {'per core':>10} {'per CPU-s':>10}")
    for s, (wall, cpu) in rates.items():
        print(f"{s:<12} {wall:>10.1f} {wall / cores:>10.1f} {cpu:>10.1f}")
    ratio = rates["class_aware"][0] / rates["random"][0]
    print(f"ratio class_aware / random (images/s): {ratio:.2f}")


if __name__ == "__main__":
    app.run(main)
