"""Model-level evaluation: run a Keras model over a dataset's splits, report, plot.

The model is called as ``model(images, training=False)`` and returns a dict with at
least "probabilities" (or "logits") and, for the OLTR model, "reachability". Only
the top-1 class and max probability of each image are kept, so memory is O(N).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import keras
import numpy as np
from absl import logging

from keras_oltr import open_scores
from keras_oltr.evaluation.metrics import evaluate_top1_predictions
from keras_oltr.evaluation.plots import write_plots
from keras_oltr.evaluation.report import write_report
from keras_oltr.evaluation.results import EvaluationResult
from keras_oltr.inference import eval_batches, inference_function, model_images, num_batches
from keras_oltr.open_scores import PAPER_THRESHOLD
from keras_oltr.shot_groups import check_convention, check_train_counts

TEST_SPLITS = ("test", "open")
VAL_SPLITS = ("val", "open_val")
# Share of a test split's images that may be unreadable before evaluation fails.
DEFAULT_MAX_UNREADABLE_FRACTION = 0.01


def collect_top1_outputs(
    model: Any,
    batches: Iterable[Any],
    *,
    description: str = "",
    total: int | None = None,
    score_context: Mapping[str, Any] | None = None,
    scale_grid: Any = open_scores.DEFAULT_SCALE_GRID,
) -> dict[str, np.ndarray]:
    """Runs ``model`` over ``(images, labels)`` batches and keeps top-1 outputs and open scores.

    Args:
        model: callable as ``model(images, training=False)`` returning a dict with
            "probabilities" or "logits", and optionally "reachability" (and the OLTR
            outputs "direct_feature", "meta_embedding" that further scores need).
        batches: iterable of ``(images, labels)``; ``images`` may be
            `eval_dataset(defer_resize=True)`'s dict, finished before the call.
        description: shown in the log line before the progress bar.
        total: the number of batches, for the progress bar (None: unknown).
        score_context: `open_scores.score_context(model)` (centroids, trained s);
            None computes it from ``model`` when it is a Keras model.
        scale_grid: the s' values of the "msp_rescaled" score.

    Returns:
        dict of [N] arrays: "predicted_class", "max_probability", "labels",
        "reachability" (None if the model has none), "open_scores" ({name: [N]},
        `open_scores.compute_scores`), and "num_classes".
    """
    if score_context is None:
        score_context = open_scores.score_context(model)

    def call(images):
        return model(model_images(images), training=False)

    if isinstance(model, keras.Model) and keras.backend.backend() != "tensorflow":
        # One compiled call per batch shape instead of op-by-op eager execution.
        call = inference_function(model)
    predicted, max_probability, labels, reachability = [], [], [], []
    scores: dict[str, list[np.ndarray]] = {}
    num_classes = None
    has_reachability = None
    logging.info("Evaluating %s", description)
    progbar = keras.utils.Progbar(total, unit_name="batch")
    for step, (images, batch_labels) in enumerate(batches):
        outputs = call(images)
        if not isinstance(outputs, Mapping):
            raise ValueError(
                "The model must return a dict with 'probabilities' or 'logits'. "
                f"Received: {type(outputs).__name__}"
            )
        # The one boundary between the model and the evaluation: every output becomes
        # a numpy array here, whatever the backend gave (tensors, or numpy already).
        outputs = {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}
        if "probabilities" in outputs:
            probabilities = outputs["probabilities"]
        elif "logits" in outputs:
            probabilities = keras.ops.convert_to_numpy(
                keras.ops.softmax(outputs["logits"], axis=-1)
            )
        else:
            raise ValueError(
                "The model must return 'probabilities' or 'logits'. "
                f"Received keys: {sorted(outputs)}"
            )
        probabilities = probabilities.reshape(probabilities.shape[0], -1)
        num_classes = probabilities.shape[1]
        top = np.argmax(probabilities, axis=1)
        predicted.append(top)
        max_probability.append(probabilities[np.arange(top.size), top])
        labels.append(np.asarray(keras.ops.convert_to_numpy(batch_labels)).reshape(-1))
        if has_reachability is None:
            has_reachability = "reachability" in outputs
        if has_reachability:
            reachability.append(outputs["reachability"].reshape(-1))
        if "logits" in outputs:
            batch_scores = open_scores.compute_scores(
                {**outputs, "probabilities": probabilities},
                score_context,
                scale_grid=scale_grid,
            )
            for name, value in batch_scores.items():
                scores.setdefault(name, []).append(keras.ops.convert_to_numpy(value).reshape(-1))
        progbar.update(step + 1)
    if num_classes is None:
        raise ValueError(f"No batches to evaluate in {description or 'the dataset'}.")
    return {
        "predicted_class": np.concatenate(predicted).astype(np.int64),
        "max_probability": np.clip(np.concatenate(max_probability).astype(np.float64), 0, 1),
        "labels": np.concatenate(labels).astype(np.int64),
        "reachability": np.concatenate(reachability) if has_reachability else None,
        "open_scores": {k: np.concatenate(v).astype(np.float64) for k, v in scores.items()},
        "num_classes": num_classes,
    }


def _concat_outputs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    reach = [p["reachability"] for p in parts]
    names = set.intersection(*(set(p["open_scores"]) for p in parts))
    return {
        key: np.concatenate([p[key] for p in parts])
        for key in ("predicted_class", "max_probability", "labels")
    } | {
        "reachability": None if any(r is None for r in reach) else np.concatenate(reach),
        "open_scores": {n: np.concatenate([p["open_scores"][n] for p in parts]) for n in names},
    }


def _image_counts(dataset, split, outputs, max_fraction):
    """{listed, evaluated, skipped} of a split; raises when too many were unreadable."""
    evaluated = int(len(outputs["labels"]))
    try:
        listed = int(dataset.num_examples(split))
    except (AttributeError, TypeError, ValueError):
        listed = evaluated
    skipped = max(listed - evaluated, 0)
    if listed and skipped / listed > max_fraction:
        unreadable = list(getattr(dataset, "unreadable_files", {}) or {})[:5]
        raise ValueError(
            f"Split {split!r}: {skipped} of {listed} listed images could not be read, more "
            f"than max_unreadable_fraction={max_fraction:g} (--max_unreadable_fraction). "
            f"First: {unreadable}"
        )
    return {"listed": listed, "evaluated": evaluated, "skipped": skipped}


def evaluate_model(
    model: Any,
    dataset: Any,
    out_dir: str,
    *,
    threshold: float = PAPER_THRESHOLD,
    convention: str = "strict",
    batch_size: int = 256,
    model_name: str = "oltr",
    extra: Mapping[str, Any] | None = None,
    max_unreadable_fraction: float = DEFAULT_MAX_UNREADABLE_FRACTION,
) -> EvaluationResult:
    """Evaluates ``model`` on ``dataset`` and writes metrics.json, report.md and plots.

    Test images are the "test" split plus the "open" split (when present; labels
    -1). When the dataset has a "val" split (and optionally "open_val"), it is used
    to choose a rejection threshold that is reported beside ``threshold``.

    Args:
        model: a Keras model returning a dict (see module docstring).
        dataset: object with ``eval_dataset(split, batch_size)``, ``has_split(split)``,
            ``train_counts``, ``class_names`` and ``name``; one whose
            ``can_defer_resize`` is true is asked for ``defer_resize=True`` batches
            when the backend has an accelerator (`eval_batches`).
        out_dir: output folder.
        threshold: open-set rejection threshold on the max probability.
        convention: shot-group convention, "strict" or "inclusive".
        batch_size: evaluation batch size.
        model_name: written into the report; compare.py groups runs by it.
        extra: optional JSON-serialisable information for metrics.json.
        max_unreadable_fraction: evaluation fails when more than this share of a
            test split's listed images cannot be read; the listed / evaluated /
            skipped counts go to metrics.json's ``extra.image_counts``.

    Returns:
        The `EvaluationResult` written to metrics.json.
    """
    check_convention(convention)
    train_counts = check_train_counts(dataset.train_counts)
    splits = [s for s in TEST_SPLITS if s == "test" or dataset.has_split(s)]
    if not dataset.has_split("test"):
        raise ValueError(f"Dataset {dataset.name!r} has no 'test' split.")
    context = open_scores.score_context(model)

    def collect(split):
        return collect_top1_outputs(
            model,
            eval_batches(dataset, split, batch_size),
            description=f"split {split!r}",
            total=num_batches(dataset, split, batch_size),
            score_context=context,
        )

    parts = {split: collect(split) for split in splits}
    image_counts = {
        split: _image_counts(dataset, split, part, max_unreadable_fraction)
        for split, part in parts.items()
    }
    test = _concat_outputs(list(parts.values()))
    val, val_splits = None, []
    if dataset.has_split("val"):
        val_splits = [s for s in VAL_SPLITS if dataset.has_split(s)]
        val = _concat_outputs([collect(split) for split in val_splits])
        val.pop("reachability")
    metrics = evaluate_top1_predictions(
        test["predicted_class"],
        test["max_probability"],
        test["labels"],
        train_counts,
        reachability=test["reachability"],
        threshold=threshold,
        convention=convention,
        val=val,
        open_scores=test["open_scores"],
    )
    plot_files = write_plots(metrics, out_dir)
    info = {"splits": splits, "val_splits": val_splits, "image_counts": image_counts}
    write_report(
        metrics,
        out_dir,
        model_name=model_name,
        dataset_name=str(getattr(dataset, "name", "dataset")),
        extra=info | dict(extra or {}),
        plot_files=plot_files,
    )
    return metrics
