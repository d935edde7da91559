"""Tests of reports, plots, evaluate_model / evaluate_workdir and the CLIs."""

import copy
import importlib.util
import json
import os
import subprocess
import sys

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

from keras_oltr import run_evaluation
from keras_oltr.evaluation import evaluate as E
from keras_oltr.evaluation import metrics as M
from keras_oltr.evaluation import metrics_file as F
from keras_oltr.evaluation import plots as P
from keras_oltr.evaluation import report as R
from keras_oltr.evaluation import tables as T
from keras_oltr.runs import CheckpointNotFoundError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# many, many, medium, medium, few, few (strict)
TRAIN_COUNTS = np.array([300, 150, 60, 30, 10, 5])


class FakeDataset:
    """The evaluation-facing API of keras_oltr.data.LongTailDataset, on random images."""

    name = "fake_lt"
    image_size, channels = 4, 1

    def __init__(self, splits=("test", "open", "val", "open_val"), seed=0):
        rng = np.random.default_rng(seed)
        sizes = {"test": 60, "open": 20, "val": 30, "open_val": 10}
        self._data = {}
        for split in splits:
            labels = (
                np.full(sizes[split], -1)
                if split.startswith("open")
                else np.arange(sizes[split]) % TRAIN_COUNTS.size
            )
            images = rng.normal(size=(sizes[split], 4, 4, 1)).astype("float32")
            self._data[split] = (images, labels.astype("int32"))
        self.train_counts = TRAIN_COUNTS
        self.class_names = [f"class_{i}" for i in range(TRAIN_COUNTS.size)]

    def has_split(self, split):
        return split in self._data

    def eval_dataset(self, split, batch_size):
        return tf.data.Dataset.from_tensor_slices(self._data[split]).batch(batch_size)


def make_model(with_reachability=True):
    inputs = keras.Input((4, 4, 1))
    features = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(TRAIN_COUNTS.size, name="logits")(features)
    outputs = {"logits": logits, "probabilities": keras.layers.Softmax()(logits)}
    if with_reachability:
        outputs["reachability"] = keras.layers.Dense(1, activation="softplus")(features)
    return keras.Model(inputs, outputs)


