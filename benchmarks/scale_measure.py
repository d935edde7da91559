"""Measuring and synthetic data for `benchmarks/scale.py` and `scale_pieces.py`.

Each piece's seconds (the median of `--repeats` runs when one run takes under 2 s)
and peak memory (`MEMORY_METHOD`), printed as one `RESULT` JSON line; long-tailed
labels, top-1 outputs and split-file trees made before a piece is measured. The
flags here are the pieces' parameters, passed on by the parent to each child.
"""

import ctypes
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import flags
from synthetic import fake_top1

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 890_000, "Train images N (and test predictions).")
flags.DEFINE_integer("repeats", 3, "Runs of a piece under 2 s (the median is reported).")
flags.DEFINE_integer("feature_dim", 512, "Feature width D of the feature passes.")
flags.DEFINE_integer("max_per_class", 1280, "Images of the largest class (ImageNet-LT's).")
flags.DEFINE_integer("bank_per_class", 100, "Bank features kept per class (the trainer's).")
flags.DEFINE_float("logits_gb", 1.5, "Cap on the [N, K] float32 logits of the logits piece.")
flags.DEFINE_integer("batch", 32, "Batch of the model pieces and the score piece.")
flags.DEFINE_integer("image_size", 64, "Input size of the model pieces.")
flags.DEFINE_integer("model_steps", 2, "Timed train steps / inference batches (median).")
flags.DEFINE_integer("feature_batch", 256, "Batch of the feature passes (the eval batch).")
flags.DEFINE_float("memory_gb", 16.0, "Skip pieces whose estimated peak exceeds this.")
flags.DEFINE_string("child_root", "", "Internal: folder with the image files (split group).")
# The flags the parent passes on to each child process.
CHILD_FLAGS = (
    "images",
    "repeats",
    "feature_dim",
    "max_per_class",
    "bank_per_class",
    "logits_gb",
    "batch",
    "image_size",
    "model_steps",
    "feature_batch",
    "memory_gb",
)

GROUPS = ("split", "samplers", "features", "metrics", "model")
RESULT = "SCALE_RESULT "
QUICK_S = 2.0
OPEN_FRACTION = 0.2
MEMORY_METHOD = (
    "peak MB = peak resident set size during the piece (VmHWM reset via "
    "/proc/self/clear_refs after malloc_trim) minus the resident size at its start, "
    "in a child process per group and K; inputs made before the piece are not counted"
)

# ------------------------------------------------------------------ measuring


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def start_peak():
    """Returns the resident size (kB) after trimming the heap and resetting the peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    rss = status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    return rss


def measure(fn, repeats):
    """(median seconds, runs, peak MB above the start) of calling `fn`."""
    base = start_peak()
    times = []
    while True:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if len(times) >= repeats or times[0] >= QUICK_S:
            break
    peak_mb = (status_kb("VmHWM") - base) / 1024
    return float(np.median(times)), len(times), peak_mb


def emit(piece, k, n, seconds=None, runs=0, peak_mb=None, note=""):
    row = dict(piece=piece, classes=k, images=n, seconds=seconds, runs=runs, peak_mb=peak_mb)
    row["note"] = note
    print(RESULT + json.dumps(row), flush=True)


def run_piece(piece, k, n, fn, repeats=None, note=""):
    seconds, runs, peak = measure(fn, FLAGS.repeats if repeats is None else repeats)
    emit(piece, k, n, seconds, runs, peak, note)


def skip(piece, k, n, estimate_gb):
    emit(piece, k, n, note=f"skipped: needs about {estimate_gb:.1f} GB > --memory_gb")


# ------------------------------------------------------------------ synthetic data


def long_tailed_counts(k, n, max_count):
    """[K] counts summing to n: max_count * (1 + i)^-a (a solved for), each >= 1."""
    if n < k:
        raise ValueError(f"--images must be >= every K (one image per class). Received: {n} < {k}")
    max_count = max(max_count, -(-2 * n // k))
    ranks = np.arange(1, k + 1, dtype=np.float64)
    lo, hi = 0.0, 20.0
    for _ in range(100):  # the sum falls as the exponent grows
        a = (lo + hi) / 2
        total = np.maximum(1, np.floor(max_count * ranks**-a)).sum()
        lo, hi = (a, hi) if total > n else (lo, a)
    counts = np.maximum(1, np.floor(max_count * ranks**-hi)).astype(np.int64)
    counts[0] += n - counts.sum()  # the head class takes the rounding
    return counts


def labels_of(k, n, seed=0):
    counts = long_tailed_counts(k, n, FLAGS.max_per_class)
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(k), counts)), counts


def top1_outputs(rng, n, k):
    return fake_top1(rng, n, k, OPEN_FRACTION)


def split_path(k, n, folder):
    return os.path.join(folder, f"train_k{k}.txt")


def write_image_tree(root, n):
    """Under root, N sound images `d{i // 1000}/{i}.png` (hard links to one 8x8 PNG)
    and N empty files `e{i // 1000}/{i}.png`."""
    os.makedirs(root, exist_ok=True)
    sound = os.path.join(root, "sound.png")
    with open(sound, "wb") as f:
        f.write(tf.io.encode_png(np.full((8, 8, 3), 128, np.uint8)).numpy())
    for start in range(0, n, 1000):
        for prefix in ("d", "e"):
            os.makedirs(os.path.join(root, f"{prefix}{start // 1000}"), exist_ok=True)
        for i in range(start, min(n, start + 1000)):
            os.link(sound, os.path.join(root, f"d{start // 1000}", f"{i}.png"))
            open(os.path.join(root, f"e{start // 1000}", f"{i}.png"), "wb").close()


def write_split_file(path, labels, prefix="d"):
    with open(path, "w") as f:
        f.writelines(f"{prefix}{i // 1000}/{i}.png {y}\n" for i, y in enumerate(labels))
