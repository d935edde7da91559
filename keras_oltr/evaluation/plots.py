"""PNG plots of an evaluation, drawn from its `EvaluationResult` alone.

Figures are rendered with matplotlib's Agg canvas directly (no pyplot), so nothing
here changes the process-wide backend or opens a window.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_oltr.evaluation.results import EvaluationResult, ScoreHistogram
from keras_oltr.shot_groups import SHOT_GROUPS

GROUP_COLORS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}
_DPI = 100


def _as_float(values: Sequence[float | None]) -> np.ndarray:
    """Values with None (undefined) -> float array with NaN."""
    return np.array([np.nan if v is None else v for v in values], np.float64)


def _save(figure: Figure, path: str) -> str:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI, format="png")
    return path


def plot_per_class_accuracy(metrics: EvaluationResult, path: str) -> str:
    """Per-class closed-set accuracy vs train count (log x), coloured by shot group."""
    per_class = metrics.per_class
    counts = np.maximum(np.asarray(per_class.train_count, np.float64), 1.0)
    accuracy = _as_float(per_class.closed_accuracy)
    groups = np.asarray(per_class.group)
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    for name in SHOT_GROUPS:
        mask = (groups == name) & np.isfinite(accuracy)
        axes.scatter(
            counts[mask],
            100 * accuracy[mask],
            s=10,
            alpha=0.7,
            c=GROUP_COLORS[name],
            label=f"{name} ({int(np.sum(groups == name))} classes)",
        )
    axes.set_xscale("log")
    axes.set_xlabel("train images per class (log)")
    axes.set_ylabel("closed-set top-1 accuracy (%)")
    axes.set_ylim(-2, 102)
    axes.set_title(f"Per-class accuracy ({metrics.conventions.shot_groups} shot groups)")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_score_histograms(metrics: EvaluationResult, path: str) -> str:
    """Known vs open histograms of the max probability and, if present, reachability."""
    candidates: dict[str, ScoreHistogram | None] = {
        "msp": metrics.histograms.msp,
        "reachability": metrics.histograms.reachability,
    }
    histograms = {k: v for k, v in candidates.items() if v is not None}
    figure = Figure(figsize=(6 * len(histograms), 4))
    for index, (name, hist) in enumerate(histograms.items()):
        axes = figure.add_subplot(1, len(histograms), index + 1)
        edges = np.asarray(hist.edges, np.float64)
        for part, values, color in (
            ("known", hist.known, "tab:blue"),
            ("open", hist.open, "tab:red"),
        ):
            counts = np.asarray(values, np.float64)
            total = counts.sum()
            density = counts / (total * np.diff(edges)) if total else counts
            axes.stairs(density, edges, color=color, label=f"{part} ({int(total)})", fill=False)
        axes.set_xlabel("max softmax probability" if name == "msp" else "reachability")
        axes.set_ylabel("density")
        axes.set_title(f"{name}: known vs open")
        axes.legend()
    return _save(figure, path)


def plot_threshold_curves(metrics: EvaluationResult, path: str) -> str:
    """Open-set F and accuracies vs the rejection threshold (paper Fig. 8b)."""
    curves = metrics.curves
    thresholds = _as_float(curves.thresholds)
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    axes.plot(thresholds, _as_float(curves.f_measure), "k-", lw=2, label="open-set F")
    axes.plot(thresholds, _as_float(curves.overall), "k--", label="known overall acc.")
    for name, values in zip(SHOT_GROUPS, (curves.many, curves.medium, curves.few), strict=True):
        axes.plot(thresholds, _as_float(values), color=GROUP_COLORS[name], label=name)
    axes.plot(thresholds, _as_float(curves.open_rejection_rate), "g:", label="open rejected")
    axes.axvline(metrics.open.threshold, color="gray", lw=1, label="threshold")
    selection = metrics.threshold_selection
    if selection:
        axes.axvline(selection.threshold, color="purple", lw=1, ls="--", label="val-chosen")
    axes.set_xlabel("rejection threshold on max probability")
    axes.set_ylabel("F / accuracy / rate")
    axes.set_ylim(-0.02, 1.02)
    axes.legend(fontsize=8, loc="best")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_open_assignment(metrics: EvaluationResult, path: str) -> str:
    """How open images are classified: taken for many / medium / few classes, rejected."""
    assignment = metrics.open_assignment
    labels = [*SHOT_GROUPS, "rejected"]
    accepted = [*dataclasses.astuple(assignment.accepted), assignment.rejected]
    argmax = [*dataclasses.astuple(assignment.argmax), 0]
    positions = np.arange(len(labels))
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    threshold = metrics.open.threshold
    axes.bar(positions - 0.2, accepted, width=0.4, label=f"threshold {threshold:g}")
    axes.bar(positions + 0.2, argmax, width=0.4, label="argmax, no rejection", alpha=0.6)
    axes.set_xticks(positions, labels)
    axes.set_ylabel("open test images")
    axes.set_title(f"Open images ({assignment.num_open}) by predicted class group")
    axes.legend()
    return _save(figure, path)


def plot_reliability(metrics: EvaluationResult, path: str) -> str:
    """Reliability diagram of the known test images (accuracy vs confidence per bin)."""
    calibration = metrics.calibration
    edges = np.asarray(calibration.bin_edges, np.float64)
    accuracy = np.nan_to_num(_as_float(calibration.bin_accuracy))
    figure = Figure(figsize=(4.5, 4.5))
    axes = figure.add_subplot()
    axes.bar(edges[:-1], accuracy, width=np.diff(edges), align="edge", edgecolor="k", alpha=0.7)
    axes.plot([0, 1], [0, 1], "k--", lw=1)
    ece = calibration.ece
    axes.set_title("Reliability, ECE " + ("n/a" if ece is None else f"{ece:.4f}"))
    axes.set_xlabel("confidence (max probability)")
    axes.set_ylabel("accuracy")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    return _save(figure, path)


PLOTS = {
    "per_class_accuracy.png": plot_per_class_accuracy,
    "score_histograms.png": plot_score_histograms,
    "threshold_curves.png": plot_threshold_curves,
    "open_assignment.png": plot_open_assignment,
    "reliability.png": plot_reliability,
}


def write_plots(metrics: EvaluationResult, out_dir: str) -> list[str]:
    """Writes every plot of `PLOTS` into ``out_dir``; returns the file names."""
    os.makedirs(out_dir, exist_ok=True)
    for name, plot in PLOTS.items():
        plot(metrics, os.path.join(out_dir, name))
    return list(PLOTS)