def sample_metrics(seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    n, k = 400, TRAIN_COUNTS.size
    labels = rng.integers(-1, k, n)
    logits = rng.normal(size=(n, k)) * 2
    return M.evaluate_predictions(
        logits, labels, TRAIN_COUNTS, from_logits=True, reachability=rng.random(n), **kwargs
    )


def assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.std(image[..., :3]) > 0.01  # not a blank canvas


def test_write_report_json_validates_and_markdown_has_table(tmp_path):
    metrics = sample_metrics(val=None)
    document = R.write_report(
        metrics, str(tmp_path), model_name="oltr", dataset_name="fake_lt", extra={"seed": 3}
    )
    with open(tmp_path / "metrics.json") as f:
        loaded = json.load(f)
    F.validate_metrics_json(loaded)
    assert loaded == json.loads(json.dumps(document.to_dict()))
    assert document.metrics == metrics
    assert loaded["metrics"]["conventions"]["shot_groups"] == "strict"
    assert loaded["model_name"] == "oltr" and loaded["dataset_name"] == "fake_lt"
    assert loaded["extra"] == {"seed": 3}
    assert {"numpy", "keras_oltr", "python"} <= set(loaded["versions"])
    report = (tmp_path / "report.md").read_text()
    closed_overall = 100 * metrics.closed.overall
    assert f"{closed_overall:.1f}" in report
    assert f"{metrics.open.f_measure:.3f}" in report
    assert f"{metrics.threshold_free.reachability.auroc:.4f}" in report
    assert "strict" in report and "ECE" in report


def test_report_prints_na_for_empty_group_and_missing_reachability(tmp_path):
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    metrics = M.evaluate_predictions(probs, [0, 1, -1], [200, 150])  # no medium/few
    R.write_report(metrics, str(tmp_path), model_name="plain", dataset_name="tiny")
    report = (tmp_path / "report.md").read_text()
    table_row = next(line for line in report.splitlines() if line.startswith("| plain"))
    # closed medium/few, and the two val-rule columns (no val split)
    assert table_row.count("n/a") == 4
    assert "| reachability    | n/a" in report


def test_validate_metrics_json_reports_problems():
    document = {
        "schema_version": 1,
        "model_name": "oltr",
        "dataset_name": "x",
        "created": "now",
        "versions": {},
        "metrics": sample_metrics().to_dict(),
        "extra": None,
    }
    F.validate_metrics_json(document)
    broken = copy.deepcopy(document)
    del broken["metrics"]["open"]["f_measure"]
    broken["metrics"]["closed"]["many"] = "40.9"
    broken["metrics"]["curves"]["thresholds"][3] = float("nan")
    broken["model_name"] = 7
    with pytest.raises(ValueError) as info:
        F.validate_metrics_json(broken)
    message = str(info.value)
    assert "metrics.open.f_measure: missing" in message
    assert "metrics.closed.many: expected a number, got '40.9'" in message
    assert "metrics.curves.thresholds[3]" in message
    assert "model_name: expected a string, got 7" in message


def test_format_results_table_and_aggregation():
    base = T.results_row(sample_metrics(0), "oltr")
    other = T.results_row(sample_metrics(1), "oltr")
    plain = dict(base, model="plain", closed_few=None)
    table = T.format_results_table([base, plain])
    lines = table.splitlines()
    assert lines[0].startswith("| model") and len(lines) == 4
    assert f"{100 * base['closed_overall']:.1f}" in lines[2]
    assert "n/a" in lines[3]
    aggregated = T.aggregate_rows([base, other, plain])
    assert [row["model"] for row in aggregated] == ["oltr", "plain"]
    values = [base["open_f"], other["open_f"]]
    assert aggregated[0]["open_f"]["mean"] == pytest.approx(np.mean(values))
    assert aggregated[0]["open_f"]["std"] == pytest.approx(np.std(values, ddof=1))
    assert aggregated[1]["closed_few"] == {"mean": None, "std": 0.0, "n": 0}
    text = T.format_results_table(aggregated)
    assert "±" in text and "runs" in text


def test_plots_are_readable_pngs(tmp_path):
    metrics = sample_metrics(val={"logits": np.eye(6)[[0, 1, 2]] * 5, "labels": [0, 1, -1]})
    names = P.write_plots(metrics, str(tmp_path))
    assert set(names) == set(P.PLOTS)
    for name in names:
        assert_png(tmp_path / name)


@pytest.mark.parametrize("with_reachability", [True, False])
def test_evaluate_model_on_fake_dataset(tmp_path, with_reachability):
    keras.utils.set_random_seed(0)
    model = make_model(with_reachability)
    dataset = FakeDataset()
    out_dir = tmp_path / "eval"
    metrics = E.evaluate_model(
        model, dataset, str(out_dir), batch_size=16, model_name="oltr", threshold=0.2
    )

    # Independent recomputation from model.predict over the concatenated splits.
    images = np.concatenate([dataset._data[s][0] for s in ("test", "open")])
    labels = np.concatenate([dataset._data[s][1] for s in ("test", "open")])
    outputs = model.predict(images, verbose=0)
    probs = outputs["probabilities"]
    expected = M.open_set_metrics(
        probs.argmax(1), probs.max(1), labels, TRAIN_COUNTS, threshold=0.2
    )
    assert metrics.open.f_measure == pytest.approx(expected["f_measure"], abs=1e-6)
    assert metrics.counts.num_open_test == 20
    assert metrics.threshold_selection.num_val_open == 10
    reach = metrics.threshold_free.reachability
    if with_reachability:
        assert reach.auroc == pytest.approx(
            M.auroc(labels < 0, -outputs["reachability"].reshape(-1)), abs=1e-6
        )
    else:
        assert reach is None

    document = F.load_metrics_json(str(out_dir / "metrics.json"))
    assert document.model_name == "oltr"
    assert document.extra["splits"] == ["test", "open"]
    assert document.metrics == metrics
    assert (out_dir / "report.md").stat().st_size > 500
    for name in P.PLOTS:
        assert_png(out_dir / name)


def test_evaluate_model_without_open_or_val_splits(tmp_path):
    metrics = E.evaluate_model(make_model(), FakeDataset(splits=("test",)), str(tmp_path))
    assert metrics.counts.num_open_test == 0
    assert metrics.threshold_selection is None
    assert metrics.open.open_rejection_rate is None


def _write_workdir(workdir, *, with_checkpoint=True):
    os.makedirs(workdir / "stage2", exist_ok=True)
    config = {"dataset": "fake_lt", "dataset_kwargs": {"seed": 1}}
    (workdir / "config.json").write_text(json.dumps(config))
    if with_checkpoint:
        make_model().save(str(workdir / "stage2" / "best.keras"))


def test_evaluate_workdir_loads_checkpoint(tmp_path, monkeypatch):
    _write_workdir(tmp_path)
    calls = []

    def fake_get_dataset(name, **kwargs):
        calls.append((name, kwargs))
        return FakeDataset(**kwargs)

    monkeypatch.setattr(run_evaluation, "get_dataset", fake_get_dataset)
    metrics = run_evaluation.evaluate_workdir(
        str(tmp_path), stage=2, checkpoint="best", batch_size=32
    )
    assert calls == [("fake_lt", {"seed": 1})]
    document = F.load_metrics_json(str(tmp_path / "eval" / "stage2" / "metrics.json"))
    assert document.model_name == "oltr"
    assert document.metrics.open == metrics.open
    with pytest.raises(CheckpointNotFoundError, match="latest"):
        run_evaluation.evaluate_workdir(str(tmp_path), checkpoint="latest")
    with pytest.raises(CheckpointNotFoundError, match="stage 1"):
        run_evaluation.evaluate_workdir(str(tmp_path), stage=1)


def test_evaluate_cli_without_checkpoint_exits_cleanly(tmp_path):
    _write_workdir(tmp_path, with_checkpoint=False)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "trainers", "evaluate.py"), f"--workdir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "stage2/best.keras" in result.stderr


