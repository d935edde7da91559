r"""Time and memory of every host-side piece of a run at MS1M-LT scale (74.5K classes).

Usage::

    python benchmarks/scale.py --classes=1000,10000,74500 --images=890000 \
        --note="quiet: nothing else running"

Synthetic data, made before each piece is measured: long-tailed train labels (power
law counts, the largest `--max_per_class` or 2N/K if more, every class at least one
image, N in all, shuffled; at K = 74,500 and N = 890,000: 1,280 down to 6), random
float32 features of `--feature_dim`, top-1 predictions and logits. For every K of
`--classes` and N = `--images` it measures, through the library's public functions
(whatever the tree holds):

- split files (at the largest K only: their cost does not depend on K beyond the
  label check): `read_split_file` of an N-line train split; `SplitFileDataset` with
  `check_files=True` over N empty image files in a temporary folder; the same split
  file over a folder without the images (the time to its `SplitFileError`);
- samplers: one epoch (N indices) of `epoch_order(sampler="random")` as the baseline
  and of `class_aware_order`;
- feature passes over precomputed features, fed as batches of `--feature_batch`
  (256, the eval batch) through an identity model, so what is timed is the pass's
  own host work plus one model call per batch: `class_mean_features` (centroids)
  and `train_feature_bank` (the bank pass, its selection included); `balanced_bank`
  alone; `with_nearest_neighbour_score` (setting the bank); the score of one batch
  of 32 against that bank (`inference_function`);
- metrics: `evaluate_top1_predictions` of N test predictions (20% open) with
  reachability and N/5 validation predictions; `evaluate_predictions` from [N', K]
  float32 logits, N' capped so that the logits take at most `--logits_gb` (the
  table says N'); `write_plots` + `write_report` of the top-1 result;
- the stage-2 OLTR model at `--image_size` px, batch `--batch`, for each
  `preset@K` of `--models` (default: ImageNet-LT's at 1,000 and 74,500 classes,
  MS1M-LT's at 74,500): build and compile (`build_oltr_model`,
  `compile_for_stage`), a train step (`train_on_batch`, median of `--model_steps`
  after a first, traced step; one when it takes 2 s or more) and an inference batch
  (`inference_function`, after a traced one). `imagenet_lt`'s model is ResNet-10
  with a 512 fc, `ms1m_lt`'s ResNet-50 with a 2048 fc (its backbone weights are not
  loaded). The train step's peak counts from before the build.

Seconds: wall clock, the median of `--repeats` runs when one run takes under 2 s,
else one run. Peak MB: the peak resident set size of the process during the piece
(VmHWM, reset through /proc/self/clear_refs just before it, after malloc_trim)
minus its resident size at the start, so the piece's inputs are not counted and
C/C++ allocations (TensorFlow, numpy) are. Each group of pieces (split files,
samplers, features, metrics, each model) runs in its own child process per K. A
piece whose estimated peak exceeds `--memory_gb` is skipped, with the reason in
the table. Results: a Markdown table printed and written to `--out`/scale.md, and
scale.json, with the machine, its load and `--note` (was the machine quiet?).
"""

import ctypes
import dataclasses
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from keras_oltr.data import SplitFileDataset, SplitFileError
from keras_oltr.data.samplers import class_aware_order, epoch_order
from keras_oltr.data.split_file_parser import read_split_file
from keras_oltr.evaluation import (
    evaluate_predictions,
    evaluate_top1_predictions,
    write_plots,
    write_report,
)
from keras_oltr.inference import class_mean_features, inference_function, train_feature_bank
from keras_oltr.layers import balanced_bank
from keras_oltr.models import OLTRModel, build_oltr_model, with_nearest_neighbour_score
from keras_oltr.presets import get_preset
from keras_oltr.training import compile_for_stage

