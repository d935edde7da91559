"""The pieces `benchmarks/scale.py` measures, each group run in a child process.

Synthetic long-tailed labels, features, top-1 outputs and logits
(`scale_measure`); every piece goes through the library's public functions.
`scale.py`'s docstring says what each group measures and how.
"""

import dataclasses
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from scale_measure import (
    FLAGS,
    OPEN_FRACTION,
    QUICK_S,
    emit,
    labels_of,
    measure,
    run_piece,
    skip,
    split_path,
    start_peak,
    status_kb,
    top1_outputs,
    write_split_file,
)

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

# ------------------------------------------------------------------ the groups


def group_split(k, n):
    root = FLAGS.child_root
    labels, _ = labels_of(k, n)
    folder = os.path.dirname(root.rstrip("/"))
    split = split_path(k, n, folder)
    write_split_file(split, labels)
    broken = os.path.join(folder, f"empty_k{k}.txt")
    write_split_file(broken, labels, prefix="e")
    run_piece("split file: read_split_file", k, n, lambda: read_split_file(split))

    def load(data_root, split_file=split):
        return SplitFileDataset(
            data_root=data_root, split_files={"train": split_file}, num_classes=k, image_size=8
        )

    where = f"under {os.path.dirname(folder)}"
    run_piece(
        "split file: load + check_files (sound images)",
        k,
        n,
        lambda: load(root),
        note=f"N hard links to one 8x8 PNG {where}",
    )

    def refused(data_root, split_file, found):
        try:
            load(data_root, split_file)
        except SplitFileError as error:
            found.append(error.counts)
        else:
            raise AssertionError(f"{split_file} over {data_root} loaded")

    empty = tempfile.mkdtemp(prefix="scale_empty_")
    for piece, args, what in (
        ("every image empty", (root, broken), f"N empty files {where}"),
        ("all missing", (empty, split), "an empty folder"),
    ):
        found = []
        seconds, runs, peak = measure(
            lambda args=args, found=found: refused(*args, found), FLAGS.repeats
        )
        counts = ", ".join(f"{kind} {count:,}" for kind, count in found[0].items())
        note = f"{what}; one SplitFileError: {counts}"
        emit(f"split file: load + check_files ({piece})", k, n, seconds, runs, peak, note)
    os.rmdir(empty)
    os.remove(split)
    os.remove(broken)


def group_samplers(k, n):
    labels, _ = labels_of(k, n)
    run_piece(
        "sampler: random order (baseline)", k, n, lambda: epoch_order(labels, n, seed=0, epoch=0)
    )
    run_piece(
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
    labels, counts = labels_of(k, n)
    feature_gb = n * dim * 4 / 1e9
    bank_rows = int(np.minimum(counts, per_class).sum())
    bank_gb = bank_rows * dim * 4 / 1e9
    # The features and the pass's copies of them, the bank and setting it (at most
    # 1.5x the bank: benchmarks/results/scale.md).
    estimate_gb = feature_gb * 3 + 2.5 * bank_gb
    if estimate_gb > FLAGS.memory_gb:
        for piece in ("centroids", "bank pass", "bank selection", "bank set", "knn score"):
            skip(f"features: {piece}", k, n, estimate_gb)
        return
    rng = np.random.default_rng(1)
    features = rng.standard_normal((n, dim), dtype=np.float32)
    data = FeatureBatches(features, labels, k)
    model = _identity_model(dim)
    batch = FLAGS.feature_batch
    note = f"D={dim}, batches of {batch} through an identity model"
    run_piece(
        "features: centroids (class_mean_features)",
        k,
        n,
        lambda: class_mean_features(model, data, batch_size=batch),
        note=note,
    )
    run_piece(
        "features: bank pass (train_feature_bank)",
        k,
        n,
        lambda: train_feature_bank(model, data, per_class, batch_size=batch),
        note=f"{note}; at most {per_class} a class",
    )
    run_piece(
        "features: bank selection (balanced_bank)",
        k,
        n,
        lambda: balanced_bank(features, labels, per_class),
        note=f"at most {per_class} a class: {bank_rows:,} rows",
    )
    bank, _ = balanced_bank(features, labels, per_class)
    held = []
    run_piece(
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
    run_piece(
        f"features: knn score of one batch of {FLAGS.batch}",
        k,
        n,
        lambda: score(queries),
        note=f"bank of {bank.shape[0]:,}",
    )


def group_metrics(k, n):
    _, counts = labels_of(k, n)
    rng = np.random.default_rng(2)
    _metrics_from_top1(k, n, counts, rng)
    _metrics_from_logits(k, n, counts, rng)


def _metrics_from_top1(k, n, counts, rng):
    pred, prob, labels = top1_outputs(rng, n, k)
    reach = rng.gamma(2.0, 1.0, n)
    v_pred, v_prob, v_labels = top1_outputs(rng, max(n // 5, 1), k)
    val = {"predicted_class": v_pred, "max_probability": v_prob, "labels": v_labels}

    def top1():
        return evaluate_top1_predictions(pred, prob, labels, counts, reachability=reach, val=val)

    run_piece(
        "metrics: evaluate_top1_predictions", k, n, top1, note=f"{len(v_pred):,} val predictions"
    )
    result = top1()
    out = tempfile.mkdtemp(prefix="scale_report_")

    def report():
        files = write_plots(result, out)
        write_report(result, out, model_name="oltr", dataset_name="synthetic", plot_files=files)

    run_piece("report: write_plots + write_report", k, n, report, repeats=1)
    shutil.rmtree(out)


def _metrics_from_logits(k, n, counts, rng):
    rows = min(n, int(FLAGS.logits_gb * 1e9 // (4 * k)))
    logits_gb = rows * k * 4 / 1e9
    note = f"N capped at {rows:,} ([N, K] float32 = {logits_gb:.2f} GB, --logits_gb)"
    if 8 * logits_gb > FLAGS.memory_gb:  # the logits, then about 7x them before issue 25
        skip("metrics: evaluate_predictions (logits)", k, rows, 8 * logits_gb)
        return
    logits = rng.standard_normal((rows, k), dtype=np.float32)
    labels = rng.integers(0, k, rows)
    labels[rng.random(rows) < OPEN_FRACTION] = -1
    run_piece(
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
        skip(f"{name}: train step", k, n, _model_gb(config, k))
        return
    mc = dataclasses.replace(config.model, backbone_weights=None)  # no download
    size, batch = FLAGS.image_size, FLAGS.batch
    _, counts = labels_of(k, n)
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
    base = start_peak()
    seconds, _, peak = measure(build, 1)
    model = held.pop()
    params = model.count_params()
    emit(f"{name}: build + compile", k, n, seconds, 1, peak, f"{params / 1e6:.1f}M parameters")
    start = time.perf_counter()
    model.train_on_batch(images, labels)
    first = time.perf_counter() - start
    steps = []
    while len(steps) < FLAGS.model_steps and not (steps and steps[0] >= QUICK_S):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        steps.append(time.perf_counter() - start)
    trained_peak = (status_kb("VmHWM") - base) / 1024
    emit(
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
    run_piece(f"{name}: inference batch", k, n, lambda: infer(images), FLAGS.model_steps, note)


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
