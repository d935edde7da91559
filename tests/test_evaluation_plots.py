"""Tests of the deployed score's curves / histogram / assignment and of the plots' data.

The figures are checked through their matplotlib data (lines, bars, axis labels),
not their pixels: every score is drawn on its own axis, labelled with its name.
"""

import numpy as np
import pytest
from matplotlib.container import BarContainer
from matplotlib.patches import StepPatch

from keras_oltr import open_scores as S
from keras_oltr.evaluation import metrics as M
from keras_oltr.evaluation import plots as P
from keras_oltr.evaluation.metrics_file import MetricsDocument
from keras_oltr.evaluation.results import EvaluationResult
from keras_oltr.shot_groups import SHOT_GROUPS

# many, many, medium, medium, few, few (strict)
TRAIN_COUNTS = np.array([300, 150, 60, 30, 10, 5])


def _split(rng, n_known, n_open, score_range):
    """Top-1 predictions with an MSP that rejects nothing at 0.1 and a far-off open score."""
    k = TRAIN_COUNTS.size
    labels = np.r_[np.arange(n_known) % k, np.full(n_open, -1)]
    pred = np.where(
        rng.random(labels.size) < 0.8, np.maximum(labels, 0), rng.integers(0, k, labels.size)
    )
    prob = rng.uniform(0.4, 1.0, labels.size)  # uninformative, never below 0.1
    low, high = score_range
    middle = (low + high) / 2
    score = np.where(
        labels >= 0,
        rng.uniform(middle - 0.2 * (high - low), high, labels.size),
        rng.uniform(low, middle + 0.2 * (high - low), labels.size),
    )
    return pred, prob, labels, score


def deployed_metrics(name="reachability", score_range=(5.0, 8.0), seed=0):
    """(An evaluation whose validation picks ``name``, valued in ``score_range``; test arrays)."""
    rng = np.random.default_rng(seed)
    pred, prob, labels, score = _split(rng, 240, 80, score_range)
    val_pred, val_prob, val_labels, val_score = _split(rng, 120, 40, score_range)
    reachability = score if name == "reachability" else None
    return M.evaluate_top1_predictions(
        pred,
        prob,
        labels,
        TRAIN_COUNTS,
        reachability=reachability,
        open_scores={name: score},
        val={
            "predicted_class": val_pred,
            "max_probability": val_prob,
            "labels": val_labels,
            "open_scores": {name: val_score},
        },
    ), (pred, labels, score)


def _vertical_lines(axes):
    return [
        line
        for line in axes.get_lines()
        if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]
    ]


def test_deployed_score_curves_follow_the_decision_rule():
    metrics, (pred, labels, score) = deployed_metrics()
    deployed, selection = metrics.deployed, metrics.threshold_selection
    assert selection.score == deployed.score == "reachability"
    assert deployed.threshold == selection.threshold and 5.0 <= deployed.threshold <= 8.0
    thresholds = np.asarray(deployed.curves.thresholds)
    assert thresholds.size == 101
    assert thresholds[0] == pytest.approx(score.min()) and thresholds[-1] == pytest.approx(
        score.max()
    )
    for index in range(0, 101, 10):
        decided = S.decide_numpy(pred, score, thresholds[index])
        point = M.open_set_metrics_from_decisions(decided, pred, labels, TRAIN_COUNTS)
        for key in (
            "f_measure",
            "precision",
            "recall",
            "overall",
            "open_rejection_rate",
            *SHOT_GROUPS,
        ):
            assert getattr(deployed.curves, key)[index] == pytest.approx(point[key], abs=1e-12)
    # The assignment at the chosen rule is the selection's test operating point.
    assignment = deployed.open_assignment
    assert assignment.rejected / assignment.num_open == pytest.approx(
        selection.test.open_rejection_rate
    )
    assert assignment.rejected > 0 and metrics.open_assignment.rejected == 0
    histogram = deployed.histogram
    assert sum(histogram.known) + sum(histogram.open) == score.size
    assert histogram.edges[0] == thresholds[0] and histogram.edges[-1] == thresholds[-1]


def test_score_threshold_curves_compare_in_float32_and_reject_non_finite():
    rng = np.random.default_rng(3)
    labels = np.r_[np.arange(60) % 6, np.full(20, -1)]
    pred = np.maximum(labels, 0)
    score = np.float32(rng.uniform(-3, 10, labels.size)).astype(np.float64)
    score[:4] = [np.nan, np.inf, -np.inf, 1e300]  # never accepted by the rule
    thresholds = np.r_[score[10] + 1e-12, np.linspace(-4, 11, 9), -1e300, 1e300]
    curves = M.score_threshold_curves(pred, score, labels, TRAIN_COUNTS, thresholds=thresholds)
    for index, threshold in enumerate(thresholds):
        decided = S.decide_numpy(pred, score, threshold)
        point = M.open_set_metrics_from_decisions(decided, pred, labels, TRAIN_COUNTS)
        for key in ("f_measure", "overall", "open_rejection_rate", *SHOT_GROUPS):
            assert curves[key][index] == pytest.approx(point[key], abs=1e-12), (key, threshold)


