"""PNG plots of an evaluation, drawn from its `EvaluationResult` alone.

Each ``figure_*`` function builds a matplotlib `Figure` (its data can be read back,
e.g. in tests); ``plot_*`` saves it as a PNG and `write_plots` writes them all.
Every score is drawn on its own axis, labelled with its name: the max probability
with the paper's fixed threshold, and the validation-chosen ("deployed") score with
its chosen threshold (`EvaluationResult.deployed`). Figures are rendered with
matplotlib's Agg canvas directly (no pyplot), so nothing here changes the
process-wide backend or opens a window.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_oltr.evaluation.results import EvaluationResult, ScoreHistogram, ThresholdCurves
from keras_oltr.evaluation.tables import score_label
from keras_oltr.open_scores import MSP
from keras_oltr.shot_groups import SHOT_GROUPS

GROUP_COLORS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}
_DPI = 100
MSP_LABEL = "msp (max softmax probability)"
FIXED_COLOR, CHOSEN_COLOR = "gray", "purple"


def _as_float(values: Sequence[float | None]) -> np.ndarray:
    """Values with None (undefined) -> float array with NaN."""
    return np.array([np.nan if v is None else v for v in values], np.float64)


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str) -> str:
    figure.savefig(path, dpi=_DPI, format="png")
    return path


def _deployed_label(metrics: EvaluationResult) -> str | None:
    """The deployed score's name with its parameters, None without one."""
    deployed = metrics.deployed
    return None if deployed is None else score_label(deployed.score, deployed.score_params)


def _chosen_on_msp_axis(metrics: EvaluationResult) -> float | None:
    """The validation-chosen threshold when the chosen score is the max probability itself."""
    selection = metrics.threshold_selection
    if selection is None or selection.score not in (None, MSP):  # None: older files, msp
        return None
    return selection.threshold


def _fixed_line(metrics: EvaluationResult) -> tuple[float, str, str, str] | None:
    threshold = metrics.open.threshold
    return None if threshold is None else (threshold, FIXED_COLOR, "-", f"fixed {threshold:g}")


def _chosen_line(threshold: float | None) -> tuple[float, str, str, str] | None:
    if threshold is None:
        return None
    return (threshold, CHOSEN_COLOR, "--", f"val-chosen {threshold:.4g}")


def figure_per_class_accuracy(metrics: EvaluationResult) -> Figure:
    """Per-class closed-set accuracy vs train count (log x), coloured by shot group."""
    per_class = metrics.per_class
    counts = np.maximum(np.asarray(per_class.train_count, np.float64), 1.0)
    accuracy = _as_float(per_class.closed_accuracy)
    groups = np.asarray(per_class.group)
    figure = _new_figure(7, 4.5)
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
    figure.tight_layout()
    return figure


def _draw_histogram(axes, hist: ScoreHistogram, label: str, title: str, lines) -> None:
    edges = np.asarray(hist.edges, np.float64)
    for part, values, color in (("known", hist.known, "tab:blue"), ("open", hist.open, "tab:red")):
        counts = np.asarray(values, np.float64)
        total = counts.sum()
        density = counts / (total * np.diff(edges)) if total else counts
        axes.stairs(density, edges, color=color, label=f"{part} ({int(total)})", fill=False)
    for line in filter(None, lines):
        axes.axvline(line[0], color=line[1], ls=line[2], lw=1, label=line[3])
    axes.set_xlabel(label)
    axes.set_ylabel("density")
    axes.set_title(title)
    axes.legend(fontsize=8)


def figure_score_histograms(metrics: EvaluationResult) -> Figure:
    """Known vs open histograms: max probability, the deployed score, reachability.

    Each score on its own axis with its thresholds; the deployed score's panel is
    left out when it is msp itself, reachability's when it is the deployed score.
    """
    deployed = metrics.deployed
    chosen_msp = _chosen_on_msp_axis(metrics)
    panels = [
        (
            metrics.histograms.msp,
            MSP_LABEL,
            "msp: known vs open",
            [_fixed_line(metrics), _chosen_line(chosen_msp)],
        )
    ]
    if deployed is not None and chosen_msp is None:
        label = _deployed_label(metrics)
        line = _chosen_line(deployed.threshold)
        panels.append((deployed.histogram, label, f"deployed {label}: known vs open", [line]))
    reachability = metrics.histograms.reachability
    if reachability is not None and (deployed is None or deployed.score != "reachability"):
        panels.append((reachability, "reachability", "reachability: known vs open", []))
    figure = _new_figure(6 * len(panels), 4)
    for index, (hist, label, title, lines) in enumerate(panels):
        _draw_histogram(figure.add_subplot(1, len(panels), index + 1), hist, label, title, lines)
    figure.tight_layout()
    return figure