@pytest.fixture(scope="module")
def compare_cli():
    return importlib.import_module("keras_oltr.commands.compare")


def test_compare_cli_averages_seeds(tmp_path, capsys, compare_cli):
    paths = []
    for name, seed in (("oltr", 0), ("oltr", 1), ("plain", 2)):
        out = tmp_path / f"{name}{seed}"
        R.write_report(sample_metrics(seed), str(out), model_name=name, dataset_name="fake")
        paths.append(str(out / "metrics.json"))
    compare_cli.flags.FLAGS(["compare", f"--glob={tmp_path}/oltr*/metrics.json"])
    assert compare_cli.main(["compare", paths[2]]) == 0
    output = capsys.readouterr().out
    oltr_line = next(line for line in output.splitlines() if line.startswith("| oltr"))
    values = [sample_metrics(s).open.f_measure for s in (0, 1)]
    expected = f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
    assert expected in oltr_line and "| 2 " in oltr_line
    assert "| plain | 1 " in output


def _scored_metrics(seed):
    """Metrics with a validation split and an extra "energy" score (random data)."""
    rng = np.random.default_rng(seed)
    k = TRAIN_COUNTS.size

    def split(n):
        labels = rng.integers(-1, k, n)
        logits = (
            rng.normal(size=(n, k)) * 2
            + 3 * np.eye(k)[np.maximum(labels, 0)] * (labels >= 0)[:, None]
        )
        energy = np.log(np.exp(logits).sum(1))
        return labels, logits, energy

    labels, logits, energy = split(300)
    val_labels, val_logits, val_energy = split(200)
    return M.evaluate_predictions(
        logits,
        labels,
        TRAIN_COUNTS,
        from_logits=True,
        open_scores={"energy": energy},
        val={"labels": val_labels, "logits": val_logits, "open_scores": {"energy": val_energy}},
    )


def test_score_tables_per_model_and_val_rule_columns(tmp_path, capsys, compare_cli):
    metrics = [_scored_metrics(seed) for seed in (0, 1)]
    documents = [
        R.write_report(m, str(tmp_path / f"run{i}"), model_name="plain", dataset_name="fake")
        for i, m in enumerate(metrics)
    ]
    tables = T.aggregate_score_tables(documents)
    (table,) = tables.values()
    energy_line = next(line for line in table.splitlines() if line.startswith("| energy"))
    values = [m.open_scores.scores["energy"].auroc for m in metrics]
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in energy_line
    chosen = sum(m.threshold_selection.score == "energy" for m in metrics)
    assert energy_line.rstrip(" |").endswith(f"{chosen}/2")
    row = T.results_row(documents[0].metrics, documents[0].model_name)
    selection = metrics[0].threshold_selection
    assert row["model"] == "plain"
    assert row["open_f_val_rule"] == selection.test.f_measure
    assert row["auroc_val_score"] == metrics[0].open_scores.scores[selection.score].auroc
    compare_cli.flags.FLAGS(["compare"])
    assert (
        compare_cli.main(["compare", *(str(tmp_path / f"run{i}" / "metrics.json") for i in (0, 1))])
        == 0
    )
    output = capsys.readouterr().out
    assert "Open scores of plain" in output and energy_line in output


def test_compare_refuses_to_average_datasets_unless_grouped(tmp_path, capsys, compare_cli):
    paths = []
    for dataset in ("lt_a", "lt_b"):
        for seed in (0, 1):
            out = tmp_path / f"{dataset}{seed}"
            R.write_report(sample_metrics(seed), str(out), model_name="oltr", dataset_name=dataset)
            paths.append(str(out / "metrics.json"))
    compare_cli.flags.FLAGS(["compare"])
    compare_cli.flags.FLAGS["glob"].value = []  # flags keep values from earlier tests
    assert compare_cli.main(["compare", *paths]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "lt_a/? (2)" in error and "--group_by=dataset" in error
    compare_cli.flags.FLAGS(["compare", "--group_by=dataset"])
    try:
        assert compare_cli.main(["compare", *paths]) == 0
    finally:
        compare_cli.flags.FLAGS(["compare", "--group_by=none"])
    output = capsys.readouterr().out
    assert "## lt_a / ? (2 files)" in output and "## lt_b / ? (2 files)" in output
    assert output.count("| oltr") >= 2