FLAGS = flags.FLAGS
flags.DEFINE_list("classes", ["1000", "10000", "74500"], "Numbers of classes K.")
flags.DEFINE_integer("images", 890_000, "Train images N (and test predictions).")
flags.DEFINE_list("pieces", ["all"], "Groups to run: split, samplers, features, metrics, model.")
flags.DEFINE_integer("repeats", 3, "Runs of a piece under 2 s (the median is reported).")
flags.DEFINE_integer("feature_dim", 512, "Feature width D of the feature passes.")
flags.DEFINE_integer("max_per_class", 1280, "Images of the largest class (ImageNet-LT's).")
flags.DEFINE_integer("bank_per_class", 100, "Bank features kept per class (the trainer's).")
flags.DEFINE_float("logits_gb", 1.5, "Cap on the [N, K] float32 logits of the logits piece.")
flags.DEFINE_integer("batch", 32, "Batch of the model pieces and the score piece.")
flags.DEFINE_integer("image_size", 64, "Input size of the model pieces.")
flags.DEFINE_list(
    "models",
    ["imagenet_lt@1000", "imagenet_lt@74500", "ms1m_lt@74500"],
    "Stage-2 models timed: preset@K (when K is in --classes), or preset for every K. "
    "The cost grows with K only through the K x D heads, so a few points suffice.",
)
flags.DEFINE_integer("model_steps", 2, "Timed train steps / inference batches (median).")
flags.DEFINE_integer("feature_batch", 256, "Batch of the feature passes (the eval batch).")
flags.DEFINE_string(
    "files_dir",
    "/dev/shm" if os.path.isdir("/dev/shm") else None,
    "Where the N empty image files of the split pieces are made (default: /dev/shm, "
    "a tmpfs: making 890K files on this machine's disk takes about 10 minutes).",
)
flags.DEFINE_float("memory_gb", 16.0, "Skip pieces whose estimated peak exceeds this.")
flags.DEFINE_integer("child_timeout", 900, "Seconds before a child process is stopped.")
flags.DEFINE_string("out", "benchmarks/results", "Folder of scale.md and scale.json.")
flags.DEFINE_string("note", "not stated", "Whether the machine was quiet (written with results).")
# Internal: the parent runs each group in a child process with these.
flags.DEFINE_string("child", None, "Internal: run this group and print its results.")
flags.DEFINE_integer("child_classes", 0, "Internal: K of the child.")
flags.DEFINE_string("child_root", "", "Internal: folder with the image files (split group).")

GROUPS = ("split", "samplers", "features", "metrics", "model")
_RESULT = "SCALE_RESULT "
_QUICK_S = 2.0
_OPEN_FRACTION = 0.2
_MEMORY_METHOD = (
    "peak MB = peak resident set size during the piece (VmHWM reset via "
    "/proc/self/clear_refs after malloc_trim) minus the resident size at its start, "
    "in a child process per group and K; inputs made before the piece are not counted"
)


# ------------------------------------------------------------------ measuring