def _draw_curves(axes, curves: ThresholdCurves, label: str, title: str, lines) -> None:
    thresholds = _as_float(curves.thresholds)
    axes.plot(thresholds, _as_float(curves.f_measure), "k-", lw=2, label="open-set F")
    axes.plot(thresholds, _as_float(curves.overall), "k--", label="known overall acc.")
    for name, values in zip(SHOT_GROUPS, (curves.many, curves.medium, curves.few), strict=True):
        axes.plot(thresholds, _as_float(values), color=GROUP_COLORS[name], label=name)
    axes.plot(thresholds, _as_float(curves.open_rejection_rate), "g:", label="open rejected")
    for line in filter(None, lines):
        axes.axvline(line[0], color=line[1], ls=line[2], lw=1, label=line[3])
    axes.set_xlabel(f"rejection threshold on {label}")
    axes.set_ylabel("F / accuracy / rate")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(title)
    axes.legend(fontsize=8, loc="best")
    axes.grid(alpha=0.3)


def figure_threshold_curves(metrics: EvaluationResult) -> Figure:
    """Open-set F and accuracies vs the threshold (paper Fig. 8b), one panel per score.

    The max probability with the fixed threshold, and the deployed (validation-chosen)
    score on its own axis with its chosen threshold; one panel when that score is
    msp itself.
    """
    deployed = metrics.deployed
    chosen_msp = _chosen_on_msp_axis(metrics)
    panels = [
        (
            metrics.curves,
            MSP_LABEL,
            "msp (paper's rule)",
            [_fixed_line(metrics), _chosen_line(chosen_msp)],
        )
    ]
    if deployed is not None and chosen_msp is None:
        label = _deployed_label(metrics)
        panels.append(
            (deployed.curves, label, f"deployed: {label}", [_chosen_line(deployed.threshold)])
        )
    figure = _new_figure(6.5 * len(panels), 4.5)
    for index, (curves, label, title, lines) in enumerate(panels):
        _draw_curves(figure.add_subplot(1, len(panels), index + 1), curves, label, title, lines)
    figure.tight_layout()
    return figure


def figure_open_assignment(metrics: EvaluationResult) -> Figure:
    """How open images are classified: taken for many / medium / few classes, rejected.

    Bars at the fixed threshold on the max probability, at the deployed rule (the
    validation-chosen score and threshold) and for argmax without rejection.
    """
    assignment = metrics.open_assignment
    labels = [*SHOT_GROUPS, "rejected"]
    bars = []
    if metrics.open.threshold is not None:
        bars.append((f"msp >= {metrics.open.threshold:g} (fixed)", assignment))
    if metrics.deployed is not None:
        deployed = metrics.deployed
        label = f"{_deployed_label(metrics)} >= {deployed.threshold:.4g} (val-chosen)"
        bars.append((label, deployed.open_assignment))
    heights = [[*dataclasses.astuple(a.accepted), a.rejected] for _, a in bars]
    bars_labels = [label for label, _ in bars] + ["argmax, no rejection"]
    heights.append([*dataclasses.astuple(assignment.argmax), 0])
    positions = np.arange(len(labels))
    width = 0.8 / len(heights)
    figure = _new_figure(7, 4.5)
    axes = figure.add_subplot()
    for index, (label, values) in enumerate(zip(bars_labels, heights, strict=True)):
        offset = (index - (len(heights) - 1) / 2) * width
        axes.bar(positions + offset, values, width=width, label=label)
    axes.set_xticks(positions, labels)
    axes.set_ylabel("open test images")
    axes.set_title(f"Open images ({assignment.num_open}) by predicted class group")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def figure_reliability(metrics: EvaluationResult) -> Figure:
    """Reliability diagram of the known test images (accuracy vs confidence per bin)."""
    calibration = metrics.calibration
    edges = np.asarray(calibration.bin_edges, np.float64)
    accuracy = np.nan_to_num(_as_float(calibration.bin_accuracy))
    figure = _new_figure(4.5, 4.5)
    axes = figure.add_subplot()
    axes.bar(edges[:-1], accuracy, width=np.diff(edges), align="edge", edgecolor="k", alpha=0.7)
    axes.plot([0, 1], [0, 1], "k--", lw=1)
    ece = calibration.ece
    axes.set_title("Reliability, ECE " + ("n/a" if ece is None else f"{ece:.4f}"))
    axes.set_xlabel("confidence (max probability)")
    axes.set_ylabel("accuracy")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    figure.tight_layout()
    return figure


FIGURES = {
    "per_class_accuracy.png": figure_per_class_accuracy,
    "score_histograms.png": figure_score_histograms,
    "threshold_curves.png": figure_threshold_curves,
    "open_assignment.png": figure_open_assignment,
    "reliability.png": figure_reliability,
}


def _saver(make_figure):
    def plot(metrics: EvaluationResult, path: str) -> str:
        return _save(make_figure(metrics), path)

    plot.__name__ = make_figure.__name__.replace("figure_", "plot_")
    plot.__doc__ = f"Saves `{make_figure.__name__}` as a PNG at ``path``; returns ``path``."
    return plot


plot_per_class_accuracy = _saver(figure_per_class_accuracy)
plot_score_histograms = _saver(figure_score_histograms)
plot_threshold_curves = _saver(figure_threshold_curves)
plot_open_assignment = _saver(figure_open_assignment)
plot_reliability = _saver(figure_reliability)
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