def test_older_documents_without_deployed_still_load():
    metrics, _ = deployed_metrics()
    data = metrics.to_dict()
    assert EvaluationResult.from_dict(data) == metrics
    del data["deployed"]
    old = EvaluationResult.from_dict(data)
    assert old.deployed is None
    document = MetricsDocument(
        schema_version=1,
        model_name="oltr",
        dataset_name="fake",
        created="2025-01-01T00:00:00+00:00",
        versions={},
        metrics=old,
        extra=None,
    ).to_dict()
    assert "deployed" not in document["metrics"]
    # The curves of an older file keep the chosen threshold off the msp axis.
    figure = P.figure_threshold_curves(old)
    (axes,) = figure.axes
    assert [line.get_xdata()[0] for line in _vertical_lines(axes)] == [pytest.approx(0.1)]


@pytest.mark.parametrize(
    ("name", "score_range"), [("reachability", (5.0, 8.0)), ("energy", (-3.0, 10.0))]
)
def test_threshold_curves_draw_each_score_on_its_own_axis(name, score_range):
    metrics, (_, _, score) = deployed_metrics(name, score_range)
    threshold = metrics.threshold_selection.threshold
    assert metrics.deployed.score == name and not 0.0 <= threshold <= 1.0
    msp_axes, deployed_axes = P.figure_threshold_curves(metrics).axes

    assert "msp" in msp_axes.get_xlabel() and name not in msp_axes.get_xlabel()
    assert name in deployed_axes.get_xlabel()
    for line in msp_axes.get_lines():
        x = np.asarray(line.get_xdata(), np.float64)
        assert np.all((x >= 0) & (x <= 1)), line.get_label()
    assert msp_axes.get_xlim()[1] < 1.1
    low, high = min(score.min(), threshold), max(score.max(), threshold)
    curves = [
        line for line in deployed_axes.get_lines() if line not in _vertical_lines(deployed_axes)
    ]
    assert len(curves) == 6  # F, overall, many, medium, few, open rejected
    for line in curves:
        x = np.asarray(line.get_xdata())
        assert x.min() == pytest.approx(low) and x.max() == pytest.approx(high)

    (fixed,) = _vertical_lines(msp_axes)
    assert fixed.get_xdata()[0] == pytest.approx(metrics.open.threshold)
    (chosen,) = _vertical_lines(deployed_axes)
    assert chosen.get_xdata()[0] == pytest.approx(threshold)
    assert "val-chosen" in chosen.get_label()


def test_score_histograms_show_msp_and_the_deployed_score():
    metrics, (_, _, score) = deployed_metrics("energy", (-3.0, 10.0))
    panels = P.figure_score_histograms(metrics).axes
    assert [a.get_xlabel() for a in panels] == [P.MSP_LABEL, "energy"]
    for axes, (low, high) in zip(panels, [(0.0, 1.0), (score.min(), score.max())], strict=True):
        for patch in axes.patches:
            if isinstance(patch, StepPatch):
                edges = patch.get_data().edges
                assert edges[0] == pytest.approx(low) and edges[-1] == pytest.approx(high)
    (chosen,) = _vertical_lines(panels[1])
    assert chosen.get_xdata()[0] == pytest.approx(metrics.deployed.threshold)

    # Reachability deployed: its panel is not repeated.
    metrics, _ = deployed_metrics("reachability")
    panels = P.figure_score_histograms(metrics).axes
    assert [a.get_xlabel() for a in panels] == [P.MSP_LABEL, "reachability"]


def test_open_assignment_bars_differ_when_the_deployed_rule_rejects():
    metrics, _ = deployed_metrics()
    (axes,) = P.figure_open_assignment(metrics).axes
    containers = [c for c in axes.containers if isinstance(c, BarContainer)]
    heights = [[bar.get_height() for bar in c] for c in containers]
    fixed, deployed, argmax = heights
    assert fixed[-1] == 0 and deployed[-1] == metrics.deployed.open_assignment.rejected > 0
    assert fixed != deployed
    assert argmax[:3] == list(
        (
            metrics.open_assignment.argmax.many,
            metrics.open_assignment.argmax.medium,
            metrics.open_assignment.argmax.few,
        )
    )
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any("reachability" in text and "val-chosen" in text for text in legend)


def test_msp_deployed_draws_one_panel_with_both_thresholds(tmp_path):
    rng = np.random.default_rng(1)
    n, k = 300, TRAIN_COUNTS.size
    labels = rng.integers(-1, k, n)
    logits = rng.normal(size=(n, k)) * 2
    metrics = M.evaluate_predictions(
        logits,
        labels,
        TRAIN_COUNTS,
        from_logits=True,
        val={"logits": logits[:100], "labels": labels[:100]},
    )
    assert metrics.deployed.score == "msp"
    (axes,) = P.figure_threshold_curves(metrics).axes
    lines = sorted(line.get_xdata()[0] for line in _vertical_lines(axes))
    assert lines == pytest.approx(sorted([0.1, metrics.deployed.threshold]))
    assert len(P.figure_score_histograms(metrics).axes) == 1
    assert set(P.write_plots(metrics, str(tmp_path))) == set(P.PLOTS)
    for name in P.PLOTS:
        assert (tmp_path / name).stat().st_size > 1000