def _status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _start_peak():
    """Returns the resident size (kB) after trimming the heap and resetting the peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    rss = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    return rss


def _measure(fn, repeats):
    """(median seconds, runs, peak MB above the start) of calling `fn`."""
    base = _start_peak()
    times = []
    while True:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if len(times) >= repeats or times[0] >= _QUICK_S:
            break
    peak_mb = (_status_kb("VmHWM") - base) / 1024
    return float(np.median(times)), len(times), peak_mb


def _emit(piece, k, n, seconds=None, runs=0, peak_mb=None, note=""):
    row = dict(piece=piece, classes=k, images=n, seconds=seconds, runs=runs, peak_mb=peak_mb)
    row["note"] = note
    print(_RESULT + json.dumps(row), flush=True)


def _run(piece, k, n, fn, repeats=None, note=""):
    seconds, runs, peak = _measure(fn, FLAGS.repeats if repeats is None else repeats)
    _emit(piece, k, n, seconds, runs, peak, note)


def _skip(piece, k, n, estimate_gb):
    _emit(piece, k, n, note=f"skipped: needs about {estimate_gb:.1f} GB > --memory_gb")


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


def _labels(k, n, seed=0):
    counts = long_tailed_counts(k, n, FLAGS.max_per_class)
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(k), counts)), counts


def _top1(rng, n, k):
    labels = rng.integers(0, k, n)
    labels[rng.random(n) < _OPEN_FRACTION] = -1
    correct = rng.random(n) < 0.4
    predicted = np.where(correct & (labels >= 0), labels, rng.integers(0, k, n))
    max_probability = np.clip(rng.beta(2, 2, n) + 0.3 * correct, 0, 1)
    return predicted, max_probability, labels


def _split_path(k, n, folder):
    return os.path.join(folder, f"train_k{k}.txt")


def write_image_tree(root, n):
    """N empty files `d{i // 1000}/{i}.jpg` under root (the existence check's targets)."""
    for start in range(0, n, 1000):
        folder = os.path.join(root, f"d{start // 1000}")
        os.makedirs(folder, exist_ok=True)
        for i in range(start, min(n, start + 1000)):
            open(os.path.join(folder, f"{i}.jpg"), "wb").close()


def write_split_file(path, labels):
    with open(path, "w") as f:
        f.writelines(f"d{i // 1000}/{i}.jpg {y}\n" for i, y in enumerate(labels))


# ------------------------------------------------------------------ the groups


def group_split(k, n):
    root = FLAGS.child_root
    labels, _ = _labels(k, n)
    split = _split_path(k, n, os.path.dirname(root.rstrip("/")))
    write_split_file(split, labels)
    _run("split file: read_split_file", k, n, lambda: read_split_file(split))

    def load(data_root):
        return SplitFileDataset(
            data_root=data_root, split_files={"train": split}, num_classes=k, image_size=64
        )

    where = f"N empty files under {os.path.dirname(os.path.dirname(root))}"
    _run("split file: load + check_files (present)", k, n, lambda: load(root), note=where)
    empty = tempfile.mkdtemp(prefix="scale_empty_")
    problems = []

    def missing():
        try:
            load(empty)
        except SplitFileError as error:
            counts = getattr(error, "counts", None) or {
                kind: len(v) for kind, v in error.problems.items()
            }
            quoted = sum(len(v) for v in error.problems.values())
            problems.append((sum(counts.values()), quoted))
        else:
            raise AssertionError("the split file over an empty folder loaded")

    seconds, runs, peak = _measure(missing, FLAGS.repeats)
    note = f"one SplitFileError: {problems[0][0]:,} problems counted, {problems[0][1]} quoted"
    _emit("split file: load + check_files (all missing)", k, n, seconds, runs, peak, note)
    os.rmdir(empty)
    os.remove(split)


def group_samplers(k, n):
    labels, _ = _labels(k, n)
    _run("sampler: random order (baseline)", k, n, lambda: epoch_order(labels, n, seed=0, epoch=0))
    _run(
        "sampler: class_aware_order (1 epoch)",
        k,
        n,
        lambda: class_aware_order(labels, n, 4, np.random.default_rng(0)),
    )


class FeatureBatches:
    """A dataset stand-in whose train split's "images" are precomputed features."""

    def __init__(self, features, labels, num_classes):
        self.features, self.labels = features, labels
        self.num_classes, self.num_train = num_classes, len(labels)
        self.class_names = tuple(str(i) for i in range(num_classes))
        self.train_labels = labels
        self.train_counts = np.bincount(labels, minlength=num_classes)

    def split_labels(self, split):
        return self.labels

    def num_examples(self, split):
        return self.num_train

    def eval_dataset(self, split, batch_size, **kwargs):
        for start in range(0, self.num_train, batch_size):
            stop = start + batch_size
            yield tf.constant(self.features[start:stop]), tf.constant(self.labels[start:stop])


def _identity_model(dim):
    inputs = keras.Input((dim,), name="images")
    return OLTRModel(inputs, {"direct_feature": keras.layers.Identity()(inputs)})


def group_features(k, n):
    dim, per_class = FLAGS.feature_dim, FLAGS.bank_per_class
    labels, counts = _labels(k, n)
    feature_gb = n * dim * 4 / 1e9
    bank_rows = int(np.minimum(counts, per_class).sum())
    bank_gb = bank_rows * dim * 4 / 1e9
    # Features, then the pass's copies; the bank set held ~6x the bank before the
    # streaming work (issue 25).
    if feature_gb * 3 + 6 * bank_gb > FLAGS.memory_gb:
        for piece in ("centroids", "bank pass", "bank selection", "bank set", "knn score"):
            _skip(f"features: {piece}", k, n, feature_gb * 3 + 6 * bank_gb)
        return
    rng = np.random.default_rng(1)
    features = rng.standard_normal((n, dim), dtype=np.float32)
    data = FeatureBatches(features, labels, k)
    model = _identity_model(dim)
    batch = FLAGS.feature_batch
    note = f"D={dim}, batches of {batch} through an identity model"
    _run(
        "features: centroids (class_mean_features)",
        k,
        n,
        lambda: class_mean_features(model, data, batch_size=batch),
        note=note,
    )
    _run(
        "features: bank pass (train_feature_bank)",
        k,
        n,
        lambda: train_feature_bank(model, data, per_class, batch_size=batch),
        note=f"{note}; at most {per_class} a class",
    )
    _run(
        "features: bank selection (balanced_bank)",
        k,
        n,
        lambda: balanced_bank(features, labels, per_class),
        note=f"at most {per_class} a class: {bank_rows:,} rows",
    )
    bank, _ = balanced_bank(features, labels, per_class)
    held = []
    _run(
        "features: bank set (with_nearest_neighbour_score)",
        k,
        n,
        lambda: held.append(with_nearest_neighbour_score(model, bank)),
        repeats=1,
        note=f"bank {bank.shape[0]:,} x {dim} float32 = {bank.nbytes / 1e6:,.0f} MB",
    )
    score = inference_function(held[0], "knn_similarity")
    queries = features[: FLAGS.batch]
    score(queries)  # traced once
    _run(
        f"features: knn score of one batch of {FLAGS.batch}",
        k,
        n,
        lambda: score(queries),
        note=f"bank of {bank.shape[0]:,}",
    )


def group_metrics(k, n):
    _, counts = _labels(k, n)
    rng = np.random.default_rng(2)
    _metrics_from_top1(k, n, counts, rng)
    _metrics_from_logits(k, n, counts, rng)


def _metrics_from_top1(k, n, counts, rng):
    pred, prob, labels = _top1(rng, n, k)
    reach = rng.gamma(2.0, 1.0, n)
    v_pred, v_prob, v_labels = _top1(rng, max(n // 5, 1), k)
    val = {"predicted_class": v_pred, "max_probability": v_prob, "labels": v_labels}

    def top1():
        return evaluate_top1_predictions(pred, prob, labels, counts, reachability=reach, val=val)

    _run("metrics: evaluate_top1_predictions", k, n, top1, note=f"{len(v_pred):,} val predictions")
    result = top1()
    out = tempfile.mkdtemp(prefix="scale_report_")

    def report():
        files = write_plots(result, out)
        write_report(result, out, model_name="oltr", dataset_name="synthetic", plot_files=files)

    _run("report: write_plots + write_report", k, n, report, repeats=1)
    shutil.rmtree(out)


def _metrics_from_logits(k, n, counts, rng):
    rows = min(n, int(FLAGS.logits_gb * 1e9 // (4 * k)))
    logits_gb = rows * k * 4 / 1e9
    note = f"N capped at {rows:,} ([N, K] float32 = {logits_gb:.2f} GB, --logits_gb)"
    if 8 * logits_gb > FLAGS.memory_gb:  # the logits, then about 7x them before issue 25
        _skip("metrics: evaluate_predictions (logits)", k, rows, 8 * logits_gb)
        return
    logits = rng.standard_normal((rows, k), dtype=np.float32)
    labels = rng.integers(0, k, rows)
    labels[rng.random(rows) < _OPEN_FRACTION] = -1
    _run(
        "metrics: evaluate_predictions (logits)",
        k,
        rows,
        lambda: evaluate_predictions(logits, labels, counts, from_logits=True),
        repeats=1,
        note=note,
    )


def _model_gb(config, k):
    """The training footprint: about 30 bytes a parameter, as measured at 74,500 classes."""
    dim = config.model.feature_dim
    backbone = 32e6 if config.model.backbone == "resnet50" else 5e6  # with the attention
    return (backbone + 2 * dim * dim + 3 * k * dim) * 30 / 1e9 + 0.5


def group_model(k, n, preset):
    config = get_preset(preset)
    name = f"model {preset} ({config.model.backbone}, D={config.model.feature_dim})"
    if _model_gb(config, k) > FLAGS.memory_gb:
        _skip(f"{name}: train step", k, n, _model_gb(config, k))
        return
    mc = dataclasses.replace(config.model, backbone_weights=None)  # no download
    size, batch = FLAGS.image_size, FLAGS.batch
    _, counts = _labels(k, n)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, k, batch)
    held = []

    def build():
        model = build_oltr_model(
            k,
            (size, size, 3),
            backbone=mc.backbone,
            backbone_options=mc.backbone_options(),
            use_attention=mc.use_attention,
            use_fc=mc.use_fc,
            feature_dim=mc.feature_dim,
            reachability_scale=mc.reachability_scale,
            classifier_scale=mc.classifier_scale,
        )
        compile_for_stage(model, config.stage2, counts, max(1, n // batch), large_margin=True)
        model.centroid_memory.set_centroids(
            rng.standard_normal((k, mc.feature_dim)).astype("float32")
        )
        held.append(model)

    note = f"{size} px, batch {batch}"
    base = _start_peak()
    seconds, _, peak = _measure(build, 1)
    model = held.pop()
    params = model.count_params()
    _emit(f"{name}: build + compile", k, n, seconds, 1, peak, f"{params / 1e6:.1f}M parameters")
    start = time.perf_counter()
    model.train_on_batch(images, labels)
    first = time.perf_counter() - start
    steps = []
    while len(steps) < FLAGS.model_steps and not (steps and steps[0] >= _QUICK_S):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        steps.append(time.perf_counter() - start)
    trained_peak = (_status_kb("VmHWM") - base) / 1024
    _emit(
        f"{name}: train step",
        k,
        n,
        float(np.median(steps)),
        len(steps),
        trained_peak,
        f"{note}; first (traced) step {first:.1f} s; peak since before the build",
    )
    infer = inference_function(model)
    keras.tree.map_structure(np.asarray, infer(images))  # traced once
    _run(f"{name}: inference batch", k, n, lambda: infer(images), FLAGS.model_steps, note)


def child(group, k, n):
    logging.set_verbosity(logging.WARNING)
    if group == "split":
        group_split(k, n)
    elif group == "samplers":
        group_samplers(k, n)
    elif group == "features":
        group_features(k, n)
    elif group == "metrics":
        group_metrics(k, n)
    elif group.startswith("model:"):
        group_model(k, n, group.split(":", 1)[1])
    else:
        raise ValueError(f"Unknown group. Received: {group!r}")


# ------------------------------------------------------------------ the parent


def _machine():
    with open("/proc/meminfo") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError:
        commit = "unknown"
    return {
        "cpu_count": os.cpu_count(),
        "ram_gb": round(total_kb / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "commit": commit,
        "load_average_start": os.getloadavg(),
    }


def _run_child(group, k, n, root):
    args = [
        sys.executable,
        os.path.abspath(__file__),
        f"--child={group}",
        f"--child_classes={k}",
        f"--images={n}",
        f"--child_root={root}",
    ]
    for name in ("repeats", "feature_dim", "max_per_class", "bank_per_class", "logits_gb"):
        args.append(f"--{name}={FLAGS[name].value}")
    for name in ("batch", "image_size", "memory_gb", "model_steps", "feature_batch"):
        args.append(f"--{name}={FLAGS[name].value}")
    start = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=FLAGS.child_timeout)
        out, code = proc.stdout, proc.returncode
        err = proc.stderr
    except subprocess.TimeoutExpired as error:
        out, code, err = error.stdout or "", "timeout", ""
        out = out.decode() if isinstance(out, bytes) else out
    rows = [
        json.loads(line[len(_RESULT) :]) for line in out.splitlines() if line.startswith(_RESULT)
    ]
    for row in rows:
        row["group"] = group.partition(":")[0]
    if code != 0:
        tail = (err or "").strip().splitlines()[-1:] or [""]
        rows.append(
            dict(
                piece=f"{group} (child process)",
                classes=k,
                images=n,
                seconds=None,
                runs=0,
                peak_mb=None,
                note=f"failed: exit {code} {tail[0][:120]}",
                group=group.partition(":")[0],
            )
        )
    logging.info("%s at K=%d: %.0f s in its child process", group, k, time.perf_counter() - start)
    return rows


def _cell(value, fmt):
    return "-" if value is None else format(value, fmt)


def _row_line(r):
    return (
        f"| {r['piece']} | {r['classes']:,} | {r['images']:,} | {_cell(r['seconds'], '.3f')} "
        f"| {_cell(r['peak_mb'], ',.0f')} | {r['runs']} | {r['note']} |"
    )


def markdown(rows, machine, note):
    lines = [
        f"Machine: {machine['cpu_count']} CPUs, {machine['ram_gb']} GB RAM, "
        f"{machine['platform']}; TensorFlow {machine['tensorflow']}, Keras {machine['keras']}; "
        f"commit {machine['commit']}.",
        f"Load average at start {machine['load_average_start'][0]:.2f}, at end "
        f"{machine['load_average_end'][0]:.2f} (1 min). Machine state (--note): {note}.",
        f"Seconds: wall clock, median of the runs; {_MEMORY_METHOD}.",
        f"Command: {shlex.join(machine['argv'])}",
        "",
        "| piece | K | N | seconds | peak MB | runs | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    lines.extend(_row_line(r) for r in rows)
    return "\n".join(lines) + "\n"


def _models_at(k):
    """The presets of --models to time at K classes."""
    presets = []
    for item in FLAGS.models:
        preset, _, at = item.partition("@")
        if not at or int(at) == k:
            presets.append(preset)
    return presets


def main(argv):
    del argv
    if FLAGS.child:
        child(FLAGS.child, FLAGS.child_classes, FLAGS.images)
        return
    logging.set_verbosity(logging.INFO)
    ks = sorted(int(k) for k in FLAGS.classes)
    n = FLAGS.images
    if n < ks[-1]:
        raise app.UsageError(f"--images={n} must be >= the largest of --classes ({ks[-1]}).")
    groups = GROUPS if FLAGS.pieces == ["all"] else tuple(FLAGS.pieces)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise app.UsageError(f"--pieces: unknown {sorted(unknown)}; known: {', '.join(GROUPS)}.")
    for item in FLAGS.models:
        get_preset(item.partition("@")[0])  # an unknown preset fails here, not in a child
    machine = _machine()
    start = time.perf_counter()
    rows, root, tmp = [], "", None
    if "split" in groups:
        tmp = tempfile.mkdtemp(prefix="scale_split_", dir=FLAGS.files_dir)
        root = os.path.join(tmp, "images")
        made = time.perf_counter()
        write_image_tree(root, n)
        logging.info("Wrote %d empty image files in %.0f s", n, time.perf_counter() - made)
    try:
        for k in ks:
            for group in groups:
                if group == "split" and k != ks[-1]:
                    continue  # K only bounds the label check
                names = [group]
                if group == "model":
                    names = [f"model:{p}" for p in _models_at(k)]
                for name in names:
                    for row in _run_child(name, k, n, root):
                        rows.append(row)
                        print(_row_line(row), flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    first = {}
    for i, row in enumerate(rows):
        first.setdefault(row["piece"], i)
    # Grouped as --pieces lists them, a piece's Ks together.
    rows.sort(key=lambda r: (GROUPS.index(r["group"]), first[r["piece"]], r["classes"]))
    machine["load_average_end"] = os.getloadavg()
    machine["argv"] = ["python", "benchmarks/scale.py", *sys.argv[1:]]
    machine["total_seconds"] = round(time.perf_counter() - start, 1)
    text = markdown(rows, machine, FLAGS.note)
    print("\n" + text)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "scale.md"), "w") as f:
        f.write(f"# benchmarks/scale.py\n\n{text}\nTotal {machine['total_seconds']:.0f} s.\n")
    with open(os.path.join(FLAGS.out, "scale.json"), "w") as f:
        json.dump(
            {"machine": machine, "note": FLAGS.note, "memory": _MEMORY_METHOD, "rows": rows},
            f,
            indent=2,
        )
    logging.info(
        "Wrote scale.md and scale.json in %s (%.0f s)", FLAGS.out, machine["total_seconds"]
    )


if __name__ == "__main__":
    app.run(main)
